//! `PlanResumeService`: the use cases library users call, over any [`PlanStore`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventually::aggregate::Aggregate;
use eventually::store::{Expected, Select};
use futures::TryStreamExt;
use uuid::Uuid;
use waypoint_domain::{
    check_definition, evaluate_eligibility, Actor, Artifact, Attempt, AttemptFailure, ChangedStep, Checkpoint,
    CheckpointId, DecisionId, EligibilityInputs, EventId, Fingerprint, Lease, Message, Phase, Plan, PlanCommand,
    PlanError, PlanId, PlanName, PlanState, ProcessingState, ResumeEligibility, ResumeSummary, RunnerId, SnapshotCheck,
    SnapshotId, StepDefinition, StepName, StepNumber, StepOutput, TotalSteps,
};

mod retention;

pub use retention::{is_due, CompactProgress, CompactRequest, Compaction};

use crate::error::ServiceError;
use crate::ports::{
    Clock, DefinitionProbe, NoDefinitionProbe, NoSnapshotProbe, RunLockGuard, RunLocks, SnapshotProbe, SystemClock,
};
use crate::store::{listing_order, CatalogQuery, PlanStore, PlanView, RecordedEvent, StoreError, StoredEvent};

/// What to create.
#[derive(Debug, Clone, Default)]
pub struct NewPlan {
    /// A caller-chosen id; a random one when absent.
    pub id: Option<PlanId>,
    /// A human name.
    pub name: Option<PlanName>,
    /// How many steps the first phase has, when known.
    pub total_steps: Option<TotalSteps>,
    /// A digest of the whole plan definition, compared on resume.
    pub fingerprint: Option<Fingerprint>,
    /// Where the plan definition lives, such as a plan file path.
    pub source: Option<Artifact>,
    /// The definition's steps with their fingerprints, for the per-step definition check on
    /// resume; empty when the caller has no per-step definition.
    pub steps: Vec<StepDefinition>,
    /// Enter this phase (from `action`: `strategize`) in the same append as the creation, so no
    /// crash can leave a plan created but never started. `runner` names the caller's run lock.
    pub start: Option<(Phase, Option<RunnerId>)>,
}

/// A lease a runner that holds no run lock asks for: it holds the plan for `duration` from the
/// store's clock ([`PlanStore::now`]), and keeps it by renewing it
/// ([`PlanResumeService::heartbeat`]) before it runs out. While it is live the plan is
/// `still_running`; once it has run out the plan is `crashed` (`lease_expired`) and another
/// runner may resume it and take it over (ADR 0011).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The runner that holds the plan.
    pub runner: RunnerId,
    /// How long the lease lasts without a renewal.
    pub duration: Duration,
}

impl LeaseRequest {
    /// A lease of `runner`'s for `duration`.
    pub fn new(runner: RunnerId, duration: Duration) -> Self {
        Self { runner, duration }
    }
}

/// The intent to run one step, as the caller reports it before running it.
#[derive(Debug, Clone)]
pub struct StepStart {
    /// The step about to run.
    pub step: StepNumber,
    /// The decision that produced its work.
    pub decision_id: DecisionId,
    /// The step's name in the plan definition; a different name than the one already recorded
    /// for this step is refused (`step_mismatch`).
    pub name: Option<StepName>,
    /// Which attempt at the step this is, when the caller retries steps.
    pub attempt: Option<Attempt>,
    /// The caller's lease, renewed for this long from now: only the runner that holds the plan's
    /// lease may start a step under one (`lease_lost` otherwise).
    pub lease: Option<LeaseRequest>,
}

impl StepStart {
    /// A start with no name, no attempt number and no lease.
    pub fn new(step: StepNumber, decision_id: DecisionId) -> Self {
        Self { step, decision_id, name: None, attempt: None, lease: None }
    }
}

/// A failed attempt at the running step that will be retried, as the caller reports it.
#[derive(Debug, Clone)]
pub struct FailedAttempt {
    /// The step whose attempt failed.
    pub step: StepNumber,
    /// Which attempt it was.
    pub attempt: Attempt,
    /// How it failed: exit code, signal, timeout or error.
    pub reason: AttemptFailure,
    /// When the next attempt is due, if the caller schedules one.
    pub retry_at: Option<DateTime<Utc>>,
}

/// One step's completion, as the caller reports it.
#[derive(Debug, Clone)]
pub struct StepCheckpoint {
    /// The step that completed.
    pub step: StepNumber,
    /// The decision that produced its work.
    pub decision_id: DecisionId,
    /// A reference to the workspace state after the step.
    pub snapshot_id: Option<SnapshotId>,
    /// What the step produced, as paths or references.
    pub artifacts: Vec<Artifact>,
    /// The step's name in the plan definition; checked against the name already recorded.
    pub name: Option<StepName>,
    /// What the step produced, given back to every later run from the log.
    pub output: Option<StepOutput>,
    /// The fingerprint of the step's definition as it ran, compared on resume.
    pub fingerprint: Option<Fingerprint>,
}

