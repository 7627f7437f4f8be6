//! Traces of plan-file runs, through the real binary and a collector stand-in
//! ([`crate::otlp_receiver`]): a `waypoint.run` span per run and a `waypoint.step` span per
//! attempt with their attributes and parentage, a step's own trace context (`TRACEPARENT`)
//! under its attempt's span (and an instrumented step's own spans nested there), failed,
//! retried, timed-out and interrupted attempts, resumed runs, a worker's claimed runs, both
//! protocols and their headers, and what an unreachable collector may cost (at most two seconds
//! at exit and one warning line).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::cli_harness::{finish, send_signal, wait_for_file, Run, Sandbox};
use crate::otlp_receiver::{closed_port, BlackHole, ReceivedSpan, Receiver};

/// What an unreachable collector may add to a run, at most.
const EXIT_BOUND: Duration = Duration::from_secs(2);

/// Every variable that could turn tracing on or change it, so that the test's own environment
/// never leaks into the binary it runs.
const OTEL_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "TRACEPARENT",
    "TRACESTATE",
    "WAYPOINT_LOG",
    "RUST_LOG",
];

/// `waypoint --format json ARGS` with exactly the `OTEL_*` variables `vars`.
fn command(sandbox: &Sandbox, args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut command = sandbox.command(args);
    for var in OTEL_VARS {
        command.env_remove(var);
    }
    command.envs(vars.iter().copied());
    command
}

fn run(sandbox: &Sandbox, args: &[&str], vars: &[(&str, &str)]) -> Run {
    Run::from_output(command(sandbox, args, vars).output().expect("waypoint runs"))
}

/// Runs the plan file `plan` with traces sent to `receiver` over protobuf.
fn traced(sandbox: &Sandbox, receiver: &Receiver, plan: &str) -> Run {
    let path = sandbox.write("plan.toml", plan);
    run(sandbox, &["run", path.to_str().unwrap()], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())])
}

/// What stderr has besides the runner's progress (`plan ID`, then indented step lines).
fn beyond_progress(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|line| !line.starts_with("plan ") && !line.starts_with("  ")).collect()
}

fn the_one(spans: Vec<ReceivedSpan>, what: &str) -> ReceivedSpan {
    assert_eq!(spans.len(), 1, "expected one {what}: {spans:#?}");
    spans.into_iter().next().unwrap()
}

fn steps_numbered(receiver: &Receiver, n: i64) -> Vec<ReceivedSpan> {
    let mut spans: Vec<_> =
        receiver.named("waypoint.step").into_iter().filter(|s| s.int("waypoint.step.number") == n).collect();
    spans.sort_by_key(|s| s.int("waypoint.step.attempt"));
    spans
}

const TWO_STEPS: &str = r#"
name = "nightly"

[[steps]]
name = "fetch"
run = "true"

[[steps]]
name = "build"
run = "echo \"$TRACEPARENT\" > traceparent.txt; echo \"${TRACESTATE:-none}\" > tracestate.txt"
"#;

#[test]
fn a_run_and_its_steps_are_spans_and_a_step_gets_its_own_span_as_traceparent() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let done = traced(&sandbox, &receiver, TWO_STEPS);
    done.expect_code(0);
    assert_eq!(done.json()["summary"]["status"], "completed", "{}", done.stdout);
    assert_eq!(beyond_progress(&done.stderr), Vec::<&str>::new(), "a reachable collector prints nothing");

    let run = the_one(receiver.named("waypoint.run"), "run span");
    let plan_id = sandbox.only_plan_id();
    assert_eq!(run.str("waypoint.plan.id"), plan_id);
    assert_eq!(run.str("waypoint.plan.name"), "nightly");
    assert_eq!(run.parent_span_id, "", "the run is the trace's root");
    assert!(!run.attributes.contains_key("waypoint.resumed_from_step"), "a fresh run resumes nothing");
    assert_eq!(run.service_name, "waypoint");
    assert!(run.content_type.starts_with("application/x-protobuf"), "protobuf by default: {}", run.content_type);

    for (n, name) in [(1, "fetch"), (2, "build")] {
        let step = the_one(steps_numbered(&receiver, n), "attempt of the step");
        assert_eq!(step.trace_id, run.trace_id, "step {n} is in the run's trace");
        assert_eq!(step.parent_span_id, run.span_id, "step {n} is a child of the run");
        assert_eq!(step.str("waypoint.step.name"), name);
        assert_eq!(step.int("waypoint.step.attempt"), 1);
        assert_eq!(step.str("waypoint.step.outcome"), "completed");
        assert_eq!(step.str("waypoint.plan.id"), plan_id);
        assert_eq!(step.str("waypoint.plan.name"), "nightly");
        assert_ne!(step.status_code, 2, "a completed attempt is no error");
    }

    // W3C: 00-<trace id>-<parent span id>-<flags>; the step's parent is its attempt's span.
    let build = the_one(steps_numbered(&receiver, 2), "build attempt");
    let traceparent = sandbox.read("traceparent.txt");
    assert_eq!(traceparent.trim(), format!("00-{}-{}-01", build.trace_id, build.span_id));
    assert_eq!(sandbox.read("tracestate.txt").trim(), "none", "no trace state was given");
}

