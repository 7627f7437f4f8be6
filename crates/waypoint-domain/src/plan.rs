//! The `Plan` aggregate: commands are decided against state and become events or a typed error.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};

use crate::approval::Approval;
use crate::definition::StepDefinition;
use crate::eligibility::{evaluate_eligibility, EligibilityInputs, ResumeIneligibleReason};
use crate::error::PlanError;
use crate::events::*;
use crate::ids::{
    Actor, Artifact, Attempt, CheckpointId, DecisionId, Fingerprint, Message, PlanId, PlanName, RunnerId, SnapshotId,
    StepName, StepNumber, StepOutput, TotalSteps,
};
use crate::lease::Lease;
use crate::lifecycle::{check_phase_transition, Phase, ProcessingState};
use crate::queue::{QueueName, SubmittedDefinition};
use crate::state::{CheckpointPayload, PlanState};

/// Everything a plan can be asked to do; [`decide`] turns each into events or a [`PlanError`].
/// Times and ids come in from outside: the domain has no clock and no randomness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanCommand {
    /// Create the plan, in `action`/`queued`. Only for an id with no events.
    Create {
        /// A human name.
        name: Option<PlanName>,
        /// The first phase's number of steps, when known.
        total_steps: Option<TotalSteps>,
        /// A digest of the whole plan definition.
        fingerprint: Option<Fingerprint>,
        /// Where the definition lives (a plan file path).
        source: Option<Artifact>,
        /// The definition's steps with their fingerprints; empty without a per-step definition.
        steps: Vec<StepDefinition>,
        /// When the plan is created.
        at: DateTime<Utc>,
    },
    /// Create this plan as a fork of `source` (its full state, at `source_version`), copying its
    /// checkpoints 1..=`at_step` of its current phase.
    Fork {
        /// The plan forked from.
        source_id: PlanId,
        /// Its full state (not a compact view: every checkpoint to copy must be there).
        source: Box<PlanState>,
        /// Its stream version that `source` was folded at.
        source_version: u32,
        /// The last step to copy; `None` copies none. Must be a completed step.
        at_step: Option<StepNumber>,
        /// When the fork is made.
        at: DateTime<Utc>,
    },
    /// Enter `phase`, which must be an allowed move from the current phase and state.
    StartPhase {
        /// The phase to enter.
        phase: Phase,
        /// The runner that holds the plan's run lock, if the caller took one.
        runner: Option<RunnerId>,
        /// The lease the caller holds the plan by, if it holds it by lease.
        lease: Option<Lease>,
    },
    /// Set the current phase's number of steps. Not below the last completed step.
    SetTotalSteps {
        /// The new total.
        total: TotalSteps,
    },
    /// Say that the next step is about to run. Needs `processing`.
    StartStep {
        /// The step: the one after the last completed step, within the total.
        step: StepNumber,
        /// The decision that produced the step's work.
        decision_id: DecisionId,
        /// The step's name in the definition; must match a name already recorded for it.
        name: Option<StepName>,
        /// Which attempt at the step this is, when the caller counts attempts.
        attempt: Option<Attempt>,
        /// The caller's lease, renewed to this expiry: only the runner holding the plan's lease
        /// may start a step under one ([`PlanError::LeaseLost`] otherwise).
        lease: Option<Lease>,
    },
    /// Record that a step completed. Needs `processing`. The same payload for a step already
    /// recorded is an idempotent retry (no events); a different one is a conflict.
    RecordCheckpoint {
        /// The id for the new checkpoint; unused on a retry.
        checkpoint_id: CheckpointId,
        /// The step: the one after the last completed step, within the total.
        step: StepNumber,
        /// The decision that produced the step's work.
        decision_id: DecisionId,
        /// The workspace state after the step.
        snapshot_id: Option<SnapshotId>,
        /// What the step produced, by path or name.
        artifacts: Vec<Artifact>,
        /// The step's name in the definition; must match a name already recorded for it.
        name: Option<StepName>,
        /// A JSON `null` output is recorded as no output.
        output: Option<StepOutput>,
        /// The fingerprint of the step's definition as it ran.
        fingerprint: Option<Fingerprint>,
    },
    /// An attempt at the uncertain step failed and will be retried.
    RecordAttemptFailed {
        /// The uncertain step.
        step: StepNumber,
        /// The attempt that failed; the one its start named, when it named one.
        attempt: Attempt,
        /// How it failed.
        reason: AttemptFailure,
        /// When the next attempt is due, if scheduled.
        retry_at: Option<DateTime<Utc>>,
    },
    /// Record that the plan stopped on purpose. Needs `processing` or `queued`; recorded again
    /// while already interrupted, it appends nothing.
    RecordShutdown {
        /// Why it stopped.
        reason: Message,
        /// When it stopped.
        at: DateTime<Utc>,
    },
    /// Fail the phase: `processing` becomes `errored`.
    Fail {
        /// What went wrong.
        message: Message,
    },
    /// Refuse the `apply` phase on a constraint: `apply`/`processing` becomes `constrained`.
    Constrain {
        /// Which constraint refused it.
        message: Message,
    },
    /// Finish a `strategize` or `execute` phase that is `processing`.
    CompletePhase,
    /// Finish the `apply` phase: the plan becomes `applied`, which is terminal.
    Apply,
    /// Stop the plan for good. Refused in `action`, where nothing runs yet.
    Cancel {
        /// Why, if the operator says.
        reason: Option<Message>,
    },
    /// Resume at the next step, if [`evaluate_eligibility`] allows it; otherwise
    /// [`PlanError::NotEligible`] with every reason.
    Resume {
        /// Who resumes it.
        by: Actor,
        /// The runner that holds the plan's run lock, if the resume took one.
        runner: Option<RunnerId>,
        /// When it resumes.
        at: DateTime<Utc>,
        /// The facts from outside the log that eligibility depends on (with the store's clock,
        /// which judges an earlier runner's lease).
        inputs: EligibilityInputs,
        /// The lease the resuming runner holds the plan by; it replaces an expired one.
        lease: Option<Lease>,
    },
    /// Renew the plan's lease (a heartbeat): only its holder may, while the plan is
    /// `processing`; anyone else gets [`PlanError::LeaseLost`].
    RenewLease {
        /// The runner renewing.
        runner: RunnerId,
        /// The new expiry, computed from the store's clock.
        expires_at: DateTime<Utc>,
    },
    /// Stop before step `step` to ask a person (needs `processing`; the step must be next and
    /// not already decided): the plan is `waiting` and holds nothing.
    RequestApproval {
        /// The step that waits.
        step: StepNumber,
        /// Its name.
        name: Option<StepName>,
        /// What the person is asked.
        question: Message,
        /// When.
        at: DateTime<Utc>,
    },
    /// Approve the waiting step (`step`, when given, must be the one that waits). The same
    /// approval again is an idempotent retry; anything else on a plan that does not wait is
    /// `invalid_state`.
    Approve {
        /// The step, when the caller names it.
        step: Option<StepNumber>,
        /// Who approves.
        by: Actor,
        /// What they say.
        comment: Option<Message>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Reject the waiting step: the plan fails with `approval_rejected`. Same rules as
    /// [`PlanCommand::Approve`].
    Reject {
        /// The step, when the caller names it.
        step: Option<StepNumber>,
        /// Who rejects.
        by: Actor,
        /// Why.
        reason: Message,
        /// When.
        at: DateTime<Utc>,
    },
    /// Submit the plan, just created, to `queue` with its whole definition, for a worker to
    /// claim (needs `action`/`queued` and no earlier submission).
    Submit {
        /// The queue it waits in.
        queue: QueueName,
        /// What the workers run.
        definition: SubmittedDefinition,
        /// The working folder its folders are relative to, as the submitter named it.
        workdir: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Ask the plan to stop at its next step boundary (needs `processing` or `queued`); asked
    /// again while it stands, nothing is appended.
    RequestPause {
        /// Who asks.
        by: Actor,
        /// Why.
        reason: Option<Message>,
        /// When.
        at: DateTime<Utc>,
    },
}

impl PlanCommand {
    /// The verb used in error messages.
    pub fn name(&self) -> &'static str {
        match self {
            PlanCommand::Create { .. } => "create the plan",
            PlanCommand::Fork { .. } => "fork the plan",
            PlanCommand::StartPhase { .. } => "start a phase",
            PlanCommand::SetTotalSteps { .. } => "set total steps",
            PlanCommand::StartStep { .. } => "start a step",
            PlanCommand::RecordCheckpoint { .. } => "record a checkpoint",
            PlanCommand::RecordAttemptFailed { .. } => "record a failed attempt",
            PlanCommand::RecordShutdown { .. } => "record a shutdown",
            PlanCommand::Fail { .. } => "fail the plan",
            PlanCommand::Constrain { .. } => "constrain the plan",
            PlanCommand::CompletePhase => "complete the phase",
            PlanCommand::Apply => "apply the plan",
            PlanCommand::Cancel { .. } => "cancel the plan",
            PlanCommand::Resume { .. } => "resume the plan",
            PlanCommand::RenewLease { .. } => "renew the lease",
            PlanCommand::RequestApproval { .. } => "ask for an approval",
            PlanCommand::Approve { .. } => "approve a step",
            PlanCommand::Reject { .. } => "reject a step",
            PlanCommand::RequestPause { .. } => "pause the plan",
            PlanCommand::Submit { .. } => "submit the plan",
        }
    }

    /// The runner that speaks under a lease it must already hold: a renewal, or a step start
    /// under a lease. Starts and resumes acquire a lease instead.
    fn lease_holder(&self) -> Option<&RunnerId> {
        match self {
            PlanCommand::RenewLease { runner, .. } => Some(runner),
            PlanCommand::StartStep { lease: Some(lease), .. } => Some(&lease.runner),
            _ => None,
        }
    }
}

