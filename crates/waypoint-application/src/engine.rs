//! The step engine: the rules of running a plan's steps, written once for every surface that
//! runs steps (the plan-file runner, the Rust workflow API, and the Python package and workers
//! built on them). A surface is an executor plus presentation: it runs a process or a closure
//! and says what happened; the engine decides what that means and records it.
//!
//! The engine owns:
//! - **continue by key** ([`PlanResumeService::prepare_run`]): the newest plan of a key is
//!   continued if it can resume, refused while it runs, replayed if it finished, and a fresh
//!   plan is created when there is none or `new` is asked for;
//! - **attempt numbers** that go on across runs ([`EngineRun::begin_step`]), with decision ids
//!   derived from them ([`DecisionId::for_attempt`]);
//! - **one failure rule** ([`EngineRun::attempt_failed`]): every failed attempt (exit code,
//!   signal, timeout, missing output, error, panic) is retried while the run's retries last,
//!   after the policy's delay, doubled each time and capped ([`StepPolicy::delay_after`]); the
//!   last one fails the plan with one cleaned message;
//! - **finishing** ([`EngineRun::finish`]) and **interruption** ([`EngineRun::interrupt`]): a
//!   plan whose steps all completed is finished, whatever stopped it; a run whose own code
//!   failed between steps fails the plan ([`EngineRun::fail`]).
//!
//! ```
//! # futures::executor::block_on(async {
//! use waypoint_application::domain::{Artifact, PlanName, RunnerId, StepName, StepNumber};
//! use waypoint_application::{InMemoryStore, PlanResumeService, Prepared, RunDefinition, StepTurn, WorkflowKey};
//!
//! let service = PlanResumeService::new(InMemoryStore::new());
//! let key = WorkflowKey::parse("nightly")?;
//! let definition = RunDefinition::unnamed_steps(PlanName::parse("nightly")?, key.source());
//! let Prepared::Fresh(ready) = service.prepare_run(&key, definition, RunnerId::parse("me")?, false).await? else {
//!     unreachable!("a new key starts a fresh plan")
//! };
//! let mut run = ready.start().await?;
//! let StepTurn::Run(attempt) = run.begin_step(StepNumber::FIRST, &StepName::parse("fetch")?).await? else {
//!     unreachable!("nothing completed yet")
//! };
//! run.completed(&attempt, Default::default()).await?;
//! run.finish().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::time::Duration;

use waypoint_domain::{
    ApprovalDecision, Artifact, Attempt, AttemptFailure, Checkpoint, DecisionId, Fingerprint, Message, Phase,
    PlanError, PlanId, PlanName, ProcessingState, ResumeIneligibleReason, ResumeMetadata, ResumeSummary, RunnerId,
    SnapshotId, StepDefinition, StepName, StepNumber, StepOutput, TotalSteps, PAUSED_REASON,
};

use crate::error::ServiceError;
use crate::ports::{RunLockError, RunLockGuard};
use crate::service::{
    FailedAttempt, LeaseRequest, NewPlan, PlanResumeService, ResumePoint, ResumeRequest, StepCheckpoint, StepStart,
};
use crate::store::{PlanStore, PlanView, Removal};

mod trace;
use trace::{Outcome, RunTrace};

/// The longest wait between two attempts of a step, however often the delay doubles.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// How a step runs: the same options on every surface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepPolicy {
    /// How many times a failed attempt is tried again within one run.
    pub retries: u32,
    /// The wait before the first retry; doubled after each failed attempt, capped at
    /// [`MAX_RETRY_DELAY`].
    pub retry_delay: Duration,
    /// How long one attempt may run before it is stopped, where the executor can stop it (a
    /// process group, an async task; a synchronous closure has none).
    pub timeout: Option<Duration>,
}

impl StepPolicy {
    /// The wait after the `failures`-th failed attempt of a step in this run (from 1).
    pub fn delay_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.retry_delay.saturating_mul(1u32 << doublings).min(MAX_RETRY_DELAY)
    }
}

/// How an attempt failed, as an executor saw it. Every kind is a failed attempt like any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepFailure {
    /// The step's process exited with a non-zero code.
    Exit {
        /// The exit code.
        code: i32,
    },
    /// The step's process was killed by a signal.
    Signal {
        /// The signal's number.
        signal: i32,
    },
    /// The step ran past its timeout and was stopped.
    Timeout {
        /// The timeout it ran past.
        limit: Duration,
    },
    /// The step returned an error, could not run, or left its declared outputs missing.
    Error {
        /// What went wrong, in words.
        message: String,
    },
    /// The step panicked (Rust) or raised (Python).
    Panic {
        /// The panic's message.
        message: String,
    },
}

impl StepFailure {
    /// How the failure is recorded in `step_attempt_failed`.
    pub fn recorded(&self) -> AttemptFailure {
        match self {
            StepFailure::Exit { code } => AttemptFailure::Exit { code: *code },
            StepFailure::Signal { signal } => AttemptFailure::Signal { signal: *signal },
            StepFailure::Timeout { .. } => AttemptFailure::Timeout,
            StepFailure::Error { .. } | StepFailure::Panic { .. } => {
                AttemptFailure::Error { message: Message::lossy(&self.to_string()) }
            }
        }
    }