#[test]
fn json_protocol_traces_endpoint_and_service_name_are_honoured() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let plan = sandbox.write("plan.toml", TWO_STEPS);
    let traces_endpoint = format!("{}/v1/traces", receiver.endpoint());
    let done = run(
        &sandbox,
        &["run", plan.to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces_endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_SERVICE_NAME", "nightly-builds"),
        ],
    );
    done.expect_code(0);
    let run = the_one(receiver.named("waypoint.run"), "run span");
    assert!(run.content_type.starts_with("application/json"), "{}", run.content_type);
    assert_eq!(run.service_name, "nightly-builds");
    assert_eq!(run.str("waypoint.plan.name"), "nightly");
    let steps = receiver.named("waypoint.step");
    assert_eq!(steps.len(), 2, "{steps:#?}");
    assert!(steps.iter().all(|s| s.parent_span_id == run.span_id && s.trace_id == run.trace_id));
    let build = the_one(steps_numbered(&receiver, 2), "build attempt");
    assert_eq!(build.str("waypoint.step.outcome"), "completed");
    assert_eq!(sandbox.read("traceparent.txt").trim(), format!("00-{}-{}-01", build.trace_id, build.span_id));
}

#[test]
fn a_failed_attempt_is_an_error_span_and_its_retry_is_a_new_span() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let plan = r#"
name = "flaky"

[[steps]]
name = "flaky"
retries = 1
retry_delay = "10ms"
run = "if [ -f tried ]; then exit 0; fi; touch tried; exit 3"
"#;
    traced(&sandbox, &receiver, plan).expect_code(0);
    let attempts = steps_numbered(&receiver, 1);
    assert_eq!(attempts.len(), 2, "each attempt is its own span: {attempts:#?}");
    let (first, second) = (&attempts[0], &attempts[1]);
    assert_eq!(first.int("waypoint.step.attempt"), 1);
    assert_eq!(first.str("waypoint.step.outcome"), "failed");
    assert_eq!(first.status_code, 2, "a failed attempt has status error");
    assert!(first.status_message.contains("exited with code 3"), "{}", first.status_message);
    assert_eq!(second.int("waypoint.step.attempt"), 2);
    assert_eq!(second.str("waypoint.step.outcome"), "completed");
    assert_ne!(first.span_id, second.span_id);
    let run = the_one(receiver.named("waypoint.run"), "run span");
    assert_ne!(run.status_code, 2, "the plan completed");
}

#[test]
fn a_failed_run_is_an_error_and_its_resume_says_where_it_continued() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let plan = r#"
name = "gated"

[[steps]]
name = "prepare"
run = "true"

[[steps]]
name = "deploy"
run = "test -f ready || { echo not ready >&2; exit 1; }"
"#;
    traced(&sandbox, &receiver, plan).expect_code(1);
    let failed_run = the_one(receiver.named("waypoint.run"), "run span");
    assert_eq!(failed_run.status_code, 2, "the plan failed");
    assert!(failed_run.status_message.contains("step 2 (deploy) exited with code 1"), "{}", failed_run.status_message);
    let failed = the_one(steps_numbered(&receiver, 2), "attempt of deploy");
    assert_eq!(failed.str("waypoint.step.outcome"), "failed");
    assert_eq!(failed.status_code, 2);

    sandbox.write("ready", "");
    traced(&sandbox, &receiver, plan).expect_code(0);
    let runs = receiver.named("waypoint.run");
    assert_eq!(runs.len(), 2, "{runs:#?}");
    let resumed = runs.iter().find(|r| r.span_id != failed_run.span_id).unwrap();
    assert_eq!(resumed.int("waypoint.resumed_from_step"), 2);
    assert_ne!(resumed.trace_id, failed_run.trace_id, "each run is its own trace");
    let attempts = steps_numbered(&receiver, 2);
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[1].int("waypoint.step.attempt"), 2, "attempts count across runs");
    assert_eq!(attempts[1].str("waypoint.step.outcome"), "completed");
    assert_eq!(attempts[1].parent_span_id, resumed.span_id);
    assert_eq!(steps_numbered(&receiver, 1).len(), 1, "a completed step does not run again");
}