impl StepCheckpoint {
    /// A checkpoint of `step` under `decision_id`, with no snapshot, artifacts, name, output or
    /// fingerprint; set the fields that apply.
    pub fn new(step: StepNumber, decision_id: DecisionId) -> Self {
        Self {
            step,
            decision_id,
            snapshot_id: None,
            artifacts: Vec::new(),
            name: None,
            output: None,
            fingerprint: None,
        }
    }
}

/// The checkpoint a `record_step_checkpoint` call stands on, and whether it wrote anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecorded {
    /// The checkpoint as recorded (the existing one for a retry).
    pub checkpoint: Checkpoint,
    /// `false` for an idempotent retry: the existing checkpoint is returned and nothing appended.
    pub appended: bool,
}

/// How to resume.
#[derive(Debug, Clone, Default)]
pub struct ResumeRequest {
    /// Preview only: evaluate and summarise, write nothing.
    pub dry_run: bool,
    /// The caller's fingerprint of the plan definition, checked against the recorded one.
    pub fingerprint: Option<Fingerprint>,
    /// The runner that will do the work, when the caller holds the plan's run lock
    /// ([`RunLockGuard::runner`]): its own lock then does not count as a live runner.
    pub runner: Option<RunnerId>,
    /// The lease the resuming runner holds the plan by, when it holds no run lock for its whole
    /// run. It replaces the lease of a runner whose lease expired.
    pub lease: Option<LeaseRequest>,
}

/// Where work picks up after a resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// The step to run next. Completed steps are never run again.
    pub from_step: StepNumber,
    /// Set when `from_step` had started but not completed before the interruption: it runs again.
    pub rerun_uncertain: bool,
    /// The plan-stream version of the `Resumed` event.
    pub version: u32,
}

/// The result of `resume_plan`: the summary, and for a real resume the point to continue from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeOutcome {
    /// The plan's summary: before the resume for a preview, after it for a real one.
    pub summary: ResumeSummary,
    /// Where work continues; `None` for a preview.
    pub resumed: Option<ResumePoint>,
}

/// The application service. Cheap to clone; every clone shares the store and the ports.
#[derive(Debug, Clone)]
pub struct PlanResumeService<S> {
    store: S,
    clock: Arc<dyn Clock>,
    run_locks: Arc<dyn RunLocks>,
    snapshots: Arc<dyn SnapshotProbe>,
    definitions: Arc<dyn DefinitionProbe>,
    actor: Actor,
}

impl<S: PlanStore> PlanResumeService<S> {
    /// A service with the system clock, the store's own run locks and no snapshot probe.
    pub fn new(store: S) -> Self {
        Self {
            run_locks: store.run_locks(),
            store,
            clock: Arc::new(SystemClock),
            snapshots: Arc::new(NoSnapshotProbe),
            definitions: Arc::new(NoDefinitionProbe),
            actor: Actor::parse("library").expect("static actor is valid"),
        }
    }

    /// The same service with another clock (tests use [`crate::ManualClock`]).
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Replaces the store's run locks, for a caller that knows more about who is still working
    /// on a plan (the CLI adds the lock its step supervisors hold).
    pub fn with_run_locks(mut self, run_locks: impl RunLocks + 'static) -> Self {
        self.run_locks = Arc::new(run_locks);
        self
    }

    /// The same service finding plans' current definitions with `probe`: every eligibility
    /// verdict (show, listings, a resume and its preview) then checks drift step by step.
    pub fn with_definition_probe(mut self, probe: impl DefinitionProbe + 'static) -> Self {
        self.definitions = Arc::new(probe);
        self
    }

    /// The same service checking checkpoints' snapshots with `probe`.
    pub fn with_snapshot_probe(mut self, probe: impl SnapshotProbe + 'static) -> Self {
        self.snapshots = Arc::new(probe);
        self
    }

    /// Who is named in `Resumed` events this service records.
    pub fn with_actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// The store this service works on.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The time by this service's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Takes `plan_id`'s run lock for `runner` without waiting. Hold the guard while working on
    /// the plan, name its runner in [`ResumeRequest::runner`] and [`NewPlan::start`], and check it
    /// ([`RunLockGuard::check`]) before each step.
    pub fn acquire_run_lock(&self, plan_id: &PlanId, runner: &RunnerId) -> Result<RunLockGuard, ServiceError> {
        Ok(self.run_locks.acquire(plan_id, runner)?)
    }

    /// Creates a plan (in `action`, or already started when [`NewPlan::start`] says so).
    pub async fn create_plan(&self, new: NewPlan) -> Result<PlanView, ServiceError> {
        let plan_id = new.id.unwrap_or_else(|| PlanId::from_uuid(Uuid::new_v4()));
        let command = PlanCommand::Create {
            name: new.name,
            total_steps: new.total_steps,
            fingerprint: new.fingerprint,
            source: new.source,
            steps: new.steps,
            at: self.clock.now(),
        };
        let mut commands = vec![command];
        if let Some((phase, runner)) = new.start {
            commands.push(PlanCommand::StartPhase { phase, runner, lease: None });
        }
        // Decide against what is stored, so a taken id is `AlreadyExists`, not a version conflict;
        // only a create racing another create for the same id still meets the store's conflict.
        let existing = self.store.load_view(&plan_id).await?;
        let (view, _) = self.execute_on(&plan_id, existing, commands).await?;
        Ok(view)
    }