    /// The step's exit code, when it exited with one.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            StepFailure::Exit { code } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepFailure::Exit { code } => write!(f, "exited with code {code}"),
            StepFailure::Signal { signal } => write!(f, "was killed by {}", signal_name(*signal)),
            StepFailure::Timeout { limit } => {
                write!(f, "timed out (it ran past its timeout of {} and was stopped)", format_duration(*limit))
            }
            StepFailure::Error { message } => write!(f, "failed: {message}"),
            StepFailure::Panic { message } => write!(f, "panicked: {message}"),
        }
    }
}

/// A signal's conventional name (`SIGTERM`), or `signal N`.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

/// `90s`, `2m30s`, `500ms`: a duration as the plan-file parser reads it back.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 || (!ms.is_multiple_of(1000) && d.as_secs() < 60) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, 0) => format!("{h}h{m}m"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// Reads a duration as plan files write it: a whole number and a unit (`ms`, `s`, `m`, `h`,
/// `d`), or several from the largest unit down (`2m30s`, `1h30m`); a bare number is seconds.
/// Whatever [`format_duration`] prints reads back as the same duration.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(text.parse().ok()?));
    }
    let mut rest = text;
    let mut millis: u64 = 0;
    let mut smaller_than = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_len = rest[digits..].find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len() - digits);
        let n: u64 = rest[..digits].parse().ok()?;
        // Units from the largest down, each at most once.
        let (rank, unit_ms) = match rest[digits..digits + unit_len].trim() {
            "d" => (0, 86_400_000),
            "h" => (1, 3_600_000),
            "m" => (2, 60_000),
            "s" => (3, 1_000),
            "ms" => (4, 1),
            _ => return None,
        };
        if smaller_than != usize::MAX && rank <= smaller_than {
            return None;
        }
        smaller_than = rank;
        millis = millis.checked_add(n.checked_mul(unit_ms)?)?;
        rest = &rest[digits + unit_len..];
    }
    (smaller_than != usize::MAX).then(|| Duration::from_millis(millis))
}

/// Names the plans of one key: the first run's plan is generation 1, and each fresh start
/// (`new`) makes the next generation. Ids must be unrelated between generations and keys.
pub trait RunKey: Send + Sync {
    /// The id of the key's `generation`-th plan (from 1).
    fn plan_id(&self, generation: u64) -> PlanId;
}

/// The key of a library workflow: generation 1 is the key itself, so `plan show KEY` finds the
/// workflow; later generations (`new`) are `KEY-N` when that fits in a plan id, else derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowKey(PlanId);

impl WorkflowKey {
    /// The workflow key `key`, a valid plan id.
    pub fn parse(key: &str) -> Result<Self, waypoint_domain::InvalidValue> {
        Ok(Self(PlanId::parse(key)?))
    }

    /// The key as a plan id: its first plan's id.
    pub fn new(key: PlanId) -> Self {
        Self(key)
    }

    /// The key's first plan: the key itself.
    pub fn first(&self) -> &PlanId {
        &self.0
    }

    /// The definition source recorded for a workflow's plans: `workflow:KEY`. A source marks a
    /// plan run by the engine (one phase of steps), which retention may remove once finished.
    pub fn source(&self) -> Artifact {
        Artifact::parse(&format!("workflow:{}", self.0)).expect("a plan id makes a valid artifact")
    }
}

impl RunKey for WorkflowKey {
    fn plan_id(&self, generation: u64) -> PlanId {
        if generation <= 1 {
            return self.0.clone();
        }
        // `~` cannot appear in a plan id, so no other key's first plan can take this id.
        let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{}~{generation}", self.0).as_bytes());
        let suffix = format!("-g{generation}-{}", &digest.simple().to_string()[..8]);
        let keep = PlanId::MAX_LEN - suffix.len();
        let head: String = self.0.as_str().chars().take(keep).collect();
        PlanId::parse(&format!("{head}{suffix}")).expect("id characters and length are kept")
    }
}

/// The highest generation `n` for which `exists(n)` holds, assuming generations exist from 1 up
/// to some n without gaps; `None` when the first does not exist. O(log n) probes.
pub async fn newest_generation<F, Fut, E>(mut exists: F) -> Result<Option<u64>, E>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<bool, E>>,
{
    if !exists(1).await? {
        return Ok(None);
    }
    let (mut low, mut high) = (1u64, 2u64);
    while exists(high).await? {
        low = high;
        high = high.saturating_mul(2);
        if high == u64::MAX {
            break;
        }
    }
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if exists(middle).await? {
            low = middle;
        } else {
            high = middle;
        }
    }
    Ok(Some(low))
}

/// What a run executes: recorded with a fresh plan, and checked against a continued one.
#[derive(Debug, Clone)]
pub struct RunDefinition {
    /// The plan's name.
    pub name: PlanName,
    /// Where the definition lives: a plan file's absolute path, or `workflow:KEY`.
    pub source: Artifact,
    /// The whole definition's fingerprint, when the surface computes one.
    pub fingerprint: Option<Fingerprint>,
    /// The steps with their fingerprints; empty when the surface learns its steps as it runs
    /// (a library workflow).
    pub steps: Vec<StepDefinition>,
}

