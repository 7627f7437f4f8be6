//! Projections are pure folds: for any sequence of accepted commands, the state maintained event
//! by event equals a full replay of the stored events, in the domain and through the service.

use chrono::Duration;
use eventually::store::{EventStore, Select};
use futures::executor::block_on;
use futures::TryStreamExt;
use proptest::collection::vec;
use proptest::prelude::*;
use waypoint_application::{
    InMemoryStore, ManualClock, NewPlan, PlanResumeService, PlanView, ResumeRequest, RunLockGuard, StepCheckpoint,
    StepStart, StoredEvent,
};
use waypoint_domain::{
    decide, evaluate_eligibility, Actor, CheckpointId, DecisionId, EligibilityInputs, Phase, PlanCommand, PlanEvent,
    PlanState, ResumeSummary, RunnerId, SnapshotId, StepNumber, TotalSteps,
};

use crate::domain_history::{epoch, message, plan_id, runner_id};

/// One thing a caller may try. Steps are relative to the next one, so most tries land and the
/// histories grow long; the rest are refused, which records nothing.
#[derive(Debug, Clone)]
enum Op {
    Start {
        phase: PhaseChoice,
        with_runner: bool,
    },
    SetTotal(u32),
    /// The step `offset` after the next one (0: the next, -1: the last completed, 1: a skip).
    StartStep(i64),
    Checkpoint {
        offset: i64,
        decision: u8,
        snapshot: Option<u8>,
    },
    Shutdown,
    Fail,
    Constrain,
    CompletePhase,
    Apply,
    Cancel,
    Resume,
    /// Someone takes (true) or drops (false) the plan's run lock.
    Lock(bool),
}

#[derive(Debug, Clone, Copy)]
enum PhaseChoice {
    /// The phase after the current one.
    Next,
    Any(Phase),
}

