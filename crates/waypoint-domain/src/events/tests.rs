//! The stored form's decoder, on samples of every event type: each reads back as written
//! whatever the order of its keys and with unknown keys among them (ignored, the rule since
//! version 1); unknown types and schema versions are typed errors; a missing required field, a
//! duplicate key or cut-short data is `MalformedData`, never a panic.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};

use super::*;
use crate::ids::{InvalidValue, PlanId};
use crate::queue::SubmittedDefinition;

fn at() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + Duration::days(20_000) + Duration::nanoseconds(123_456_789)
}

fn step(n: u32) -> StepNumber {
    StepNumber::new(n).expect("a valid step")
}

fn valid<T>(value: Result<T, InvalidValue>) -> T {
    value.expect("a valid sample value")
}

fn lease(runner: &str) -> Lease {
    Lease { runner: valid(RunnerId::parse(runner)), expires_at: at() + Duration::seconds(30) }
}

fn checkpoint(n: u32, output: Option<Value>) -> StepCompleted {
    StepCompleted {
        checkpoint_id: CheckpointId::from_uuid(uuid::Uuid::from_u128(u128::from(n) << 64 | 0xbeef)),
        step: step(n),
        decision_id: valid(DecisionId::parse(&format!("step-{n}-a1"))),
        snapshot_id: Some(valid(SnapshotId::parse("sha256:9f86d081"))),
        artifacts: vec![valid(Artifact::parse("out/report.txt")), valid(Artifact::parse("naïve \"quoted\" path"))],
        name: Some(valid(StepName::parse("build ✓"))),
        output: output.map(|value| valid(StepOutput::new(value))),
        fingerprint: Some(valid(Fingerprint::parse("a1b2c3"))),
    }
}

fn definition() -> Vec<StepDefinition> {
    vec![StepDefinition { name: valid(StepName::parse("build")), fingerprint: valid(Fingerprint::parse("b1")) }]
}