impl RunDefinition {
    /// A definition whose steps are known only as they run.
    pub fn unnamed_steps(name: PlanName, source: Artifact) -> Self {
        Self { name, source, fingerprint: None, steps: Vec::new() }
    }

    pub(crate) fn total_steps(&self) -> Option<TotalSteps> {
        u32::try_from(self.steps.len()).ok().and_then(|n| TotalSteps::new(n).ok())
    }

    /// The total of steps a continued plan takes from this definition, when it differs from
    /// the recorded one: steps added at the end extend the plan, and pending steps removed
    /// shrink it, but never below a completed step (a completed step that was removed makes
    /// the plan `definition_changed` instead). `None` keeps the recorded total, as for a
    /// definition whose steps are learned as they run.
    pub fn new_total(&self, recorded: &ResumeMetadata) -> Option<TotalSteps> {
        let total = self.total_steps()?;
        let completed = recorded.last_completed_step.map_or(0, StepNumber::get);
        (recorded.total_steps != Some(total) && total.get() >= completed).then_some(total)
    }
}

/// Why a run could not start, continue or record a step. Nothing half-done is left behind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Another runner holds the plan: it is running now.
    #[error("plan {plan_id} is running in another process (still_running)")]
    StillRunning {
        /// The plan.
        plan_id: PlanId,
    },
    /// The plan exists but cannot resume, for every reason listed.
    #[error("plan {plan_id} cannot resume: {}", codes(reasons))]
    NotResumable {
        /// The plan.
        plan_id: PlanId,
        /// Every reason, as the eligibility function gives them.
        reasons: Vec<ResumeIneligibleReason>,
        /// The plan's summary, naming the changed steps and the rest.
        summary: Box<ResumeSummary>,
    },
    /// A step is asked for under another name than the one recorded at its position.
    #[error("step {step} was recorded as {recorded:?}, but is now called {given:?} (step_mismatch)")]
    StepMismatch {
        /// The step's position.
        step: StepNumber,
        /// The name in the log.
        recorded: StepName,
        /// The name given now.
        given: StepName,
    },
    /// The step's last attempt failed; the plan is recorded as failed and resumes from this
    /// step on its next run.
    #[error("{message}")]
    StepFailed {
        /// The step's position.
        step: StepNumber,
        /// The step's name.
        name: StepName,
        /// The last attempt.
        attempt: Attempt,
        /// How it failed.
        failure: StepFailure,
        /// The plan's recorded error: `step N (name) …`.
        message: Message,
    },
    /// The run lock was lost (its connection died): no further step starts.
    #[error(transparent)]
    RunLock(RunLockError),
    /// The service or the store failed.
    #[error(transparent)]
    Service(ServiceError),
}

fn codes(reasons: &[ResumeIneligibleReason]) -> String {
    reasons.iter().map(|r| r.code()).collect::<Vec<_>>().join(", ")
}

impl From<ServiceError> for EngineError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Plan { source: PlanError::StepMismatch { step, recorded, given }, .. } => {
                EngineError::StepMismatch { step, recorded, given }
            }
            ServiceError::RunLock(RunLockError::Busy { plan_id }) => EngineError::StillRunning { plan_id },
            ServiceError::RunLock(lost) => EngineError::RunLock(lost),
            other => EngineError::Service(other),
        }
    }
}

/// What running a key would do, decided under the plan's run lock and not yet written.
#[derive(Debug)]
pub enum Prepared<S> {
    /// No plan of the key yet (or `new`): a fresh plan is created when started.
    Fresh(ReadyRun<S>),
    /// The key's newest plan can resume; `summary` is how it stands before the resume.
    Continue(ReadyRun<S>, Box<ResumeSummary>),
    /// The key's newest plan finished: nothing runs, every step's recorded output is at hand.
    Finished(Box<FinishedRun>),
    /// The key's newest plan finished and retention removed it.
    Removed(Removal),
}

/// A finished plan of a key: what a replay gives back.
#[derive(Debug, Clone)]
pub struct FinishedRun {
    /// The plan's full view (every checkpoint of its phase, outputs included).
    pub view: PlanView,
    /// Its summary.
    pub summary: ResumeSummary,
}

/// How a run keeps other runners off its plan: the plan's run lock, held for the whole run
/// (released by the OS if the process dies), or a lease renewed at every step start and by
/// [`EngineRun::heartbeat`] (for runners that cannot hold a lock for the whole run).
#[derive(Debug)]
enum Holder {
    Lock(RunLockGuard),
    Lease(LeaseRequest),
}

impl Holder {
    fn runner(&self) -> &RunnerId {
        match self {
            Holder::Lock(guard) => guard.runner(),
            Holder::Lease(lease) => &lease.runner,
        }
    }

    fn lock_runner(&self) -> Option<RunnerId> {
        matches!(self, Holder::Lock(_)).then(|| self.runner().clone())
    }

    fn lease(&self) -> Option<LeaseRequest> {
        match self {
            Holder::Lock(_) => None,
            Holder::Lease(lease) => Some(lease.clone()),
        }
    }
}

