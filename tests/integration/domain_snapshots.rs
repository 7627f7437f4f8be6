//! Golden files: the resume summary of representative histories, the stored wire form of every
//! event type, and an old schema version read back through its upcaster.
//!
//! A changed snapshot is a changed contract (the CLI's JSON, the event log): review it as one.

use chrono::Duration;
use serde_json::{json, Value};
use uuid::Uuid;
use waypoint_domain::{
    Actor, Artifact, Attempt, AttemptFailure, CheckpointId, CurrentDefinition, EligibilityInputs, EventType,
    Fingerprint, Interrupted, Lease, LeaseRenewed, Phase, PhaseCompleted, PhaseStarted, PlanApplied, PlanCancelled,
    PlanCommand, PlanConstrained, PlanCreated, PlanErrored, PlanEvent, PlanForked, PlanName, Resumed, SnapshotCheck,
    SnapshotId, StepAttemptFailed, StepCompleted, StepDefinition, StepName, StepOutput, StepStarted, TotalSteps,
    TotalStepsSet,
};

use crate::domain_history::{decision, definition, epoch, message, runner_id, step, History};

fn step_name(name: &str) -> StepName {
    StepName::parse(name).expect("a valid step name")
}

fn runner_gone() -> EligibilityInputs {
    EligibilityInputs::default()
}

fn runner_alive() -> EligibilityInputs {
    EligibilityInputs { runner_alive: true, ..EligibilityInputs::default() }
}

#[test]
fn summary_of_a_fresh_plan() {
    let given = History::new().created(Some(4));
    insta::assert_json_snapshot!("summary_fresh_plan", given.summary(&runner_gone()));
}

#[test]
fn summary_of_a_plan_interrupted_mid_step() {
    let given = History::new()
        .created(Some(4))
        .started(Phase::Strategize, Some("runner-1"))
        .steps_completed(1..=2)
        .step_started(3)
        .shut_down("SIGTERM");
    insta::assert_json_snapshot!("summary_interrupted_with_uncertain_step", given.summary(&runner_gone()));
}

#[test]
fn summary_of_a_crashed_runner() {
    let given = History::new()
        .created(Some(4))
        .started(Phase::Strategize, Some("runner-1"))
        .steps_completed(1..=2)
        .step_started(3);
    insta::assert_json_snapshot!("summary_crash_inferred", given.summary(&runner_gone()));
}

#[test]
fn summary_of_a_resumed_plan_whose_runner_works() {
    let given = History::new()
        .created(Some(4))
        .started(Phase::Strategize, Some("runner-1"))
        .steps_completed(1..=1)
        .shut_down("SIGTERM")
        .resumed(Some("runner-2"));
    insta::assert_json_snapshot!("summary_resumed_still_running", given.summary(&runner_alive()));
}

#[test]
fn summary_of_an_errored_plan() {
    let given = History::new()
        .created(Some(4))
        .started(Phase::Strategize, None)
        .steps_completed(1..=1)
        .run(PlanCommand::Fail { message: message("the build failed") });
    insta::assert_json_snapshot!("summary_errored", given.summary(&runner_gone()));
}

#[test]
fn summary_of_a_complete_phase_with_a_changed_definition_and_a_lost_snapshot() {
    let given = History::new()
        .created(Some(2))
        .started(Phase::Strategize, None)
        .steps_completed(1..=2)
        .run(PlanCommand::CompletePhase);
    let inputs = EligibilityInputs {
        fingerprint: Some(Fingerprint::parse("ffff").expect("a valid fingerprint")),
        snapshot: SnapshotCheck::Missing,
        ..EligibilityInputs::default()
    };
    insta::assert_json_snapshot!("summary_complete", given.summary(&inputs));
}

#[test]
fn summary_of_an_applied_plan() {
    let given = History::new()
        .created(Some(1))
        .started(Phase::Strategize, None)
        .steps_completed(1..=1)
        .run(PlanCommand::CompletePhase)
        .started(Phase::Execute, None)
        .run(PlanCommand::CompletePhase)
        .started(Phase::Apply, None)
        .run(PlanCommand::Apply);
    insta::assert_json_snapshot!("summary_applied", given.summary(&runner_gone()));
}