/// Decides `command` against `state` (`None`: the plan has no events yet): the events to
/// append, or why not. An empty list means the command was an idempotent retry. Pure: appending
/// the events, with a check that nobody appended in between, is the caller's job.
///
/// ```
/// use chrono::DateTime;
/// use waypoint_domain::{decide, Phase, PlanCommand, PlanError, PlanEvent, PlanState};
///
/// let create = PlanCommand::Create {
///     name: None, total_steps: None, fingerprint: None, source: None, steps: Vec::new(),
///     at: DateTime::UNIX_EPOCH,
/// };
/// let events = decide(None, create)?;
/// let plan = events.iter().fold(None, PlanState::fold).expect("created");
///
/// // Only advancing edges are allowed from action: straight to execute is refused.
/// let refused = decide(Some(&plan), PlanCommand::StartPhase { phase: Phase::Execute, runner: None, lease: None });
/// assert!(matches!(refused, Err(PlanError::InvalidPhaseTransition { .. })));
///
/// let started = decide(Some(&plan), PlanCommand::StartPhase { phase: Phase::Strategize, runner: None, lease: None })?;
/// assert!(matches!(started[..], [PlanEvent::PhaseStarted(_)]));
/// # Ok::<(), PlanError>(())
/// ```
pub fn decide(state: Option<&PlanState>, command: PlanCommand) -> Result<Vec<PlanEvent>, PlanError> {
    let plan = match (state, &command) {
        (Some(_), PlanCommand::Create { .. } | PlanCommand::Fork { .. }) => return Err(PlanError::AlreadyExists),
        (None, PlanCommand::Fork { .. }) => {
            let PlanCommand::Fork { source_id, source, source_version, at_step, at } = command else { unreachable!() };
            return fork(source_id, &source, source_version, at_step, at);
        }
        (None, PlanCommand::Create { .. }) => {
            let PlanCommand::Create { name, total_steps, fingerprint, source, steps, at } = command else {
                unreachable!()
            };
            return Ok(vec![PlanEvent::PlanCreated(PlanCreated {
                name,
                total_steps,
                fingerprint,
                source,
                created_at: at,
                steps,
            })]);
        }
        (None, _) => return Err(PlanError::NotCreated),
        (Some(plan), _) => plan,
    };
    // A runner speaking under a lease it no longer holds hears that first, whatever else changed
    // meanwhile (a terminal plan holds no lease).
    if let Some(runner) = command.lease_holder() {
        check_lease_holder(plan, runner)?;
    }
    // A resume answers with every reason that applies, terminal or not.
    if plan.state.is_terminal() && !matches!(command, PlanCommand::Resume { .. }) {
        return Err(PlanError::Terminal { state: plan.state });
    }
    let meta = &plan.resume;
    let command_name = command.name();
    let require = |ok: bool, required: &'static str| {
        if ok {
            Ok(())
        } else {
            Err(PlanError::InvalidState { command: command_name, phase: plan.phase, state: plan.state, required })
        }
    };
    let processing = plan.state == ProcessingState::Processing;
    let event = match command {
        PlanCommand::Create { .. } | PlanCommand::Fork { .. } => unreachable!("handled above"),
        PlanCommand::StartPhase { phase, ref runner, ref lease } => {
            check_phase_transition(plan.phase, plan.state, phase)?;
            PlanEvent::PhaseStarted(PhaseStarted { phase, runner: runner.clone(), lease: lease.clone() })
        }
        PlanCommand::SetTotalSteps { total } => {
            if let Some(last) = meta.last_completed_step {
                if total.get() < last.get() {
                    return Err(PlanError::TotalBelowCompleted { total, last_completed: last });
                }
            }
            PlanEvent::TotalStepsSet(TotalStepsSet { total_steps: total })
        }
        PlanCommand::StartStep { step, decision_id, name, attempt, lease } => {
            require(processing, "processing")?;
            if let Some(pause) = &plan.pause {
                return Err(PlanError::PauseRequested { by: pause.by.clone() });
            }
            if let Some(approval) = plan.approval.as_ref().filter(|a| a.step == step && !a.is_approved()) {
                return Err(PlanError::InvalidState {
                    command: command_name,
                    phase: plan.phase,
                    state: plan.state,
                    required: if approval.is_pending() { "approved first" } else { "not rejected" },
                });
            }
            if meta.uncertain_step == Some(step) {
                check_same_name(step, meta.uncertain_name.as_ref(), name.as_ref())?;
            }
            check_next_step(plan, step)?;
            PlanEvent::StepStarted(StepStarted { step, decision_id, name, attempt, lease })
        }
        PlanCommand::RecordCheckpoint {
            checkpoint_id,
            step,
            decision_id,
            snapshot_id,
            artifacts,
            name,
            output,
            fingerprint,
        } => {
            require(processing, "processing")?;
            // `null` and no output are one thing on the wire; deciding on the wire form keeps a
            // retry of a `null` output a retry.
            let output = output.filter(|o| !o.as_value().is_null());
            if let Some(existing) = meta.checkpoint(step) {
                // A different name is a different step at this position: say so before
                // comparing the rest of the payload.
                check_same_name(step, existing.name.as_ref(), name.as_ref())?;
                let payload = CheckpointPayload {
                    decision_id: &decision_id,
                    snapshot_id: snapshot_id.as_ref(),
                    artifacts: &artifacts,
                    name: name.as_ref(),
                    output: output.as_ref(),
                };
                return if existing.same_payload(payload) {
                    Ok(Vec::new())
                } else {
                    Err(PlanError::ConflictingCheckpoint { step, existing: existing.checkpoint_id })
                };
            }
            if meta.uncertain_step == Some(step) {
                check_same_name(step, meta.uncertain_name.as_ref(), name.as_ref())?;
            }
            check_next_step(plan, step)?;
            PlanEvent::StepCompleted(StepCompleted {
                checkpoint_id,
                step,
                decision_id,
                snapshot_id,
                artifacts,
                name,
                output,
                fingerprint,
            })
        }
        PlanCommand::RecordAttemptFailed { step, attempt, reason, retry_at } => {
            require(processing, "processing")?;
            // Only the attempt that is running can fail; when its start named an attempt
            // number, the failure must name the same one.
            let running = meta.uncertain_step == Some(step) && meta.uncertain_attempt.is_none_or(|a| a == attempt);
            if !running {
                return Err(PlanError::AttemptNotRunning { step, attempt, uncertain: meta.uncertain_step });
            }
            PlanEvent::StepAttemptFailed(StepAttemptFailed { step, attempt, reason, retry_at })
        }
        PlanCommand::Submit { queue, definition, workdir, at } => {
            require(plan.phase == Phase::Action && plan.submission.is_none(), "action/queued, not yet submitted")?;
            PlanEvent::PlanSubmitted(PlanSubmitted { queue, definition, workdir, at })
        }
        PlanCommand::RecordShutdown { ref reason, at } => {
            require(
                matches!(plan.state, ProcessingState::Processing | ProcessingState::Queued),
                "processing or queued",
            )?;
            if plan.state == ProcessingState::Queued && meta.interrupted {
                return Ok(Vec::new());
            }
            PlanEvent::Interrupted(Interrupted { reason: reason.clone(), at })
        }
        PlanCommand::Fail { ref message } => {
            require(processing, "processing")?;
            PlanEvent::PlanErrored(PlanErrored { message: message.clone() })
        }
        PlanCommand::Constrain { ref message } => {
            require(processing && plan.phase == Phase::Apply, "apply/processing")?;
            PlanEvent::PlanConstrained(PlanConstrained { message: message.clone() })
        }
        PlanCommand::CompletePhase => {
            // A phase whose every known step completed can always be completed, also when it was
            // stopped (queued) after its last step: otherwise only a cancel would be left to it.
            let finished_steps = plan.state == ProcessingState::Queued && meta.all_steps_completed();
            require(
                (processing || finished_steps) && matches!(plan.phase, Phase::Strategize | Phase::Execute),
                "strategize or execute, processing (or queued with every step completed; the apply phase ends with apply)",
            )?;
            PlanEvent::PhaseCompleted(PhaseCompleted { phase: plan.phase })
        }
        PlanCommand::Apply => {
            require(processing && plan.phase == Phase::Apply, "apply/processing")?;
            PlanEvent::PlanApplied(PlanApplied {})
        }
        PlanCommand::Cancel { ref reason } => {
            // `action` has only the `queued` state: there is nothing running to cancel yet.
            require(plan.phase != Phase::Action, "in strategize, execute or apply")?;
            PlanEvent::PlanCancelled(PlanCancelled { reason: reason.clone() })
        }
        PlanCommand::Resume { ref by, ref runner, at, ref inputs, ref lease } => {
            let verdict = evaluate_eligibility(plan, inputs);
            let from_step = match (verdict.eligible, meta.next_step()) {
                (true, Some(step)) => step,
                (true, None) => {
                    let reasons = vec![ResumeIneligibleReason::NothingToResume];
                    return Err(PlanError::NotEligible { reasons, changed_steps: Vec::new() });
                }
                (false, _) => {
                    let changed_steps = verdict.changed_steps.into_iter().filter(|c| c.completed).collect();
                    return Err(PlanError::NotEligible { reasons: verdict.reasons, changed_steps });
                }
            };
            PlanEvent::Resumed(Resumed { from_step, by: by.clone(), runner: runner.clone(), at, lease: lease.clone() })
        }
        PlanCommand::RenewLease { runner, expires_at } => PlanEvent::LeaseRenewed(LeaseRenewed { runner, expires_at }),
        PlanCommand::RequestApproval { step, name, question, at } => {
            require(processing, "processing")?;
            check_next_step(plan, step)?;
            require(plan.approval.as_ref().is_none_or(|a| a.step != step), "not yet asked about this step")?;
            PlanEvent::ApprovalRequested(ApprovalRequested { step, name, question, at })
        }
        PlanCommand::Approve { step, ref by, ref comment, at } => {
            let waiting = waiting_approval(plan, step, command_name)?;
            match &waiting.decision {
                None => PlanEvent::StepApproved(StepApproved {
                    step: waiting.step,
                    by: by.clone(),
                    comment: comment.clone(),
                    at,
                }),
                Some(d) if d.approved && &d.by == by && d.note == *comment => return Ok(Vec::new()),
                Some(_) => return Err(not_waiting(plan, command_name)),
            }
        }
        PlanCommand::Reject { step, ref by, ref reason, at } => {
            let waiting = waiting_approval(plan, step, command_name)?;
            match &waiting.decision {
                None => PlanEvent::StepRejected(StepRejected {
                    step: waiting.step,
                    by: by.clone(),
                    reason: reason.clone(),
                    at,
                }),
                Some(d) if !d.approved && &d.by == by && d.note.as_ref() == Some(reason) => return Ok(Vec::new()),
                Some(_) => return Err(not_waiting(plan, command_name)),
            }
        }
        PlanCommand::RequestPause { ref by, ref reason, at } => {
            require(
                matches!(plan.state, ProcessingState::Processing | ProcessingState::Queued),
                "processing or queued",
            )?;
            let paused = meta.interrupted
                && meta.interruption.as_ref().is_some_and(|i| i.reason.as_str() == crate::approval::PAUSED_REASON);
            if plan.pause.is_some() || paused {
                return Ok(Vec::new());
            }
            PlanEvent::PauseRequested(PauseRequested { by: by.clone(), reason: reason.clone(), at })
        }
    };
    Ok(vec![event])
}