/// How a surface asks to hold the plan it runs.
#[derive(Debug, Clone)]
pub enum Hold {
    /// Take the plan's run lock as this runner.
    Lock(RunnerId),
    /// Hold the plan by this lease.
    Lease(LeaseRequest),
}

/// A run decided and held, not yet started: [`Self::start`] writes.
#[derive(Debug)]
pub struct ReadyRun<S> {
    service: PlanResumeService<S>,
    plan_id: PlanId,
    guard: Holder,
    start: Start,
}

/// What [`ReadyRun::start`] writes first.
#[derive(Debug)]
enum Start {
    /// Creates the plan with this definition.
    Fresh(RunDefinition),
    /// Resumes the existing plan. The surface's definition, when it has one, sets the plan's
    /// total of steps ([`RunDefinition::new_total`]).
    Continue(Option<RunDefinition>),
    /// Forks `source`, keeping its steps up to `at`, then continues the fork as above.
    Fork { source: PlanId, at: Option<StepNumber>, definition: RunDefinition },
}

impl<S: PlanStore> ReadyRun<S> {
    /// The plan this run works on (not yet created for a fresh run).
    pub fn plan_id(&self) -> &PlanId {
        &self.plan_id
    }

    /// For a fork run, the plan it forks and the last step it keeps.
    pub fn forks(&self) -> Option<(&PlanId, Option<StepNumber>)> {
        match &self.start {
            Start::Fork { source, at, .. } => Some((source, *at)),
            Start::Fresh(_) | Start::Continue(_) => None,
        }
    }

    /// Creates the plan (fresh), or records `Resumed` (continue, fork), and hands back the run.
    /// A continued plan takes its total of steps from the surface's definition, when it has
    /// one: steps added at the end extend the plan, pending steps removed shrink it.
    pub async fn start(self) -> Result<EngineRun<S>, EngineError> {
        let ReadyRun { service, plan_id, guard, start } = self;
        let definition = match start {
            Start::Fresh(definition) => {
                let new = NewPlan {
                    id: Some(plan_id.clone()),
                    total_steps: definition.total_steps(),
                    name: Some(definition.name),
                    fingerprint: definition.fingerprint,
                    source: Some(definition.source),
                    steps: definition.steps,
                    // Under a lock, created and started in one append; a lease starts next.
                    start: guard.lock_runner().map(|runner| (Phase::Strategize, Some(runner))),
                };
                service.create_plan(new).await?;
                if let Some(lease) = guard.lease() {
                    service.start_phase_leased(&plan_id, Phase::Strategize, lease).await?;
                }
                let view = service.load(&plan_id).await?;
                return Ok(EngineRun::new(service, plan_id, guard, &view, None));
            }
            Start::Fork { source, at, definition } => {
                service.fork_plan(&source, at, Some(plan_id.clone())).await?;
                Some(definition)
            }
            Start::Continue(definition) => definition,
        };
        let mut resumed = None;
        let view = service.load_summary(&plan_id).await?;
        if view.state.phase == Phase::Action {
            match guard.lease() {
                Some(lease) => service.start_phase_leased(&plan_id, Phase::Strategize, lease).await?,
                None => service.start_phase(&plan_id, Phase::Strategize, guard.lock_runner()).await?,
            };
        } else {
            let request =
                ResumeRequest { runner: guard.lock_runner(), lease: guard.lease(), ..ResumeRequest::default() };
            match service.resume_plan(&plan_id, request).await {
                Ok(outcome) => resumed = outcome.resumed,
                // Something changed since the run was prepared.
                Err(error) => match error.reasons() {
                    Some(reasons) => {
                        let summary = service.build_resume_summary(&plan_id, None).await?;
                        return Err(EngineError::NotResumable {
                            plan_id,
                            reasons: reasons.to_vec(),
                            summary: Box::new(summary),
                        });
                    }
                    None => return Err(error.into()),
                },
            }
        }
        if let Some(total) = definition.and_then(|d| d.new_total(&view.state.resume)) {
            service.set_total_steps(&plan_id, total).await?;
        }
        let view = service.load(&plan_id).await?;
        Ok(EngineRun::new(service, plan_id, guard, &view, resumed))
    }
}