/// One event of every type, with every optional field filled so the golden file shows it.
fn one_of_each_event() -> Vec<PlanEvent> {
    let at = epoch() + Duration::minutes(5);
    vec![
        PlanEvent::PlanCreated(PlanCreated {
            name: Some(PlanName::parse("Release 1.4").expect("a valid name")),
            total_steps: Some(TotalSteps::new(4).expect("a valid total")),
            fingerprint: Some(Fingerprint::parse("a1b2c3").expect("a valid fingerprint")),
            source: Some(Artifact::parse("plans/release.toml").expect("a valid artifact")),
            created_at: epoch(),
            steps: vec![
                StepDefinition { name: step_name("build"), fingerprint: Fingerprint::parse("b1").expect("valid") },
                StepDefinition { name: step_name("test"), fingerprint: Fingerprint::parse("c1").expect("valid") },
            ],
        }),
        PlanEvent::PhaseStarted(PhaseStarted {
            phase: Phase::Strategize,
            runner: Some(runner_id("runner-1")),
            lease: Some(lease("runner-1", at)),
        }),
        PlanEvent::TotalStepsSet(TotalStepsSet { total_steps: TotalSteps::new(5).expect("a valid total") }),
        PlanEvent::StepStarted(StepStarted {
            step: step(3),
            decision_id: decision(3),
            name: Some(step_name("test")),
            attempt: Some(Attempt::new(2).expect("a valid attempt")),
            lease: Some(lease("runner-1", at + Duration::seconds(30))),
        }),
        PlanEvent::StepCompleted(StepCompleted {
            checkpoint_id: CheckpointId::from_uuid(Uuid::from_u128(2)),
            step: step(2),
            decision_id: decision(2),
            snapshot_id: Some(SnapshotId::parse("sha256:0002").expect("a valid snapshot id")),
            artifacts: vec![Artifact::parse("out/report.txt").expect("a valid artifact")],
            name: Some(step_name("build")),
            output: Some(StepOutput::new(json!({"version": "1.4.0", "files": 3})).expect("a small output")),
            fingerprint: Some(Fingerprint::parse("b2").expect("a valid fingerprint")),
        }),
        PlanEvent::Interrupted(Interrupted { reason: message("SIGTERM"), at }),
        PlanEvent::Resumed(Resumed {
            from_step: step(3),
            by: Actor::parse("operator@host").expect("a valid actor"),
            runner: Some(runner_id("runner-2")),
            at,
            lease: Some(lease("runner-2", at + Duration::seconds(30))),
        }),
        PlanEvent::PlanErrored(PlanErrored { message: message("the build failed") }),
        PlanEvent::PlanConstrained(PlanConstrained { message: message("the change window is closed") }),
        PlanEvent::PhaseCompleted(PhaseCompleted { phase: Phase::Execute }),
        PlanEvent::PlanApplied(PlanApplied {}),
        PlanEvent::PlanCancelled(PlanCancelled { reason: Some(message("the operator cancelled")) }),
        PlanEvent::StepAttemptFailed(StepAttemptFailed {
            step: step(3),
            attempt: Attempt::new(1).expect("a valid attempt"),
            reason: AttemptFailure::Exit { code: 3 },
            retry_at: Some(at + Duration::seconds(2)),
        }),
        PlanEvent::PlanForked(PlanForked {
            source: waypoint_domain::PlanId::parse("release-1-4").expect("a valid id"),
            source_version: 9,
            at_step: Some(step(1)),
            name: Some(PlanName::parse("Release 1.4").expect("a valid name")),
            total_steps: Some(TotalSteps::new(2).expect("a valid total")),
            fingerprint: Some(Fingerprint::parse("a1b2c3").expect("a valid fingerprint")),
            definition_source: Some(Artifact::parse("plans/release.toml").expect("a valid artifact")),
            steps: vec![
                StepDefinition { name: step_name("build"), fingerprint: Fingerprint::parse("b1").expect("valid") },
                StepDefinition { name: step_name("test"), fingerprint: Fingerprint::parse("c1").expect("valid") },
            ],
            phase: Phase::Strategize,
            checkpoints: vec![StepCompleted {
                checkpoint_id: waypoint_domain::CheckpointId::from_uuid(uuid::Uuid::from_u128(0x1234)),
                step: step(1),
                decision_id: decision(1),
                snapshot_id: None,
                artifacts: vec![],
                name: Some(step_name("build")),
                output: Some(StepOutput::new(json!({"version": "1.4.0"})).expect("a small output")),
                fingerprint: Some(Fingerprint::parse("b1").expect("valid")),
            }],
            created_at: at,
        }),
        PlanEvent::LeaseRenewed(LeaseRenewed { runner: runner_id("runner-2"), expires_at: at + Duration::minutes(1) }),
        PlanEvent::ApprovalRequested(waypoint_domain::ApprovalRequested {
            step: step(3),
            name: Some(step_name("deploy")),
            question: message("Deploy to production?"),
            at,
        }),
        PlanEvent::StepApproved(waypoint_domain::StepApproved {
            step: step(3),
            by: actor("alice"),
            comment: Some(message("looks good")),
            at,
        }),
        PlanEvent::StepRejected(waypoint_domain::StepRejected {
            step: step(3),
            by: actor("bob"),
            reason: message("not during the freeze"),
            at,
        }),
        PlanEvent::PauseRequested(waypoint_domain::PauseRequested {
            by: actor("carol"),
            reason: Some(message("checking the migration")),
            at,
        }),
        PlanEvent::PlanSubmitted(waypoint_domain::PlanSubmitted {
            queue: waypoint_domain::QueueName::parse("builds").expect("a valid queue"),
            definition: waypoint_domain::SubmittedDefinition::new(
                "plan_file",
                "name = \"nightly\"\n[[steps]]\nname = \"build\"\nrun = \"make\"\n".to_owned(),
                "nightly.toml".to_owned(),
            )
            .expect("a small definition"),
            workdir: Some("checkout".to_owned()),
            at,
        }),
    ]
}

