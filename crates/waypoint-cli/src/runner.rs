//! The plan-file runner: runs steps in order as `sh -c`, each in its own process group, recording
//! `StepStarted` before and a checkpoint after each one; passes SIGINT/SIGTERM on to the step.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use rustix::process::{kill_process_group, Pid, Signal};
use serde_json::{json, Value};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use waypoint_application::{StepCheckpoint, StepStart};
use waypoint_domain::{Artifact, DecisionId, Message, PlanId, StepNumber};

use crate::error::{exit, one_line, CliError};
use crate::outputs::digest_outputs;
use crate::plan_file::{PlanFile, Step};
use crate::progress::{Progress, StepEnd};
use crate::sidecar::Sidecar;
use crate::store::Service;
use crate::supervise::{self, read_report, ShellEnd};

/// How often the progress display redraws while a step runs (its clock and spinner move).
const TICK: Duration = Duration::from_millis(100);
/// How long to wait, after a step exits, for output still buffered in its pipes. Output held open
/// by a process the step left behind must not keep the runner forever.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// How much of a failed step's stderr goes into the plan's error.
const TAIL_LINES: usize = 20;
const TAIL_CHARS: usize = 2000;

/// What the runner waits for while a step runs: a signal, or a step's process exiting.
#[derive(Debug)]
enum Event {
    Signal(i32),
    Exited { step: u32, end: StepExit },
}

/// How a step's shell ended, once its supervisor is gone (and with it every process of the step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepExit {
    Code(i32),
    Signal(i32),
    /// The step could not be run or watched: the text says why.
    Lost(String),
}

impl StepExit {
    fn success(&self) -> bool {
        *self == StepExit::Code(0)
    }

    fn from_supervisor(report: Option<ShellEnd>, status: std::io::Result<ExitStatus>) -> Self {
        match report {
            Some(ShellEnd::Exited(code)) => StepExit::Code(code),
            Some(ShellEnd::Signalled(signal)) => StepExit::Signal(signal),
            Some(ShellEnd::Failed(text)) => StepExit::Lost(text),
            // Killed with its step (a second Ctrl-C, a timeout's SIGKILL) before it could report.
            None => match status.ok().and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)) {
                Some(signal) => StepExit::Signal(signal),
                None => StepExit::Lost("its supervisor ended without saying how the step ended".into()),
            },
        }
    }
}

/// SIGINT and SIGTERM, handled by the runner instead of ending it, arrive here as events, next to
/// the exits of the steps' processes: the runner reacts to either at once, without polling.
#[derive(Debug)]
pub struct Events {
    sender: Sender<Event>,
    receiver: Receiver<Event>,
}

/// Starts watching for SIGINT and SIGTERM. Call it before the plan is touched, so that a signal
/// never finds the plan half-recorded.
pub fn watch_signals() -> Result<Events, CliError> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| CliError::unexpected(format!("cannot watch for signals: {e}")))?;
    let (sender, receiver) = mpsc::channel();
    let signal_sender = sender.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal_sender.send(Event::Signal(signal)).is_err() {
                break;
            }
        }
    });
    Ok(Events { sender, receiver })
}

/// What became of one step of the plan file in this run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    pub step: u32,
    pub name: String,
    pub status: &'static str,
    pub decision_id: Option<DecisionId>,
    pub snapshot_id: Option<String>,
}

pub struct Runner<'a> {
    pub service: &'a Service,
    pub sidecar: &'a Sidecar,
    pub plan_id: &'a PlanId,
    pub file: &'a PlanFile,
    pub progress: Arc<Progress>,
    pub events: &'a Events,
}

/// How waiting for a step's process ended.
struct Waited {
    /// `None` when a second signal stopped the wait.
    status: Option<StepExit>,
    /// The first signal received while the step ran.
    signal: Option<i32>,
}

