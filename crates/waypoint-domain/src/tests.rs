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