/// One event of every type with every optional field filled, then one of every type with every
/// optional field empty: in declaration order of the types, twice.
pub(super) fn samples() -> Vec<PlanEvent> {
    let message = |text: &str| valid(Message::parse(text));
    let actor = |name: &str| valid(Actor::parse(name));
    let full = vec![
        PlanEvent::PlanCreated(PlanCreated {
            name: Some(valid(PlanName::parse("Release 1.4"))),
            total_steps: Some(valid(TotalSteps::new(4))),
            fingerprint: Some(valid(Fingerprint::parse("a1b2c3"))),
            source: Some(valid(Artifact::parse("plans/release.toml"))),
            created_at: at(),
            steps: definition(),
        }),
        PlanEvent::PhaseStarted(PhaseStarted {
            phase: Phase::Execute,
            runner: Some(valid(RunnerId::parse("runner-1"))),
            lease: Some(lease("runner-1")),
        }),
        PlanEvent::TotalStepsSet(TotalStepsSet { total_steps: valid(TotalSteps::new(5)) }),
        PlanEvent::StepStarted(StepStarted {
            step: step(3),
            decision_id: valid(DecisionId::parse("step-3-a2")),
            name: Some(valid(StepName::parse("test \\ \"all\""))),
            attempt: Some(valid(Attempt::new(2))),
            lease: Some(lease("runner-1")),
        }),
        PlanEvent::StepCompleted(checkpoint(2, Some(json!({"version": "1.4.0", "files": [1, 2.5, null, true]})))),
        PlanEvent::Interrupted(Interrupted { reason: message("SIGTERM\nat shutdown"), at: at() }),
        PlanEvent::Resumed(Resumed {
            from_step: step(3),
            by: actor("operator@host"),
            runner: Some(valid(RunnerId::parse("runner-2"))),
            at: at(),
            lease: Some(lease("runner-2")),
        }),
        PlanEvent::PlanErrored(PlanErrored { message: message("the build failed") }),
        PlanEvent::PlanConstrained(PlanConstrained { message: message("the change window is closed") }),
        PlanEvent::PhaseCompleted(PhaseCompleted { phase: Phase::Strategize }),
        PlanEvent::PlanApplied(PlanApplied {}),
        PlanEvent::PlanCancelled(PlanCancelled { reason: Some(message("the operator cancelled")) }),
        PlanEvent::StepAttemptFailed(StepAttemptFailed {
            step: step(3),
            attempt: Attempt::FIRST,
            reason: AttemptFailure::Error { message: message("sh: not found") },
            retry_at: Some(at()),
        }),
        PlanEvent::PlanForked(PlanForked {
            source: valid(PlanId::parse("release-1-4")),
            source_version: 9,
            at_step: Some(step(1)),
            name: Some(valid(PlanName::parse("Release 1.4"))),
            total_steps: Some(valid(TotalSteps::new(2))),
            fingerprint: Some(valid(Fingerprint::parse("a1b2c3"))),
            definition_source: Some(valid(Artifact::parse("plans/release.toml"))),
            steps: definition(),
            phase: Phase::Strategize,
            checkpoints: vec![checkpoint(1, Some(json!("done")))],
            created_at: at(),
        }),
        PlanEvent::LeaseRenewed(LeaseRenewed {
            runner: valid(RunnerId::parse("runner-2")),
            expires_at: at() + Duration::minutes(1),
        }),
        PlanEvent::ApprovalRequested(ApprovalRequested {
            step: step(3),
            name: Some(valid(StepName::parse("deploy"))),
            question: message("Deploy to production?"),
            at: at(),
        }),
        PlanEvent::StepApproved(StepApproved {
            step: step(3),
            by: actor("alice"),
            comment: Some(message("looks good")),
            at: at(),
        }),
        PlanEvent::StepRejected(StepRejected {
            step: step(3),
            by: actor("bob"),
            reason: message("not during the freeze"),
            at: at(),
        }),
        PlanEvent::PauseRequested(PauseRequested {
            by: actor("carol"),
            reason: Some(message("checking the migration")),
            at: at(),
        }),
        PlanEvent::PlanSubmitted(PlanSubmitted {
            queue: valid(QueueName::parse("builds")),
            definition: valid(SubmittedDefinition::new(
                "plan_file",
                "name = \"nightly\"\n".to_owned(),
                "nightly.toml".to_owned(),
            )),
            workdir: Some("checkout".to_owned()),
            at: at(),
        }),
    ];
    let bare = vec![
        PlanEvent::PlanCreated(PlanCreated {
            name: None,
            total_steps: None,
            fingerprint: None,
            source: None,
            created_at: at(),
            steps: Vec::new(),
        }),
        PlanEvent::PhaseStarted(PhaseStarted { phase: Phase::Strategize, runner: None, lease: None }),
        PlanEvent::TotalStepsSet(TotalStepsSet { total_steps: valid(TotalSteps::new(1)) }),
        PlanEvent::StepStarted(StepStarted {
            step: StepNumber::FIRST,
            decision_id: valid(DecisionId::parse("d")),
            name: None,
            attempt: None,
            lease: None,
        }),
        PlanEvent::StepCompleted(StepCompleted {
            checkpoint_id: CheckpointId::from_uuid(uuid::Uuid::nil()),
            step: step(u32::MAX),
            decision_id: valid(DecisionId::parse("d")),
            snapshot_id: None,
            artifacts: Vec::new(),
            name: None,
            output: None,
            fingerprint: None,
        }),
        PlanEvent::Interrupted(Interrupted { reason: message("x"), at: DateTime::UNIX_EPOCH }),
        PlanEvent::Resumed(Resumed {
            from_step: StepNumber::FIRST,
            by: actor("x"),
            runner: None,
            at: DateTime::UNIX_EPOCH,
            lease: None,
        }),
        PlanEvent::PlanErrored(PlanErrored { message: message("x") }),
        PlanEvent::PlanConstrained(PlanConstrained { message: message("x") }),
        PlanEvent::PhaseCompleted(PhaseCompleted { phase: Phase::Apply }),
        PlanEvent::PlanApplied(PlanApplied {}),
        PlanEvent::PlanCancelled(PlanCancelled { reason: None }),
        PlanEvent::StepAttemptFailed(StepAttemptFailed {
            step: StepNumber::FIRST,
            attempt: Attempt::FIRST,
            reason: AttemptFailure::Timeout,
            retry_at: None,
        }),
        PlanEvent::PlanForked(PlanForked {
            source: valid(PlanId::parse("p")),
            source_version: 1,
            at_step: None,
            name: None,
            total_steps: None,
            fingerprint: None,
            definition_source: None,
            steps: Vec::new(),
            phase: Phase::Action,
            checkpoints: Vec::new(),
            created_at: DateTime::UNIX_EPOCH,
        }),
        PlanEvent::LeaseRenewed(LeaseRenewed { runner: valid(RunnerId::parse("r")), expires_at: at() }),
        PlanEvent::ApprovalRequested(ApprovalRequested {
            step: StepNumber::FIRST,
            name: None,
            question: message("?"),
            at: at(),
        }),
        PlanEvent::StepApproved(StepApproved { step: StepNumber::FIRST, by: actor("a"), comment: None, at: at() }),
        PlanEvent::StepRejected(StepRejected {
            step: StepNumber::FIRST,
            by: actor("b"),
            reason: message("no"),
            at: at(),
        }),
        PlanEvent::PauseRequested(PauseRequested { by: actor("c"), reason: None, at: at() }),
        PlanEvent::PlanSubmitted(PlanSubmitted {
            queue: QueueName::default_queue(),
            definition: valid(SubmittedDefinition::new("plan_file", String::new(), "p.toml".to_owned())),
            workdir: None,
            at: at(),
        }),
    ];
    full.into_iter().chain(bare).collect()
}