impl Runner<'_> {
    /// Runs the steps from `from` to the end and completes the phase. Steps before `from` are
    /// reported as skipped. The caller holds the run lock and has moved the plan to processing.
    pub fn run_from(&mut self, from: StepNumber) -> Result<Vec<StepReport>, CliError> {
        let mut reports = Vec::with_capacity(self.file.steps.len());
        for (index, step) in self.file.steps.iter().enumerate() {
            let n = index as u32 + 1;
            if n < from.get() {
                self.progress.skipped(n, &step.name);
                reports.push(StepReport {
                    step: n,
                    name: step.name.clone(),
                    status: "skipped",
                    decision_id: None,
                    snapshot_id: None,
                });
                continue;
            }
            if let Some(signal) = self.signal_received() {
                return Err(self.interrupted(signal, n, &format!("{} received before step {n}", signal_name(signal))));
            }
            reports.push(self.run_step(n, step)?);
        }
        block_on(self.service.complete_phase(self.plan_id))?;
        Ok(reports)
    }

    fn run_step(&mut self, n: u32, step: &Step) -> Result<StepReport, CliError> {
        let number = StepNumber::new(n).expect("steps count from 1");
        let decision_id = new_decision_id(n);
        block_on(self.service.record_step_started(self.plan_id, StepStart::new(number, decision_id.clone())))?;
        self.progress.started(n, &step.name);

        let lock = self.sidecar.attempt_lock(self.plan_id);
        let supervisor = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => {
                return Err(CliError::unexpected(format!("cannot find the waypoint binary to supervise steps: {e}")))
            }
        };
        self.sidecar
            .prepare(self.plan_id)
            .map_err(|e| CliError::unexpected(format!("cannot create the plan's run folder beside the store: {e}")))?;
        // The lifeline: the supervisor stops the step when the runner's end of it closes.
        let (lifeline, supervisor_end) = UnixStream::pair()
            .map_err(|e| CliError::unexpected(format!("cannot create the step supervisor's socket: {e}")))?;
        let mut command = Command::new(supervisor);
        command
            .arg(supervise::ARG)
            .arg(&lock)
            .arg("--")
            .arg("sh")
            .arg("-c")
            .arg(&step.run)
            .current_dir(&self.file.workdir)
            .envs(&self.file.env)
            .env("WAYPOINT_PLAN_ID", self.plan_id.as_str())
            .env("WAYPOINT_STEP", n.to_string())
            .env("WAYPOINT_STEP_NAME", &step.name)
            .env("WAYPOINT_DECISION_ID", decision_id.as_str())
            .stdin(Stdio::from(OwnedFd::from(supervisor_end)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group: a terminal's Ctrl-C reaches only Waypoint, which passes it on to
        // the whole step (the supervisor, the shell and everything it started) and then records
        // what happened.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let spawned = command.spawn();
        // The command holds the supervisor's end of the lifeline: close it here, so that the
        // supervisor's exit is seen as the end of the socket.
        drop(command);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let detail = format!("could not be started in {}: {e}", self.file.workdir.display());
                return Err(self.fail(n, step, &detail, None, json!(null)));
            }
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let drained = self.forward_output(&mut child, &tail);
        let group = Pid::from_child(&child);
        let exited = self.events.sender.clone();
        std::thread::spawn(move || {
            let report = read_report(lifeline);
            let end = StepExit::from_supervisor(report, child.wait());
            let _ = exited.send(Event::Exited { step: n, end });
        });
        let waited = self.wait(group, n)?;
        if waited.status.is_some() {
            // Let the output still in the pipes reach the display (and the stderr tail).
            let deadline = Instant::now() + OUTPUT_DRAIN;
            for _ in 0..2 {
                if drained.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
                    break;
                }
            }
        }

        // A step that exited 0 did its work, even if a signal came meanwhile: record it.
        let report = match &waited.status {
            Some(status) if status.success() => Some(self.checkpoint(n, step, number, decision_id)?),
            _ => None,
        };
        match (waited.signal, report) {
            (Some(signal), report) => {
                let end = if report.is_some() { StepEnd::Completed } else { StepEnd::Interrupted };
                self.progress.finished(n, &step.name, end);
                Err(self.interrupted(signal, n, &format!("{} received during step {n}", signal_name(signal))))
            }
            (None, Some(report)) => {
                self.progress.finished(n, &step.name, StepEnd::Completed);
                Ok(report)
            }
            (None, None) => {
                let tail: Vec<String> = tail.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
                let (detail, code) = exit_detail(waited.status.as_ref());
                Err(self.fail(n, step, &detail, Some(&tail), code))
            }
        }
    }

    /// Records the checkpoint of a step that exited 0. Its declared outputs must exist.
    fn checkpoint(
        &mut self,
        n: u32,
        step: &Step,
        number: StepNumber,
        decision_id: DecisionId,
    ) -> Result<StepReport, CliError> {
        let snapshot_id = if step.outputs.is_empty() {
            None
        } else {
            match digest_outputs(&step.outputs) {
                Ok(digest) => Some(digest),
                Err(e) => {
                    let detail = format!("exited 0 but its declared {e}");
                    return Err(self.fail(n, step, &detail, None, json!(0)));
                }
            }
        };
        let artifacts = step
            .outputs
            .iter()
            .map(|p| Artifact::parse(&p.display().to_string()).expect("checked when the plan file was parsed"))
            .collect();
        let checkpoint = StepCheckpoint {
            step: number,
            decision_id: decision_id.clone(),
            snapshot_id: snapshot_id.clone(),
            artifacts,
            name: None,
            output: None,
            fingerprint: None,
        };
        block_on(self.service.record_step_checkpoint(self.plan_id, checkpoint))?;
        Ok(StepReport {
            step: n,
            name: step.name.clone(),
            status: "completed",
            decision_id: Some(decision_id),
            snapshot_id: snapshot_id.map(|s| s.to_string()),
        })
    }

    /// A signal that arrived while no step was running, if any.
    fn signal_received(&self) -> Option<i32> {
        self.events.receiver.try_iter().find_map(|event| match event {
            Event::Signal(signal) => Some(signal),
            Event::Exited { .. } => None,
        })
    }

    /// Waits for step `n`'s process, passing the first SIGINT/SIGTERM on to its process group. A
    /// second signal kills the group and stops waiting.
    fn wait(&mut self, group: Pid, n: u32) -> Result<Waited, CliError> {
        let mut first = None;
        loop {
            match self.events.receiver.recv_timeout(TICK) {
                Ok(Event::Exited { step, end }) if step == n => {
                    return Ok(Waited { status: Some(end), signal: first });
                }
                // A step that a second signal stopped waiting for, exiting late.
                Ok(Event::Exited { .. }) => {}
                Ok(Event::Signal(signal)) if first.is_none() => {
                    first = Some(signal);
                    let _ = kill_process_group(group, rustix_signal(signal));
                    self.progress.note(&format!(
                        "{} received: waiting for step {n} to stop (press Ctrl-C again to stop waiting)",
                        signal_name(signal)
                    ));
                }
                Ok(Event::Signal(_)) => {
                    let _ = kill_process_group(group, Signal::KILL);
                    return Ok(Waited { status: None, signal: first });
                }
                Err(RecvTimeoutError::Timeout) => self.progress.tick(),
                Err(RecvTimeoutError::Disconnected) => unreachable!("the runner holds a sender"),
            }
        }
    }

    /// Passes the step's stdout and stderr through the progress display, keeping stderr's tail.
    /// The receiver gets one message per stream when it closes.
    fn forward_output(&self, child: &mut Child, tail: &Arc<Mutex<VecDeque<String>>>) -> Receiver<()> {
        let (done, drained) = mpsc::channel();
        let streams: [(Option<Box<dyn Read + Send>>, bool); 2] = [
            (child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>), false),
            (child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>), true),
        ];
        for (stream, keep_tail) in streams {
            let Some(stream) = stream else {
                let _ = done.send(());
                continue;
            };
            let progress = Arc::clone(&self.progress);
            let tail = Arc::clone(tail);
            let done = done.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut buf = Vec::new();
                while let Ok(n) = reader.read_until(b'\n', &mut buf) {
                    if n == 0 {
                        break;
                    }
                    let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_owned();
                    progress.output(&line);
                    if keep_tail {
                        let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                        tail.push_back(line);
                        if tail.len() > TAIL_LINES {
                            tail.pop_front();
                        }
                    }
                    buf.clear();
                }
                let _ = done.send(());
            });
        }
        drained
    }

    /// Fails the plan for step `n` and returns the error that ends the run (exit 1).
    fn fail(&mut self, n: u32, step: &Step, detail: &str, tail: Option<&[String]>, exit_code: Value) -> CliError {
        self.progress.finished(n, &step.name, StepEnd::Failed);
        let tail_text = tail.map(stderr_tail).unwrap_or_default();
        let mut recorded = format!("step {n} ({}) {detail}", step.name);
        if !tail_text.is_empty() {
            recorded.push_str(&format!("; stderr ends with:\n{tail_text}"));
        }
        let message = Message::parse(&recorded)
            .or_else(|_| Message::parse(&format!("step {n} {detail}")))
            .expect("a short message is valid");
        let mut error = match block_on(self.service.fail(self.plan_id, message)) {
            Ok(_) => CliError::new(
                exit::UNEXPECTED,
                "step_failed",
                format!(
                    "step {n} ({}) {detail}{}; fix the cause, then run `waypoint plan resume {}`",
                    step.name,
                    last_line(&tail_text).map_or(String::new(), |l| format!(": {l}")),
                    self.plan_id
                ),
            ),
            Err(e) => CliError::from(e),
        };
        error = error
            .with("plan_id", self.plan_id.as_str())
            .with("step", n)
            .with("step_name", step.name.as_str())
            .with("exit_code", exit_code)
            .with("stderr_tail", tail_text);
        error
    }

    /// Records the interruption and returns the error that ends the run (exit 130 or 143).
    fn interrupted(&mut self, signal: i32, step: u32, reason: &str) -> CliError {
        let message = Message::parse(reason).expect("a short reason is valid");
        if let Err(e) = block_on(self.service.record_shutdown(self.plan_id, message)) {
            return CliError::from(e);
        }
        let code = if signal == SIGTERM { exit::SIGTERM } else { exit::SIGINT };
        CliError::new(
            code,
            "interrupted",
            format!("{reason}; plan {id} stopped; resume it with `waypoint plan resume {id}`", id = self.plan_id),
        )
        .with("plan_id", self.plan_id.as_str())
        .with("step", step)
        .with("signal", signal_name(signal))
    }
}

