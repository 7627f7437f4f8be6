//! Waypoint's application layer: `PlanResumeService` and the lifecycle use cases, the ports they
//! need (event store, clock, run lock, snapshot probe), and an in-memory store.

mod error;
mod memory;
mod ports;
mod service;
mod store;

pub use error::{ErrorKind, ServiceError};
pub use memory::InMemoryStore;
pub use ports::{
    Clock, InMemoryRunLocks, InMemorySnapshots, ManualClock, NoRunLocks, NoSnapshotProbe, RunLockProbe, SnapshotProbe,
    SystemClock,
};
pub use service::{
    CheckpointRecorded, FailedAttempt, NewPlan, PlanResumeService, ResumeOutcome, ResumePoint, ResumeRequest,
    StepCheckpoint, StepStart,
};
pub use store::{Catalog, PlanStore, PlanView, RecordedEvent, StoreError, StoredEvent};
pub use waypoint_domain as domain;
