//! Workers and queues through the real binary, on the file store and on PostgreSQL: many
//! workers share one queue and every step runs exactly once; a worker killed with SIGKILL loses
//! its plan to another once the lease expires (the figure is printed), its step's processes die
//! with it and the step reruns once, never beside the old attempt; SIGTERM drains; a queue limit
//! holds across workers.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;
use waypoint_store_postgres::testing::TestDatabase;

use super::cli_harness::{finish, send_signal, wait_for_file, Run, Sandbox};

/// Short leases keep the suite fast; the takeover waits for one.
const LEASE: &str = "2s";
const LEASE_SECS: f64 = 2.0;

/// Where a test's plans live: the sandbox's directory store, or a database of its own.
enum Store {
    Dir,
    Postgres(TestDatabase),
}

impl Store {
    fn postgres(label: &str) -> Self {
        Store::Postgres(TestDatabase::create(label))
    }

    /// `waypoint --format json [--store URL] ARGS`: a later `--store` wins over the sandbox's.
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        match self {
            Store::Dir => args.to_vec(),
            Store::Postgres(db) => [&["--store", db.url()][..], args].concat(),
        }
    }

    fn run(&self, sandbox: &Sandbox, args: &[&str]) -> Run {
        sandbox.run(&self.args(args))
    }

    #[track_caller]
    fn ok(&self, sandbox: &Sandbox, args: &[&str]) -> Value {
        let run = self.run(sandbox, args);
        run.expect_code(0);
        run.json()
    }

    fn spawn(&self, sandbox: &Sandbox, args: &[&str]) -> Child {
        sandbox.spawn(&self.args(args))
    }
}

/// Submits `count` plans of `file` under keys `PREFIX-NN` to `queue`.
fn submit_many(store: &Store, sandbox: &Sandbox, file: &str, prefix: &str, count: usize, queue: &str) -> Vec<String> {
    (0..count)
        .map(|n| {
            let key = format!("{prefix}-{n:02}");
            let submitted = store.ok(sandbox, &["submit", file, "--key", &key, "--queue", queue]);
            assert_eq!((submitted["created"].as_bool(), submitted["status"].as_str()), (Some(true), Some("queued")));
            key
        })
        .collect()
}

/// The JSON lines a worker printed.
fn lines(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("a JSON line ({e}): {line}\n{}", run.stderr)))
        .collect()
}

fn statuses(store: &Store, sandbox: &Sandbox, queue: &str) -> Vec<String> {
    let listed = store.ok(sandbox, &["plan", "list", "--queue", queue]);
    listed["plans"].as_array().expect("plans").iter().map(|p| p["status"].as_str().unwrap().to_owned()).collect()
}

const THREE_STEPS: &str = r#"
name = "three steps"
[[steps]]
name = "one"
run = "echo \"$WAYPOINT_PLAN_ID 1\" >> runs.log"
[[steps]]
name = "two"
run = "echo \"$WAYPOINT_PLAN_ID 2\" >> runs.log"
[[steps]]
name = "three"
run = "echo \"$WAYPOINT_PLAN_ID 3\" >> runs.log"
"#;

