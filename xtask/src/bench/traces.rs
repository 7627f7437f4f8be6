//! What tracing costs a plan-file step: the same plan of `true` steps run untraced and traced
//! (spans exported over OTLP/HTTP to a local sink that answers every request at once), paired
//! round by round so that the machine's drift hits both sides alike.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{median, median_f64, millis, progress, Figure};

/// At most this many rounds of the pair (untraced, traced).
pub const MAX_ROUNDS: usize = 11;

/// The traced run's time over the untraced one's, median of `rounds` paired rounds.
pub fn trace_overhead(waypoint: &Path, dir: &Path, steps: u32, rounds: usize) -> Result<Figure, String> {
    progress("measuring what tracing costs a step");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut plan = String::from("name = \"traced\"\n");
    for n in 1..=steps {
        plan.push_str(&format!("[[steps]]\nname = \"step {n}\"\nrun = \"true\"\n"));
    }
    let plan_path = dir.join("plan.toml");
    std::fs::write(&plan_path, plan).map_err(|e| format!("cannot write {}: {e}", plan_path.display()))?;
    let sink = Sink::start()?;
    let (mut traced, mut untraced, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let untraced_run = || run_plan(waypoint, &plan_path, &dir.join(format!("untraced-{round}")), None);
        let traced_run = || run_plan(waypoint, &plan_path, &dir.join(format!("traced-{round}")), Some(&sink.endpoint));
        // Each side goes first every other round, so that a machine speeding up or slowing down
        // during a round favours neither.
        let (plain, with_spans) = if round % 2 == 0 {
            let plain = untraced_run()?;
            (plain, traced_run()?)
        } else {
            let with_spans = traced_run()?;
            (untraced_run()?, with_spans)
        };
        ratios.push(with_spans.as_secs_f64() / plain.as_secs_f64());
        traced.push(with_spans);
        untraced.push(plain);
    }
    let ratio = median_f64(ratios);
    let (traced, untraced) = (median(traced), median(untraced));
    Ok(Figure {
        name: "run, per step traced vs untraced",
        measured: millis(traced / steps),
        baseline: Some(millis(untraced / steps)),
        unit: "ms",
        value: ratio,
        goal: "<= 1.05",
        met: ratio <= 1.05,
        how: format!(
            "`waypoint run` of {steps} `true` steps with OTEL_EXPORTER_OTLP_ENDPOINT set (spans exported to a local \
             OTLP/HTTP sink, flushed at exit) against the same run untraced, per step; the median of {rounds} \
             paired rounds' ratios, each side first every other round"
        ),
    })
}

/// One `waypoint run` of `plan` on a fresh store, traced to `endpoint` when given.
fn run_plan(waypoint: &Path, plan: &Path, store: &Path, endpoint: Option<&str>) -> Result<Duration, String> {
    let mut command = Command::new(waypoint);
    command
        .arg("--store")
        .arg(store)
        .args(["--format", "json", "run"])
        .arg(plan)
        .env("NO_COLOR", "1")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SDK_DISABLED")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match endpoint {
        Some(endpoint) => command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        None => command.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT"),
    };
    let started = Instant::now();
    let output = command.output().map_err(|e| e.to_string())?;
    let took = started.elapsed();
    if !output.status.success() {
        return Err(format!("waypoint run failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    if endpoint.is_some() && String::from_utf8_lossy(&output.stderr).contains("warning") {
        return Err(format!("the traced run could not export: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(took)
}

/// An OTLP/HTTP endpoint that reads each request and answers 200 with an empty body, which
/// both protocols accept as a full success. Its thread ends with the bench.
struct Sink {
    endpoint: String,
}

impl Sink {
    fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot listen on loopback: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || answer_all(stream));
            }
        });
        Ok(Sink { endpoint: format!("http://{addr}") })
    }
}

fn answer_all(stream: TcpStream) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err()
            || writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_err()
        {
            return;
        }
    }
}
