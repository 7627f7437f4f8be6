//! The plan-state projection and `ResumeMetadata`: a pure, infallible fold over plan events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::approval::{Approval, PauseRequest, PAUSED_REASON, WAITING_REASON};
use crate::definition::{StepDefinition, StepDigest};
use crate::events::{PlanCreated, PlanEvent, PlanForked};
use crate::ids::{
    Artifact, Attempt, CheckpointId, DecisionId, Fingerprint, Message, PlanName, RunnerId, SnapshotId, StepName,
    StepNumber, StepOutput, TotalSteps,
};
use crate::lease::Lease;
use crate::lifecycle::{Phase, ProcessingState};
use crate::queue::Submission;
use crate::summary::ForkedFrom;

/// The durable record that a step completed, as the fold keeps it from its `step_completed`
/// event: the step never runs again in this phase, and its output is handed back to a resumed
/// run instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Identifies this checkpoint.
    pub checkpoint_id: CheckpointId,
    /// The step that completed.
    pub step: StepNumber,
    /// The decision that produced the step's work.
    pub decision_id: DecisionId,
    /// The workspace state after the step.
    pub snapshot_id: Option<SnapshotId>,
    /// What the step produced, by path or name.
    pub artifacts: Vec<Artifact>,
    // Absent from views stored before step names existed.
    /// The step's name in the plan definition, when the caller gave one.
    #[serde(default)]
    pub name: Option<StepName>,
    /// The step's journalled output, if it had one.
    #[serde(default)]
    pub output: Option<StepOutput>,
    /// The fingerprint of the step's definition when it ran.
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
}

/// What a caller reports about a step's completion, compared with a recorded checkpoint to tell
/// a retry from a conflict.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPayload<'a> {
    /// The decision reported.
    pub decision_id: &'a DecisionId,
    /// The snapshot reported.
    pub snapshot_id: Option<&'a SnapshotId>,
    /// The artifacts reported.
    pub artifacts: &'a [Artifact],
    /// The step name reported.
    pub name: Option<&'a StepName>,
    /// The output reported; a JSON `null` must already be `None`, as the decider normalises it.
    pub output: Option<&'a StepOutput>,
}

impl Checkpoint {
    /// The checkpoint of `step` among a phase's `checkpoints`, if the step completed. A phase
    /// records its steps in order from step 1, so a full list holds step N at index N - 1; a
    /// compacted one (only the last kept) or a later step is found by binary search, so a step
    /// that has not completed costs no scan of the steps that have.
    pub fn of_step(checkpoints: &[Checkpoint], step: StepNumber) -> Option<&Checkpoint> {
        let by_index = checkpoints.get(step.get() as usize - 1).filter(|c| c.step == step);
        by_index.or_else(|| checkpoints.binary_search_by_key(&step, |c| c.step).ok().map(|i| &checkpoints[i]))
    }

    /// Same decision, snapshot, artifacts, name and output: a retry of this checkpoint, not a
    /// new fact. The definition fingerprint is not compared: a retry after the definition changed
    /// still reports the same completed work.
    pub fn same_payload(&self, payload: CheckpointPayload<'_>) -> bool {
        &self.decision_id == payload.decision_id
            && self.snapshot_id.as_ref() == payload.snapshot_id
            && self.artifacts == payload.artifacts
            && self.name.as_ref() == payload.name
            && self.output.as_ref() == payload.output
    }
}

/// The last recorded interruption. It outlives a phase start (for display), unlike the
/// `interrupted` flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interruption {
    /// Why the plan stopped.
    pub reason: Message,
    /// When it stopped.
    #[serde(with = "crate::timestamp")]
    pub at: DateTime<Utc>,
}

