//! The scenario's world: one service over one store, a manual clock, run locks and a snapshot
//! probe, the plan the scenario works on, and what the last `When` step returned.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use chrono::{TimeZone, Utc};
use cucumber::gherkin::{Step, StepType};
use eventually::store::{EventStore, Select};
use futures::TryStreamExt;
use waypoint_application::domain::RunnerId;
use waypoint_application::domain::{
    evaluate_eligibility, CurrentDefinition, EligibilityInputs, Fingerprint, InvalidValue, Message, Phase, PlanId,
    ProcessingState, ResumeEligibility, ResumeIneligibleReason, ResumeSummary, StepDefinition,
};
use waypoint_application::{
    CheckpointRecorded, Compaction, InMemorySnapshots, InMemoryStore, ManualClock, PlanResumeService, PlanStore,
    PlanView, ResumeOutcome, ResumeRequest, RunLockGuard, ServiceError, StoreError, StoredEvent,
};

use crate::stores::{ScratchDir, StoreKind, TestStore};

pub type Service = PlanResumeService<TestStore>;

/// How tombstones name the scenario's archive.
pub const ARCHIVE: &str = "scenario-archive";

/// Every scenario starts at this instant; each accepted command moves the clock one second on,
/// so every event has a distinct, predictable time.
pub fn epoch() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("a valid instant")
}

#[derive(Debug, cucumber::World)]
#[world(init = Self::new)]
pub struct PlanWorld {
    /// Opened by the `before` hook, which knows which store this run uses.
    harness: Option<Harness>,
    plan: Option<PlanId>,
    /// The caller's fingerprint of the plan definition, handed to every eligibility check and resume.
    pub fingerprint: Option<Fingerprint>,
    /// The plan definition's steps as they are now, for the per-step definition check.
    pub definition: Vec<StepDefinition>,
    outcome: Option<Result<Done, Failure>>,
    /// The store's events just before the last `When` step ran.
    before: Vec<StoredEvent>,
    /// The store's content fingerprint just before the last `When` step ran.
    before_fingerprint: Option<String>,
    /// Each step a workflow ran, as `name#attempt`, across the scenario's runs.
    pub workflow_ran: Vec<String>,
    /// How the last workflow run ended: `finished`, or the error's text.
    pub workflow_end: Option<String>,
    /// How many events the last workflow run appended.
    pub workflow_appended: usize,
    /// What the last claim by a worker took: a plan, or nothing.
    pub claimed: Option<Option<PlanId>>,
}

#[derive(Debug)]
pub struct Harness {
    pub service: Service,
    pub clock: ManualClock,
    /// Run locks taken through the store's own run-lock port, standing for live runners.
    held: Mutex<Vec<RunLockGuard>>,
    pub snapshots: InMemorySnapshots,
    /// Where compactions archive removed plans, named [`ARCHIVE`] in tombstones.
    pub archive: InMemoryStore,
    // Dropped last: the store may live in it.
    _scratch: ScratchDir,
}

/// What an accepted command returned.
#[derive(Debug)]
pub enum Done {
    View(Box<PlanView>),
    Checkpoint(CheckpointRecorded),
    /// `false` when the shutdown had already been recorded.
    Shutdown(bool),
    Resume(Box<ResumeOutcome>),
    /// Each racer's result: the version it appended, or its refusal.
    Race(Vec<Result<u32, Failure>>),
    /// A new plan forked from the scenario's plan.
    Fork(Box<PlanView>),
    /// A read that answered (what it read is checked by reading again).
    Read,
    /// What a compaction removed (or, for a dry run, would remove).
    Compaction(Box<Compaction>),
}

impl From<PlanView> for Done {
    fn from(view: PlanView) -> Self {
        Done::View(Box::new(view))
    }
}

impl From<CheckpointRecorded> for Done {
    fn from(recorded: CheckpointRecorded) -> Self {
        Done::Checkpoint(recorded)
    }
}

impl From<bool> for Done {
    fn from(appended: bool) -> Self {
        Done::Shutdown(appended)
    }
}

impl From<ResumeOutcome> for Done {
    fn from(outcome: ResumeOutcome) -> Self {
        Done::Resume(Box::new(outcome))
    }
}

