//! Shared by the process-level store tests: spawning `store-append-child`, collecting the events
//! it acknowledged, and checking a store against them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};

use waypoint_application::domain::{EventId, PlanId};
use waypoint_store_file::FileStore;

/// One acknowledged append, as the child reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub plan: String,
    pub version: u32,
    pub event_id: String,
}

/// A running child and the lines of its stdout.
pub struct ChildProcess {
    pub child: Child,
    pub lines: Receiver<String>,
}

pub fn spawn(args: &[&str]) -> ChildProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-append-child"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    ChildProcess { child, lines }
}

impl ChildProcess {
    /// Waits for the child's `ready` line.
    pub fn wait_ready(&self) {
        let line = self.lines.recv().expect("the child says ready before exiting");
        assert_eq!(line, "ready");
    }

    /// SIGKILL, then every whole line it printed.
    pub fn kill_and_collect_lines(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines.iter().collect()
    }

    /// SIGKILL, then every acknowledgement it managed to print. A line cut by the kill is not
    /// newline-terminated, so `lines()` drops or mangles it; only whole `ack` lines count.
    pub fn kill_and_collect(mut self) -> Vec<Ack> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines.iter().filter_map(|line| parse_ack(&line)).collect()
    }

    /// Waits for a normal exit and returns the acknowledgements.
    pub fn finish(mut self) -> Vec<Ack> {
        let status = self.child.wait().expect("the child runs");
        assert!(status.success(), "the child failed: {status}");
        self.lines.iter().filter_map(|line| parse_ack(&line)).collect()
    }
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ack"), Some(plan), Some(version), Some(event_id), None) => {
            Some(Ack { plan: plan.into(), version: version.parse().ok()?, event_id: event_id.into() })
        }
        _ => None,
    }
}

/// Every acknowledged event is in the store exactly once, at the version it was acknowledged
/// with; positions and each plan's versions have no gap. Opens the store (recovering it) first.
pub fn check_store(dir: &Path, acks: &[Ack]) {
    let store = FileStore::open(dir).expect("the store opens with no manual step");
    let all: Vec<_> = store.read_all(1).unwrap().map(|e| e.expect("every record reads back")).collect();
    let positions: Vec<u32> = all.iter().map(|e| e.sequence_number()).collect();
    assert_eq!(positions, (1..=all.len() as u32).collect::<Vec<_>>(), "global positions have no gap");
    let mut count: HashMap<EventId, usize> = HashMap::new();
    for event in &all {
        *count.entry(event.event_id).or_default() += 1;
    }
    let mut by_plan: HashMap<String, Vec<String>> = HashMap::new();
    for ack in acks {
        let plan = PlanId::parse(&ack.plan).unwrap();
        let events = by_plan
            .entry(ack.plan.clone())
            .or_insert_with(|| store.read_plan(&plan, 1).unwrap().iter().map(|e| e.event_id.to_string()).collect());
        assert_eq!(
            events.get(ack.version as usize - 1),
            Some(&ack.event_id),
            "acknowledged event {} of plan {} version {} is in place",
            ack.event_id,
            ack.plan,
            ack.version
        );
    }
    assert!(count.values().all(|&n| n == 1), "no event is stored twice");
    for (plan, events) in &by_plan {
        let stored = store.read_plan(&PlanId::parse(plan).unwrap(), 1).unwrap();
        let versions: Vec<u32> = stored.iter().map(eventually::versioning::Versioned::version).collect();
        assert_eq!(versions, (1..=events.len() as u32).collect::<Vec<_>>(), "plan {plan}'s versions have no gap");
    }
}

/// A small deterministic generator: the kill moments vary, and a seed reproduces them.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Copies the directory tree at `from` to `to`, leaving out files named `leave_out`.
pub fn copy_dir(from: &Path, to: &Path, leave_out: &str) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target, leave_out);
        } else if entry.file_name() != leave_out {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