impl<S: PlanStore> PlanResumeService<S> {
    /// Whether a plan has this id, or had it until retention removed it: either way the id is
    /// taken, so a key's generations stay without gaps.
    async fn id_taken(&self, plan_id: &PlanId) -> Result<bool, ServiceError> {
        match self.load_summary(plan_id).await {
            Ok(_) | Err(ServiceError::Removed(_)) => Ok(true),
            Err(ServiceError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The newest generation of `key` in the store, if any.
    pub async fn newest_generation(&self, key: &dyn RunKey) -> Result<Option<u64>, ServiceError> {
        newest_generation(|generation| self.id_taken_owned(key.plan_id(generation))).await
    }

    async fn id_taken_owned(&self, plan_id: PlanId) -> Result<bool, ServiceError> {
        self.id_taken(&plan_id).await
    }

    /// Decides what running `key` does, takes the plan's run lock for `runner`, and writes
    /// nothing yet: the key's newest plan is continued if it can resume, refused while it runs
    /// ([`EngineError::StillRunning`]), given back if it finished ([`Prepared::Finished`]);
    /// a fresh plan (the next generation) is prepared when there is none or `new` is set.
    pub async fn prepare_run(
        &self,
        key: &dyn RunKey,
        definition: RunDefinition,
        runner: RunnerId,
        new: bool,
    ) -> Result<Prepared<S>, EngineError> {
        self.prepare_held(key, definition, Hold::Lock(runner), new).await
    }

    /// [`Self::prepare_run`] for a runner that holds the plan by `lease` instead of its run lock
    /// (a worker on another machine, a library caller that asks for it): the plan is
    /// `still_running` while the lease is live, and is taken over once it expired.
    pub async fn prepare_run_leased(
        &self,
        key: &dyn RunKey,
        definition: RunDefinition,
        lease: LeaseRequest,
        new: bool,
    ) -> Result<Prepared<S>, EngineError> {
        self.prepare_held(key, definition, Hold::Lease(lease), new).await
    }

    /// [`Self::prepare_run`], holding the plan as `hold` says.
    pub async fn prepare_held(
        &self,
        key: &dyn RunKey,
        definition: RunDefinition,
        hold: Hold,
        new: bool,
    ) -> Result<Prepared<S>, EngineError> {
        let newest = self.newest_generation(key).await?;
        let Some(generation) = newest.filter(|_| !new) else {
            let plan_id = key.plan_id(newest.map_or(1, |g| g + 1));
            let guard = self.hold(&plan_id, hold)?;
            return Ok(Prepared::Fresh(self.ready(plan_id, guard, Start::Fresh(definition))));
        };
        self.prepare_continue_held(&key.plan_id(generation), Some(definition), hold).await
    }

    /// Decides, under its run lock, whether the existing plan `plan_id` continues (it can
    /// resume), is given back (it finished) or is refused (it runs, or cannot resume), and
    /// writes nothing yet. What `prepare_run` does with a key's newest plan. `definition`, the
    /// surface's definition as it is now when it has one, sets a continued plan's total.
    pub async fn prepare_continue(
        &self,
        plan_id: &PlanId,
        definition: Option<RunDefinition>,
        runner: RunnerId,
    ) -> Result<Prepared<S>, EngineError> {
        self.prepare_continue_held(plan_id, definition, Hold::Lock(runner)).await
    }

    /// [`Self::prepare_continue`], holding the plan as `hold` says.
    pub async fn prepare_continue_held(
        &self,
        plan_id: &PlanId,
        definition: Option<RunDefinition>,
        hold: Hold,
    ) -> Result<Prepared<S>, EngineError> {
        if let Some(removal) = self.store().removal(plan_id).await.map_err(ServiceError::from)? {
            return Ok(Prepared::Removed(removal));
        }
        let guard = self.hold(plan_id, hold)?;
        let view = self.load_summary(plan_id).await?;
        if let Some(finished) = self.finished_run(&view, &guard).await? {
            return Ok(Prepared::Finished(Box::new(finished)));
        }
        let preview = ResumeRequest { dry_run: true, runner: guard.lock_runner(), ..ResumeRequest::default() };
        let summary = self.resume_plan(plan_id, preview).await?.summary;
        if summary.reasons.contains(&ResumeIneligibleReason::StillRunning) {
            return Err(EngineError::StillRunning { plan_id: plan_id.clone() });
        }
        if view.state.phase != Phase::Action && !summary.eligible {
            return Err(EngineError::NotResumable {
                plan_id: plan_id.clone(),
                reasons: summary.reasons.clone(),
                summary: Box::new(summary),
            });
        }
        Ok(Prepared::Continue(self.ready(plan_id.clone(), guard, Start::Continue(definition)), Box::new(summary)))
    }

    /// Prepares a fresh plan of `key` (its next generation) as a fork of the key's newest plan
    /// at the step before `from`: steps 1..`from`-1 are copied with their outputs and must
    /// have completed unchanged (the fork's own check), and the run goes on at `from` with
    /// `definition`'s total of steps.
    pub async fn prepare_fork_run(
        &self,
        key: &dyn RunKey,
        definition: RunDefinition,
        runner: RunnerId,
        from: StepNumber,
    ) -> Result<Option<ReadyRun<S>>, EngineError> {
        let Some(generation) = self.newest_generation(key).await? else { return Ok(None) };
        let source = key.plan_id(generation);
        let plan_id = key.plan_id(generation + 1);
        let at = StepNumber::new(from.get().saturating_sub(1)).ok();
        // Refused before anything is taken or written: a source that runs now would run the
        // fork's first step beside its own, and kept steps must have completed unchanged.
        let source_now = self.validate_eligibility(&source, None).await?;
        if source_now.reasons.contains(&ResumeIneligibleReason::StillRunning) {
            return Err(EngineError::StillRunning { plan_id: source });
        }
        self.check_fork(&source, at).await?;
        let guard = self.hold(&plan_id, Hold::Lock(runner))?;
        Ok(Some(self.ready(plan_id, guard, Start::Fork { source, at, definition })))
    }

    /// Takes the plan's run lock, or, for a lease, nothing yet: the lease is recorded when the
    /// run starts, and until then eligibility keeps other runners' live leases out.
    fn hold(&self, plan_id: &PlanId, hold: Hold) -> Result<Holder, EngineError> {
        match hold {
            Hold::Lock(runner) => Ok(Holder::Lock(self.acquire_run_lock(plan_id, &runner)?)),
            Hold::Lease(lease) => Ok(Holder::Lease(lease)),
        }
    }

    fn ready(&self, plan_id: PlanId, guard: Holder, start: Start) -> ReadyRun<S> {
        ReadyRun { service: self.clone(), plan_id, guard, start }
    }

    /// The plan finished (see [`waypoint_domain::PlanState::is_finished`]), or every one of its
    /// steps completed although the run that ran them stopped before saying so. A crashed run
    /// (still `processing`; the caller holds the run lock, so its runner is gone) is finished
    /// now by completing the phase; an interrupted one has nothing left to run either. `None`
    /// for a plan that can still move.
    async fn finished_run(&self, view: &PlanView, holder: &Holder) -> Result<Option<FinishedRun>, ServiceError> {
        let plan_id = &view.plan_id;
        let steps_done = view.state.resume.all_steps_completed()
            && matches!(view.state.state, ProcessingState::Processing | ProcessingState::Queued);
        if steps_done && view.state.state == ProcessingState::Processing {
            // Only a run lock says that the runner of a `processing` plan is gone; a lease may
            // still be live.
            if !matches!(holder, Holder::Lock(_)) {
                return Ok(None);
            }
            self.complete_phase(plan_id).await?;
        } else if !steps_done && !view.state.is_finished() {
            return Ok(None);
        }
        let view = self.load(plan_id).await?;
        let summary = self.build_resume_summary(plan_id, None).await?;
        Ok(Some(FinishedRun { view, summary }))
    }
}

/// Counts attempts of the step being run: numbers go on from earlier runs, failures count per
/// run (the retry budget is the run's).
#[derive(Debug, Clone, Copy)]
struct AttemptCounter {
    /// The step the counter is about.
    next: Option<StepNumber>,
    /// The last attempt recorded for it.
    last: Option<Attempt>,
    /// Failed attempts of it in this run.
    failures: u32,
}

/// What to do with a step now.
#[derive(Debug, Clone)]
pub enum StepTurn {
    /// It completed in an earlier run: nothing runs, here is its checkpoint (its output).
    Replay(Checkpoint),
    /// Run it: its start is recorded.
    Run(AttemptTicket),
    /// Someone paused the plan: the interruption (reason `paused`) is recorded and the run
    /// stops here; running the plan again continues with this step.
    Paused,
}

/// The checkpoint of step `step` among a plan's `checkpoints`, if the step completed: what a
/// step that runs again gives back instead of running, in a live run as in the replay of a
/// finished one. Recorded under another name than `name`, it is [`EngineError::StepMismatch`]:
/// the code that runs the steps changed under a plan that had started.
pub fn recorded_step<'c>(
    checkpoints: &'c [Checkpoint],
    step: StepNumber,
    name: &StepName,
) -> Result<Option<&'c Checkpoint>, EngineError> {
    let Some(done) = Checkpoint::of_step(checkpoints, step) else { return Ok(None) };
    match done.name.as_ref().filter(|recorded| *recorded != name) {
        Some(recorded) => Err(EngineError::StepMismatch { step, recorded: recorded.clone(), given: name.clone() }),
        None => Ok(Some(done)),
    }
}

/// Whether a step that needs a person's decision may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Someone approved it (or it already completed): go on.
    Approved(Option<ApprovalDecision>),
    /// Nobody has decided: the request is recorded and the plan is `waiting`; the run stops.
    Waiting,
}

