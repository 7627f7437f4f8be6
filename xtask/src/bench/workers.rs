//! Workers (ADR 0017): how many plans per second 1, 2 and 4 `waypoint worker --once` processes
//! run from one queue, on a throwaway PostgreSQL and on the file store, with 2 and 4 as ratios to
//! 1 measured in the same run; and what a worker's poll of a small queue costs beside many open
//! plans of other queues, the file store's claim index against the port's default filter of the
//! open catalog.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use eventually::store::Expected;
use waypoint_application::domain::{
    Artifact, PlanEvent, PlanId, PlanName, PlanSubmitted, QueueName, SubmittedDefinition,
};
use waypoint_application::{in_queue, PlanResumeService, PlanView, RunDefinition, Submit};
use waypoint_store_file::{AppendRequest, FileStore};
use waypoint_store_postgres::testing::{find_server_binaries, TestCluster};

use super::{median, median_f64, millis, progress, recorded, Figure};

/// Steps of `true` in each submitted plan.
const STEPS: u32 = 5;
/// Worker processes of each round, the first the baseline.
const WORKERS: [u32; 3] = [1, 2, 4];

/// Plans submitted for each run, and rounds of runs: 100 plans and 3 rounds, or 10 plans and
/// one round for `--quick`.
fn sizes(quick: bool) -> (u32, u32) {
    if quick {
        (10, 1)
    } else {
        (100, 3)
    }
}

/// Every workers figure. The PostgreSQL ones need the server's binaries: without them, `require`
/// (`--only workers`) fails, and the full run says why they were not measured and goes on.
pub fn figures(waypoint: &Path, dir: &Path, quick: bool, require: bool) -> Result<Vec<Figure>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let plan = dir.join("plan.toml");
    let mut text = String::from("name = \"bench\"\n");
    for n in 1..=STEPS {
        text.push_str(&format!("[[steps]]\nname = \"step {n}\"\nrun = \"true\"\n"));
    }
    std::fs::write(&plan, text).map_err(|e| format!("cannot write {}: {e}", plan.display()))?;
    let sizes = sizes(quick);
    let mut figures = Vec::new();
    match postgres_stores() {
        Ok((cluster, bin)) => {
            progress(&format!("measuring workers on PostgreSQL ({})", cluster.version()));
            let store = |run: u32| -> Result<String, String> {
                let name = format!("bench_workers_{run}");
                let output = Command::new(bin.join("createdb"))
                    .args(["-h", "127.0.0.1", "-p", &cluster.port().to_string(), "-U", "postgres", &name])
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", bin.join("createdb").display()))?;
                if !output.status.success() {
                    return Err(format!("createdb {name}: {}", String::from_utf8_lossy(&output.stderr).trim()));
                }
                Ok(format!("postgresql://postgres@127.0.0.1:{}/{name}", cluster.port()))
            };
            figures.extend(throughput(waypoint, dir, &plan, sizes, "PostgreSQL", &store)?);
        }
        Err(why) if require => return Err(format!("workers on PostgreSQL: {why}")),
        Err(why) => progress(&format!("workers on PostgreSQL not measured: {why}")),
    }
    progress("measuring workers on the file store");
    let files = dir.join("file");
    let store = |run: u32| -> Result<String, String> { Ok(files.join(format!("store-{run}")).display().to_string()) };
    figures.extend(throughput(waypoint, dir, &plan, sizes, "the file store", &store)?);
    progress("measuring a queue's poll beside other queues' plans");
    figures.push(poll_cost(&dir.join("poll"), if quick { 1_000 } else { 10_000 }, if quick { 5 } else { 15 })?);
    Ok(figures)
}

/// A throwaway server and its binaries' directory.
fn postgres_stores() -> Result<(TestCluster, PathBuf), String> {
    let bin = find_server_binaries().map_err(|e| e.to_string())?;
    let cluster =
        TestCluster::start(&bin).map_err(|e| format!("cannot start a throwaway server with {}: {e}", bin.display()))?;
    Ok((cluster, bin))
}

