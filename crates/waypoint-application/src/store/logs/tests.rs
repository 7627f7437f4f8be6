//! Step logs on the port: stream names, the order reads return, filters, and the size check.

use waypoint_domain::{Attempt, PlanId, StepNumber};

use super::{LogStream, StepLog, STEP_LOG_CAP};
use crate::store::StoreError;

fn log(step: u32, attempt: u32, stream: LogStream, len: usize) -> StepLog {
    StepLog {
        step: StepNumber::new(step).unwrap(),
        attempt: Attempt::new(attempt).unwrap(),
        stream,
        bytes: vec![b'x'; len],
        cut: 0,
    }
}

#[test]
fn streams_have_stable_names_and_parse_back() {
    assert_eq!(LogStream::Stdout.as_str(), "stdout");
    assert_eq!(LogStream::Stderr.as_str(), "stderr");
    for stream in LogStream::ALL {
        assert_eq!(LogStream::parse(stream.as_str()), Some(stream));
        assert_eq!(stream.to_string(), stream.as_str());
    }
    assert_eq!(LogStream::parse("out"), None);
}

#[test]
fn logs_sort_by_step_then_attempt_then_stdout_before_stderr() {
    let mut logs = [
        log(2, 1, LogStream::Stdout, 0),
        log(1, 2, LogStream::Stderr, 0),
        log(1, 1, LogStream::Stderr, 0),
        log(1, 2, LogStream::Stdout, 0),
        log(1, 1, LogStream::Stdout, 0),
    ];
    logs.sort_by_key(StepLog::key);
    let keys: Vec<(u32, u32, &str)> = logs.iter().map(|l| (l.step.get(), l.attempt.get(), l.stream.as_str())).collect();
    assert_eq!(keys, vec![(1, 1, "stdout"), (1, 1, "stderr"), (1, 2, "stdout"), (1, 2, "stderr"), (2, 1, "stdout")]);
}

#[test]
fn filters_apply_each_on_its_own() {
    let log = log(2, 3, LogStream::Stdout, 0);
    let (two, three) = (StepNumber::new(2).ok(), Attempt::new(3).ok());
    assert!(log.matches(None, None));
    assert!(log.matches(two, None));
    assert!(log.matches(None, three));
    assert!(log.matches(two, three));
    assert!(!log.matches(StepNumber::new(1).ok(), None));
    assert!(!log.matches(two, Attempt::new(1).ok()));
}

#[test]
fn a_log_over_the_cap_is_too_large_and_one_at_the_cap_is_not() {
    let plan = PlanId::parse("p").unwrap();
    assert!(log(1, 1, LogStream::Stdout, STEP_LOG_CAP).check_limits(&plan).is_ok());
    match log(1, 2, LogStream::Stderr, STEP_LOG_CAP + 1).check_limits(&plan) {
        Err(StoreError::TooLarge(message)) => {
            assert!(message.contains("stderr log of plan p step 1 attempt 2"), "{message}");
            assert!(message.contains(&format!("{} bytes", STEP_LOG_CAP + 1)), "{message}");
            assert!(!message.ends_with('.'), "{message}");
        }
        other => panic!("a log over the cap is too large, got {other:?}"),
    }
    let mut counted = log(1, 1, LogStream::Stdout, 1);
    counted.cut = StepLog::MAX_CUT;
    assert!(counted.check_limits(&plan).is_ok());
    counted.cut += 1;
    assert!(matches!(counted.check_limits(&plan), Err(StoreError::TooLarge(_))));
}
