//! Given-histories for the domain tests: commands decided one after another against a plan, with
//! fixed ids and times, so every projection built from them is deterministic.

use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;
use waypoint_domain::{
    decide, evaluate_eligibility, Actor, Attempt, CheckpointId, DecisionId, EligibilityInputs, Fingerprint, Lease,
    Message, Phase, PlanCommand, PlanError, PlanEvent, PlanId, PlanState, ResumeSummary, RunnerId, SnapshotId,
    StepDefinition, StepName, StepNumber, StepOutput, TotalSteps,
};

/// The instant every history starts at.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).single().expect("a valid instant")
}

pub fn plan_id() -> PlanId {
    PlanId::parse("plan-golden").expect("a valid plan id")
}

/// A plan's events so far and the state they fold to. Each accepted command is one minute
/// after the previous one; checkpoint ids count up from 1.
#[derive(Debug, Default)]
pub struct History {
    pub events: Vec<PlanEvent>,
    pub state: Option<PlanState>,
    minutes: i64,
    checkpoints: u128,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// The time the next command is decided at.
    pub fn now(&self) -> DateTime<Utc> {
        epoch() + Duration::minutes(self.minutes)
    }

    /// Decides `command` against the current state; accepted events are folded in.
    pub fn try_run(&mut self, command: PlanCommand) -> Result<Vec<PlanEvent>, PlanError> {
        let events = decide(self.state.as_ref(), command)?;
        for event in &events {
            self.state = PlanState::fold(self.state.take(), event);
        }
        self.events.extend(events.iter().cloned());
        self.minutes += 1;
        Ok(events)
    }

    /// Runs a command that must be accepted.
    pub fn run(mut self, command: PlanCommand) -> Self {
        let name = command.name();
        if let Err(e) = self.try_run(command) {
            panic!("the history could not {name}: {e}");
        }
        self
    }

    pub fn created(self, total: Option<u32>) -> Self {
        let at = self.now();
        self.run(PlanCommand::Create {
            name: None,
            total_steps: total.map(|t| TotalSteps::new(t).expect("a valid total")),
            fingerprint: Some(Fingerprint::parse("a1b2c3").expect("a valid fingerprint")),
            source: None,
            steps: vec![],
            at,
        })
    }

    /// Created with a per-step definition: each step's name and fingerprint, in order.
    pub fn created_with_steps(self, steps: &[(&str, &str)]) -> Self {
        let at = self.now();
        self.run(PlanCommand::Create {
            name: None,
            total_steps: Some(TotalSteps::new(steps.len() as u32).expect("at least one step")),
            fingerprint: Some(Fingerprint::parse("a1b2c3").expect("a valid fingerprint")),
            source: None,
            steps: definition(steps),
            at,
        })
    }

    pub fn started(self, phase: Phase, runner: Option<&str>) -> Self {
        self.run(PlanCommand::StartPhase { phase, runner: runner.map(runner_id), lease: None })
    }

    pub fn step_started(self, n: u32) -> Self {
        self.run(PlanCommand::StartStep {
            step: step(n),
            decision_id: decision(n),
            name: None,
            attempt: None,
            lease: None,
        })
    }

    pub fn checkpoint_command(&mut self, n: u32, snapshot: Option<&str>) -> PlanCommand {
        self.checkpoints += 1;
        PlanCommand::RecordCheckpoint {
            checkpoint_id: CheckpointId::from_uuid(Uuid::from_u128(self.checkpoints)),
            step: step(n),
            decision_id: decision(n),
            snapshot_id: snapshot.map(|s| SnapshotId::parse(s).expect("a valid snapshot id")),
            artifacts: vec![],
            name: None,
            output: None,
            fingerprint: None,
        }
    }

    /// A checkpoint of step `n` under `name`, with an optional output and definition fingerprint.
    pub fn named_checkpoint_command(
        &mut self,
        n: u32,
        name: &str,
        output: Option<serde_json::Value>,
        fingerprint: Option<&str>,
    ) -> PlanCommand {
        let PlanCommand::RecordCheckpoint { checkpoint_id, step, decision_id, snapshot_id, artifacts, .. } =
            self.checkpoint_command(n, None)
        else {
            unreachable!("checkpoint_command builds a checkpoint")
        };
        PlanCommand::RecordCheckpoint {
            checkpoint_id,
            step,
            decision_id,
            snapshot_id,
            artifacts,
            name: Some(step_name(name)),
            output: output.map(|v| StepOutput::new(v).expect("a small output")),
            fingerprint: fingerprint.map(|f| Fingerprint::parse(f).expect("a valid fingerprint")),
        }
    }