/// `rounds` rounds, each of one run per worker count (1, 2, 4, and the other way round every
/// other round, so that a machine speeding up or slowing down favours neither side), each run on
/// a fresh store from `store(run)`. A figure is the median of the rounds' ratios to one worker.
fn throughput(
    waypoint: &Path,
    dir: &Path,
    plan: &Path,
    (plans, rounds): (u32, u32),
    store_name: &'static str,
    store: &dyn Fn(u32) -> Result<String, String>,
) -> Result<Vec<Figure>, String> {
    // rates[round][i]: plans per second of WORKERS[i] workers in that round.
    let mut rates = Vec::new();
    for round in 0..rounds {
        let mut rate = [0.0; WORKERS.len()];
        let mut order: Vec<usize> = (0..WORKERS.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let location = store(round * WORKERS.len() as u32 + i as u32)?;
            rate[i] = run_plans(waypoint, dir, plan, plans, &location, WORKERS[i], store_name)?;
            progress(&format!("{} worker(s) on {store_name}: {:.1} plans/s", WORKERS[i], rate[i]));
        }
        rates.push(rate);
    }
    let figure = |name: &'static str, i: usize, goal: f64| {
        let ratio = median_f64(rates.iter().map(|r| r[i] / r[0]).collect());
        Figure {
            name,
            measured: median_f64(rates.iter().map(|r| r[i]).collect()),
            baseline: Some(median_f64(rates.iter().map(|r| r[0]).collect())),
            unit: "plans/s",
            value: ratio,
            goal: if goal >= 2.0 { ">= 2" } else { ">= 1.5" },
            met: ratio >= goal,
            how: format!(
                "{plans} submitted plans of {STEPS} `true` steps each run by {} `waypoint worker --once` processes \
                 at once vs by one, on {store_name}, each run on a fresh store, timed from the first worker's start \
                 to the last one's exit; medians of {rounds} rounds (the ratio: of each round's own), {} cores",
                WORKERS[i],
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
        }
    };
    let (two, four) = match store_name {
        "PostgreSQL" => ("workers 2 vs 1, PostgreSQL, plans/s", "workers 4 vs 1, PostgreSQL, plans/s"),
        _ => ("workers 2 vs 1, file store, plans/s", "workers 4 vs 1, file store, plans/s"),
    };
    Ok(vec![figure(two, 1, 1.5), figure(four, 2, 2.0)])
}

/// Submits `plans` plans to the store at `location`, then runs `workers` `worker --once`
/// processes at once until each exits, checks that every plan completed, and answers the plans
/// per second from the first worker's start to the last one's exit.
fn run_plans(
    waypoint: &Path,
    dir: &Path,
    plan: &Path,
    plans: u32,
    location: &str,
    workers: u32,
    store_name: &str,
) -> Result<f64, String> {
    for n in 0..plans {
        let key = format!("plan-{n}");
        waypoint_ok(waypoint, location, dir, &["submit".as_ref(), plan.as_os_str(), "--key".as_ref(), key.as_ref()])?;
    }
    let started = Instant::now();
    let children: Vec<_> = (0..workers)
        .map(|_| {
            Command::new(waypoint)
                .args(["--store", location, "worker", "--once", "--workdir"])
                .arg(dir)
                .current_dir(dir)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start a worker: {e}"))
        })
        .collect::<Result<_, _>>()?;
    for child in children {
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!("a worker failed: {}", String::from_utf8_lossy(&output.stderr)));
        }
    }
    let took = started.elapsed();
    let completed = completed_plans(waypoint, location, dir)?;
    if completed != plans {
        return Err(format!("{workers} workers on {store_name} completed {completed} of {plans} plans"));
    }
    Ok(f64::from(plans) / took.as_secs_f64())
}