/// The approval `plan` waits on (or was decided, for an idempotent retry), for step `step` when
/// the caller names one; anything else is `invalid_state`.
fn waiting_approval<'a>(
    plan: &'a PlanState,
    step: Option<StepNumber>,
    command: &'static str,
) -> Result<&'a Approval, PlanError> {
    plan.approval
        .as_ref()
        .filter(|a| step.is_none_or(|s| s == a.step))
        .filter(|a| a.is_pending() || plan.resume.last_completed_step.is_none_or(|last| last < a.step))
        .ok_or_else(|| not_waiting(plan, command))
}

fn not_waiting(plan: &PlanState, command: &'static str) -> PlanError {
    PlanError::InvalidState {
        command,
        phase: plan.phase,
        state: plan.state,
        required: "waiting for that step's approval",
    }
}

/// `runner` holds `plan`'s lease: the plan is `processing` under a lease of `runner`'s, expired
/// or not (an expired lease nobody took over is still its holder's to renew).
fn check_lease_holder(plan: &PlanState, runner: &RunnerId) -> Result<(), PlanError> {
    let lease = plan.lease.as_ref().filter(|_| plan.state == ProcessingState::Processing);
    match lease {
        Some(lease) if lease.is_held_by(runner) => Ok(()),
        _ => Err(PlanError::LeaseLost { runner: runner.clone(), holder: lease.map(|l| l.runner.clone()) }),
    }
}