/// Why a command was refused: by the service, by the store, or before it ran (an invalid value).
#[derive(Debug)]
pub enum Failure {
    Service(ServiceError),
    Store(StoreError),
    Value(InvalidValue),
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        Failure::Service(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<InvalidValue> for Failure {
    fn from(e: InvalidValue) -> Self {
        Failure::Value(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Service(e) => e.fmt(f),
            Failure::Store(e) => e.fmt(f),
            Failure::Value(e) => e.fmt(f),
        }
    }
}

/// The name of an enum value's variant, from its `Debug` form: `StepOutOfOrder { .. }` → `StepOutOfOrder`.
fn variant_name(debug: String) -> String {
    debug.split(|c: char| !c.is_alphanumeric()).next().unwrap_or_default().to_owned()
}

impl Failure {
    /// The typed error's variant: a `PlanError` variant, `PlanNotFound`, `Store…` or an invalid value.
    pub fn name(&self) -> String {
        match self {
            Failure::Service(ServiceError::Plan { source, .. }) => variant_name(format!("{source:?}")),
            Failure::Service(ServiceError::NotFound(_)) => "PlanNotFound".to_owned(),
            Failure::Service(ServiceError::Store(e)) | Failure::Store(e) => {
                format!("Store{}", variant_name(format!("{e:?}")))
            }
            Failure::Service(e) => variant_name(format!("{e:?}")),
            Failure::Value(e) => variant_name(format!("{e:?}")),
        }
    }

    pub fn reasons(&self) -> Option<&[ResumeIneligibleReason]> {
        match self {
            Failure::Service(e) => e.reasons(),
            _ => None,
        }
    }

    /// The stable snake_case code scripts see.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Service(e) => e.code(),
            Failure::Store(StoreError::Conflict { .. }) => "conflict",
            Failure::Store(_) => "store_error",
            Failure::Value(e) => e.code(),
        }
    }
}

/// Which typed errors and reason codes the suite has reached, reported at the end of a run.
pub static REACHED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

pub fn note_reached(name: impl Into<String>) {
    REACHED.lock().unwrap_or_else(|p| p.into_inner()).insert(name.into());
}

impl PlanWorld {
    fn new() -> Self {
        Self {
            harness: None,
            plan: None,
            fingerprint: None,
            definition: Vec::new(),
            outcome: None,
            before: Vec::new(),
            before_fingerprint: None,
            workflow_ran: Vec::new(),
            workflow_end: None,
            workflow_appended: 0,
            claimed: None,
        }
    }

    /// Gives the scenario a fresh, empty store of `kind`.
    pub fn open(&mut self, kind: StoreKind) {
        let scratch = ScratchDir::new();
        let clock = ManualClock::new(epoch());
        let snapshots = InMemorySnapshots::default();
        // The scenario's clock is the store's clock too, so a scenario moves leases to expiry.
        let store = TestStore::new(kind.open(scratch.path())).with_clock(clock.clone());
        let service = PlanResumeService::new(store).with_clock(clock.clone()).with_snapshot_probe(snapshots.clone());
        let archive = InMemoryStore::new();
        self.harness = Some(Harness { service, clock, held: Mutex::default(), snapshots, archive, _scratch: scratch });
    }

    pub fn harness(&self) -> &Harness {
        self.harness.as_ref().expect("the before hook opens a store for every scenario")
    }

    pub fn service(&self) -> &Service {
        &self.harness().service
    }

    /// The plan the scenario works on: the last one created or selected.
    pub fn plan_id(&self) -> PlanId {
        self.plan.clone().expect("a step must create or select a plan first")
    }

    pub fn select(&mut self, plan: &str) -> PlanId {
        let id = PlanId::parse(plan).expect("scenario plan ids are valid");
        self.plan = Some(id.clone());
        id
    }

    /// Every event in the store, in global order.
    pub async fn events(&self) -> Vec<StoredEvent> {
        let stream = self.service().store().stream_all(Select::All).await.expect("the store streams its events");
        stream.try_collect().await.expect("every stored event reads back")
    }

    /// The eligibility verdict with the scenario's plan definition as a probe would find it now,
    /// from the full view and from the compact one (which keeps only the last checkpoint): both
    /// must agree, whatever the store.
    pub async fn definition_verdict(&self) -> ResumeEligibility {
        let (service, id) = (self.service(), self.plan_id());
        let full = service.load(&id).await.expect("the plan loads");
        let compact = service.load_summary(&id).await.expect("the plan's summary view loads");
        let inputs = EligibilityInputs {
            runner_alive: self.service().store().run_locks().is_held(&id),
            definition: Some(CurrentDefinition::Known { fingerprint: None, steps: self.definition.clone() }),
            ..EligibilityInputs::default()
        };
        let verdict = evaluate_eligibility(&full.state, &inputs);
        assert_eq!(evaluate_eligibility(&compact.state, &inputs), verdict, "the compact view agrees");
        verdict.reasons.iter().for_each(|r| note_reached(r.code()));
        verdict
    }

    pub async fn view(&self) -> PlanView {
        self.service().load(&self.plan_id()).await.expect("the plan loads")
    }