/// Runs `waypoint --store location ARGS` in `dir`; an error with its stderr when it fails.
fn waypoint_ok(waypoint: &Path, location: &str, dir: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, String> {
    let output = Command::new(waypoint)
        .args(["--store", location, "--format", "json"])
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run waypoint: {e}"))?;
    if !output.status.success() {
        return Err(format!("waypoint {args:?} failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(output.stdout)
}

/// How many plans of the store at `location` completed.
fn completed_plans(waypoint: &Path, location: &str, dir: &Path) -> Result<u32, String> {
    let listed = waypoint_ok(waypoint, location, dir, &["plan".as_ref(), "list".as_ref()])?;
    let listed: serde_json::Value = serde_json::from_slice(&listed).map_err(|e| format!("plan list: {e}"))?;
    let plans = listed["plans"].as_array().ok_or("plan list printed no plans")?;
    Ok(plans.iter().filter(|p| p["status"] == "completed").count() as u32)
}

/// The time of one poll of a queue of 10 plans in a file store that also holds `others` open
/// plans (half of them submitted to another queue, half never submitted): the store's claim
/// index (`PlanStore::queue_plans`, warm, as a polling worker has it) vs the port's default, the
/// open catalog filtered by queue; medians of `runs` calls each, in one process.
fn poll_cost(dir: &Path, others: u32, runs: usize) -> Result<Figure, String> {
    let store = FileStore::open(dir).map_err(|e| e.to_string())?;
    let other = QueueName::parse("other").expect("valid");
    let requests: Vec<AppendRequest> = (0..others)
        .map(|n| {
            let mut events = vec![super::plan_event(1, None)];
            if n % 2 == 0 {
                events.push(recorded(PlanEvent::PlanSubmitted(PlanSubmitted {
                    queue: other.clone(),
                    definition: definition(&format!("other-{n}")),
                    workdir: None,
                    at: Utc::now(),
                })));
            }
            let plan_id = PlanId::parse(&format!("other-{n}")).expect("valid");
            AppendRequest { plan_id, expected: Expected::Exact(0), events }
        })
        .collect();
    super::append_all(&store, requests)?;
    let small = QueueName::parse("small").expect("valid");
    let service = PlanResumeService::new(store.clone());
    for n in 0..10 {
        let name = format!("small-{n}");
        let definition_of_run = RunDefinition::unnamed_steps(
            PlanName::parse(&name).expect("valid"),
            Artifact::parse(&format!("submitted:{name}.toml")).expect("valid"),
        );
        let submit = Submit {
            plan_id: PlanId::parse(&name).expect("valid"),
            definition: definition_of_run,
            submitted: definition(&name),
            queue: small.clone(),
            workdir: None,
        };
        futures::executor::block_on(service.submit(submit)).map_err(|e| e.to_string())?;
    }
    store.checkpoint().map_err(|e| e.to_string())?;

    let index = || store.queue_views(&small).map_err(|e| e.to_string());
    let filter = || -> Result<Vec<PlanView>, String> {
        // The port's default `queue_plans`, as it was the file store's before its index.
        let mut views = store.open_plans().map_err(|e| e.to_string())?;
        views.retain(|view| in_queue(&view.state) == Some(&small));
        views.sort_by(|a, b| {
            let key = |v: &PlanView| (v.state.submission.as_ref().map(|s| s.at), v.plan_id.clone());
            key(a).cmp(&key(b))
        });
        Ok(views)
    };
    if index()? != filter()? || index()?.len() != 10 {
        return Err("the claim index and the filtered catalog disagree".into());
    }
    let (mut with_index, mut filtered) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        index()?;
        with_index.push(started.elapsed());
        let started = Instant::now();
        filter()?;
        filtered.push(started.elapsed());
    }
    let (with_index, filtered): (Duration, Duration) = (median(with_index), median(filtered));
    let ratio = with_index.as_secs_f64() / filtered.as_secs_f64();
    Ok(Figure {
        name: "queue poll, index vs catalog filter",
        measured: millis(with_index),
        baseline: Some(millis(filtered)),
        unit: "ms",
        value: ratio,
        goal: "<= 0.05",
        met: ratio <= 0.05,
        how: format!(
            "one poll of a queue of 10 plans in a file store that also holds {others} open plans (half submitted to \
             another queue): the store's claim index, warm as a polling worker has it, vs the port's default filter \
             of the open catalog; medians of {runs} calls each, alternating"
        ),
    })
}

fn definition(name: &str) -> SubmittedDefinition {
    SubmittedDefinition::new("plan_file", format!("name = {name:?}"), format!("{name}.toml"))
        .expect("a small definition")
}