fn actor(name: &str) -> waypoint_domain::Actor {
    waypoint_domain::Actor::parse(name).expect("a valid actor")
}

fn lease(runner: &str, expires_at: chrono::DateTime<chrono::Utc>) -> Lease {
    Lease { runner: runner_id(runner), expires_at }
}

/// The stored record of `event`: its type name, schema version and data.
fn wire_form(event: &PlanEvent) -> Value {
    let data: Value = serde_json::from_slice(&event.encode_data()).expect("event data is JSON");
    json!({"type": event.event_type().as_str(), "schema_version": event.schema_version(), "data": data})
}

#[test]
fn every_attempt_failure_kind_has_a_stable_wire_form() {
    let kinds = [
        AttemptFailure::Exit { code: 3 },
        AttemptFailure::Signal { signal: 9 },
        AttemptFailure::Timeout,
        AttemptFailure::Error { message: message("sh: not found") },
    ];
    let wire: Vec<Value> = kinds.iter().map(|k| serde_json::to_value(k).expect("serializes")).collect();
    assert_eq!(
        wire,
        [
            json!({"kind": "exit", "code": 3}),
            json!({"kind": "signal", "signal": 9}),
            json!({"kind": "timeout"}),
            json!({"kind": "error", "message": "sh: not found"}),
        ]
    );
}

#[test]
fn every_event_type_has_a_golden_wire_form() {
    let events = one_of_each_event();
    let types: Vec<EventType> = events.iter().map(PlanEvent::event_type).collect();
    assert_eq!(types, EventType::ALL, "one sample per event type, in declaration order");
    for event in &events {
        let ty = event.event_type();
        insta::assert_json_snapshot!(format!("wire_{}", ty.as_str()), wire_form(event));
        let decoded = PlanEvent::decode(ty.as_str(), event.schema_version(), &event.encode_data());
        assert_eq!(decoded.as_ref(), Ok(event), "{ty} reads back as written");
    }
}

/// A `step_completed` record as Waypoint wrote it at schema version 1, before artifacts existed.
const STEP_COMPLETED_V1: &str = r#"{"type":"step_completed","schema_version":1,"data":{"checkpoint_id":"7d6c2d2e-1a4f-4b59-9a55-8f0f6c1f3b11","step":2,"decision_id":"decision-2","snapshot_id":"sha256:0002"}}"#;

/// A `step_completed` record at schema version 2, before names, outputs and fingerprints.
const STEP_COMPLETED_V2: &str = r#"{"type":"step_completed","schema_version":2,"data":{"checkpoint_id":"7d6c2d2e-1a4f-4b59-9a55-8f0f6c1f3b11","step":2,"decision_id":"decision-2","snapshot_id":"sha256:0002","artifacts":["out/report.txt"]}}"#;

/// A `step_started` record at schema version 1, before names and attempts.
const STEP_STARTED_V1: &str =
    r#"{"type":"step_started","schema_version":1,"data":{"step":3,"decision_id":"decision-3"}}"#;

/// Decodes a stored record given as `{"type", "schema_version", "data"}`.
fn read_record(record: &str) -> PlanEvent {
    let record: Value = serde_json::from_str(record).expect("the fixture is JSON");
    let data = serde_json::to_vec(&record["data"]).expect("data serializes");
    let version = u16::try_from(record["schema_version"].as_u64().expect("a version")).expect("a small version");
    PlanEvent::decode(record["type"].as_str().expect("a type"), version, &data).expect("an old record decodes")
}

