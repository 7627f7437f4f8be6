//! Waypoint's application layer: `PlanResumeService` and the lifecycle use cases, the ports they
//! need (event store, clock, run lock, snapshot probe), and an in-memory store.

mod error;
mod memory;
mod offload;
mod ports;
mod service;
mod store;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod verify;

#[cfg(test)]
mod tests;

pub use error::{ErrorKind, ServiceError};
pub use memory::InMemoryStore;
pub use offload::OffThreadStore;
pub use ports::{
    Clock, HeldRunLock, InMemoryRunLocks, InMemorySnapshots, ManualClock, NoSnapshotProbe, RunLockError, RunLockGuard,
    RunLocks, SnapshotProbe, SystemClock,
};
pub use service::{
    CheckpointRecorded, NewPlan, PlanResumeService, ResumeOutcome, ResumePoint, ResumeRequest, StepCheckpoint,
};
pub use store::{Catalog, PlanStore, PlanView, RecordedEvent, StoreError, StoredEvent};
pub use verify::{StoreStats, VerifyReport};
pub use waypoint_domain as domain;