#[test]
fn a_timeout_and_an_interruption_are_outcomes_of_their_own() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let plan = r#"
name = "slow"

[[steps]]
name = "slow"
timeout = "200ms"
run = "sleep 30"
"#;
    traced(&sandbox, &receiver, plan).expect_code(1);
    let timed_out = the_one(steps_numbered(&receiver, 1), "attempt");
    assert_eq!(timed_out.str("waypoint.step.outcome"), "timeout");
    assert_eq!(timed_out.status_code, 2);

    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let plan =
        sandbox.write("plan.toml", "name = \"wait\"\n[[steps]]\nname = \"wait\"\nrun = \"touch started; sleep 30\"\n");
    let child =
        command(&sandbox, &["run", plan.to_str().unwrap()], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("waypoint starts");
    wait_for_file(&sandbox.path("started"), "the step to start");
    send_signal(i64::from(child.id()), "INT");
    let stopped = finish(child);
    assert_eq!(stopped.code, Some(130), "{stopped:?}");
    let interrupted = the_one(steps_numbered(&receiver, 1), "attempt");
    assert_eq!(interrupted.str("waypoint.step.outcome"), "interrupted");
    the_one(receiver.named("waypoint.run"), "run span");
}

#[test]
fn a_step_that_exports_its_own_spans_nests_them_under_its_attempt() {
    // The step is itself an instrumented program: a second `waypoint run` on a store of its
    // own, which inherits the collector's variables and its step's TRACEPARENT.
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    sandbox.write("inner.toml", "name = \"inner\"\n\n[[steps]]\nname = \"leaf\"\nrun = \"true\"\n");
    let bin = crate::cli_harness::waypoint_bin().display().to_string();
    let outer = format!(
        "name = \"outer\"\n\n[[steps]]\nname = \"nested\"\nrun = \"'{bin}' --store inner-store --format json run inner.toml > /dev/null\"\n"
    );
    traced(&sandbox, &receiver, &outer).expect_code(0);

    let runs = receiver.named("waypoint.run");
    let outer_run =
        the_one(runs.iter().filter(|r| r.str("waypoint.plan.name") == "outer").cloned().collect(), "outer run");
    let inner_run =
        the_one(runs.iter().filter(|r| r.str("waypoint.plan.name") == "inner").cloned().collect(), "inner run");
    let steps = receiver.named("waypoint.step");
    let nested = the_one(steps.iter().filter(|s| s.str("waypoint.step.name") == "nested").cloned().collect(), "nested");
    let leaf = the_one(steps.iter().filter(|s| s.str("waypoint.step.name") == "leaf").cloned().collect(), "leaf");
    assert_eq!(nested.parent_span_id, outer_run.span_id);
    assert_eq!(inner_run.parent_span_id, nested.span_id, "the step's own span is a child of its attempt's span");
    assert_eq!(leaf.parent_span_id, inner_run.span_id);
    for span in [&nested, &inner_run, &leaf] {
        assert_eq!(span.trace_id, outer_run.trace_id, "{} is in the outer run's trace", span.name);
    }
}

#[test]
fn headers_are_sent_with_every_export() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let plan = sandbox.write("plan.toml", TWO_STEPS);
    run(
        &sandbox,
        &["run", plan.to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team=secret%20key,tenant=night"),
        ],
    )
    .expect_code(0);
    let spans = receiver.spans();
    assert_eq!(spans.len(), 3, "a run and two attempts: {spans:#?}");
    for span in spans {
        assert_eq!(span.headers.get("x-honeycomb-team").map(String::as_str), Some("secret key"), "{span:#?}");
        assert_eq!(span.headers.get("tenant").map(String::as_str), Some("night"), "{span:#?}");
    }
}