#[test]
fn a_v1_step_completed_record_is_upcast_on_read() {
    let event = read_record(STEP_COMPLETED_V1);
    let PlanEvent::StepCompleted(completed) = &event else { panic!("decoded as {event:?}") };
    assert_eq!(completed.checkpoint_id.to_string(), "7d6c2d2e-1a4f-4b59-9a55-8f0f6c1f3b11");
    assert_eq!((completed.step, &completed.decision_id), (step(2), &decision(2)));
    assert!(completed.artifacts.is_empty(), "v1 checkpoints had no artifacts");
    assert_eq!((&completed.name, &completed.output, &completed.fingerprint), (&None, &None, &None));
    insta::assert_json_snapshot!("upcast_step_completed_v1", wire_form(&event));
}

#[test]
fn a_v2_step_completed_record_is_upcast_with_no_name_output_or_fingerprint() {
    let event = read_record(STEP_COMPLETED_V2);
    let PlanEvent::StepCompleted(completed) = &event else { panic!("decoded as {event:?}") };
    assert_eq!(completed.artifacts.len(), 1, "v2 artifacts are kept");
    assert_eq!((&completed.name, &completed.output, &completed.fingerprint), (&None, &None, &None));
    insta::assert_json_snapshot!("upcast_step_completed_v2", wire_form(&event));
}

/// A `plan_created` record at schema version 1, before per-step definitions.
const PLAN_CREATED_V1: &str = r#"{"type":"plan_created","schema_version":1,"data":{"name":"Release 1.4","total_steps":4,"fingerprint":"a1b2c3","source":"plans/release.toml","created_at":"2026-01-01T09:00:00Z"}}"#;

#[test]
fn a_v1_plan_created_record_is_upcast_with_no_steps() {
    let event = read_record(PLAN_CREATED_V1);
    let PlanEvent::PlanCreated(created) = &event else { panic!("decoded as {event:?}") };
    assert!(created.steps.is_empty(), "v1 plans recorded no per-step definition");
    assert_eq!(created.fingerprint.as_ref().map(Fingerprint::as_str), Some("a1b2c3"));
    insta::assert_json_snapshot!("upcast_plan_created_v1", wire_form(&event));
}

#[test]
fn a_v1_step_started_record_is_upcast_with_no_name_or_attempt() {
    let event = read_record(STEP_STARTED_V1);
    let PlanEvent::StepStarted(started) = &event else { panic!("decoded as {event:?}") };
    assert_eq!((started.step, &started.name, started.attempt), (step(3), &None, None));
    insta::assert_json_snapshot!("upcast_step_started_v1", wire_form(&event));
}

/// Records from before leases: `phase_started` v1, `step_started` v2, `resumed` v1.
const PHASE_STARTED_V1: &str =
    r#"{"type":"phase_started","schema_version":1,"data":{"phase":"strategize","runner":"runner-1"}}"#;
const STEP_STARTED_V2: &str = r#"{"type":"step_started","schema_version":2,"data":{"step":3,"decision_id":"decision-3","name":"test","attempt":2}}"#;
const RESUMED_V1: &str = r#"{"type":"resumed","schema_version":1,"data":{"from_step":3,"by":"operator@host","runner":null,"at":"2026-01-01T09:05:00Z"}}"#;

#[test]
fn records_from_before_leases_are_upcast_with_no_lease() {
    let event = read_record(PHASE_STARTED_V1);
    let PlanEvent::PhaseStarted(started) = &event else { panic!("decoded as {event:?}") };
    assert_eq!((&started.runner, &started.lease), (&Some(runner_id("runner-1")), &None));
    insta::assert_json_snapshot!("upcast_phase_started_v1", wire_form(&event));

    let event = read_record(STEP_STARTED_V2);
    let PlanEvent::StepStarted(started) = &event else { panic!("decoded as {event:?}") };
    assert_eq!((started.attempt.map(Attempt::get), &started.lease), (Some(2), &None), "v2 fields are kept");
    insta::assert_json_snapshot!("upcast_step_started_v2", wire_form(&event));

    let event = read_record(RESUMED_V1);
    let PlanEvent::Resumed(resumed) = &event else { panic!("decoded as {event:?}") };
    assert_eq!((resumed.from_step, &resumed.lease), (step(3), &None));
    insta::assert_json_snapshot!("upcast_resumed_v1", wire_form(&event));
}