    /// Runs a command against the current plan. A `Given` step must be accepted; a `When` step's
    /// result, accepted or refused, is kept for the `Then` steps.
    pub async fn act<T, E>(&mut self, step: &Step, action: impl AsyncFnOnce(Service, PlanId) -> Result<T, E>)
    where
        T: Into<Done>,
        E: Into<Failure>,
    {
        let when = step.ty == StepType::When;
        if when {
            self.before = self.events().await;
            self.before_fingerprint = Some(self.store_fingerprint().await);
        }
        let result = action(self.service().clone(), self.plan_id()).await.map(Into::into).map_err(Into::into);
        match &result {
            Ok(done) => self.after_accepted(done).await,
            Err(failure) if !when => panic!("`{}` was refused: {failure}", step.value),
            Err(failure) => note_reached(failure.name()),
        }
        if let Err(Failure::Service(e)) = &result {
            e.reasons().into_iter().flatten().for_each(|r| note_reached(r.code()));
        }
        self.outcome = Some(result);
    }

    /// Keeps event times distinct, and checks what every accepted command must keep: a valid
    /// (phase, state) pair, and a returned view equal to the one the store loads.
    async fn after_accepted(&self, done: &Done) {
        self.harness().clock.advance(chrono::Duration::seconds(1));
        if let Ok(view) = self.service().load(&self.plan_id()).await {
            let (phase, state) = (view.state.phase, view.state.state);
            assert!(phase.allows(state), "the plan reached {phase}/{state}, which is not a valid pair");
            if let Done::View(returned) = done {
                assert_eq!(**returned, view, "the view a command returns is the view the store loads");
            }
        }
        if let Done::Fork(fork) = done {
            let stored = self.service().load(&fork.plan_id).await.expect("the fork loads");
            assert_eq!(**fork, stored, "the fork a command returns is the fork the store loads");
        }
    }

    /// A runner whose command was accepted now works on the plan, holding its run lock.
    pub fn runner_holds_lock_if_accepted(&self) {
        if self.outcome().is_ok() {
            self.another_runner_takes_the_lock();
        }
    }

    /// Another runner takes the plan's run lock through the store's own run-lock port.
    pub fn another_runner_takes_the_lock(&self) {
        let runner = RunnerId::parse("scenario-runner").expect("a valid runner id");
        let guard = self.service().acquire_run_lock(&self.plan_id(), &runner).expect("the run lock is free");
        self.harness().held.lock().unwrap_or_else(|p| p.into_inner()).push(guard);
    }

    /// Every runner this scenario started dies: the store releases their run locks.
    pub fn runners_die(&self) {
        self.harness().held.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn outcome(&self) -> &Result<Done, Failure> {
        self.outcome.as_ref().expect("a When step must run a command first")
    }

    /// The store's own digest of everything it holds.
    pub async fn store_fingerprint(&self) -> String {
        self.service().store().content_fingerprint().await.expect("the store fingerprints its content")
    }

    /// The store's events just before the last `When` step.
    pub fn before_events(&self) -> &[StoredEvent] {
        &self.before
    }

    /// The store's fingerprint just before the last `When` step.
    pub fn fingerprint_before(&self) -> &str {
        self.before_fingerprint.as_deref().expect("a When step ran")
    }

    /// The events the last `When` step appended, after checking it rewrote none.
    pub async fn appended(&self) -> Vec<StoredEvent> {
        let now = self.events().await;
        assert!(now.len() >= self.before.len(), "events disappeared from the store");
        assert_eq!(now[..self.before.len()], self.before[..], "stored events were rewritten");
        now[self.before.len()..].to_vec()
    }

    /// A resume as this scenario's caller asks for it: with its fingerprint, without a runner.
    pub fn resume_request(&self, dry_run: bool) -> ResumeRequest {
        ResumeRequest { dry_run, fingerprint: self.fingerprint.clone(), runner: None, lease: None }
    }

    /// The eligibility verdict, asked of every surface at once: they must all agree.
    pub async fn reasons(&self) -> Vec<ResumeIneligibleReason> {
        let (service, id) = (self.service(), self.plan_id());
        let verdict = service.validate_eligibility(&id, self.fingerprint.clone()).await.expect("eligibility");
        let summary = service.build_resume_summary(&id, self.fingerprint.clone()).await.expect("summary");
        let dry_run = service.resume_plan(&id, self.resume_request(true)).await.expect("dry run").summary;
        assert_eq!((summary.eligible, &summary.reasons), (verdict.eligible, &verdict.reasons));
        assert_eq!(dry_run, summary, "a dry run shows the summary");
        assert_eq!(verdict.eligible, verdict.reasons.is_empty());
        if self.fingerprint.is_none() {
            let listed = service.list_resumable().await.expect("listing").iter().any(|s| s.plan_id == id);
            assert_eq!(listed, verdict.eligible, "list_resumable agrees with the verdict");
        }
        verdict.reasons.iter().for_each(|r| note_reached(r.code()));
        verdict.reasons
    }

    /// The summary a `Then` step inspects: the one the last resume returned, or a fresh one.
    pub async fn summary(&self, returned: bool) -> ResumeSummary {
        if returned {
            match self.outcome() {
                Ok(Done::Resume(outcome)) => outcome.summary.clone(),
                other => panic!("the last command returned no summary: {other:?}"),
            }
        } else {
            self.service().build_resume_summary(&self.plan_id(), self.fingerprint.clone()).await.expect("summary")
        }
    }
}

/// A value a step may leave out: an absent optional capture parses as `None`.
#[derive(Debug, Clone)]
pub struct Maybe<T>(pub Option<T>);

impl<T: FromStr> FromStr for Maybe<T> {
    type Err = T::Err;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            Ok(Maybe(None))
        } else {
            s.parse().map(|v| Maybe(Some(v)))
        }
    }
}