    /// Creates a new plan (`new_id`, or a random id) as a fork of `source` at `at_step`: the new
    /// plan holds copies of the source's checkpoints 1..=`at_step` of its current phase (outputs
    /// included), its name, totals, fingerprints and definition source, starts `queued` in the
    /// source's phase and resumes at the next step. The source is only read, and the fork never
    /// reads it again. `at_step` `None` copies no checkpoint; a step that did not complete is
    /// refused (`step_not_completed`).
    pub async fn fork_plan(
        &self,
        source: &PlanId,
        at_step: Option<StepNumber>,
        new_id: Option<PlanId>,
    ) -> Result<PlanView, ServiceError> {
        let source_view = self.load(source).await?;
        if let Some(at_step) = at_step {
            self.check_kept_steps(&source_view, at_step)?;
        }
        let plan_id = new_id.unwrap_or_else(|| PlanId::from_uuid(Uuid::new_v4()));
        let existing = self.store.load_view(&plan_id).await?;
        let command = PlanCommand::Fork {
            source_id: source.clone(),
            source: Box::new(source_view.state),
            source_version: source_view.version,
            at_step,
            at: self.clock.now(),
        };
        match self.execute_on(&plan_id, existing, vec![command]).await {
            // What the source lacks is the source's to answer for.
            Err(ServiceError::Plan {
                source: error @ (PlanError::StepNotCompleted { .. } | PlanError::InvalidState { .. }),
                ..
            }) => Err(ServiceError::Plan { plan_id: source.clone(), source: error }),
            other => Ok(other?.0),
        }
    }

    /// Whether `source` can be forked at `at_step`, without writing: the step completed, and
    /// no kept step changed since (see [`Self::fork_plan`]). The same refusals as the fork's.
    pub async fn check_fork(&self, source: &PlanId, at_step: Option<StepNumber>) -> Result<(), ServiceError> {
        let view = self.load_summary(source).await?;
        let Some(at_step) = at_step else { return Ok(()) };
        let last_completed = view.state.resume.last_completed_step;
        if last_completed.is_none_or(|last| last < at_step) {
            let source_error = PlanError::StepNotCompleted { step: at_step, last_completed };
            return Err(ServiceError::Plan { plan_id: source.clone(), source: source_error });
        }
        self.check_kept_steps(&view, at_step)
    }

    /// A fork at `at_step` keeps steps 1..=`at_step`: when the source's definition can be
    /// found now (the definition probe), none of them may have changed since it completed, or
    /// the fork could never resume (`definition_changed`, naming them). The same per-step check
    /// as a resume's, limited to the kept steps.
    fn check_kept_steps(&self, source: &PlanView, at_step: StepNumber) -> Result<(), ServiceError> {
        let Some(current) = self.definitions.current(&source.plan_id, &source.state) else { return Ok(()) };
        let check = check_definition(&source.state, &current);
        let changed: Vec<ChangedStep> =
            check.changed_steps.into_iter().filter(|c| c.completed && c.step <= at_step).collect();
        if changed.is_empty() && check.unreadable.is_none() {
            return Ok(());
        }
        Err(ServiceError::DefinitionChanged {
            plan_id: source.plan_id.clone(),
            at_step,
            changed,
            unreadable: check.unreadable,
        })
    }

    /// Enters `phase` (advance or revert). Pass the runner if the caller holds the run lock.
    pub async fn start_phase(
        &self,
        plan_id: &PlanId,
        phase: Phase,
        runner: Option<RunnerId>,
    ) -> Result<PlanView, ServiceError> {
        self.execute(plan_id, PlanCommand::StartPhase { phase, runner, lease: None }).await
    }

    /// Enters `phase` (advance or revert), holding the plan by `lease` rather than by a run lock:
    /// the plan is `still_running` while the lease is live, and the runner renews it with
    /// [`Self::heartbeat`].
    pub async fn start_phase_leased(
        &self,
        plan_id: &PlanId,
        phase: Phase,
        lease: LeaseRequest,
    ) -> Result<PlanView, ServiceError> {
        let lease = self.lease_from_now(lease).await?;
        self.execute(plan_id, PlanCommand::StartPhase { phase, runner: None, lease: Some(lease) }).await
    }

    /// Renews `runner`'s lease on the plan for `lease` from the store's now. Refused with
    /// `lease_lost` (and nothing written) when `runner` does not hold the plan's lease: another
    /// runner took the plan over after its lease expired, or the plan is no longer running under
    /// a lease. A runner whose lease expired but which nobody took over renews it as usual.
    pub async fn heartbeat(
        &self,
        plan_id: &PlanId,
        runner: RunnerId,
        lease: Duration,
    ) -> Result<PlanView, ServiceError> {
        let Lease { runner, expires_at } = self.lease_from_now(LeaseRequest::new(runner, lease)).await?;
        self.execute(plan_id, PlanCommand::RenewLease { runner, expires_at }).await
    }