/// One attempt at a step, started and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptTicket {
    /// The step.
    pub step: StepNumber,
    /// Its name.
    pub name: StepName,
    /// Which attempt this is, counted across runs.
    pub attempt: Attempt,
    /// The decision recorded for this attempt.
    pub decision_id: DecisionId,
    /// An earlier run started this step but did not record how it ended: its effects may be
    /// partly done.
    pub rerun: bool,
}

/// What a step produced, as the executor reports it.
#[derive(Debug, Clone, Default)]
pub struct StepResult {
    /// Its output, handed back to later runs.
    pub output: Option<StepOutput>,
    /// A digest of the workspace state it left.
    pub snapshot_id: Option<SnapshotId>,
    /// What it produced, by path.
    pub artifacts: Vec<Artifact>,
    /// The fingerprint of its definition as it ran.
    pub fingerprint: Option<Fingerprint>,
}

/// What the engine decided about a failed attempt that is tried again: wait `delay`, then run
/// the step again (the next [`EngineRun::begin_step`] records the new attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// How long to wait first.
    pub delay: Duration,
    /// How many more retries this run has after the coming one.
    pub retries_left: u32,
}

/// How an interruption ended the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The interruption is recorded; the plan resumes from its next step.
    Interrupted,
    /// Every step had completed: the plan is finished instead.
    Finished,
}