#[test]
fn summary_of_a_runner_whose_lease_expired() {
    let given = History::new()
        .created(Some(4))
        .started_leased(Phase::Strategize, "runner-a", 1)
        .steps_completed(1..=1)
        .step_started(2);
    // The store's clock, read by the caller, is past the lease's expiry.
    let inputs = EligibilityInputs { now: Some(epoch() + Duration::minutes(30)), ..EligibilityInputs::default() };
    insta::assert_json_snapshot!("summary_lease_expired", given.summary(&inputs));
}

#[test]
fn summary_of_a_failed_plan_whose_failed_step_was_fixed() {
    let given = History::new()
        .created_with_steps(&[("build", "b1"), ("test", "c1"), ("deploy", "d1")])
        .started(Phase::Strategize, Some("runner-1"))
        .named_step_completed(1, "build", Some("b1"))
        .named_step_started(2, "test", 1)
        .run(PlanCommand::Fail { message: message("step 2 \"test\" exited with code 1") });
    let current = CurrentDefinition::Known {
        fingerprint: Some(Fingerprint::parse("ffff").expect("a valid fingerprint")),
        steps: definition(&[("build", "b1"), ("test", "c2"), ("deploy", "d1"), ("notify", "e1")]),
    };
    let inputs = EligibilityInputs { definition: Some(current), ..EligibilityInputs::default() };
    insta::assert_json_snapshot!("summary_failed_with_changed_steps", given.summary(&inputs));
}

#[test]
fn every_status_is_one_plain_word_for_a_typical_history() {
    use waypoint_domain::PlanStatus::*;
    let started = || History::new().created(Some(2)).started(Phase::Strategize, Some("runner-1"));
    let cases = [
        (History::new().created(Some(2)), runner_gone(), NotStarted),
        (started(), runner_alive(), Running),
        (started(), runner_gone(), Crashed),
        (History::new().created(Some(2)).started(Phase::Strategize, None), runner_gone(), Running),
        (started().shut_down("SIGTERM"), runner_gone(), Interrupted),
        (started().run(PlanCommand::Fail { message: message("boom") }), runner_gone(), Failed),
        (started().steps_completed(1..=2), runner_alive(), Completed),
        (started().run(PlanCommand::CompletePhase), runner_gone(), Completed),
        (started().run(PlanCommand::Cancel { reason: None }), runner_gone(), Cancelled),
        (
            started().run(PlanCommand::RequestApproval {
                step: waypoint_domain::StepNumber::FIRST,
                name: None,
                question: message("Deploy?"),
                at: started().now(),
            }),
            runner_gone(),
            Waiting,
        ),
        (
            History::new().created(Some(2)).run(PlanCommand::Submit {
                queue: waypoint_domain::QueueName::parse("builds").expect("a valid queue"),
                definition: waypoint_domain::SubmittedDefinition::new(
                    "plan_file",
                    "name = 'x'".into(),
                    "x.toml".into(),
                )
                .expect("a small definition"),
                workdir: None,
                at: started().now(),
            }),
            runner_gone(),
            Queued,
        ),
        (
            started().shut_down("SIGTERM").run(PlanCommand::RequestPause {
                by: actor("carol"),
                reason: None,
                at: started().now(),
            }),
            runner_gone(),
            Paused,
        ),
    ];
    let mut seen = Vec::new();
    for (given, inputs, expected) in cases {
        let summary = given.summary(&inputs);
        assert_eq!(summary.status, expected, "given {:?}", given.events);
        assert_eq!(summary.error.is_some(), expected == Failed, "error only for a failed plan");
        seen.push(expected);
    }
    let applied = History::new()
        .created(Some(1))
        .started(Phase::Strategize, None)
        .run(PlanCommand::CompletePhase)
        .started(Phase::Execute, None)
        .run(PlanCommand::CompletePhase)
        .started(Phase::Apply, None)
        .run(PlanCommand::Apply);
    assert_eq!(applied.summary(&runner_gone()).status, Applied);
    seen.push(Applied);
    assert!(waypoint_domain::PlanStatus::ALL.iter().all(|s| seen.contains(s)), "every status is reached");
    let words: Vec<String> =
        waypoint_domain::PlanStatus::ALL.iter().map(|s| serde_json::to_value(s).unwrap().to_string()).collect();
    assert_eq!(
        words.join(" "),
        r#""running" "interrupted" "crashed" "failed" "completed" "cancelled" "applied" "not_started" "waiting" "paused" "queued""#
    );
}