    /// Sets how many steps the current phase has.
    pub async fn set_total_steps(&self, plan_id: &PlanId, total: TotalSteps) -> Result<PlanView, ServiceError> {
        self.execute(plan_id, PlanCommand::SetTotalSteps { total }).await
    }

    /// Records the intent to run a step: until its checkpoint lands it is the uncertain step.
    /// Under a lease ([`StepStart::lease`]) it also renews the caller's lease, which it must hold.
    pub async fn record_step_started(&self, plan_id: &PlanId, start: StepStart) -> Result<PlanView, ServiceError> {
        self.record_step_started_after(plan_id, start, None).await
    }

    /// [`Self::record_step_started`], decided first against `known` (see [`Self::execute_known`]).
    pub(crate) async fn record_step_started_after(
        &self,
        plan_id: &PlanId,
        start: StepStart,
        known: Option<PlanView>,
    ) -> Result<PlanView, ServiceError> {
        let StepStart { step, decision_id, name, attempt, lease } = start;
        let lease = match lease {
            Some(lease) => Some(self.lease_from_now(lease).await?),
            None => None,
        };
        let command = PlanCommand::StartStep { step, decision_id, name, attempt, lease };
        Ok(self.execute_known(plan_id, known, command).await?.0)
    }

    /// Records that an attempt at the running step failed and will be retried: the plan stays
    /// `processing` and the step is no longer uncertain; the next attempt records its own start.
    /// The last failed attempt is recorded with [`Self::fail`] instead.
    pub async fn record_attempt_failed(
        &self,
        plan_id: &PlanId,
        failed: FailedAttempt,
    ) -> Result<PlanView, ServiceError> {
        let FailedAttempt { step, attempt, reason, retry_at } = failed;
        self.execute(plan_id, PlanCommand::RecordAttemptFailed { step, attempt, reason, retry_at }).await
    }

    /// Records that a step completed. An exact retry returns the existing checkpoint and writes
    /// nothing; the same step with a different payload is a conflict.
    pub async fn record_step_checkpoint(
        &self,
        plan_id: &PlanId,
        checkpoint: StepCheckpoint,
    ) -> Result<CheckpointRecorded, ServiceError> {
        Ok(self.record_step_checkpoint_after(plan_id, checkpoint, None).await?.0)
    }

    /// [`Self::record_step_checkpoint`], decided first against `known` (see
    /// [`Self::execute_known`]); also returns the plan's view after it.
    pub(crate) async fn record_step_checkpoint_after(
        &self,
        plan_id: &PlanId,
        checkpoint: StepCheckpoint,
        known: Option<PlanView>,
    ) -> Result<(CheckpointRecorded, PlanView), ServiceError> {
        let step = checkpoint.step;
        let command = PlanCommand::RecordCheckpoint {
            checkpoint_id: CheckpointId::from_uuid(Uuid::new_v4()),
            step,
            decision_id: checkpoint.decision_id,
            snapshot_id: checkpoint.snapshot_id,
            artifacts: checkpoint.artifacts,
            name: checkpoint.name,
            output: checkpoint.output,
            fingerprint: checkpoint.fingerprint,
        };
        let (view, appended) = self.execute_known(plan_id, known, command).await?;
        let checkpoint =
            view.state.resume.checkpoint(step).cloned().expect("an accepted checkpoint is in the folded state");
        Ok((CheckpointRecorded { checkpoint, appended }, view))
    }

    /// Records a graceful shutdown. Returns `false` when it was already recorded (idempotent).
    pub async fn record_shutdown(&self, plan_id: &PlanId, reason: Message) -> Result<bool, ServiceError> {
        let command = PlanCommand::RecordShutdown { reason, at: self.clock.now() };
        let (_, appended) = self.execute_appending(plan_id, command).await?;
        Ok(appended)
    }

    /// Records that the current phase failed: the plan is `errored`, and can resume.
    pub async fn fail(&self, plan_id: &PlanId, message: Message) -> Result<PlanView, ServiceError> {
        self.execute(plan_id, PlanCommand::Fail { message }).await
    }

    /// Records that the apply phase hit a constraint.
    pub async fn constrain(&self, plan_id: &PlanId, message: Message) -> Result<PlanView, ServiceError> {
        self.execute(plan_id, PlanCommand::Constrain { message }).await
    }

    /// Completes the current strategize or execute phase.
    pub async fn complete_phase(&self, plan_id: &PlanId) -> Result<PlanView, ServiceError> {
        self.execute(plan_id, PlanCommand::CompletePhase).await
    }

    /// Records that the apply phase applied the plan (terminal).
    pub async fn apply(&self, plan_id: &PlanId) -> Result<PlanView, ServiceError> {
        self.execute(plan_id, PlanCommand::Apply).await
    }