/// One run of a plan under its run lock. Dropping it without [`Self::finish`] or
/// [`Self::interrupt`] leaves a plan that a later run continues as after a crash.
#[derive(Debug)]
pub struct EngineRun<S> {
    service: PlanResumeService<S>,
    plan_id: PlanId,
    guard: Holder,
    /// Every checkpoint of the phase so far, in step order.
    checkpoints: Vec<Checkpoint>,
    /// The step a crash left started but not completed, if any.
    uncertain: Option<StepNumber>,
    attempts: AttemptCounter,
    resumed: Option<ResumePoint>,
    /// The run's spans and operator log (ADR 0016), boxed to keep the run small to move.
    trace: Box<RunTrace>,
    /// The plan as this run's last step record left it: the next record is decided against it
    /// rather than a copy read back from the store (`PlanResumeService::execute_known`).
    known: Option<PlanView>,
}

impl<S: PlanStore> EngineRun<S> {
    /// A run of the plan `view` shows, held by `guard`.
    fn new(
        service: PlanResumeService<S>,
        plan_id: PlanId,
        guard: Holder,
        view: &PlanView,
        resumed: Option<ResumePoint>,
    ) -> Self {
        EngineRun {
            trace: Box::new(RunTrace::start(&plan_id, view.state.name.as_ref(), resumed)),
            known: None,
            service,
            plan_id,
            guard,
            checkpoints: view.state.resume.checkpoints.clone(),
            uncertain: view.state.resume.uncertain_step,
            attempts: AttemptCounter {
                next: view.state.resume.following_step(),
                last: view.state.resume.uncertain_attempt,
                failures: 0,
            },
            resumed,
        }
    }

    /// The plan.
    pub fn plan_id(&self) -> &PlanId {
        &self.plan_id
    }

    /// Where this run continues an earlier one, when it does.
    pub fn resumed(&self) -> Option<ResumePoint> {
        self.resumed
    }