/// How a step that did not succeed ended, in words and as its exit code (`null` when a signal
/// ended it).
fn exit_detail(status: Option<&StepExit>) -> (String, Value) {
    match status {
        Some(StepExit::Code(code)) => (format!("exited with code {code}"), json!(code)),
        Some(StepExit::Signal(signal)) => (format!("was killed by {}", signal_name(*signal)), Value::Null),
        Some(StepExit::Lost(text)) => (format!("could not be run: {text}"), Value::Null),
        None => ("ended in an unknown way".to_owned(), Value::Null),
    }
}

/// A decision id unique to this execution of step `n`: a re-run records a new one.
fn new_decision_id(n: u32) -> DecisionId {
    let random = uuid::Uuid::new_v4().simple().to_string();
    DecisionId::parse(&format!("step-{n}-{}", &random[..8])).expect("a generated decision id is valid")
}

/// The end of a step's stderr, made safe to record and print: colour sequences dropped, other
/// control characters (but newline and tab) replaced, at most `TAIL_CHARS` characters.
pub fn stderr_tail(lines: &[String]) -> String {
    let text = strip_control(&lines.join("\n"));
    let text = text.trim();
    let chars = text.chars().count();
    if chars > TAIL_CHARS {
        text.chars().skip(chars - TAIL_CHARS).collect()
    } else {
        text.to_owned()
    }
}

fn strip_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // CSI sequences (`ESC [ … final byte`), such as colours: dropped whole.
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn last_line(text: &str) -> Option<String> {
    text.lines().rev().find(|l| !l.trim().is_empty()).map(one_line)
}

fn rustix_signal(signal: i32) -> Signal {
    if signal == SIGTERM {
        Signal::TERM
    } else {
        Signal::INT
    }
}

pub fn signal_name(signal: i32) -> String {
    match signal {
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        signal_hook::consts::SIGKILL => "SIGKILL".into(),
        other => format!("signal {other}"),
    }
}