#[derive(Debug, Clone, Copy, cucumber::Parameter)]
#[param(name = "phase", regex = "action|strategize|execute|apply")]
pub struct PhaseArg(pub Phase);

impl FromStr for PhaseArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(PhaseArg)
    }
}

#[derive(Debug, Clone, Copy, cucumber::Parameter)]
#[param(name = "state", regex = "queued|processing|complete|errored|cancelled|applied|constrained")]
pub struct StateArg(pub ProcessingState);

impl FromStr for StateArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(StateArg)
    }
}

/// A lifecycle command, as a scenario phrases it after "the plan".
#[derive(Debug, Clone, Copy, PartialEq, Eq, cucumber::Parameter)]
#[param(
    name = "move",
    regex = "starts (?:action|strategize|execute|apply)|completes the phase|fails|is constrained|is applied|is cancelled|shuts down"
)]
pub enum Move {
    Start(Phase),
    CompletePhase,
    Fail,
    Constrain,
    Apply,
    Cancel,
    Shutdown,
}

impl FromStr for Move {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "completes the phase" => Move::CompletePhase,
            "fails" => Move::Fail,
            "is constrained" => Move::Constrain,
            "is applied" => Move::Apply,
            "is cancelled" => Move::Cancel,
            "shuts down" => Move::Shutdown,
            other => Move::Start(other.strip_prefix("starts ").ok_or(format!("unknown move {other:?}"))?.parse()?),
        })
    }
}

impl Move {
    /// Performs the move through the service, with no runner (an external worker).
    pub async fn perform(self, service: &Service, id: &PlanId) -> Result<Done, ServiceError> {
        let message = |text: &str| Message::parse(text).expect("a valid message");
        Ok(match self {
            Move::Start(phase) => service.start_phase(id, phase, None).await?.into(),
            Move::CompletePhase => service.complete_phase(id).await?.into(),
            Move::Fail => service.fail(id, message("the build failed")).await?.into(),
            Move::Constrain => service.constrain(id, message("the change window is closed")).await?.into(),
            Move::Apply => service.apply(id).await?.into(),
            Move::Cancel => service.cancel(id, Some(message("the operator cancelled"))).await?.into(),
            Move::Shutdown => service.record_shutdown(id, message("SIGTERM")).await?.into(),
        })
    }

    /// The moves that take a new plan to `(phase, state)`, which must be a valid pair.
    pub fn path_to(phase: Phase, state: ProcessingState) -> Vec<Move> {
        use ProcessingState::*;
        assert!(phase.allows(state), "{phase}/{state} is not a valid pair");
        let mut moves = match phase {
            Phase::Action => vec![],
            Phase::Strategize => vec![Move::Start(Phase::Strategize)],
            Phase::Execute => vec![Move::Start(Phase::Strategize), Move::CompletePhase, Move::Start(Phase::Execute)],
            Phase::Apply => vec![
                Move::Start(Phase::Strategize),
                Move::CompletePhase,
                Move::Start(Phase::Execute),
                Move::CompletePhase,
                Move::Start(Phase::Apply),
            ],
        };
        moves.extend(match (phase, state) {
            (_, Processing) | (Phase::Action, Queued) => None,
            (_, Queued) => Some(Move::Shutdown),
            (_, Complete) => Some(Move::CompletePhase),
            (_, Errored) => Some(Move::Fail),
            (_, Cancelled) => Some(Move::Cancel),
            (_, Applied) => Some(Move::Apply),
            (_, Constrained) => Some(Move::Constrain),
        });
        moves
    }
}

/// Splits a scenario's comma-separated list, where an empty string is an empty list.
pub fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}