fn three_workers_run_thirty_plans_each_step_exactly_once(store: Store) {
    let sandbox = Sandbox::new();
    let file = sandbox.write("three.toml", THREE_STEPS);
    std::fs::create_dir(sandbox.path("work")).unwrap();
    let keys = submit_many(&store, &sandbox, file.to_str().unwrap(), "bulk", 30, "bulk");
    assert_eq!(
        store.ok(&sandbox, &["submit", file.to_str().unwrap(), "--key", "bulk-00", "--queue", "bulk"])["created"],
        false
    );
    let work = sandbox.path("work");
    let worker = ["worker", "--queue", "bulk", "--once", "--concurrency", "2", "--lease", LEASE, "--workdir"];
    let workers: Vec<Child> =
        (0..3).map(|_| store.spawn(&sandbox, &[&worker[..], &[work.to_str().unwrap()]].concat())).collect();
    let mut claims_by_worker = BTreeMap::new();
    for child in workers {
        let run = finish(child);
        run.expect_code(0);
        for line in lines(&run).iter().filter(|l| l["event"] == "claimed") {
            *claims_by_worker.entry(line["worker"].as_str().unwrap().to_owned()).or_insert(0) += 1;
        }
    }
    let runs = std::fs::read_to_string(work.join("runs.log")).expect("steps ran");
    let mut counted: BTreeMap<&str, usize> = BTreeMap::new();
    for line in runs.lines() {
        *counted.entry(line).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> =
        keys.iter().flat_map(|k| (1..=3).map(move |s| (format!("{k} {s}"), 1))).collect();
    let counted: BTreeMap<String, usize> = counted.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    assert_eq!(counted, expected, "every step of every plan ran exactly once");
    assert_eq!(claims_by_worker.values().sum::<usize>(), 30, "30 claims: {claims_by_worker:?}");
    assert!(statuses(&store, &sandbox, "bulk").iter().all(|s| s == "completed"));
    // Three processes each checkpointed what they had folded: the listing still names each
    // plan once (it once named a plan once per checkpoint that held it).
    let listed = store.ok(&sandbox, &["plan", "list"]);
    let mut ids: Vec<&str> =
        listed["plans"].as_array().unwrap().iter().map(|p| p["plan_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut expected: Vec<&str> = keys.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "the listing names each plan once");
}

#[test]
fn three_workers_run_thirty_plans_each_step_exactly_once_on_the_file_store() {
    three_workers_run_thirty_plans_each_step_exactly_once(Store::Dir);
}

#[test]
fn three_workers_run_thirty_plans_each_step_exactly_once_on_postgres() {
    three_workers_run_thirty_plans_each_step_exactly_once(Store::postgres("workers_bulk"));
}

/// Step 2 records each attempt's start, leaves a child process behind whose pid it writes, and
/// says so when an earlier attempt's shell still lives as it starts.
const SLOW_STEP: &str = r#"
name = "takeover"
[[steps]]
name = "one"
run = "echo one >> effects.log"
[[steps]]
name = "two"
run = """
if [ -f attempt.pid ] && kill -0 "$(cat attempt.pid)" 2>/dev/null; then echo CONCURRENT >> effects.log; fi
echo $$ > attempt.pid
echo "two start $WAYPOINT_ATTEMPT" >> effects.log
sleep 300 &
echo $! > child-$WAYPOINT_ATTEMPT.pid
touch started-$WAYPOINT_ATTEMPT
if [ "$WAYPOINT_ATTEMPT" = 1 ]; then wait; fi
echo "two end $WAYPOINT_ATTEMPT" >> effects.log
kill $! 2>/dev/null
"""
[[steps]]
name = "three"
run = "echo three >> effects.log"
"#;

fn alive(pid: &str) -> bool {
    std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
}

fn at(line: &Value) -> chrono::DateTime<chrono::Utc> {
    line["at"].as_str().and_then(|t| t.parse().ok()).expect("a time on every line")
}

fn a_killed_worker_loses_its_plan_to_another_after_the_lease(store: Store, label: &str) {
    let sandbox = Sandbox::new();
    let file = sandbox.write("slow.toml", SLOW_STEP);
    std::fs::create_dir(sandbox.path("work")).unwrap();
    let work = sandbox.path("work");
    let work = work.to_str().unwrap();
    submit_many(&store, &sandbox, file.to_str().unwrap(), "slow", 1, "slow");
    let worker = ["worker", "--queue", "slow", "--lease", LEASE, "--workdir", work];
    let mut first = store.spawn(&sandbox, &worker);
    wait_for_file(&sandbox.path("work/started-1"), "attempt 1 of step 2");
    // The standby starts once the first holds the plan, and waits for it.
    let standby = store.spawn(&sandbox, &worker);
    std::thread::sleep(Duration::from_millis(300));
    let child_pid = std::fs::read_to_string(sandbox.path("work/child-1.pid")).expect("the step's child pid");
    assert!(alive(&child_pid), "the step's child runs");
    let killed_at = chrono::Utc::now();
    first.kill().expect("SIGKILL reaches the worker");
    first.wait().expect("the worker is reaped");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(&child_pid) {
        assert!(Instant::now() < deadline, "the killed worker's step process {child_pid} outlived it");
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.ok(&sandbox, &["plan", "show", "slow-00"])["status"] != "completed" {
        assert!(Instant::now() < deadline, "the standby never completed the plan");
        std::thread::sleep(Duration::from_millis(100));
    }
    send_signal(i64::from(standby.id()), "TERM");
    let run = finish(standby);
    run.expect_code(0);
    let lines = lines(&run);
    let rerun = lines
        .iter()
        .find(|l| l["event"] == "step" && l["status"] == "rerun")
        .unwrap_or_else(|| panic!("the standby reruns step 2, named as such:\n{}", run.stdout));
    assert_eq!(rerun["step"], 2);
    let claimed = lines.iter().find(|l| l["event"] == "claimed").expect("a claim");
    assert_eq!(claimed["was"], "crashed", "taken over as a crashed plan");
    let failover = (at(rerun) - killed_at).num_milliseconds() as f64 / 1000.0;
    println!("failover [{label}]: {failover:.2}s from kill -9 to the takeover's first step start, lease {LEASE_SECS}s");
    // The lease was renewed at most a third of it before the kill; the takeover waits for it to
    // expire, plus a poll.
    assert!(failover >= LEASE_SECS * 0.6, "no takeover before the lease expired: {failover}s");
    assert!(failover <= LEASE_SECS + 2.0, "the takeover comes soon after the lease: {failover}s");
    let finished = lines.iter().find(|l| l["event"] == "finished").expect("a finish");
    assert_eq!(finished["outcome"], "completed", "{}", run.stdout);
    let effects = std::fs::read_to_string(sandbox.path("work/effects.log")).unwrap();
    assert_eq!(
        effects.lines().collect::<Vec<_>>(),
        ["one", "two start 1", "two start 2", "two end 2", "three"],
        "step 1 once, step 2 rerun once and never beside its first attempt, step 3 once"
    );
    let shown = store.ok(&sandbox, &["plan", "show", "slow-00"]);
    assert_eq!((shown["status"].as_str(), shown["resume_count"].as_u64()), (Some("completed"), Some(1)));
}

#[test]
fn a_killed_worker_loses_its_plan_to_another_after_the_lease_on_the_file_store() {
    a_killed_worker_loses_its_plan_to_another_after_the_lease(Store::Dir, "file");
}

#[test]
fn a_killed_worker_loses_its_plan_to_another_after_the_lease_on_postgres() {
    a_killed_worker_loses_its_plan_to_another_after_the_lease(Store::postgres("workers_kill"), "postgres");
}

const DRAIN: &str = r#"
name = "drain"
[[steps]]
name = "one"
run = "touch one-started; sleep 1; echo one >> effects.log"
[[steps]]
name = "two"
run = "echo two >> effects.log"
"#;

const STUCK: &str = r#"
name = "stuck"
[[steps]]
name = "forever"
run = "touch stuck-started; sleep 300; echo never >> effects.log"
"#;

fn sigterm_drains_the_worker(store: Store) {
    let sandbox = Sandbox::new();
    std::fs::create_dir(sandbox.path("work")).unwrap();
    let work = sandbox.path("work");
    let work = work.to_str().unwrap();
    let drain = sandbox.write("drain.toml", DRAIN);
    submit_many(&store, &sandbox, drain.to_str().unwrap(), "drain", 1, "drain");
    let worker = store.spawn(&sandbox, &["worker", "--queue", "drain", "--lease", LEASE, "--workdir", work]);
    wait_for_file(&sandbox.path("work/one-started"), "step 1");
    send_signal(i64::from(worker.id()), "TERM");
    let run = finish(worker);
    run.expect_code(0);
    let effects = std::fs::read_to_string(sandbox.path("work/effects.log")).unwrap();
    assert_eq!(effects, "one\n", "the running step finished and no further step started");
    let shown = store.ok(&sandbox, &["plan", "show", "drain-00"]);
    assert_eq!((shown["status"].as_str(), shown["next_step"].as_u64()), (Some("interrupted"), Some(2)), "{shown}");
    // The interrupted plan can resume, and a resumable listing of its queue names it; one of
    // another queue does not, in JSON or in the table.
    let plan_ids = |args: &[&str]| -> Vec<String> {
        let listed = store.ok(&sandbox, args);
        listed["plans"].as_array().expect("plans").iter().map(|p| p["plan_id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(plan_ids(&["plan", "list", "--resumable", "--queue", "drain"]), ["drain-00"]);
    assert!(plan_ids(&["plan", "list", "--resumable", "--queue", "other"]).is_empty());
    for (queue, listed) in [("drain", true), ("other", false)] {
        let table = store.run(&sandbox, &["--format", "rich", "plan", "list", "--resumable", "--queue", queue]);
        table.expect_code(0);
        assert_eq!(table.stdout.contains("drain-00"), listed, "--queue {queue}:\n{}", table.stdout);
    }
    // Another worker picks the interrupted plan up and runs only what is left.
    store.run(&sandbox, &["worker", "--queue", "drain", "--once", "--workdir", work]).expect_code(0);
    let effects = std::fs::read_to_string(sandbox.path("work/effects.log")).unwrap();
    assert_eq!(effects, "one\ntwo\n");

    // A step that outlasts the grace period is stopped and the interruption recorded.
    let stuck = sandbox.write("stuck.toml", STUCK);
    submit_many(&store, &sandbox, stuck.to_str().unwrap(), "stuck", 1, "stuck");
    let worker =
        store.spawn(&sandbox, &["worker", "--queue", "stuck", "--lease", LEASE, "--grace", "1s", "--workdir", work]);
    wait_for_file(&sandbox.path("work/stuck-started"), "the stuck step");
    let signalled = Instant::now();
    send_signal(i64::from(worker.id()), "TERM");
    let run = finish(worker);
    run.expect_code(0);
    assert!(signalled.elapsed() < Duration::from_secs(10), "the grace period bounds the drain");
    let finished = lines(&run).into_iter().find(|l| l["event"] == "finished").expect("a finish line");
    assert_eq!(finished["outcome"], "interrupted", "{}", run.stdout);
    let shown = store.ok(&sandbox, &["plan", "show", "stuck-00"]);
    assert_eq!((shown["status"].as_str(), shown["next_step"].as_u64()), (Some("interrupted"), Some(1)), "{shown}");
}

#[test]
fn sigterm_drains_the_worker_on_the_file_store() {
    sigterm_drains_the_worker(Store::Dir);
}

#[test]
fn sigterm_drains_the_worker_on_postgres() {
    sigterm_drains_the_worker(Store::postgres("workers_drain"));
}

const LIMITED: &str = r#"
name = "limited"
[[steps]]
name = "one"
run = "sleep 0.4"
[[steps]]
name = "two"
run = "sleep 0.4"
"#;

fn a_queue_limit_holds_across_workers(store: Store) {
    let sandbox = Sandbox::new();
    std::fs::create_dir(sandbox.path("work")).unwrap();
    let work = sandbox.path("work");
    let work = work.to_str().unwrap();
    let file = sandbox.write("limited.toml", LIMITED);
    submit_many(&store, &sandbox, file.to_str().unwrap(), "lim", 6, "limited");
    let set = store.ok(&sandbox, &["queue", "set", "limited", "--limit", "2"]);
    assert_eq!(set["limit"], 2);
    let worker = ["worker", "--queue", "limited", "--concurrency", "2", "--lease", LEASE, "--workdir", work];
    let workers: Vec<Child> = (0..3).map(|_| store.spawn(&sandbox, &worker)).collect();
    let (mut most, deadline) = (0, Instant::now() + Duration::from_secs(120));
    loop {
        let now = statuses(&store, &sandbox, "limited");
        let running = now.iter().filter(|s| *s == "running").count();
        most = most.max(running);
        assert!(running <= 2, "a limit of 2 never has more running: {now:?}");
        if now.iter().all(|s| s == "completed") {
            break;
        }
        assert!(Instant::now() < deadline, "the queue never finished: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(most, 2, "two plans ran at once");
    let listed = store.ok(&sandbox, &["queue", "list"]);
    assert_eq!(listed["queues"][0]["queue"], "limited");
    assert_eq!(listed["queues"][0]["limit"], 2);
    for worker in workers {
        send_signal(i64::from(worker.id()), "TERM");
        finish(worker).expect_code(0);
    }
}

#[test]
fn a_queue_limit_holds_across_workers_on_the_file_store() {
    a_queue_limit_holds_across_workers(Store::Dir);
}

#[test]
fn a_queue_limit_holds_across_workers_on_postgres() {
    a_queue_limit_holds_across_workers(Store::postgres("workers_limit"));
}

#[test]
fn the_dashboard_shows_each_plans_queue_and_the_worker_that_runs_it() {
    use super::ui_harness::UiServer;
    let sandbox = Sandbox::new();
    std::fs::create_dir(sandbox.path("work")).unwrap();
    let work = sandbox.path("work");
    let file = sandbox.write("stuck.toml", STUCK);
    let store = Store::Dir;
    submit_many(&store, &sandbox, file.to_str().unwrap(), "shown", 2, "shown");
    let server = UiServer::start(&sandbox, &[]);
    let (_, page) = server.get("/");
    assert!(page.contains("Queue · worker") && page.contains(">shown<"), "the list names each plan's queue");
    let (_, queued) = server.get("/plans/shown-00");
    assert!(queued.contains(">queued<") && queued.contains(r#"<th scope="row">queue</th><td>shown</td>"#), "{queued}");
    let args = ["worker", "--queue", "shown", "--grace", "1s", "--workdir", work.to_str().unwrap()];
    let worker = store.spawn(&sandbox, &args);
    wait_for_file(&sandbox.path("work/stuck-started"), "the first plan's step");
    let (_, listed) = server.get_json("/api/v1/plans");
    let running =
        listed["plans"].as_array().unwrap().iter().find(|p| p["status"] == "running").cloned().expect("one runs");
    let runner = running["lease"]["runner"].as_str().expect("held by a worker's lease").to_owned();
    assert!(runner.starts_with("worker-"), "{runner}");
    assert_eq!(running["queue"], "shown");
    let (_, page) = server.get("/");
    assert!(page.contains(&format!(">shown</a> · {runner}")), "the list names the worker that runs the plan");
    let (_, shown) = server.get(&format!("/plans/{}", running["plan_id"].as_str().unwrap()));
    assert!(shown.contains(&format!("held by {runner} until")), "the plan page names its worker");
    let (_, queues) = server.get("/queues");
    assert!(queues.contains(&format!("{runner}: ")), "the queues page names the worker: {queues}");
    send_signal(i64::from(worker.id()), "TERM");
    // The stuck step outlasts the grace period.
    finish(worker).expect_code(0);
}

const FLAKY: &str = r#"
name = "flaky"
[[steps]]
name = "one"
run = "echo one >> effects.log"
[[steps]]
name = "two"
run = "[ -f fixed ] || exit 3; echo two >> effects.log"
"#;

#[test]
fn a_failed_plan_leaves_the_queue_and_plan_resume_runs_its_stored_definition() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("flaky.toml", FLAKY);
    let store = Store::Dir;
    submit_many(&store, &sandbox, file.to_str().unwrap(), "flaky", 1, "flaky");
    // The file is gone: the store holds the definition.
    std::fs::remove_file(&file).unwrap();
    let run = store.run(&sandbox, &["worker", "--queue", "flaky", "--once"]);
    run.expect_code(0);
    let finished = lines(&run).into_iter().find(|l| l["event"] == "finished").expect("a finish line");
    assert_eq!(finished["outcome"], "failed");
    assert_eq!(statuses(&store, &sandbox, "flaky"), ["failed"]);
    let again = store.run(&sandbox, &["worker", "--queue", "flaky", "--once"]);
    assert!(lines(&again).iter().all(|l| l["event"] != "claimed"), "a failed plan is not claimed again");
    sandbox.write("fixed", "");
    let resumed = store.run(&sandbox, &["plan", "resume", "flaky-00"]);
    resumed.expect_code(0);
    assert_eq!(resumed.json()["summary"]["status"], "completed", "{}", resumed.stdout);
    assert_eq!(sandbox.read("effects.log"), "one\ntwo\n", "step 1 once; step 2 ran in the foreground");
}
