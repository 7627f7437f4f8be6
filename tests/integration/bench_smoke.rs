//! `cargo xtask bench --quick` as a smoke test: every figure is produced, with a baseline where
//! the figure is a ratio. Nothing here asserts a speed; the full run reports those.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::cli_harness::{built_binary, Run};

#[test]
fn quick_bench_produces_every_figure() {
    let xtask = built_binary("xtask", "xtask");
    let output = Command::new(xtask)
        .args(["bench", "--quick", "--format", "json"])
        .stdin(Stdio::null())
        .output()
        .expect("xtask runs");
    let run = Run::from_output(output);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["quick"], true);
    let figures = report["figures"].as_array().expect("a list of figures");
    let names: Vec<&str> = figures.iter().map(|f| f["name"].as_str().expect("a name")).collect();
    // Every figure, PostgreSQL's included: the test command always has a server (`cargo xtask
    // test` starts one), and a figure left out is a failure, never a skip.
    assert_eq!(
        names,
        [
            "replay throughput",
            "replay peak memory",
            "resume --dry-run, long vs short plan",
            "open + load one plan, peak memory",
            "list --resumable, absolute",
            "list --resumable, growth",
            "list --resumable in the large store",
            "list --resumable, large vs listing store",
            "list all, large store vs listing store",
            "plan create, large vs one-plan store",
            "plan step-started, large vs one-plan",
            "plan checkpoint, large vs one-plan",
            "plan interrupt, large vs one-plan",
            "plan show, large vs one-plan",
            "plan resume --dry-run, large vs one",
            "plan resume, large vs one-plan",
            "plan history, large vs one-plan",
            "ui page of 50 vs plan list of 50",
            "ui memory while serving pages",
            "plan show, a checkpoint due",
            "resume --dry-run, a checkpoint due",
            "durable append latency",
            "16 writers vs one, throughput",
            "run, overhead per step",
            "run, per step of a long plan file",
            "plan show, long plan-file plan",
            "run, per step traced vs untraced",
            "workers 2 vs 1, PostgreSQL, plans/s",
            "workers 4 vs 1, PostgreSQL, plans/s",
            "workers 2 vs 1, file store, plans/s",
            "workers 4 vs 1, file store, plans/s",
            "queue poll, index vs catalog filter",
            "list all, 10x the plans, time",
            "list all, 10x the plans, memory",
            "replay, 10x the plans, memory",
            "compacted store size vs before",
            "plan show, compacted vs before",
            "resume --dry-run, compacted vs before",
            "compaction vs bulk write, events/s",
            "pg durable append vs bare commit",
            "pg workflow step vs bare commit",
            "pg 16 writers vs one, throughput",
        ]
    );
    for figure in figures {
        for key in ["measured", "value"] {
            let n = figure[key].as_f64().unwrap_or(f64::NAN);
            assert!(n.is_finite() && n > 0.0, "{key} of {figure}");
        }
        assert!(figure["goal"].as_str().is_some_and(|g| !g.is_empty()), "{figure}");
        assert!(figure["met"].is_boolean(), "{figure}");
        let ratio = figure["baseline"] != Value::Null;
        assert_eq!(
            ratio,
            !figure["goal"].as_str().unwrap().contains(" MiB") && !figure["goal"].as_str().unwrap().contains(" ms"),
            "{figure}"
        );
    }
}