impl PhaseChoice {
    fn resolve(self, current: Phase) -> Phase {
        match (self, current) {
            (PhaseChoice::Any(phase), _) => phase,
            (PhaseChoice::Next, Phase::Action) => Phase::Strategize,
            (PhaseChoice::Next, Phase::Strategize) => Phase::Execute,
            (PhaseChoice::Next, Phase::Execute | Phase::Apply) => Phase::Apply,
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let phase = prop_oneof![
        3 => Just(PhaseChoice::Next),
        1 => prop::sample::select(Phase::ALL.to_vec()).prop_map(PhaseChoice::Any),
    ];
    let offset = prop_oneof![8 => Just(0i64), 1 => Just(-1i64), 1 => Just(1i64)];
    let decision = prop_oneof![9 => Just(0u8), 1 => Just(1u8)];
    // Cancelling ends a history, so it is rare; checkpoints are what long histories are made of.
    prop_oneof![
        18 => (phase, any::<bool>()).prop_map(|(phase, with_runner)| Op::Start { phase, with_runner }),
        3 => (0u32..10).prop_map(Op::SetTotal),
        12 => offset.clone().prop_map(Op::StartStep),
        60 => (offset, decision, prop::option::of(0u8..2))
            .prop_map(|(offset, decision, snapshot)| Op::Checkpoint { offset, decision, snapshot }),
        9 => Just(Op::Shutdown),
        6 => Just(Op::Fail),
        3 => Just(Op::Constrain),
        9 => Just(Op::CompletePhase),
        2 => Just(Op::Apply),
        1 => Just(Op::Cancel),
        12 => Just(Op::Resume),
        6 => any::<bool>().prop_map(Op::Lock),
    ]
}

/// The step `offset` after the plan's next one, at least 1.
fn relative_step(state: &PlanState, offset: i64) -> u32 {
    let next = state.resume.following_step().map_or(u32::MAX, StepNumber::get);
    u32::try_from((i64::from(next) + offset).max(1)).unwrap_or(u32::MAX)
}

fn checkpoint_fields(step: u32, decision: u8, snapshot: Option<u8>) -> (StepNumber, DecisionId, Option<SnapshotId>) {
    (
        StepNumber::new(step).expect("steps start at 1"),
        DecisionId::parse(&format!("decision-{step}-{decision}")).expect("a valid decision id"),
        snapshot.map(|s| SnapshotId::parse(&format!("snap-{step}-{s}")).expect("a valid snapshot id")),
    )
}

impl Op {
    /// The domain command, or `None` for what is not a command (run locks, a zero total).
    fn command(&self, n: u128, state: &PlanState, runner_alive: bool) -> Option<PlanCommand> {
        let at = epoch() + Duration::minutes(i64::try_from(n).expect("a small index"));
        Some(match *self {
            Op::Start { phase, with_runner } => PlanCommand::StartPhase {
                phase: phase.resolve(state.phase),
                runner: with_runner.then(|| runner_id("runner-1")),
                lease: None,
            },
            Op::SetTotal(n) => PlanCommand::SetTotalSteps { total: TotalSteps::new(n).ok()? },
            Op::StartStep(offset) => {
                let (step, decision_id, _) = checkpoint_fields(relative_step(state, offset), 0, None);
                PlanCommand::StartStep { step, decision_id, name: None, attempt: None, lease: None }
            }
            Op::Checkpoint { offset, decision, snapshot } => {
                let (step, decision_id, snapshot_id) =
                    checkpoint_fields(relative_step(state, offset), decision, snapshot);
                let checkpoint_id = CheckpointId::from_uuid(uuid::Uuid::from_u128(n));
                PlanCommand::RecordCheckpoint {
                    checkpoint_id,
                    step,
                    decision_id,
                    snapshot_id,
                    artifacts: vec![],
                    name: None,
                    output: None,
                    fingerprint: None,
                }
            }
            Op::Shutdown => PlanCommand::RecordShutdown { reason: message("SIGTERM"), at },
            Op::Fail => PlanCommand::Fail { message: message("failed") },
            Op::Constrain => PlanCommand::Constrain { message: message("constrained") },
            Op::CompletePhase => PlanCommand::CompletePhase,
            Op::Apply => PlanCommand::Apply,
            Op::Cancel => PlanCommand::Cancel { reason: None },
            Op::Resume => PlanCommand::Resume {
                by: Actor::parse("operator").expect("a valid actor"),
                runner: None,
                at,
                inputs: EligibilityInputs { runner_alive, ..EligibilityInputs::default() },
                lease: None,
            },
            Op::Lock(_) => return None,
        })
    }
}

fn replay(events: &[PlanEvent]) -> Option<PlanState> {
    events.iter().fold(None, PlanState::fold)
}

/// What the event log promises of every state the decider can reach.
fn check_invariants(state: &PlanState) -> Result<(), TestCaseError> {
    let meta = &state.resume;
    prop_assert!(state.phase.allows(state.state), "{}/{} is not a valid pair", state.phase, state.state);
    let steps: Vec<u32> = meta.checkpoints.iter().map(|c| c.step.get()).collect();
    prop_assert_eq!(steps, (1..=meta.completed_count()).collect::<Vec<_>>(), "checkpoints are 1..=last");
    prop_assert_eq!(meta.last_checkpoint_id, meta.last_checkpoint().map(|c| c.checkpoint_id));
    if let (Some(total), Some(last)) = (meta.total_steps, meta.last_completed_step) {
        prop_assert!(last.get() <= total.get(), "no step beyond the total");
    }
    Ok(())
}

proptest! {
    #[test]
    fn domain_state_built_event_by_event_equals_a_replay(ops in vec(op(), 1..64)) {
        let create =
            PlanCommand::Create {
        name: None,
        total_steps: None,
        fingerprint: None,
        source: None,
        steps: vec![],
        at: epoch(),
    };
        let mut events = decide(None, create).expect("a new plan is created");
        let mut state = replay(&events);
        let mut runner_alive = false;
        for (n, op) in (1u128..).zip(&ops) {
            if let Op::Lock(held) = op {
                runner_alive = *held;
            }
            let current = state.as_ref().expect("the plan exists");
            let Some(command) = op.command(n, current, runner_alive) else { continue };
            let Ok(accepted) = decide(Some(current), command) else { continue };
            for event in accepted {
                state = PlanState::fold(state, &event);
                events.push(event);
            }
            check_invariants(state.as_ref().expect("the plan exists"))?;
        }
        prop_assert_eq!(&state, &replay(&events));
        // The same events read back from their stored form fold to the same state.
        let decoded: Vec<PlanEvent> = events
            .iter()
            .map(|e| PlanEvent::decode(e.event_type().as_str(), e.schema_version(), &e.encode_data()))
            .collect::<Result<_, _>>()
            .expect("every event reads back");
        prop_assert_eq!(&state, &replay(&decoded));
    }

    #[test]
    fn service_views_equal_a_replay_of_the_stored_events(ops in vec(op(), 1..48)) {
        block_on(service_run(ops))?;
    }
}

type Service = PlanResumeService<InMemoryStore>;

async fn stored(service: &Service) -> Vec<StoredEvent> {
    let events = service.store().stream(plan_id(), Select::All).await.expect("the plan's events stream");
    events.try_collect().await.expect("the plan's events read back")
}

/// Runs `op` through the service; `Some(view)` when the call returns the plan's view.
async fn perform(service: &Service, held: &mut Option<RunLockGuard>, op: &Op) -> Result<Option<PlanView>, ()> {
    let id = plan_id();
    let state = service.load(&id).await.expect("the plan loads").state;
    let runner = |with: bool| with.then(|| runner_id("runner-1"));
    match *op {
        Op::Start { phase, with_runner } => {
            service.start_phase(&id, phase.resolve(state.phase), runner(with_runner)).await.map(Some)
        }
        Op::SetTotal(n) => match TotalSteps::new(n) {
            Ok(total) => service.set_total_steps(&id, total).await.map(Some),
            Err(_) => return Err(()),
        },
        Op::StartStep(offset) => {
            let (step, decision_id, _) = checkpoint_fields(relative_step(&state, offset), 0, None);
            service.record_step_started(&id, StepStart::new(step, decision_id)).await.map(Some)
        }
        Op::Checkpoint { offset, decision, snapshot } => {
            let (step, decision_id, snapshot_id) = checkpoint_fields(relative_step(&state, offset), decision, snapshot);
            let checkpoint = StepCheckpoint {
                step,
                decision_id,
                snapshot_id,
                artifacts: vec![],
                name: None,
                output: None,
                fingerprint: None,
            };
            service.record_step_checkpoint(&id, checkpoint).await.map(|_| None)
        }
        Op::Shutdown => service.record_shutdown(&id, message("SIGTERM")).await.map(|_| None),
        Op::Fail => service.fail(&id, message("failed")).await.map(Some),
        Op::Constrain => service.constrain(&id, message("constrained")).await.map(Some),
        Op::CompletePhase => service.complete_phase(&id).await.map(Some),
        Op::Apply => service.apply(&id).await.map(Some),
        Op::Cancel => service.cancel(&id, None).await.map(Some),
        Op::Resume => service.resume_plan(&id, ResumeRequest::default()).await.map(|_| None),
        Op::Lock(take) => {
            if take {
                let runner = RunnerId::parse("other-runner").expect("a valid runner id");
                *held = held.take().or_else(|| service.acquire_run_lock(&id, &runner).ok());
            } else {
                *held = None;
            }
            return Ok(None);
        }
    }
    .map_err(drop)
}

async fn service_run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(epoch());
    let mut held = None;
    let service = PlanResumeService::new(InMemoryStore::new()).with_clock(clock.clone());
    let id = plan_id();
    let created = service.create_plan(NewPlan { id: Some(id.clone()), ..NewPlan::default() }).await.expect("created");
    prop_assert_eq!(Some(created), PlanView::replay(&stored(&service).await));
    for op in &ops {
        clock.advance(Duration::seconds(1));
        let before = stored(&service).await;
        let result = perform(&service, &mut held, op).await;
        let after = stored(&service).await;
        match result {
            Err(()) => prop_assert_eq!(&after, &before, "a refused command appends nothing"),
            Ok(Some(view)) => prop_assert_eq!(Some(view), PlanView::replay(&after), "after {:?}", op),
            Ok(None) => {}
        }
        prop_assert_eq!(&after[..before.len()], &before[..], "stored events are never rewritten");
    }
    let replayed = PlanView::replay(&stored(&service).await).expect("the plan replays");
    prop_assert_eq!(&service.load(&id).await.expect("the plan loads"), &replayed);
    // Read paths use the compact, incrementally maintained catalog: they must agree with a replay.
    let inputs = EligibilityInputs { runner_alive: held.is_some(), ..EligibilityInputs::default() };
    let verdict = evaluate_eligibility(&replayed.state, &inputs);
    let expected = ResumeSummary::build(&id, &replayed.state, &verdict, Some(replayed.last_activity_at));
    prop_assert_eq!(&service.build_resume_summary(&id, None).await.expect("a summary"), &expected);
    prop_assert_eq!(service.list_plans().await.expect("a listing"), vec![expected]);
    Ok(())
}
