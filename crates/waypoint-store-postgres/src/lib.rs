//! Waypoint's shared store: the event log, the catalog and the run locks in PostgreSQL, for
//! teams that outgrow one machine. See docs/adr/0007-postgres-store.md.
//!
//! ```text
//! waypoint_schema          one row per applied migration (the schema version)
//! waypoint_events          the log: (plan_id, version) unique, a global position and the
//!                          writing transaction's id, which together order the log for followers
//! waypoint_plans           the catalog: one row per plan with its compact view, maintained in the
//!                          append's own transaction; its row lock serialises appends to a plan;
//!                          a plan removed by retention keeps its row as its tombstone
//! waypoint_view_snapshots  full views of long plans, so loading one does not replay its history
//! waypoint_step_logs       the kept end of each attempt's stdout and stderr, by (plan_id, step,
//!                          attempt, stream); removed with the plan by retention
//! ```
//!
//! Run locks are session advisory locks, each on a connection of its own, so they vanish with the
//! process or connection that held them.
//!
//! - [`PostgresStore`]: the store port ([`PlanStore`](waypoint_application::PlanStore)) over one
//!   database, with a small pool of connections; it passes the same conformance kit as every
//!   store. Its run locks are [`PgRunLocks`].
//! - [`PgStoreError`]: every failure, mapped onto the port's
//!   [`StoreError`](waypoint_application::StoreError); [`redact`] masks passwords in the
//!   connection strings messages show.
//! - `passfile`: a connection string without a password takes it from libpq's password file
//!   (`PGPASSFILE`, else `~/.pgpass`), so that no password need be on a command line.
//! - [`testing`]: a throwaway server and a fresh database per test.
//!
//! Every call runs synchronously on a pooled connection and returns a ready future, like the
//! file store. From an async runtime, wrap the store in
//! [`OffThreadStore`](waypoint_application::OffThreadStore) so no call blocks the runtime's
//! threads.
//!
//! Connect, then use the store as any other (this needs a running server):
//!
//! ```no_run
//! # futures::executor::block_on(async {
//! use waypoint_application::domain::{Message, Phase};
//! use waypoint_application::{NewPlan, PlanResumeService, ResumeRequest};
//! use waypoint_store_postgres::PostgresStore;
//!
//! // The database must exist; connecting brings its schema up to date.
//! let store = PostgresStore::connect("postgres://waypoint:secret@db.internal:5432/waypoint")?;
//! // The service takes its run locks from the store: advisory locks every machine sees.
//! let service = PlanResumeService::new(store);
//!
//! let new = NewPlan { start: Some((Phase::Strategize, None)), ..NewPlan::default() };
//! let id = service.create_plan(new).await?.plan_id;
//! service.record_shutdown(&id, Message::parse("deploy")?).await?;
//! let preview = service.resume_plan(&id, ResumeRequest { dry_run: true, ..ResumeRequest::default() }).await?;
//! assert!(preview.summary.eligible);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

#![warn(missing_docs)]

mod error;
mod passfile;
mod pool;
mod redact;
mod retention;
mod runlock;
mod schema;
mod step_logs;
mod store;
pub mod testing;

pub use error::PgStoreError;
pub use redact::redact;
pub use retention::REMOVAL_BATCH;
pub use runlock::{PgRunLockGuard, PgRunLocks};
pub use schema::SCHEMA_VERSION;
pub use store::{LogReader, PostgresStore};

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod tests;