/// The name given for `step` is the one already recorded for it, when both are known.
fn check_same_name(step: StepNumber, recorded: Option<&StepName>, given: Option<&StepName>) -> Result<(), PlanError> {
    match (recorded, given) {
        (Some(recorded), Some(given)) if recorded != given => {
            Err(PlanError::StepMismatch { step, recorded: recorded.clone(), given: given.clone() })
        }
        _ => Ok(()),
    }
}

/// How many bytes of copied checkpoints (their wire form) a `PlanForked` event carries at most.
/// A store keeps each event within a record limit (16 MiB in the file store), and a step's
/// output may be up to 1 MiB: a fork of many such steps carries the checkpoints past this
/// budget as `step_completed` events appended with it (see [`fork`]).
pub const FORK_EVENT_CHECKPOINT_BYTES: usize = 4 * 1024 * 1024;

/// The events of a fork of `source` at `at_step`: only completed steps of the source's current
/// phase can be copied, and a plan that never left `action` has none.
///
/// The first is `PlanForked`, with as many copied checkpoints as fit in
/// [`FORK_EVENT_CHECKPOINT_BYTES`] (always at least one); each checkpoint past those follows as
/// a `step_completed` event of its own, in the same append. The fold gives the same state either
/// way (a fork's state *is* its `PlanForked` state with its checkpoints' completions applied),
/// and every event stays as small as the largest event the source already holds.
fn fork(
    source_id: PlanId,
    source: &PlanState,
    source_version: u32,
    at_step: Option<StepNumber>,
    at: DateTime<Utc>,
) -> Result<Vec<PlanEvent>, PlanError> {
    if source.phase == Phase::Action {
        return Err(PlanError::InvalidState {
            command: "fork the plan",
            phase: source.phase,
            state: source.state,
            required: "in strategize, execute or apply",
        });
    }
    let copied = at_step.map_or(0, StepNumber::get) as usize;
    let checkpoints = &source.resume.checkpoints;
    let complete =
        checkpoints.len() >= copied && checkpoints.iter().take(copied).zip(1u32..).all(|(c, n)| c.step.get() == n);
    if let (Some(step), false) = (at_step, complete) {
        return Err(PlanError::StepNotCompleted { step, last_completed: source.resume.last_completed_step });
    }
    let mut copies = checkpoints[..copied].iter().map(|c| StepCompleted {
        checkpoint_id: c.checkpoint_id,
        step: c.step,
        decision_id: c.decision_id.clone(),
        snapshot_id: c.snapshot_id.clone(),
        artifacts: c.artifacts.clone(),
        name: c.name.clone(),
        output: c.output.clone(),
        fingerprint: c.fingerprint.clone(),
    });
    let mut carried = Vec::new();
    let mut bytes = 0;
    let mut rest = Vec::new();
    for copy in copies.by_ref() {
        bytes += serde_json::to_vec(&copy).map_or(usize::MAX, |wire| wire.len());
        if carried.is_empty() || bytes <= FORK_EVENT_CHECKPOINT_BYTES {
            carried.push(copy);
        } else {
            rest.push(PlanEvent::StepCompleted(copy));
            break;
        }
    }
    rest.extend(copies.map(PlanEvent::StepCompleted));
    let mut events = vec![PlanEvent::PlanForked(PlanForked {
        source: source_id,
        source_version,
        at_step,
        name: source.name.clone(),
        total_steps: source.resume.total_steps,
        fingerprint: source.fingerprint.clone(),
        definition_source: source.source.clone(),
        steps: source.definition.clone(),
        phase: source.phase,
        checkpoints: carried,
        created_at: at,
    })];
    events.extend(rest);
    Ok(events)
}