/// What a resume needs to know about the current phase, rebuilt from events. Rebuilt empty on
/// every `phase_started`; only `resume_count` and the last `interruption` survive (and, entering
/// the first phase after `action`, the total given at creation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeMetadata {
    /// The highest completed step of the current phase; `None` until one completes.
    pub last_completed_step: Option<StepNumber>,
    /// That step's checkpoint.
    pub last_checkpoint_id: Option<CheckpointId>,
    /// The current phase's checkpoints, in step order.
    pub checkpoints: Vec<Checkpoint>,
    /// The name and definition fingerprint of the completed steps of the current phase, in
    /// step order, from step `completed_steps_from + 1` on (see [`Self::completed_digest`]).
    /// A full view holds every one. A compact view holds every one only when a definition
    /// check may need them (a definition recorded at creation, or a step fingerprint); else
    /// only the last, so that what every summary reads does not grow with the plan's steps.
    #[serde(default)]
    pub completed_steps: Vec<StepDigest>,
    /// How many completed steps, from step 1, `completed_steps` leaves out (0 in a full view).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub completed_steps_from: u32,
    /// The current phase's number of steps; `None` while unknown.
    pub total_steps: Option<TotalSteps>,
    /// An `interrupted` event was recorded and no resume or phase start followed it.
    pub interrupted: bool,
    /// The reason and time of the last recorded interruption, kept across phases.
    pub interruption: Option<Interruption>,
    /// How many `resumed` events the plan has, across every phase.
    pub resume_count: u32,
    /// A step that has `StepStarted` but no `StepCompleted`: its outcome is unknown; it runs again.
    pub uncertain_step: Option<StepNumber>,
    /// The name and attempt the uncertain step's `StepStarted` gave, if any.
    #[serde(default)]
    pub uncertain_name: Option<StepName>,
    /// The attempt number the last `StepStarted` of the step after the last completed one
    /// gave, if any. While that step is uncertain, a failed attempt must name this one; after
    /// a failed attempt it stays, so that the step's next attempt, in this run or a later one,
    /// is numbered one more ([`Self::next_attempt`]) and never reuses an earlier number.
    #[serde(default)]
    pub uncertain_attempt: Option<Attempt>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ResumeMetadata {
    /// The name and fingerprint step `step` completed under, when this view holds them.
    pub fn completed_digest(&self, step: StepNumber) -> Option<&StepDigest> {
        let index = (step.get() - 1).checked_sub(self.completed_steps_from)?;
        self.completed_steps.get(index as usize)
    }

    /// Whether any completed step this view holds recorded a definition fingerprint.
    pub fn has_step_fingerprints(&self) -> bool {
        self.completed_steps.iter().any(|d| d.fingerprint.is_some())
    }

    /// Keeps only the last completed step's digest: for a compact view of a plan whose
    /// definition check never reads the others (see [`Self::completed_steps`]).
    pub fn keep_last_digest(&mut self) {
        let drop = self.completed_steps.len().saturating_sub(1);
        if drop > 0 {
            self.completed_steps.drain(..drop);
            self.completed_steps_from += drop as u32;
        }
    }

    fn clear_uncertain(&mut self) {
        self.uncertain_step = None;
        self.uncertain_name = None;
        self.uncertain_attempt = None;
    }

    /// The number the next attempt of `step` takes: one more than the last attempt recorded
    /// for it in this phase (in any run), else the first. Only the step after the last
    /// completed one can have earlier attempts.
    pub fn next_attempt(&self, step: StepNumber) -> Attempt {
        match self.uncertain_attempt {
            Some(last) if self.following_step() == Some(step) => last.next().unwrap_or(last),
            _ => Attempt::FIRST,
        }
    }

    /// The current phase's last checkpoint, if a step has completed.
    pub fn last_checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoints.last()
    }

    /// The checkpoint of `step` in the current phase, if it completed and this view keeps it
    /// (a compact view keeps only the last one).
    pub fn checkpoint(&self, step: StepNumber) -> Option<&Checkpoint> {
        Checkpoint::of_step(&self.checkpoints, step)
    }

    /// The step that would be recorded next, ignoring the total.
    pub fn following_step(&self) -> Option<StepNumber> {
        match self.last_completed_step {
            None => Some(StepNumber::FIRST),
            Some(step) => step.next(),
        }
    }

    /// Every known step has completed: the total is known and reached. With an unknown total
    /// this is never true.
    pub fn all_steps_completed(&self) -> bool {
        match (self.total_steps, self.last_completed_step) {
            (Some(total), Some(last)) => last.get() >= total.get(),
            _ => false,
        }
    }

    /// The step to run next, absent when every known step has completed.
    pub fn next_step(&self) -> Option<StepNumber> {
        if self.all_steps_completed() {
            None
        } else {
            self.following_step()
        }
    }

    /// How many steps of the current phase completed (steps complete in order, so this is the
    /// last completed step's number).
    pub fn completed_count(&self) -> u32 {
        self.last_completed_step.map_or(0, StepNumber::get)
    }

    /// Steps left to the total; `None` while the total is unknown.
    pub fn remaining_steps(&self) -> Option<u32> {
        self.total_steps.map(|t| t.get().saturating_sub(self.completed_count()))
    }

    /// Completed steps as a whole percentage of the total, rounded down and at most 100; `None`
    /// while the total is unknown.
    pub fn progress_percent(&self) -> Option<u8> {
        self.total_steps.map(|t| {
            let pct = u64::from(self.completed_count().min(t.get())) * 100 / u64::from(t.get());
            pct as u8
        })
    }
}