    /// Every completed step's checkpoint so far, in step order.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.checkpoints
    }

    /// The first step that has not completed.
    pub fn next_step(&self) -> StepNumber {
        self.checkpoints.last().and_then(|c| c.step.next()).unwrap_or(StepNumber::FIRST)
    }

    /// The service this run records through.
    pub fn service(&self) -> &PlanResumeService<S> {
        &self.service
    }

    /// Starts step `step` named `name`, or hands back its checkpoint if it completed. A name
    /// other than the recorded one is [`EngineError::StepMismatch`]; a lost run lock starts
    /// nothing.
    pub async fn begin_step(&mut self, step: StepNumber, name: &StepName) -> Result<StepTurn, EngineError> {
        if let Some(done) = recorded_step(&self.checkpoints, step, name)? {
            return Ok(StepTurn::Replay(done.clone()));
        }
        if let Holder::Lock(guard) = &self.guard {
            guard.check().map_err(EngineError::RunLock)?;
        }
        if self.attempts.next != Some(step) {
            self.attempts = AttemptCounter { next: Some(step), last: None, failures: 0 };
        }
        let attempt = self.attempts.last.and_then(Attempt::next).unwrap_or(Attempt::FIRST);
        let decision_id = DecisionId::for_attempt(step, attempt);
        // Under a lease the step's start renews it, and is refused (`lease_lost`) once another
        // runner took the plan over.
        let start = StepStart {
            name: Some(name.clone()),
            attempt: Some(attempt),
            lease: self.guard.lease(),
            ..StepStart::new(step, decision_id.clone())
        };
        match self.service.record_step_started_after(&self.plan_id, start, self.known.take()).await {
            Ok(view) => self.known = Some(view),
            // A pause asked for meanwhile: this is the step boundary where the run stops.
            Err(ServiceError::Plan { source: PlanError::PauseRequested { .. }, .. }) => {
                self.service.record_shutdown(&self.plan_id, Message::lossy(PAUSED_REASON)).await?;
                return Ok(StepTurn::Paused);
            }
            Err(other) => return Err(other.into()),
        }
        self.attempts.last = Some(attempt);
        let rerun = self.uncertain == Some(step) && self.attempts.failures == 0;
        let ticket = AttemptTicket { step, name: name.clone(), attempt, decision_id, rerun };
        self.trace.step_started(&ticket);
        Ok(StepTurn::Run(ticket))
    }

    /// The trace context of the attempt running now, as environment variables for its
    /// process (`TRACEPARENT`, `TRACESTATE`), so that the step's own spans nest under its
    /// attempt's span. Empty when traces are off.
    pub fn step_trace_environment(&self) -> Vec<(&'static str, String)> {
        self.trace.step_environment()
    }

    /// Renews the run's lease (a step that runs longer than the lease must be heartbeated), or
    /// checks that the run lock is still held. A lease another runner took over is `lease_lost`.
    pub async fn heartbeat(&self) -> Result<(), EngineError> {
        match &self.guard {
            Holder::Lock(guard) => guard.check().map_err(EngineError::RunLock),
            Holder::Lease(lease) => {
                self.service.heartbeat(&self.plan_id, lease.runner.clone(), lease.duration).await?;
                Ok(())
            }
        }
    }

    /// The gate before step `step`, which asks a person `question` before it runs: a step that
    /// completed, or that someone approved, may go on; otherwise the request is recorded (once)
    /// and the plan waits, holding nothing, until someone approves or rejects it.
    pub async fn approval_gate(
        &mut self,
        step: StepNumber,
        name: &StepName,
        question: &str,
    ) -> Result<Gate, EngineError> {
        if self.checkpoints.iter().any(|c| c.step == step) {
            return Ok(Gate::Approved(None));
        }
        let view = self.service.load_summary(&self.plan_id).await?;
        match view.state.approval.as_ref().filter(|a| a.step == step) {
            Some(approval) if approval.is_approved() => return Ok(Gate::Approved(approval.decision.clone())),
            Some(approval) if approval.is_pending() => return Ok(Gate::Waiting),
            _ => {}
        }
        let question = Message::lossy(question);
        self.service.request_approval(&self.plan_id, step, Some(name.clone()), question).await?;
        Ok(Gate::Waiting)
    }

    /// Records that the attempt completed the step.
    pub async fn completed(&mut self, ticket: &AttemptTicket, result: StepResult) -> Result<Checkpoint, EngineError> {
        let checkpoint = StepCheckpoint {
            step: ticket.step,
            decision_id: ticket.decision_id.clone(),
            snapshot_id: result.snapshot_id,
            artifacts: result.artifacts,
            name: Some(ticket.name.clone()),
            output: result.output,
            fingerprint: result.fingerprint,
        };
        let (recorded, view) =
            self.service.record_step_checkpoint_after(&self.plan_id, checkpoint, self.known.take()).await?;
        self.known = Some(view);
        let recorded = recorded.checkpoint;
        self.checkpoints.push(recorded.clone());
        self.uncertain = None;
        self.trace.end_step(Outcome::Completed, None);
        Ok(recorded)
    }

    /// Records that the attempt failed. While the run's retries last, the failed attempt is
    /// recorded and the step is to be tried again after the returned wait; the last failure
    /// fails the plan (`evidence`, such as the end of the step's stderr, is kept in the plan's
    /// error) and is returned as [`EngineError::StepFailed`].
    pub async fn attempt_failed(
        &mut self,
        ticket: &AttemptTicket,
        failure: StepFailure,
        policy: &StepPolicy,
        evidence: Option<&str>,
    ) -> Result<Retry, EngineError> {
        let described = format!("step {} ({}) {failure}", ticket.step, ticket.name);
        self.trace.end_step(Outcome::of(&failure), Some(&described));
        self.attempts.failures += 1;
        if self.attempts.failures <= policy.retries {
            let delay = policy.delay_after(self.attempts.failures);
            let retry_at = self.service.now() + chrono::Duration::from_std(delay).unwrap_or_default();
            let failed = FailedAttempt {
                step: ticket.step,
                attempt: ticket.attempt,
                reason: failure.recorded(),
                retry_at: Some(retry_at),
            };
            self.service.record_attempt_failed(&self.plan_id, failed).await?;
            return Ok(Retry { delay, retries_left: policy.retries - self.attempts.failures });
        }
        let mut text = described;
        if let Some(evidence) = evidence.filter(|e| !e.trim().is_empty()) {
            text.push_str(&format!("; stderr ends with:\n{evidence}"));
        }
        let message = Message::lossy(&text);
        self.trace.run_failed(message.as_str());
        self.service.fail(&self.plan_id, message.clone()).await?;
        Err(EngineError::StepFailed {
            step: ticket.step,
            name: ticket.name.clone(),
            attempt: ticket.attempt,
            failure,
            message,
        })
    }

    /// Stops the run, recording why. A plan whose every step completed is finished instead.
    pub async fn interrupt(&mut self, reason: &str) -> Result<Stopped, EngineError> {
        self.trace.interrupted(reason);
        let view = self.service.load_summary(&self.plan_id).await?;
        if view.state.resume.all_steps_completed() && view.state.state == ProcessingState::Processing {
            self.service.complete_phase(&self.plan_id).await?;
            return Ok(Stopped::Finished);
        }
        self.service.record_shutdown(&self.plan_id, Message::lossy(reason)).await?;
        Ok(Stopped::Interrupted)
    }

    /// Stops the run because the surface's own code failed outside any step (a workflow body
    /// that raised between two steps): the plan's failure is recorded, saying before which
    /// step and `what` went wrong, and a later run continues with that step. Returns the
    /// recorded message.
    pub async fn fail(&mut self, what: &str) -> Result<Message, EngineError> {
        let message = Message::lossy(&format!("the run failed before step {}: {what}", self.next_step()));
        self.trace.run_failed(message.as_str());
        self.service.fail(&self.plan_id, message.clone()).await?;
        Ok(message)
    }

    /// Finishes the plan: its one phase is complete, and a later run of the key replays it.
    pub async fn finish(self) -> Result<ResumeSummary, EngineError> {
        self.service.complete_phase(&self.plan_id).await?;
        Ok(self.service.build_resume_summary(&self.plan_id, None).await?)
    }
}

#[cfg(test)]
mod tests;