/// Step `step` is the one after the last completed step and within the known total.
fn check_next_step(plan: &PlanState, step: StepNumber) -> Result<(), PlanError> {
    let meta = &plan.resume;
    if let Some(total) = meta.total_steps {
        if step.get() > total.get() {
            return Err(PlanError::StepBeyondTotal { step, total });
        }
    }
    match meta.following_step() {
        Some(expected) if expected == step => Ok(()),
        Some(expected) => Err(PlanError::StepOutOfOrder { step, expected }),
        // Past u32::MAX steps: no step can follow.
        None => Err(PlanError::StepOutOfOrder { step, expected: step }),
    }
}

/// The aggregate, as `eventually` sees it. It holds no data: state lives in `Option<PlanState>`,
/// its `apply` is [`PlanState::fold`] and its `handle` is [`decide`] (an idempotent retry answers
/// `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Plan;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl eventually::aggregate::Aggregate for Plan {
    type Id = PlanId;
    type State = Option<PlanState>;
    type Event = PlanEvent;
    type Command = PlanCommand;
    type Error = PlanError;

    /// Infallible in practice: the fold never refuses a recorded fact.
    fn apply(state: Self::State, event: Self::Event) -> Result<Self::State, Self::Error> {
        Ok(PlanState::fold(state, &event))
    }

    fn handle<'a, 's: 'a>(
        &'a self,
        _id: &'s Self::Id,
        state: &'s Self::State,
        command: Self::Command,
    ) -> BoxFuture<'a, Result<Option<Vec<Self::Event>>, Self::Error>> {
        let decided = decide(state.as_ref(), command).map(|events| Some(events).filter(|e| !e.is_empty()));
        Box::pin(std::future::ready(decided))
    }
}
