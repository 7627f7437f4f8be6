//! Waypoint's shared store: the event log, the catalog and the run locks in PostgreSQL, for
//! teams that outgrow one machine. See docs/adr/0007-postgres-store.md.
//!
//! ```text
//! waypoint_schema          one row per applied migration (the schema version)
//! waypoint_events          the log: (plan_id, version) unique, a global position and the
//!                          writing transaction's id, which together order the log for followers
//! waypoint_plans           the catalog: one row per plan with its compact view, maintained in the
//!                          append's own transaction; its row lock serialises appends to a plan
//! waypoint_view_snapshots  full views of long plans, so loading one does not replay its history
//! ```
//!
//! Run locks are session advisory locks, each on a connection of its own, so they vanish with the
//! process or connection that held them.

mod error;
mod pool;
mod redact;
mod runlock;
mod schema;
mod store;
pub mod testing;

pub use error::PgStoreError;
pub use redact::redact;
pub use runlock::{PgRunLockGuard, PgRunLocks};
pub use schema::SCHEMA_VERSION;
pub use store::{LogReader, PostgresStore};

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod tests;