/// A plan as its events describe it: the projection every decision and every read starts from.
/// It changes only by applying events ([`PlanState::fold`], [`PlanState::apply`]); folding the
/// same events always gives the same state, whether incrementally or by replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanState {
    /// The plan's human name.
    pub name: Option<PlanName>,
    /// The whole-plan definition fingerprint recorded at creation.
    pub fingerprint: Option<Fingerprint>,
    /// Where the plan's definition lives (a plan file path), so a resume can find it again.
    pub source: Option<Artifact>,
    /// When the plan was created (or forked).
    #[serde(with = "crate::timestamp")]
    pub created_at: DateTime<Utc>,
    /// The definition's steps as recorded at creation; empty without a per-step definition.
    #[serde(default)]
    pub definition: Vec<StepDefinition>,
    /// The current phase.
    pub phase: Phase,
    /// Where the plan stands within its phase; always a pair [`Phase::allows`].
    pub state: ProcessingState,
    /// The runner named by the event that last moved the plan to `processing`; `None` when the
    /// caller held no run lock (an external worker) or the plan is not processing.
    pub runner: Option<RunnerId>,
    /// What a resume needs to know about the current phase.
    pub resume: ResumeMetadata,
    /// The message of the last `plan_errored` or `plan_constrained`; cleared by a phase start.
    pub last_error: Option<Message>,
    /// The plan and step this plan was forked from, when it is a fork.
    #[serde(default)]
    pub forked_from: Option<ForkedFrom>,
    /// The step that asked a person before running, and their decision; cleared when the step
    /// completes.
    #[serde(default)]
    pub approval: Option<Approval>,
    /// A pause asked for while a runner works on the plan: it stops at its next step boundary.
    #[serde(default)]
    pub pause: Option<PauseRequest>,
    /// The lease a runner without a run lock holds the plan by; `None` when nobody holds it by
    /// lease (always so outside `processing`). Absent from views stored before leases existed.
    #[serde(default)]
    pub lease: Option<Lease>,
    /// The queue the plan was submitted to, and when, for a worker to claim it; `None` for a
    /// plan run where it was started. Absent from views stored before queues existed.
    #[serde(default)]
    pub submission: Option<Submission>,
}

impl PlanState {
    /// The plan can move no more, so retention may archive and remove it once old enough:
    /// applied or cancelled, or a plan run from a definition (a plan file: `source` is set)
    /// whose one phase completed. A plumbing plan whose phase completed is between phases (the
    /// next may still start) and is not finished; neither is anything resumable, running,
    /// queued or failed.
    pub fn is_finished(&self) -> bool {
        match self.state {
            ProcessingState::Applied | ProcessingState::Cancelled => true,
            ProcessingState::Complete => self.source.is_some(),
            _ => false,
        }
    }