    /// Cancels the plan (terminal).
    pub async fn cancel(&self, plan_id: &PlanId, reason: Option<Message>) -> Result<PlanView, ServiceError> {
        self.execute(plan_id, PlanCommand::Cancel { reason }).await
    }

    /// Stops the running plan before step `step` to ask a person `question`: the plan is
    /// `waiting` and holds nothing until [`Self::approve`] or [`Self::reject`]. The step engine
    /// calls it for a step that needs approval.
    pub async fn request_approval(
        &self,
        plan_id: &PlanId,
        step: StepNumber,
        name: Option<StepName>,
        question: Message,
    ) -> Result<PlanView, ServiceError> {
        self.execute(plan_id, PlanCommand::RequestApproval { step, name, question, at: self.clock.now() }).await
    }

    /// Approves the step the plan waits at (`step`, when given, must be that step): the next run
    /// of the plan goes past it. The same approval again writes nothing; anything else on a plan
    /// that does not wait there is `invalid_state`.
    pub async fn approve(
        &self,
        plan_id: &PlanId,
        step: Option<StepNumber>,
        by: Actor,
        comment: Option<Message>,
    ) -> Result<PlanView, ServiceError> {
        self.execute(plan_id, PlanCommand::Approve { step, by, comment, at: self.clock.now() }).await
    }

    /// Rejects the step the plan waits at: the plan fails with `approval_rejected`.
    pub async fn reject(
        &self,
        plan_id: &PlanId,
        step: Option<StepNumber>,
        by: Actor,
        reason: Message,
    ) -> Result<PlanView, ServiceError> {
        self.execute(plan_id, PlanCommand::Reject { step, by, reason, at: self.clock.now() }).await
    }

    /// Asks the plan to stop at its next step boundary: its runner records the interruption
    /// (reason `paused`) before starting another step. A plan nobody runs (interrupted, or a
    /// runner that is gone) is paused at once.
    pub async fn pause(&self, plan_id: &PlanId, by: Actor, reason: Option<Message>) -> Result<PlanView, ServiceError> {
        let view = self.load(plan_id).await?;
        let now = self.store_now_for([&view]).await?;
        let verdict = evaluate_eligibility(&view.state, &self.eligibility_inputs(&view, None, false, now));
        let at = self.clock.now();
        let mut commands = vec![PlanCommand::RequestPause { by, reason, at }];
        if verdict.crash_inferred {
            // Nobody will reach a step boundary: the pause takes effect now.
            let reason = Message::lossy(waypoint_domain::PAUSED_REASON);
            commands.push(PlanCommand::RecordShutdown { reason, at });
        }
        Ok(self.execute_on(plan_id, Some(view), commands).await?.0)
    }

    /// The plan's current view.
    pub async fn load(&self, plan_id: &PlanId) -> Result<PlanView, ServiceError> {
        match self.store.load_view(plan_id).await? {
            Some(view) => Ok(view),
            None => Err(self.not_found(plan_id).await),
        }
    }

    /// The plan's compact view (only its last checkpoint kept): everything but the list of
    /// earlier checkpoints, at a cost that does not grow with the plan's history. Use it to show
    /// a plan; use [`Self::load`] when every checkpoint is needed.
    pub async fn load_summary(&self, plan_id: &PlanId) -> Result<PlanView, ServiceError> {
        match self.store.load_summary_view(plan_id).await? {
            Some(view) => Ok(view),
            None => Err(self.not_found(plan_id).await),
        }
    }

    /// Whether the plan can resume, with every reason it cannot.
    pub async fn validate_eligibility(
        &self,
        plan_id: &PlanId,
        fingerprint: Option<Fingerprint>,
    ) -> Result<ResumeEligibility, ServiceError> {
        let view = self.load_summary(plan_id).await?;
        let now = self.store_now_for([&view]).await?;
        Ok(evaluate_eligibility(&view.state, &self.eligibility_inputs(&view, fingerprint, false, now)))
    }

    /// The plan's summary: state, progress, and whether and from where it can resume.
    pub async fn build_resume_summary(
        &self,
        plan_id: &PlanId,
        fingerprint: Option<Fingerprint>,
    ) -> Result<ResumeSummary, ServiceError> {
        let view = self.load_summary(plan_id).await?;
        let now = self.store_now_for([&view]).await?;
        Ok(self.summarize(&view, fingerprint, now))
    }