fn decode(event: &PlanEvent, data: &[u8]) -> Result<PlanEvent, DecodeError> {
    PlanEvent::decode(event.event_type().as_str(), event.schema_version(), data)
}

fn object(event: &PlanEvent) -> Map<String, Value> {
    match serde_json::from_slice(&event.encode_data()).expect("event data is JSON") {
        Value::Object(map) => map,
        other => panic!("{} data is not an object: {other}", event.event_type()),
    }
}

fn bytes(map: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(map).expect("a map serializes")
}

#[test]
fn the_samples_cover_every_event_type_twice() {
    let types: Vec<EventType> = samples().iter().map(PlanEvent::event_type).collect();
    assert_eq!(types, [EventType::ALL, EventType::ALL].concat());
}

#[test]
fn every_event_reads_back_as_written() {
    for event in samples() {
        assert_eq!(decode(&event, &event.encode_data()).as_ref(), Ok(&event), "{}", event.event_type());
    }
}

/// `data` decodes to `event`; the failure names the event type and shows the data.
fn reads_back(event: &PlanEvent, data: &[u8]) {
    assert_eq!(decode(event, data).as_ref(), Ok(event), "{}: {}", event.event_type(), String::from_utf8_lossy(data));
}

#[test]
fn every_event_reads_back_whatever_the_order_of_its_keys() {
    for event in samples() {
        let keys: Vec<(String, Value)> = object(&event).into_iter().collect();
        let orders = [
            keys.iter().rev().cloned().collect::<Vec<_>>(),
            keys.iter().skip(1).chain(keys.iter().take(1)).cloned().collect(),
            keys.iter().skip(keys.len() / 2).chain(keys.iter().take(keys.len() / 2)).cloned().collect(),
        ];
        for order in orders {
            reads_back(&event, &bytes(&order.into_iter().collect()));
        }
        // Whitespace between the tokens, as a person editing a record might leave it.
        let pretty = serde_json::to_vec_pretty(&object(&event)).expect("a map serializes");
        assert_eq!(decode(&event, &pretty).as_ref(), Ok(&event), "{} pretty-printed", event.event_type());
    }
}

#[test]
fn unknown_keys_are_ignored_wherever_they_stand() {
    for event in samples() {
        let keys: Vec<(String, Value)> = object(&event).into_iter().collect();
        for at in [0, keys.len() / 2, keys.len()] {
            let mut with_extra = keys.clone();
            with_extra.insert(at, ("added_by_a_later_version".to_owned(), json!({"nested": [1, {"deep": null}]})));
            reads_back(&event, &bytes(&with_extra.into_iter().collect()));
        }
    }
}

#[test]
fn a_missing_optional_field_reads_as_none_and_a_missing_required_one_is_malformed() {
    // Every key of every sample, left out in turn: `null`-able fields read as absent, the rest
    // are refused with the field's name.
    for event in samples() {
        for key in object(&event).keys() {
            let mut without = object(&event);
            without.remove(key).expect("the key is there");
            let nulled = {
                let mut map = object(&event);
                map.insert(key.clone(), Value::Null);
                decode(&event, &bytes(&map))
            };
            match decode(&event, &bytes(&without)) {
                Ok(read) => {
                    assert_eq!(Ok(&read), nulled.as_ref(), "{}: {key} left out reads as null", event.event_type());
                }
                Err(DecodeError::MalformedData { event_type, schema_version, detail }) => {
                    assert_eq!((event_type, schema_version), (event.event_type(), event.schema_version()));
                    assert!(detail.contains(&format!("missing field `{key}`")), "{}: {detail}", event.event_type());
                    assert!(nulled.is_err(), "{}: {key} is required, so null is refused too", event.event_type());
                }
                Err(other) => panic!("{}: {key} left out gave {other:?}", event.event_type()),
            }
        }
    }
    let data = br#"{"step":1,"decision_id":"d"}"#;
    let read = PlanEvent::decode("step_started", 3, data).expect("optional fields may be left out");
    assert!(matches!(read, PlanEvent::StepStarted(StepStarted { name: None, attempt: None, lease: None, .. })));
    let data =
        br#"{"checkpoint_id":"00000000-0000-0000-0000-000000000000","step":1,"snapshot_id":null,"artifacts":[]}"#;
    assert!(matches!(
        PlanEvent::decode("step_completed", 3, data),
        Err(DecodeError::MalformedData { detail, .. }) if detail.contains("missing field `decision_id`")
    ));
}