    /// A new plan as its `PlanCreated` event describes it: `action`/`queued`, no step run.
    pub fn created(event: &PlanCreated) -> Self {
        PlanState {
            name: event.name.clone(),
            fingerprint: event.fingerprint.clone(),
            source: event.source.clone(),
            created_at: event.created_at,
            definition: event.steps.clone(),
            phase: Phase::Action,
            state: ProcessingState::Queued,
            runner: None,
            resume: ResumeMetadata { total_steps: event.total_steps, ..ResumeMetadata::default() },
            last_error: None,
            forked_from: None,
            lease: None,
            approval: None,
            pause: None,
            submission: None,
        }
    }

    /// A fork as its `PlanForked` event describes it: `queued` in the source's phase, with the
    /// copied checkpoints completed, ready to resume at the step after them.
    pub fn forked(event: &PlanForked) -> Self {
        let mut state = PlanState {
            name: event.name.clone(),
            fingerprint: event.fingerprint.clone(),
            source: event.definition_source.clone(),
            created_at: event.created_at,
            definition: event.steps.clone(),
            phase: event.phase,
            state: ProcessingState::Queued,
            runner: None,
            resume: ResumeMetadata { total_steps: event.total_steps, ..ResumeMetadata::default() },
            last_error: None,
            forked_from: Some(ForkedFrom { plan_id: event.source.clone(), step: event.at_step }),
            lease: None,
            approval: None,
            pause: None,
            submission: None,
        };
        for checkpoint in &event.checkpoints {
            state.apply(&PlanEvent::StepCompleted(checkpoint.clone()));
        }
        state
    }

    /// Folds one event into an optional state. The fold never fails: events are facts, already
    /// decided; an event that cannot apply to the state (which the decider never produces) is
    /// left without effect rather than invented around.
    pub fn fold(state: Option<PlanState>, event: &PlanEvent) -> Option<PlanState> {
        match (state, event) {
            (None, PlanEvent::PlanCreated(created)) => Some(PlanState::created(created)),
            (None, PlanEvent::PlanForked(forked)) => Some(PlanState::forked(forked)),
            (None, _) => None,
            (Some(mut state), event) => {
                state.apply(event);
                Some(state)
            }
        }
    }

