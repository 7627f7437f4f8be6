//! The writer's-form fast path: it reads what the writer writes, and on any other bytes it
//! either gives up or gives exactly what the derived decoder gives.

use serde::de::DeserializeOwned;
use serde_json::json;

use super::{step_completed, step_started};
use crate::events::tests::samples;
use crate::events::{PlanEvent, StepCompleted, StepStarted};
use crate::ids::{Fingerprint, StepOutput};

/// A reading of a record's data: the fast path's, or the derived decoder's.
type Reading = fn(&[u8]) -> Option<PlanEvent>;

/// The derived decoder's reading of `data` as a `T`, wrapped as `wrap` would.
fn derived<T: DeserializeOwned>(data: &[u8], wrap: fn(T) -> PlanEvent) -> Option<PlanEvent> {
    serde_json::from_slice(data).ok().map(wrap)
}

/// Every step event of the samples, and a few more with outputs and texts the fast path reads
/// through `serde_json`.
fn step_events() -> Vec<PlanEvent> {
    let mut events: Vec<PlanEvent> = samples()
        .into_iter()
        .filter(|e| matches!(e, PlanEvent::StepStarted(_) | PlanEvent::StepCompleted(_)))
        .collect();
    let Some(PlanEvent::StepCompleted(base)) =
        events.iter().find(|e| matches!(e, PlanEvent::StepCompleted(_))).cloned()
    else {
        panic!("the samples hold a step_completed")
    };
    for output in [json!(0), json!(-1.5e300), json!("é\u{0001}"), json!([[[[]]]]), json!({"a": {"b": [1, "2"]}})] {
        events.push(PlanEvent::StepCompleted(StepCompleted {
            output: Some(StepOutput::new(output).expect("a small output")),
            ..base.clone()
        }));
    }
    events.push(PlanEvent::StepCompleted(StepCompleted {
        fingerprint: Some(Fingerprint::parse("DEADbeef").expect("hex")),
        artifacts: Vec::new(),
        ..base
    }));
    events
}

/// The fast path for `event`'s type, and the derived decoder's reading of the same type.
fn fast_path_of(event: &PlanEvent) -> (Reading, Reading) {
    match event {
        PlanEvent::StepStarted(_) => (step_started, |d| derived(d, PlanEvent::StepStarted as fn(StepStarted) -> _)),
        PlanEvent::StepCompleted(_) => {
            (step_completed, |d| derived(d, PlanEvent::StepCompleted as fn(StepCompleted) -> _))
        }
        other => panic!("no fast path for {}", other.event_type()),
    }
}

#[test]
fn the_writers_form_takes_the_fast_path() {
    for event in step_events() {
        let (fast, _) = fast_path_of(&event);
        let data = event.encode_data();
        assert_eq!(fast(&data), Some(event.clone()), "{}", String::from_utf8_lossy(&data));
    }
}

#[test]
fn other_forms_give_up_or_agree_with_the_derived_decoder() {
    // Every single-byte deletion, replacement and insertion of every step sample: whenever the
    // fast path reads the damaged bytes, the derived decoder reads the same event from them.
    let bytes = [
        b' ', b'"', b'\\', b'0', b'1', b'9', b'-', b'.', b'e', b'n', b'}', b']', b',', b':', b'{', 0x1f, 0x7f, 0xc3,
        0xff,
    ];
    let mut agreed = 0;
    for event in step_events() {
        let (fast, derived) = fast_path_of(&event);
        let data = event.encode_data();
        let mut variants = Vec::new();
        for at in 0..data.len() {
            let mut deleted = data.clone();
            deleted.remove(at);
            variants.push(deleted);
            for &byte in &bytes {
                let mut replaced = data.clone();
                replaced[at] = byte;
                variants.push(replaced);
                let mut inserted = data.clone();
                inserted.insert(at, byte);
                variants.push(inserted);
            }
        }
        for variant in variants {
            if let Some(read) = fast(&variant) {
                assert_eq!(Some(&read), derived(&variant).as_ref(), "{}", String::from_utf8_lossy(&variant));
                agreed += 1;
            }
        }
    }
    assert!(agreed > 0, "some damaged bytes still read, and were checked");
}

#[test]
fn keys_out_of_order_extra_keys_and_whitespace_leave_it_to_the_derived_decoder() {
    let cases: [&[u8]; 7] = [
        br#"{"decision_id":"d","step":1,"name":null,"attempt":null,"lease":null}"#,
        br#"{"step":1,"decision_id":"d","name":null,"attempt":null,"lease": null}"#,
        br#"{"step":1,"decision_id":"d","name":null,"attempt":null,"lease":
null}"#,
        br#"{"step":1,"decision_id":"d","name":null,"attempt":null,"lease":null,"later":1}"#,
        br#"{"step":1,"decision_id":"d","name":null,"attempt":null}"#,
        br#"{"step":1, "decision_id":"d","name":null,"attempt":null,"lease":null}"#,
        br#"{"step":1,"decision_id":"d","name":null,"attempt":null,"lease":null} "#,
    ];
    for data in cases {
        assert_eq!(step_started(data), None, "{}", String::from_utf8_lossy(data));
        assert!(
            matches!(PlanEvent::decode("step_started", 3, data), Ok(PlanEvent::StepStarted(_))),
            "{}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn deeply_nested_outputs_are_left_to_the_derived_decoder() {
    // The derived decoder's nesting limit must decide these, so the fast path gives up early.
    let deep = |depth: usize| {
        format!(
            r#"{{"checkpoint_id":"00000000-0000-0000-0000-000000000000","step":1,"decision_id":"d","snapshot_id":null,"artifacts":[],"name":null,"output":{}{},"fingerprint":null}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    assert!(step_completed(deep(super::MAX_NESTED_BRACKETS).as_bytes()).is_some());
    for depth in [super::MAX_NESTED_BRACKETS + 1, 127, 128, 200] {
        let data = deep(depth);
        assert_eq!(step_completed(data.as_bytes()), None, "depth {depth}");
        assert_eq!(
            PlanEvent::decode("step_completed", 3, data.as_bytes()).is_ok(),
            derived(data.as_bytes(), PlanEvent::StepCompleted).is_some(),
            "depth {depth}"
        );
    }
}