    /// Step `n` completes under `name`, with the definition fingerprint `fingerprint`.
    pub fn named_step_completed(mut self, n: u32, name: &str, fingerprint: Option<&str>) -> Self {
        let command = self.named_checkpoint_command(n, name, None, fingerprint);
        self.run(command)
    }

    /// Step `n` starts under `name` as attempt `attempt`.
    pub fn named_step_started(self, n: u32, name: &str, attempt: u32) -> Self {
        self.run(start_command(n, name, attempt))
    }

    pub fn steps_completed(mut self, steps: std::ops::RangeInclusive<u32>) -> Self {
        for n in steps {
            let snapshot = format!("sha256:{n:04}");
            let command = self.checkpoint_command(n, Some(&snapshot));
            self = self.run(command);
        }
        self
    }

    pub fn shut_down(self, reason: &str) -> Self {
        let at = self.now();
        self.run(PlanCommand::RecordShutdown { reason: message(reason), at })
    }

    pub fn resumed(self, runner: Option<&str>) -> Self {
        let at = self.now();
        self.run(PlanCommand::Resume {
            by: Actor::parse("operator@host").expect("a valid actor"),
            runner: runner.map(runner_id),
            at,
            inputs: EligibilityInputs::default(),
            lease: None,
        })
    }

    /// Enters `phase` held by `runner`'s lease, which expires `minutes` after now.
    pub fn started_leased(self, phase: Phase, runner: &str, minutes: i64) -> Self {
        let lease = self.lease(runner, minutes);
        self.run(PlanCommand::StartPhase { phase, runner: None, lease: Some(lease) })
    }

    /// `runner`'s lease, expiring `minutes` after the time the next command is decided at.
    pub fn lease(&self, runner: &str, minutes: i64) -> Lease {
        Lease { runner: runner_id(runner), expires_at: self.now() + Duration::minutes(minutes) }
    }

    /// `runner` renews its lease until `minutes` after now.
    pub fn renew_command(&self, runner: &str, minutes: i64) -> PlanCommand {
        PlanCommand::RenewLease { runner: runner_id(runner), expires_at: self.now() + Duration::minutes(minutes) }
    }

    /// A resume by `runner` under a lease of `minutes`, judged at the store's clock `now`.
    pub fn resume_leased_command(&self, runner: &str, minutes: i64, now: DateTime<Utc>) -> PlanCommand {
        PlanCommand::Resume {
            by: Actor::parse("operator@host").expect("a valid actor"),
            runner: None,
            at: self.now(),
            inputs: EligibilityInputs { now: Some(now), ..EligibilityInputs::default() },
            lease: Some(self.lease(runner, minutes)),
        }
    }

    pub fn state(&self) -> &PlanState {
        self.state.as_ref().expect("the history created a plan")
    }

    /// The resume summary with `inputs` from outside the log; the last activity is the time of
    /// the last accepted command.
    pub fn summary(&self, inputs: &EligibilityInputs) -> ResumeSummary {
        let verdict = evaluate_eligibility(self.state(), inputs);
        let last_activity = epoch() + Duration::minutes(self.minutes - 1);
        ResumeSummary::build(&plan_id(), self.state(), &verdict, Some(last_activity))
    }
}

/// Step `n` starts under `name` as attempt `attempt`, with decision `decision-n-attempt`.
pub fn start_command(n: u32, name: &str, attempt: u32) -> PlanCommand {
    PlanCommand::StartStep {
        step: step(n),
        decision_id: DecisionId::parse(&format!("decision-{n}-{attempt}")).expect("a valid decision id"),
        name: Some(step_name(name)),
        attempt: Some(Attempt::new(attempt).expect("a valid attempt")),
        lease: None,
    }
}

/// A per-step definition from `(name, fingerprint)` pairs.
pub fn definition(steps: &[(&str, &str)]) -> Vec<StepDefinition> {
    steps
        .iter()
        .map(|(name, fingerprint)| StepDefinition {
            name: step_name(name),
            fingerprint: Fingerprint::parse(fingerprint).expect("a valid fingerprint"),
        })
        .collect()
}

pub fn step_name(name: &str) -> StepName {
    StepName::parse(name).expect("a valid step name")
}

pub fn step(n: u32) -> StepNumber {
    StepNumber::new(n).expect("a valid step")
}

pub fn decision(n: u32) -> DecisionId {
    DecisionId::parse(&format!("decision-{n}")).expect("a valid decision id")
}

pub fn message(text: &str) -> Message {
    Message::parse(text).expect("a valid message")
}

pub fn runner_id(name: &str) -> RunnerId {
    RunnerId::parse(name).expect("a valid runner id")
}