    /// Folds one event into an existing plan. Infallible, like [`PlanState::fold`]; a first
    /// event (`PlanCreated`, `PlanForked`) has no effect on a plan that already exists.
    pub fn apply(&mut self, event: &PlanEvent) {
        crate::lease::fold(&mut self.lease, event);
        crate::approval::fold_approval(&mut self.approval, event);
        if matches!(event, PlanEvent::PhaseStarted(_) | PlanEvent::Resumed(_) | PlanEvent::Interrupted(_)) {
            // The runner stopped (or a new run began): a pause asked of the old run is done.
            self.pause = None;
        }
        let meta = &mut self.resume;
        match event {
            // A plan's first event only: nothing to fold into an existing plan.
            PlanEvent::PlanCreated(_) | PlanEvent::PlanForked(_) => {}
            PlanEvent::PlanSubmitted(e) => {
                self.submission = Some(Submission { queue: e.queue.clone(), at: e.at });
            }
            PlanEvent::PhaseStarted(e) => {
                // A new phase counts its steps afresh. The total given at creation belongs to
                // the first phase started after `action`; later phases set their own.
                let total = if self.phase == Phase::Action { meta.total_steps } else { None };
                *meta = ResumeMetadata {
                    total_steps: total,
                    resume_count: meta.resume_count,
                    interruption: meta.interruption.take(),
                    ..ResumeMetadata::default()
                };
                self.phase = e.phase;
                self.state = ProcessingState::Processing;
                self.runner = e.runner.clone();
                self.last_error = None;
            }
            PlanEvent::TotalStepsSet(e) => meta.total_steps = Some(e.total_steps),
            PlanEvent::StepStarted(e) => {
                meta.uncertain_step = Some(e.step);
                meta.uncertain_name = e.name.clone();
                meta.uncertain_attempt = e.attempt;
            }
            PlanEvent::StepCompleted(e) => {
                meta.checkpoints.push(Checkpoint {
                    checkpoint_id: e.checkpoint_id,
                    step: e.step,
                    decision_id: e.decision_id.clone(),
                    snapshot_id: e.snapshot_id.clone(),
                    artifacts: e.artifacts.clone(),
                    name: e.name.clone(),
                    output: e.output.clone(),
                    fingerprint: e.fingerprint.clone(),
                });
                meta.completed_steps.push(StepDigest { name: e.name.clone(), fingerprint: e.fingerprint.clone() });
                meta.last_completed_step = Some(e.step);
                meta.last_checkpoint_id = Some(e.checkpoint_id);
                if meta.uncertain_step == Some(e.step) {
                    meta.clear_uncertain();
                }
            }
            PlanEvent::Interrupted(e) => {
                meta.interrupted = true;
                meta.interruption = Some(Interruption { reason: e.reason.clone(), at: e.at });
                if self.state == ProcessingState::Processing {
                    self.state = ProcessingState::Queued;
                }
                self.runner = None;
            }
            PlanEvent::Resumed(e) => {
                meta.interrupted = false;
                meta.resume_count += 1;
                self.state = ProcessingState::Processing;
                self.runner = e.runner.clone();
            }
            PlanEvent::PlanErrored(e) => {
                self.state = ProcessingState::Errored;
                self.last_error = Some(e.message.clone());
                self.runner = None;
            }
            PlanEvent::PlanConstrained(e) => {
                self.state = ProcessingState::Constrained;
                self.last_error = Some(e.message.clone());
                self.runner = None;
            }
            PlanEvent::PhaseCompleted(_) => {
                self.state = ProcessingState::Complete;
                self.runner = None;
            }
            PlanEvent::PlanApplied(_) => {
                self.state = ProcessingState::Applied;
                self.runner = None;
            }
            // The attempt's outcome is known now: the step is no longer uncertain. Its next
            // attempt records its own `StepStarted`.
            PlanEvent::StepAttemptFailed(e) => {
                if meta.uncertain_step == Some(e.step) {
                    // The attempt number stays: the step's next attempt counts on from it.
                    meta.uncertain_step = None;
                    meta.uncertain_name = None;
                }
            }
            PlanEvent::PlanCancelled(_) => {
                self.state = ProcessingState::Cancelled;
                self.runner = None;
            }
            // Only the lease moves (folded above).
            PlanEvent::LeaseRenewed(_) | PlanEvent::StepApproved(_) => {}
            // The run stops to ask: nothing holds the plan while a person decides.
            PlanEvent::ApprovalRequested(e) => {
                meta.interrupted = true;
                meta.interruption = Some(Interruption { reason: Message::lossy(WAITING_REASON), at: e.at });
                if self.state == ProcessingState::Processing {
                    self.state = ProcessingState::Queued;
                }
                self.runner = None;
            }
            PlanEvent::StepRejected(e) => {
                self.state = ProcessingState::Errored;
                let text = format!("step {} was rejected by {}: {}", e.step, e.by, e.reason);
                self.last_error = Some(Message::lossy(&text));
                self.runner = None;
            }
            // While a runner works, it stops at its next step boundary; a plan nobody runs is
            // paused at once.
            PlanEvent::PauseRequested(e) => {
                if self.state == ProcessingState::Processing && !meta.interrupted {
                    self.pause = Some(PauseRequest { by: e.by.clone(), reason: e.reason.clone(), at: e.at });
                } else {
                    meta.interrupted = true;
                    meta.interruption = Some(Interruption { reason: Message::lossy(PAUSED_REASON), at: e.at });
                }
            }
        }
    }
}
