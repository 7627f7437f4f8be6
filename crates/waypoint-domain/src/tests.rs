//! Unit tests for the domain: value validation, transitions, decisions and the wire codec.

use super::*;

#[test]
fn plan_id_allow_list() {
    assert!(PlanId::parse("plan_01-A").is_ok());
    assert!(PlanId::parse(&"a".repeat(64)).is_ok());
    for bad in ["", "../x", "/abs", "a b", "é", "a\0b", &"a".repeat(65)] {
        assert!(PlanId::parse(bad).is_err(), "{bad:?} must be refused");
    }
}

#[test]
fn step_numbers_start_at_one() {
    assert_eq!(StepNumber::new(0), Err(InvalidValue::ZeroStep));
    assert_eq!(StepNumber::new(1).unwrap(), StepNumber::FIRST);
    assert_eq!(TotalSteps::new(0), Err(InvalidValue::ZeroTotal));
}

#[test]
fn every_event_type_round_trips_by_name() {
    for ty in EventType::ALL {
        assert_eq!(EventType::parse(ty.as_str()), Some(ty));
    }
}

#[test]
fn unknown_type_and_version_are_typed_errors() {
    assert_eq!(PlanEvent::decode("plan_exploded", 1, b"{}"), Err(DecodeError::UnknownType("plan_exploded".into())));
    assert!(matches!(
        PlanEvent::decode("plan_applied", 9, b"{}"),
        Err(DecodeError::UnknownSchemaVersion { found: 9, .. })
    ));
    assert!(matches!(
        PlanEvent::decode("plan_applied", 0, b"{}"),
        Err(DecodeError::UnknownSchemaVersion { found: 0, .. })
    ));
    assert!(matches!(PlanEvent::decode("total_steps_set", 1, b"{}"), Err(DecodeError::MalformedData { .. })));
}

#[test]
fn step_completed_v1_upcasts_with_empty_artifacts() {
    let v1 =
        br#"{"checkpoint_id":"7d6c2d2e-1a4f-4b59-9a55-8f0f6c1f3b11","step":1,"decision_id":"d1","snapshot_id":null}"#;
    let PlanEvent::StepCompleted(e) = PlanEvent::decode("step_completed", 1, v1).unwrap() else { panic!("wrong type") };
    assert!(e.artifacts.is_empty());
}

#[test]
fn phase_pairs_follow_the_spec() {
    use ProcessingState::*;
    assert!(Phase::Action.allows(Queued));
    assert!(!Phase::Action.allows(Processing));
    assert!(Phase::Execute.allows(Complete));
    assert!(!Phase::Execute.allows(Applied));
    assert!(Phase::Apply.allows(Constrained));
    assert!(!Phase::Apply.allows(Complete));
}

#[test]
fn step_names_are_bounded_printable_text() {
    assert_eq!(StepName::parse("build the release").unwrap().as_str(), "build the release");
    assert!(StepName::parse(&"é".repeat(200)).is_ok(), "the limit counts characters");
    for bad in ["", "a\nb", "a\u{1b}[31m", &"a".repeat(201)] {
        assert!(StepName::parse(bad).is_err(), "{bad:?} must be refused");
    }
}

#[test]
fn attempts_start_at_one() {
    assert_eq!(Attempt::new(0), Err(InvalidValue::ZeroAttempt));
    assert_eq!(Attempt::new(1).unwrap(), Attempt::FIRST);
    assert_eq!(Attempt::FIRST.next().map(Attempt::get), Some(2));
}

#[test]
fn step_output_is_at_most_one_mebibyte_encoded() {
    // `"` + n bytes + `"`: the limit is on the encoded form, quotes included.
    let fits = serde_json::Value::String("x".repeat(StepOutput::MAX_ENCODED_LEN - 2));
    let output = StepOutput::new(fits).expect("exactly the limit fits");
    assert_eq!(output.encoded_len(), StepOutput::MAX_ENCODED_LEN);
    let over = serde_json::Value::String("x".repeat(StepOutput::MAX_ENCODED_LEN - 1));
    let error = StepOutput::new(over).expect_err("one byte over is refused");
    assert_eq!(error, InvalidValue::OutputTooLarge { size: 1_048_577, limit: 1_048_576 });
    assert_eq!(error.code(), "output_too_large");
    assert!(error.to_string().contains("1048577 bytes") && error.to_string().contains("1048576"), "{error}");
}

