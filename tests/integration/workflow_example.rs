//! The workflow API's example agent as a user runs it: killed inside step 3, run again, it
//! continues from step 3 with the outputs of steps 1 and 2 taken from the log.

use std::process::Command;

use super::cli_harness::built_example;

fn run_agent(store: &std::path::Path, crash_at: Option<u32>) -> (Option<i32>, String) {
    let mut command = Command::new(built_example("waypoint-store-file", "agent_workflow"));
    command.arg(store);
    if let Some(step) = crash_at {
        command.env("WAYPOINT_CRASH_AT", step.to_string());
    }
    let output = command.output().expect("the example runs");
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn the_agent_dies_in_step_3_and_the_next_run_reuses_steps_1_and_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (code, first) = run_agent(&store, Some(3));
    assert_eq!(code, Some(3), "the first run dies inside step 3:\n{first}");
    assert!(first.contains("step 2 classify: running") && first.contains("step 3 summarise: running"), "{first}");
    assert!(!first.contains("step 4"), "{first}");

    let (code, second) = run_agent(&store, None);
    assert_eq!(code, Some(0), "{second}");
    assert!(!second.contains("step 1 ") && !second.contains("step 2 "), "steps 1 and 2 did not run again:\n{second}");
    for n in 3..=5 {
        assert!(second.contains(&format!("step {n} ")), "step {n} ran:\n{second}");
    }
    // Step 3's summary is built from the recorded outputs of steps 1 and 2.
    assert!(second.contains("done: Re: billing: Invoice 42 is overdue (sent: true)"), "{second}");

    // A finished key replays: nothing runs, and every step gives back its recorded output.
    let (code, third) = run_agent(&store, None);
    assert_eq!(code, Some(0), "{third}");
    assert!(!third.contains("running"), "a finished workflow runs no step again:\n{third}");
    assert!(third.contains("done: Re: billing: Invoice 42 is overdue (sent: true)"), "{third}");
}