    /// Previews (`dry_run`) or performs a resume. A real resume appends `Resumed` with an
    /// expected-version check: of two racing resumes exactly one wins, the other gets a conflict.
    pub async fn resume_plan(&self, plan_id: &PlanId, request: ResumeRequest) -> Result<ResumeOutcome, ServiceError> {
        // A preview needs only the compact view; a real resume decides on the full one.
        let view = if request.dry_run { self.load_summary(plan_id).await? } else { self.load(plan_id).await? };
        // One reading of the store's clock judges an earlier runner's lease and starts the new one.
        let (now, lease) = match request.lease.filter(|_| !request.dry_run) {
            Some(lease) => {
                let now = self.store.now().await?;
                (Some(now), Some(lease_at(now, lease)?))
            }
            None => (self.store_now_for([&view]).await?, None),
        };
        let inputs = self.eligibility_inputs(&view, request.fingerprint, request.runner.is_some(), now);
        if request.dry_run {
            let verdict = evaluate_eligibility(&view.state, &inputs);
            let summary = ResumeSummary::build(plan_id, &view.state, &verdict, Some(view.last_activity_at));
            return Ok(ResumeOutcome { summary, resumed: None });
        }
        let uncertain = view.state.resume.uncertain_step;
        let command =
            PlanCommand::Resume { by: self.actor.clone(), runner: request.runner, at: self.clock.now(), inputs, lease };
        let (after, _) = self.execute_on(plan_id, Some(view), vec![command]).await?;
        let from_step = after.state.resume.next_step().expect("an eligible plan has a next step");
        // The caller now works on the plan: describe it as running, not as a crashed runner.
        let running = EligibilityInputs { runner_alive: true, ..EligibilityInputs::default() };
        let verdict = evaluate_eligibility(&after.state, &running);
        let summary = ResumeSummary::build(plan_id, &after.state, &verdict, Some(after.last_activity_at));
        let resumed = ResumePoint { from_step, rerun_uncertain: uncertain == Some(from_step), version: after.version };
        Ok(ResumeOutcome { summary, resumed: Some(resumed) })
    }

    /// Every plan's compact view with its summary, newest activity first; only the eligible ones
    /// when `resumable_only`. Costs time in the number of plans, not of events.
    pub async fn list(&self, resumable_only: bool) -> Result<Vec<(PlanView, ResumeSummary)>, ServiceError> {
        let listing = self.listing(resumable_only).await?;
        let summaries: Vec<Option<ResumeSummary>> = listing.views().map(|view| listing.summary(self, view)).collect();
        let order = listing.order;
        let mut parts: Vec<Vec<Option<PlanView>>> =
            listing.parts.into_iter().map(|part| part.into_iter().map(Some).collect()).collect();
        Ok(order
            .into_iter()
            .zip(summaries)
            .filter_map(|((part, i), summary)| Some((parts[part][i].take().expect("each view once"), summary?)))
            .collect())
    }

    /// The plans [`Self::list`] lists, in its order, not yet summarized: for a caller that
    /// summarizes them a batch at a time ([`Listing::summary`]), e.g. while it prints the ones
    /// before.
    pub async fn listing(&self, resumable_only: bool) -> Result<Listing, ServiceError> {
        // A finished plan is never resumable: the store need not read those at all.
        let parts =
            if resumable_only { self.store.open_catalog_parts().await? } else { vec![self.store.catalog().await?] };
        // One reading of the store's clock for the whole listing, and none without a lease in it.
        let now = self.store_now_for(parts.iter().flatten()).await?;
        // Sorted by index: a view is large, and moving each one costs more than the comparisons.
        let mut order: Vec<(usize, usize)> =
            parts.iter().enumerate().flat_map(|(p, part)| (0..part.len()).map(move |i| (p, i))).collect();
        order.sort_unstable_by(|&(pa, a), &(pb, b)| listing_order(&parts[pa][a], &parts[pb][b]));
        Ok(Listing { parts, order, now, resumable_only })
    }

    /// Every plan's summary, in the listing's order, a batch at a time, for a listing of any
    /// size: `visit` gets each batch (at most `batch` plans) and answers whether to go on. It
    /// holds one batch, never the catalog ([`PlanStore::walk_catalog`]), and lets go of each
    /// batch's views as soon as they are summarized. The store's clock is read once, before the
    /// walk, for whichever plans are held by lease.
    pub async fn walk_list(
        &self,
        batch: usize,
        visit: &mut (dyn FnMut(Vec<ResumeSummary>) -> bool + Send),
    ) -> Result<(), ServiceError> {
        let now = Some(self.store.now().await?);
        let mut summarized =
            |views: Vec<PlanView>| visit(views.iter().map(|view| self.summarize(view, None, now)).collect());
        Ok(self.store.walk_catalog(CatalogQuery::first(batch), &mut summarized).await?)
    }

    /// The summaries of `views` (compact views from [`PlanStore::catalog`]), in their order, as
    /// [`Self::list`] builds them: for a caller that pages through the catalog and summarizes only
    /// the plans it shows. One reading of the store's clock for all of them, none without a lease.
    pub async fn summarize_views(&self, views: &[PlanView]) -> Result<Vec<ResumeSummary>, ServiceError> {
        let now = self.store_now_for(views).await?;
        Ok(views.iter().map(|view| self.summarize(view, None, now)).collect())
    }

    /// Every plan with its summary, newest activity first.
    pub async fn list_plans(&self) -> Result<Vec<ResumeSummary>, ServiceError> {
        Ok(self.list(false).await?.into_iter().map(|(_, summary)| summary).collect())
    }

    /// Every plan that can resume now, newest activity first.
    pub async fn list_resumable(&self) -> Result<Vec<ResumeSummary>, ServiceError> {
        Ok(self.list(true).await?.into_iter().map(|(_, summary)| summary).collect())
    }

