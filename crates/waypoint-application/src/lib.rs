//! Waypoint's application layer: the use cases over any store, and the ports they need.
//!
//! - [`PlanResumeService`]: create plans, record steps and checkpoints, interruptions and
//!   failures, and decide and perform resumes, over any [`PlanStore`].
//! - [`Workflow`] ([`PlanResumeService::workflow`]): durable steps for Rust code, each step's
//!   output recorded and given back, continued by a key you choose.
//! - Ports: [`PlanStore`] (the log, its projections and the steps' logs, [`StepLog`]), [`RunLocks`], [`Clock`],
//!   [`SnapshotProbe`]; [`InMemoryStore`] implements the store in memory, and
//!   [`OffThreadStore`] gives any store an async face that never blocks a runtime's threads.
//! - `testkit` (feature `testkit`): the conformance kit every store passes.
//!
//! Record a step, stop, and see where a resume picks up:
//!
//! ```
//! # futures::executor::block_on(async {
//! use waypoint_application::domain::{DecisionId, Message, Phase, StepNumber};
//! use waypoint_application::{InMemoryStore, NewPlan, PlanResumeService, ResumeRequest, StepCheckpoint, StepStart};
//!
//! let service = PlanResumeService::new(InMemoryStore::new());
//! let new = NewPlan { start: Some((Phase::Strategize, None)), ..NewPlan::default() };
//! let id = service.create_plan(new).await?.plan_id;
//! let (step, decision) = (StepNumber::FIRST, DecisionId::parse("fetch-1")?);
//! service.record_step_started(&id, StepStart::new(step, decision.clone())).await?;
//! service.record_step_checkpoint(&id, StepCheckpoint::new(step, decision)).await?;
//! service.record_shutdown(&id, Message::parse("deploy")?).await?;
//!
//! let preview = service.resume_plan(&id, ResumeRequest { dry_run: true, ..ResumeRequest::default() }).await?;
//! assert!(preview.summary.eligible);
//! assert_eq!(preview.summary.next_step, StepNumber::new(2).ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

pub mod engine;
mod error;
mod memory;
mod offload;
mod ports;
mod queues;
mod service;
mod store;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
mod timer;
pub mod verify;
mod workflow;

#[cfg(test)]
mod tests;

pub use engine::{
    EngineError, EngineRun, Gate, Hold, Prepared, ReadyRun, Retry, RunDefinition, RunKey, StepFailure, StepPolicy,
    StepResult, StepTurn, Stopped, WorkflowKey,
};
pub use error::{ErrorKind, ServiceError};
pub use memory::InMemoryStore;
pub use offload::OffThreadStore;
pub use ports::{
    Clock, DefinitionProbe, HeldRunLock, InMemoryRunLocks, InMemorySnapshots, ManualClock, NoDefinitionProbe,
    NoSnapshotProbe, RunLockError, RunLockGuard, RunLocks, SnapshotProbe, SystemClock,
};
pub use queues::{Claimed, QueueOverview, Submit};
pub use service::{
    is_due, CheckpointRecorded, CompactProgress, CompactRequest, Compaction, FailedAttempt, LeaseRequest, Listing,
    NewPlan, PlanResumeService, ResumeOutcome, ResumePoint, ResumeRequest, StepCheckpoint, StepStart,
};
pub use store::{
    in_queue, listing_order, same_history, Catalog, CatalogCursor, CatalogPages, CatalogQuery, HeldQueueLock,
    LogStream, PlanStore, PlanView, QueueLimit, QueueLock, RecordedEvent, Removal, RemovalReport, StepLog, StoreError,
    StoredEvent, STEP_LOG_CAP,
};
pub use verify::{StoreStats, VerifyReport};
pub use waypoint_domain as domain;
pub use workflow::{ShutdownToken, StepContext, StepOptions, Workflow, WorkflowError, WorkflowOptions};
