//! The dashboard's cost figures: one page of 50 plans from `waypoint ui` over the large store
//! (a warm server, one `GET /api/v1/plans?limit=50` each) against a whole `waypoint plan list`
//! process over a store of 50 plans, and the server's memory while it serves those pages.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{build_list_store, median, millis, progress, time_once, Figure, Sizes};

/// Plans on one page, and in the store `plan list` is timed on.
const PAGE: u32 = 50;

/// The page-of-50 figure and the memory figure.
pub fn page_of_50(waypoint: &Path, large: &Path, scratch: &Path, sizes: Sizes) -> Result<[Figure; 2], String> {
    progress("measuring a dashboard page of 50 plans");
    let fifty = scratch.join("list-50");
    build_list_store(&fifty, PAGE)?;
    let fifty_arg = fifty.display().to_string();
    let list_args = ["--store", fifty_arg.as_str(), "--format", "json", "plan", "list"];
    // The large store was just written: let the kernel write it back before anything is timed,
    // so that neither side pays for another's dirty pages.
    Command::new("sync").status().map_err(|e| format!("cannot run sync: {e}"))?;

    let server = Server::start(waypoint, large)?;
    let path = format!("/api/v1/plans?limit={PAGE}");
    // The first pages warm the server (and the store's caches, as plan list's first run does):
    // the runtime starts its blocking threads, and the allocator its arenas, as requests meet
    // the poller, so memory is compared from there on.
    let first = server.get(&path)?;
    let listed = first.matches("\"plan_id\"").count();
    if listed != PAGE as usize {
        return Err(format!("GET {path} listed {listed} plans, expected {PAGE}"));
    }
    time_once(waypoint, &list_args)?;
    for _ in 1..sizes.runs {
        server.get(&path)?;
    }
    let rss_before = server.rss_kib()?;
    // Paired rounds, one page and one whole `plan list` process each, so that the machine's
    // drift during the measurement reaches both sides alike.
    let (mut pages, mut lists) = (Vec::with_capacity(sizes.runs), Vec::with_capacity(sizes.runs));
    for _ in 0..sizes.runs {
        let started = Instant::now();
        server.get(&path)?;
        pages.push(started.elapsed());
        lists.push(time_once(waypoint, &list_args)?);
    }
    let (page, baseline) = (median(pages), median(lists));
    for _ in 0..sizes.runs {
        server.get(&path)?;
    }
    let rss_after = server.rss_kib()?;
    let ratio = page.as_secs_f64() / baseline.as_secs_f64();
    let growth = rss_after as f64 / rss_before.max(1) as f64;
    Ok([
        Figure {
            name: "ui page of 50 vs plan list of 50",
            measured: millis(page),
            baseline: Some(millis(baseline)),
            unit: "ms",
            value: ratio,
            goal: "<= 1.0 (ui.md: a page costs what plan list of 50 costs)",
            met: ratio <= 1.0,
            how: format!(
                "GET /api/v1/plans?limit={PAGE} from a warm `waypoint ui --read-only` over the large store ({} plans) vs a whole `waypoint plan list --format json` process over a store of {PAGE} plans, medians of {} paired rounds after a sync",
                sizes.large_plans, sizes.runs
            ),
        },
        Figure {
            name: "ui memory while serving pages",
            measured: rss_after as f64 / 1024.0,
            baseline: Some(rss_before as f64 / 1024.0),
            unit: "MiB",
            value: growth,
            goal: "<= 1.1 (flat: no per-plan memory kept)",
            met: growth <= 1.1,
            how: format!(
                "the server's resident memory after {} more pages vs after {} warm-up pages",
                2 * sizes.runs,
                sizes.runs
            ),
        },
    ])
}

/// A `waypoint ui` child, stopped when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(waypoint: &Path, store: &Path) -> Result<Self, String> {
        let mut child = Command::new(waypoint)
            .args([
                "--store",
                &store.display().to_string(),
                "--format",
                "json",
                "ui",
                "--listen",
                "127.0.0.1:0",
                "--read-only",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start waypoint ui: {e}"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("waypoint ui has no stdout")?;
        BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
        let printed: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("waypoint ui printed {line:?}: {e}"))?;
        let addr = printed["listen"].as_str().ok_or("waypoint ui printed no address")?.to_owned();
        let server = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(120);
        while server.get("/healthz").is_err() {
            if Instant::now() > deadline {
                return Err("waypoint ui never answered /healthz".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// One GET on a fresh connection; the body of a 200 answer.
    fn get(&self, path: &str) -> Result<String, String> {
        let mut stream = TcpStream::connect(&self.addr).map_err(|e| e.to_string())?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr)
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
        if !answer.starts_with("HTTP/1.1 200") {
            return Err(format!("GET {path}: {}", answer.lines().next().unwrap_or("no answer")));
        }
        Ok(answer.split_once("\r\n\r\n").map_or(String::new(), |(_, body)| body.to_owned()))
    }

    /// The server's resident memory now (VmRSS), in KiB.
    fn rss_kib(&self) -> Result<u64, String> {
        crate::proc_status::kib(Some(self.child.id()), "VmRSS").ok_or_else(|| "no VmRSS in /proc".to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
