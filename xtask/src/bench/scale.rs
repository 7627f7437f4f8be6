//! The million-plan figures (issue 25, goal 2): a whole `plan list` of every plan, and a replay,
//! over a store of 1,000,000 plans against one of 100,000 built the same way (10,000 and 1,000
//! with `--quick`). The listing's time may grow with the plans (linear), its memory and replay's
//! may not (flat, bounded): each is a ratio of the two stores in the same run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{build_large_store, median, median_f64, millis, progress, replay_peak_memory, Figure, Sizes};

/// Plans in the large store of these figures, and in the small one (a tenth).
const FULL_PLANS: u32 = 1_000_000;
const QUICK_PLANS: u32 = 10_000;
/// Events a plan, about: nine for each filler (the long plan takes its own).
const EVENTS_PER_PLAN: u32 = 10;
/// Paired rounds of the listing (one small, one large, alternating): the figure is the median of
/// the pairs' ratios, so a machine that slows down between rounds slows both sides of a pair.
const ROUNDS: usize = 5;
/// How often the listing's memory is read while it runs.
const POLL: Duration = Duration::from_millis(2);

/// The three figures: listing time, listing memory and replay memory, large vs small store.
pub fn figures(waypoint: &Path, scratch: &Path, sizes: Sizes, quick: bool) -> Result<[Figure; 3], String> {
    let large_plans = if quick { QUICK_PLANS } else { FULL_PLANS };
    let small_plans = large_plans / 10;
    let store = |plans: u32| -> Result<std::path::PathBuf, String> {
        progress(&format!("building a store of {plans} plans"));
        let dir = scratch.join(format!("scale-{plans}"));
        let sizes = Sizes {
            large_plans: plans,
            resumable_plans: sizes.resumable_plans.min(plans / 10),
            large_events: plans * EVENTS_PER_PLAN,
            long_plan_events: sizes.long_plan_events.min(plans),
            ..sizes
        };
        build_large_store(&dir, sizes)?;
        Ok(dir)
    };
    let (small, large) = (store(small_plans)?, store(large_plans)?);
    // Both stores were just written: let the kernel write them back before anything is timed.
    Command::new("sync").status().map_err(|e| format!("cannot run sync: {e}"))?;

    progress("measuring plan list of every plan at both sizes");
    let (mut small_runs, mut large_runs) = (Vec::new(), Vec::new());
    // A first round warms the page cache and is not counted.
    for round in 0..=ROUNDS {
        let pair = (list_all(waypoint, &small)?, list_all(waypoint, &large)?);
        if round > 0 {
            small_runs.push(pair.0);
            large_runs.push(pair.1);
        }
    }
    let time = |runs: &[(Duration, u64)]| median(runs.iter().map(|r| r.0).collect());
    let peak = |runs: &[(Duration, u64)]| runs.iter().map(|r| r.1).max().unwrap_or(0) as f64 / 1024.0;
    let (small_time, large_time) = (time(&small_runs), time(&large_runs));
    let (small_peak, large_peak) = (peak(&small_runs), peak(&large_runs));
    let plan_ratio = f64::from(large_plans) / f64::from(small_plans);
    let time_ratio =
        median_f64(small_runs.iter().zip(&large_runs).map(|(s, l)| l.0.as_secs_f64() / s.0.as_secs_f64()).collect());
    let memory_ratio = large_peak / small_peak;

    let replay_small = replay_peak_memory(&small)?.measured;
    let replay_large = replay_peak_memory(&large)?.measured;
    let replay_ratio = replay_large / replay_small;
    let stores = format!("{large_plans} plans vs {small_plans}, about {EVENTS_PER_PLAN} events a plan");
    Ok([
        Figure {
            name: "list all, 10x the plans, time",
            measured: millis(large_time),
            baseline: Some(millis(small_time)),
            unit: "ms",
            value: time_ratio,
            goal: "<= 10 (linear)",
            met: time_ratio <= plan_ratio,
            how: format!(
                "whole `waypoint plan list --format json` process, {stores}, {ROUNDS} paired runs after a warm-up \
                 pair: the median times, and the median of the pairs' ratios as the value"
            ),
        },
        Figure {
            name: "list all, 10x the plans, memory",
            measured: large_peak,
            baseline: Some(small_peak),
            unit: "MiB",
            value: memory_ratio,
            goal: "<= 1.5 (flat)",
            met: memory_ratio <= 1.5,
            how: format!(
                "peak resident memory (VmHWM, read every {} ms while it runs) of the same processes, the most of \
                 {ROUNDS} runs, {stores}",
                POLL.as_millis()
            ),
        },
        Figure {
            name: "replay, 10x the plans, memory",
            measured: replay_large,
            baseline: Some(replay_small),
            unit: "MiB",
            value: replay_ratio,
            goal: "<= 1.5 (bounded)",
            met: replay_ratio <= 1.5,
            how: format!("VmHWM of `xtask replay`, {stores}"),
        },
    ])
}

/// Wall time and peak resident memory (KiB) of one `waypoint plan list --format json` of every
/// plan, its output thrown away. The peak is the process's own high-water mark (VmHWM), read from
/// /proc while it runs: the last reading before it exits.
fn list_all(waypoint: &Path, store: &Path) -> Result<(Duration, u64), String> {
    let started = Instant::now();
    let mut child = Command::new(waypoint)
        .arg("--store")
        .arg(store)
        .args(["--format", "json", "plan", "list"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", waypoint.display()))?;
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        // Gone between the two calls, or not yet mapped: the next reading or the last one counts.
        if let Some(kib) = crate::proc_status::kib(Some(child.id()), "VmHWM") {
            peak = peak.max(kib);
        }
        std::thread::sleep(POLL);
    };
    let elapsed = started.elapsed();
    if !status.success() {
        return Err(format!("waypoint plan list over {} failed: {status}", store.display()));
    }
    if peak == 0 {
        return Err(format!("no reading of the memory of waypoint plan list over {}", store.display()));
    }
    Ok((elapsed, peak))
}