#[test]
fn step_output_is_checked_when_read_back() {
    let output: StepOutput = serde_json::from_str(r#"{"version":"1.4.0","files":[1,2]}"#).unwrap();
    assert_eq!(output.as_value()["version"], "1.4.0");
    let huge = format!("\"{}\"", "x".repeat(StepOutput::MAX_ENCODED_LEN));
    assert!(serde_json::from_str::<StepOutput>(&huge).is_err());
}

#[test]
fn a_lease_is_live_up_to_its_expiry() {
    let expires_at = chrono::DateTime::UNIX_EPOCH + chrono::Duration::seconds(30);
    let lease = Lease { runner: RunnerId::parse("runner-a").unwrap(), expires_at };
    assert!(lease.is_live(expires_at - chrono::Duration::nanoseconds(1)));
    assert!(!lease.is_live(expires_at), "expired at its expiry");
    assert!(lease.is_held_by(&RunnerId::parse("runner-a").unwrap()));
    assert!(!lease.is_held_by(&RunnerId::parse("runner-b").unwrap()));
}

#[test]
fn events_from_before_leases_upcast_with_none() {
    let v1 = br#"{"phase":"strategize","runner":null}"#;
    let PlanEvent::PhaseStarted(e) = PlanEvent::decode("phase_started", 1, v1).unwrap() else { panic!("wrong type") };
    assert_eq!(e.lease, None);
    let v1 = br#"{"step":2,"decision_id":"d2"}"#;
    let PlanEvent::StepStarted(e) = PlanEvent::decode("step_started", 1, v1).unwrap() else { panic!("wrong type") };
    assert_eq!((e.name, e.attempt, e.lease), (None, None, None), "two upcasts in a row");
    let v1 = br#"{"from_step":2,"by":"op","runner":null,"at":"2026-01-01T00:00:00Z"}"#;
    let PlanEvent::Resumed(e) = PlanEvent::decode("resumed", 1, v1).unwrap() else { panic!("wrong type") };
    assert_eq!(e.lease, None);
    let renewed = br#"{"runner":"runner-a","expires_at":"2026-01-01T00:00:30Z"}"#;
    assert!(matches!(PlanEvent::decode("lease_renewed", 1, renewed), Ok(PlanEvent::LeaseRenewed(_))));
    assert!(matches!(
        PlanEvent::decode("lease_renewed", 2, renewed),
        Err(DecodeError::UnknownSchemaVersion { found: 2, known: 1, .. })
    ));
}

#[test]
fn a_steps_checkpoint_is_found_in_a_full_or_a_compacted_list_and_a_later_step_in_neither() {
    let checkpoint = |n: u32| Checkpoint {
        checkpoint_id: CheckpointId::from_uuid(uuid::Uuid::from_u128(u128::from(n))),
        step: StepNumber::new(n).unwrap(),
        decision_id: DecisionId::parse(&format!("d-{n}")).unwrap(),
        snapshot_id: None,
        artifacts: vec![],
        name: None,
        output: None,
        fingerprint: None,
    };
    let step = |n: u32| StepNumber::new(n).unwrap();
    let full: Vec<Checkpoint> = (1..=5).map(checkpoint).collect();
    for n in 1..=5 {
        assert_eq!(Checkpoint::of_step(&full, step(n)).map(|c| c.step), Some(step(n)));
    }
    assert!(Checkpoint::of_step(&full, step(6)).is_none());
    // A compact view keeps only the last checkpoint.
    let compacted = vec![checkpoint(5)];
    assert_eq!(Checkpoint::of_step(&compacted, step(5)).map(|c| c.step), Some(step(5)));
    assert!(Checkpoint::of_step(&compacted, step(1)).is_none());
    assert!(Checkpoint::of_step(&compacted, step(6)).is_none());
    assert!(Checkpoint::of_step(&[], step(1)).is_none());
}