    /// The plan's events in version order.
    pub async fn history(&self, plan_id: &PlanId) -> Result<Vec<StoredEvent>, ServiceError> {
        let events: Vec<StoredEvent> = self.store.stream(plan_id.clone(), Select::All).await?.try_collect().await?;
        if events.is_empty() {
            return Err(self.not_found(plan_id).await);
        }
        Ok(events)
    }

    /// Why `plan_id` has no events: removed by retention (with when and where to), or never
    /// created.
    pub(crate) async fn not_found(&self, plan_id: &PlanId) -> ServiceError {
        match self.store.removal(plan_id).await {
            Ok(Some(removal)) => ServiceError::Removed(removal),
            Ok(None) => ServiceError::NotFound(plan_id.clone()),
            Err(store) => ServiceError::Store(store),
        }
    }

    fn summarize(
        &self,
        view: &PlanView,
        fingerprint: Option<Fingerprint>,
        now: Option<DateTime<Utc>>,
    ) -> ResumeSummary {
        let verdict = evaluate_eligibility(&view.state, &self.eligibility_inputs(view, fingerprint, false, now));
        ResumeSummary::build(&view.plan_id, &view.state, &verdict, Some(view.last_activity_at))
    }

    /// The store's clock, read only when one of `views` is a running plan held by lease: the
    /// only verdict that depends on it. Plans without a lease cost no round trip to a server.
    async fn store_now_for<'v>(
        &self,
        views: impl IntoIterator<Item = &'v PlanView>,
    ) -> Result<Option<DateTime<Utc>>, ServiceError> {
        let leased = |view: &PlanView| is_running(&view.state) && view.state.lease.is_some();
        if views.into_iter().any(leased) {
            Ok(Some(self.store.now().await?))
        } else {
            Ok(None)
        }
    }

    /// `lease` as the domain records it: its runner and its expiry on the store's clock.
    async fn lease_from_now(&self, lease: LeaseRequest) -> Result<Lease, ServiceError> {
        lease_at(self.store.now().await?, lease)
    }

    /// The facts from outside the log. `caller_holds_lock`: the caller took the plan's run lock,
    /// so a held lock is its own and says nothing about another runner. `now`: the store's
    /// clock, for a plan held by lease.
    fn eligibility_inputs(
        &self,
        view: &PlanView,
        fingerprint: Option<Fingerprint>,
        caller_holds_lock: bool,
        now: Option<DateTime<Utc>>,
    ) -> EligibilityInputs {
        let snapshot = match view.state.resume.last_checkpoint() {
            Some(checkpoint) => self.snapshots.check(&view.plan_id, checkpoint),
            None => SnapshotCheck::NotChecked,
        };
        // Only an uninterrupted `processing` plan's verdict depends on a live runner: ask the
        // run-lock port (a file probe in the file store) for those alone, so a listing of
        // thousands of interrupted plans touches no lock file.
        let runner_alive = is_running(&view.state) && !caller_holds_lock && self.run_locks.is_held(&view.plan_id);
        // The probe's answer, when it knows the plan's definition, decides drift step by step;
        // otherwise the caller's whole-plan fingerprint does.
        let definition = self.definitions.current(&view.plan_id, &view.state);
        EligibilityInputs { runner_alive, fingerprint, snapshot, definition, now }
    }

    async fn execute(&self, plan_id: &PlanId, command: PlanCommand) -> Result<PlanView, ServiceError> {
        Ok(self.execute_appending(plan_id, command).await?.0)
    }

    async fn execute_appending(
        &self,
        plan_id: &PlanId,
        command: PlanCommand,
    ) -> Result<(PlanView, bool), ServiceError> {
        let view = self.load(plan_id).await?;
        // Only commands with an idempotent form are worth deciding twice.
        let retry = matches!(command, PlanCommand::RecordCheckpoint { .. } | PlanCommand::RecordShutdown { .. })
            .then(|| command.clone());
        match self.execute_on(plan_id, Some(view), vec![command]).await {
            // An identical command that lost a race to its twin is the idempotent case: decided
            // again against what the winner wrote, it appends nothing and succeeds. Anything
            // else that changed meanwhile keeps the conflict.
            Err(conflict @ ServiceError::Store(StoreError::Conflict { .. })) => {
                let Some(command) = retry else { return Err(conflict) };
                let fresh = self.load(plan_id).await?;
                match Plan.handle(plan_id, &Some(fresh.state.clone()), command).await {
                    Ok(None) => Ok((fresh, false)),
                    _ => Err(conflict),
                }
            }
            other => other,
        }
    }

    /// [`Self::execute_appending`], decided first against `known`: the view the caller's own
    /// last command returned, so that a runner recording step after step does not read the
    /// plan back (for a plan of many steps, a copy of every checkpoint) before each one. The
    /// expected-version check makes that safe: if anyone wrote since, the append is refused and
    /// the command is decided again against the plan as it is now. So is a refusal by the
    /// domain, and a decision that writes nothing (an idempotent repeat), which the known view
    /// alone may not be trusted to settle.
    pub(crate) async fn execute_known(
        &self,
        plan_id: &PlanId,
        known: Option<PlanView>,
        command: PlanCommand,
    ) -> Result<(PlanView, bool), ServiceError> {
        if let Some(view) = known {
            match self.execute_on(plan_id, Some(view), vec![command.clone()]).await {
                Ok((view, true)) => return Ok((view, true)),
                Ok((_, false)) | Err(ServiceError::Store(StoreError::Conflict { .. }) | ServiceError::Plan { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        self.execute_appending(plan_id, command).await
    }

    /// Decides `commands` against `view` and appends the result with an expected-version check.
    /// Returns the view after the command and whether anything was appended.
    pub(crate) async fn execute_on(
        &self,
        plan_id: &PlanId,
        view: Option<PlanView>,
        commands: Vec<PlanCommand>,
    ) -> Result<(PlanView, bool), ServiceError> {
        let plan_error = |source: PlanError| ServiceError::Plan { plan_id: plan_id.clone(), source };
        // The state moves out of the view: a plan's state holds every checkpoint of its phase, and
        // copying it on each append would make appends cost more as the history grows.
        let (mut state, mut version, mut last_activity_at) = match view {
            Some(view) => (Some(view.state), view.version, Some(view.last_activity_at)),
            None => (None, 0, None),
        };
        // Each command is decided against the state its predecessors leave; all their events go
        // in one append, so they land together or not at all.
        let now = self.clock.now();
        let mut recorded = Vec::new();
        for command in commands {
            for event in Plan.handle(plan_id, &state, command).await.map_err(plan_error)?.into_iter().flatten() {
                state = PlanState::fold(state, &event);
                recorded.push(RecordedEvent { event_id: EventId::from_uuid(Uuid::new_v4()), recorded_at: now, event });
            }
        }
        let appended = !recorded.is_empty();
        if appended {
            let count = recorded.len() as u32;
            match self.store.clone().append(plan_id.clone(), Expected::Exact(version), recorded).await {
                Ok(_) => {}
                // The plan was there when it was loaded and a compaction removed it since: the
                // writer hears what any later reader would, the removal and its archive. (At
                // version 0 the id is being created anew, and the store's refusal stands.)
                Err(removed @ StoreError::Removed { .. }) if version > 0 => {
                    return Err(match self.store.removal(plan_id).await? {
                        Some(removal) => ServiceError::Removed(removal),
                        // A removal still deciding: the store's own refusal says so.
                        None => ServiceError::Store(removed),
                    });
                }
                Err(other) => return Err(other.into()),
            }
            version += count;
            last_activity_at = Some(now);
        }
        match (state, last_activity_at) {
            (Some(state), Some(last_activity_at)) => {
                Ok((PlanView { plan_id: plan_id.clone(), version, last_activity_at, state }, appended))
            }
            _ => Err(ServiceError::NotFound(plan_id.clone())),
        }
    }
}

/// The plans of a listing in its order, with what their summaries need ([`PlanResumeService::listing`]).
#[derive(Debug)]
pub struct Listing {
    /// The plans' compact views, where the store put them ([`PlanStore::open_catalog_parts`]).
    parts: Vec<Vec<PlanView>>,
    /// Where in `parts` each plan's view is (part, index), in the listing's order: newest
    /// activity first, then by plan id.
    order: Vec<(usize, usize)>,
    now: Option<DateTime<Utc>>,
    resumable_only: bool,
}

impl Listing {
    /// The plans in the listing's order.
    pub fn views(&self) -> impl ExactSizeIterator<Item = &PlanView> + Clone + '_ {
        self.order.iter().map(|&(part, i)| &self.parts[part][i])
    }

    /// The plans from the `from`th of the listing's order, at most `count` of them.
    pub fn range(&self, from: usize, count: usize) -> impl Iterator<Item = &PlanView> + '_ {
        self.order.iter().skip(from).take(count).map(|&(part, i)| &self.parts[part][i])
    }

    /// `view`'s summary as `service` lists it: `None` for a plan a listing of the resumable
    /// plans leaves out.
    pub fn summary<S: PlanStore>(&self, service: &PlanResumeService<S>, view: &PlanView) -> Option<ResumeSummary> {
        let summary = service.summarize(view, None, self.now);
        (summary.eligible || !self.resumable_only).then_some(summary)
    }
}

/// An uninterrupted `processing` plan: the only kind whose verdict depends on a live runner (its
/// run lock or its lease).
fn is_running(state: &PlanState) -> bool {
    state.state == ProcessingState::Processing && !state.resume.interrupted
}

/// `lease` starting at `now` (the store's clock). A duration past the calendar is refused.
fn lease_at(now: DateTime<Utc>, lease: LeaseRequest) -> Result<Lease, ServiceError> {
    let expires_at = chrono::Duration::from_std(lease.duration)
        .ok()
        .and_then(|duration| now.checked_add_signed(duration))
        .ok_or(ServiceError::LeaseTooLong { duration: lease.duration })?;
    Ok(Lease { runner: lease.runner, expires_at })
}
