//! Waypoint's embedded durable store: an append-only, checksummed event log in a local
//! directory, shared safely by many processes. See docs/adr/0004-file-store-format.md.
//!
//! ```text
//! <store>/events.log       the log: a file header, then framed records (length, CRC32C, envelope)
//! <store>/store.lock       held shared by every open store, exclusively by `repair`
//! <store>/write.lock       held exclusively while appending, shared while catching up
//! <store>/checkpoint.lock  held by the one process writing a checkpoint
//! <store>/locks/<plan>.lock  run locks, one per plan
//! <store>/catalog.ckpt     the checkpoint head: the last record folded, the rows files' lengths
//! <store>/catalog/open-<g>.rows, done-<g>.rows  every plan's compact view, open and finished
//! <store>/index/<plan>.idx   each plan's record offsets, by version
//! <store>/views/<plan>.sum   a plan's compact view, kept current by checkpoints
//! <store>/views/<plan>.view  a snapshot of one plan's full view, to resume without replay
//! <store>/logs/<plan>/<step>-<attempt>.out|err  the kept end of each attempt's stdout / stderr
//! <store>/queues/<queue>.claim  a queue's claim lock, held while a worker claims (ADR 0017)
//! <store>/queues/limits.json    every queue's limit on running plans (limits.lock guards it)
//! <store>/tmp/<name>.<pid>.tmp  a file being written atomically
//! <store>/torn/            bytes of torn last records cut off on open, kept for inspection
//! <store>/backup/          copies of the log taken by `repair` before it changes anything
//! ```
//!
//! Every derived file is bound to the store (its first record) and to the log record it vouches
//! for (docs/adr/0009-file-store-at-scale.md). Step logs are not derived from the log and not
//! bound to it: they are the steps' output, kept beside their plan (`step_logs.rs`). Every one of
//! these names is built in `layout.rs` and nowhere else.
//!
//! - [`FileStore`]: the store itself, the application's `PlanStore` port over the log; an append
//!   returns only once its records are on disk. [`StoreOptions`] tunes it.
//! - [`FileRunLocks`]: the run-lock port over OS file locks, released when a runner dies.
//! - [`repair()`]: the explicit action that cuts a damaged log back to its last good record.
//! - [`inspect`], [`verify`]: read-only access to the files on disk, and the comparison of every
//!   derived file with a replay of the log. [`record`] is the on-disk record codec, [`storage`]
//!   the seam through which bytes reach the disk.
//!
//! Record a step, close the store, and read the plan back from disk:
//!
//! ```
//! # futures::executor::block_on(async {
//! use waypoint_application::domain::{DecisionId, Phase, StepNumber};
//! use waypoint_application::{NewPlan, PlanResumeService, StepCheckpoint, StepStart};
//! use waypoint_store_file::FileStore;
//!
//! let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
//! let dir = std::env::temp_dir().join(format!("waypoint-store-doc-{}-{nanos}", std::process::id()));
//!
//! let service = PlanResumeService::new(FileStore::open(&dir)?);
//! let new = NewPlan { start: Some((Phase::Strategize, None)), ..NewPlan::default() };
//! let id = service.create_plan(new).await?.plan_id;
//! let (step, decision) = (StepNumber::FIRST, DecisionId::parse("fetch-1")?);
//! service.record_step_started(&id, StepStart::new(step, decision.clone())).await?;
//! service.record_step_checkpoint(&id, StepCheckpoint::new(step, decision)).await?;
//! drop(service);
//!
//! // A later process: every acknowledged event is in the log.
//! let store = FileStore::open_read_only(&dir)?;
//! let view = store.plan_view(&id)?.expect("the plan has events");
//! assert_eq!(view.state.resume.next_step(), StepNumber::new(2).ok());
//! assert_eq!(store.read_plan(&id, 1)?.len(), view.version as usize);
//! drop(store);
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

mod binding;
mod catalog;
mod commit;
mod crc;
mod error;
mod fingerprint;
mod format;
mod frame;
mod fsutil;
mod group_commit;
mod index;
pub mod inspect;
mod layout;
mod log;
mod order;
mod projections;
mod queue_index;
mod queues;
pub mod record;
mod recovery;
mod repair;
mod retention;
mod runlock;
mod state;
mod step_logs;
pub mod storage;
mod store;
pub mod verify;

pub use commit::AppendRequest;
pub use error::FileStoreError;
pub use projections::{PlanVersions, StoredCatalog};
pub use repair::{repair, RepairReport};
pub use runlock::FileRunLocks;
pub use state::StoreOptions;
pub use store::FileStore;

/// `<store>/runs/<plan>/`: the folder a plan-file runner keeps for a plan's running step (its
/// output files), named by the store's layout like every entry of the store
/// directory.
pub fn plan_run_folder(store_dir: &std::path::Path, plan_id: &waypoint_domain::PlanId) -> std::path::PathBuf {
    layout::Layout::new(store_dir).plan_runs(plan_id)
}

/// `<store>/locks/<plan>.attempt`: the attempt lock of a plan-file runner's step, beside the
/// plan's run lock and outside the folder the step is told about.
pub fn plan_attempt_lock(store_dir: &std::path::Path, plan_id: &waypoint_domain::PlanId) -> std::path::PathBuf {
    layout::Layout::new(store_dir).attempt_lock(plan_id)
}

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod test_support;

/// The fuzz target's body (crates/waypoint-store-file/fuzz): decode arbitrary bytes as a record
/// and, when they decode, check that encoding gives the same bytes back. Must never panic
/// except on a real round-trip bug.
pub fn fuzz_decode(bytes: &[u8]) {
    if let Ok((record, len)) = record::decode(bytes) {
        let again = record.encode().expect("a decoded record encodes");
        assert_eq!(again, bytes[..len], "a decoded record re-encodes to the same bytes");
    }
}