#[test]
fn unknown_types_and_schema_versions_are_typed_errors() {
    for event in samples() {
        let ty = event.event_type();
        let known = ty.current_schema_version();
        for found in [0, known + 1, u16::MAX] {
            assert_eq!(
                PlanEvent::decode(ty.as_str(), found, &event.encode_data()),
                Err(DecodeError::UnknownSchemaVersion { event_type: ty, found, known })
            );
        }
    }
    for name in ["", "Step_Completed", "step_completed ", "plan_exploded", "stepcompleted"] {
        assert_eq!(PlanEvent::decode(name, 1, b"{}"), Err(DecodeError::UnknownType(name.to_owned())));
    }
}

#[test]
fn duplicate_keys_wrong_types_and_bad_values_are_malformed() {
    let cases: [(&str, u16, &[u8]); 7] = [
        ("step_started", 3, br#"{"step":1,"step":2,"decision_id":"d","name":null,"attempt":null,"lease":null}"#),
        ("step_started", 3, br#"{"step":0,"decision_id":"d","name":null,"attempt":null,"lease":null}"#),
        ("step_started", 3, br#"{"step":"1","decision_id":"d","name":null,"attempt":null,"lease":null}"#),
        ("step_started", 3, br#"{"step":1,"decision_id":"a b","name":null,"attempt":null,"lease":null}"#),
        ("step_completed", 3, br#"{"checkpoint_id":"not-a-uuid","step":1,"decision_id":"d","snapshot_id":null,"artifacts":[],"name":null,"output":null,"fingerprint":null}"#),
        ("step_completed", 3, br#"{"checkpoint_id":"00000000-0000-0000-0000-000000000000","step":1,"decision_id":"d","snapshot_id":null,"artifacts":[""],"name":null,"output":null,"fingerprint":null}"#),
        ("step_completed", 3, br#"[1]"#),
    ];
    for (ty, version, data) in cases {
        assert!(
            matches!(PlanEvent::decode(ty, version, data), Err(DecodeError::MalformedData { .. })),
            "{}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn cut_short_or_damaged_data_is_malformed_never_a_panic() {
    for event in samples() {
        let data = event.encode_data();
        for len in 0..data.len() {
            assert!(
                matches!(decode(&event, &data[..len]), Err(DecodeError::MalformedData { .. })),
                "{} cut to {len} bytes",
                event.event_type()
            );
        }
        for at in 0..data.len() {
            for byte in [0x00, 0xff, b'"', b'\\', b'{', b'9'] {
                let mut damaged = data.clone();
                damaged[at] = byte;
                // Any answer but a panic; a damaged byte that still reads decodes to some event.
                let _ = decode(&event, &damaged);
            }
        }
    }
}

#[test]
fn older_versions_still_upcast() {
    let v1 = br#"{"checkpoint_id":"7d6c2d2e-1a4f-4b59-9a55-8f0f6c1f3b11","step":2,"decision_id":"decision-2","snapshot_id":null}"#;
    let PlanEvent::StepCompleted(read) = PlanEvent::decode("step_completed", 1, v1).expect("v1 reads") else {
        panic!("step_completed reads as a step_completed")
    };
    assert_eq!((read.step, read.artifacts.len(), read.name, read.output), (step(2), 0, None, None));
    let v2 = br#"{"step":3,"decision_id":"d","name":"build","attempt":2}"#;
    let PlanEvent::StepStarted(read) = PlanEvent::decode("step_started", 2, v2).expect("v2 reads") else {
        panic!("step_started reads as a step_started")
    };
    assert_eq!((read.attempt, read.lease), (Some(valid(Attempt::new(2))), None));
    assert!(matches!(
        PlanEvent::decode("step_completed", 1, br#"{"step":2}"#),
        Err(DecodeError::MalformedData { schema_version: 1, .. })
    ));
}