#[test]
fn a_worker_exports_its_claimed_runs() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let plan = sandbox.write("plan.toml", TWO_STEPS);
    let endpoint = [("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())];
    let endpoint: Vec<(&str, &str)> = endpoint.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run(&sandbox, &["submit", plan.to_str().unwrap(), "--key", "traced"], &endpoint).expect_code(0);
    assert!(receiver.spans().is_empty(), "submitting runs no step");
    let workdir = sandbox.path("work");
    std::fs::create_dir_all(&workdir).unwrap();
    run(&sandbox, &["worker", "--once", "--workdir", workdir.to_str().unwrap()], &endpoint).expect_code(0);

    let run = the_one(receiver.named("waypoint.run"), "the worker's run span");
    assert_eq!(run.str("waypoint.plan.id"), sandbox.only_plan_id());
    assert_eq!(run.str("waypoint.plan.name"), "nightly");
    let steps = receiver.named("waypoint.step");
    assert_eq!(steps.len(), 2, "{steps:#?}");
    assert!(steps.iter().all(|s| s.parent_span_id == run.span_id && s.str("waypoint.step.outcome") == "completed"));
    let build = the_one(steps_numbered(&receiver, 2), "build attempt");
    let traceparent = std::fs::read_to_string(workdir.join("traceparent.txt")).expect("the step ran in the workdir");
    assert_eq!(traceparent.trim(), format!("00-{}-{}-01", build.trace_id, build.span_id));
}

#[test]
fn a_run_started_inside_a_trace_nests_under_it() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let plan = sandbox.write("plan.toml", TWO_STEPS);
    let (trace_id, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace_id}-{parent}-01");
    run(
        &sandbox,
        &["run", plan.to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint()),
            ("TRACEPARENT", &traceparent),
            ("TRACESTATE", "vendor=opaque"),
        ],
    )
    .expect_code(0);
    let run = the_one(receiver.named("waypoint.run"), "run span");
    assert_eq!((run.trace_id.as_str(), run.parent_span_id.as_str()), (trace_id, parent));
    let build = the_one(steps_numbered(&receiver, 2), "build attempt");
    assert_eq!(sandbox.read("traceparent.txt").trim(), format!("00-{trace_id}-{}-01", build.span_id));
    assert_eq!(sandbox.read("tracestate.txt").trim(), "vendor=opaque", "the trace state is passed on");
}

#[test]
fn without_otel_variables_nothing_is_printed_and_no_trace_context_is_handed_on() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write("plan.toml", TWO_STEPS);
    let done = run(&sandbox, &["run", plan.to_str().unwrap()], &[]);
    done.expect_code(0);
    done.json();
    assert_eq!(beyond_progress(&done.stderr), Vec::<&str>::new());
    assert_eq!(sandbox.read("traceparent.txt").trim(), "");

    // Disabled wins over an endpoint, even a dead one: nothing is printed, nothing waited for.
    let hole = BlackHole::start();
    let done = run(
        &sandbox,
        &["run", "--new", plan.to_str().unwrap()],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &hole.endpoint()), ("OTEL_SDK_DISABLED", "true")],
    );
    done.expect_code(0);
    assert_eq!(beyond_progress(&done.stderr), Vec::<&str>::new());
    assert_eq!(sandbox.read("traceparent.txt").trim(), "");
}

#[test]
fn operator_logs_go_to_stderr_and_never_into_the_json_document() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write("plan.toml", TWO_STEPS);
    let done = run(&sandbox, &["run", plan.to_str().unwrap()], &[("WAYPOINT_LOG", "debug")]);
    done.expect_code(0);
    assert_eq!(done.json()["summary"]["status"], "completed");
    assert!(done.stderr.contains("run started"), "{}", done.stderr);
    assert!(done.stderr.contains("step started"), "{}", done.stderr);
}

/// Runs a one-step plan against `endpoint` and returns how long it took beyond the same run
/// untraced, with what it printed.
fn cost_of(endpoint: &str) -> (Duration, Run) {
    let sandbox = Sandbox::new();
    let plan = sandbox.write("plan.toml", "name = \"noop\"\n[[steps]]\nname = \"noop\"\nrun = \"true\"\n");
    let plan = plan.to_str().unwrap();
    let started = Instant::now();
    run(&sandbox, &["run", plan], &[]).expect_code(0);
    let untraced = started.elapsed();
    let started = Instant::now();
    let traced = run(&sandbox, &["run", "--new", plan], &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)]);
    (started.elapsed().saturating_sub(untraced), traced)
}

fn assert_cheap_and_said_once(extra: Duration, traced: &Run, what: &str) {
    traced.expect_code(0);
    assert_eq!(traced.json()["summary"]["status"], "completed", "stdout stays one clean document");
    assert!(extra <= EXIT_BOUND, "{what} cost {extra:?} more than an untraced run");
    let lines = beyond_progress(&traced.stderr);
    assert_eq!(lines.len(), 1, "one warning line for {what}: {:?}", traced.stderr);
    assert!(lines[0].contains("warning") && lines[0].contains("not exported"), "{}", lines[0]);
}

#[test]
fn a_closed_port_costs_at_most_two_seconds_and_one_warning_line() {
    let (extra, traced) = cost_of(&closed_port());
    assert_cheap_and_said_once(extra, &traced, "a closed port");
}

#[test]
fn a_collector_that_never_answers_costs_at_most_two_seconds_and_one_warning_line() {
    let hole = BlackHole::start();
    let (extra, traced) = cost_of(&hole.endpoint());
    assert_cheap_and_said_once(extra, &traced, "a collector that never answers");
}
