//! The plan-file runner: runs steps in order as `sh -c`, each in its own process group, recording
//! `StepStarted` before and a checkpoint after each one; passes SIGINT/SIGTERM on to the step.
//!
//! Why this file is long (about 780 lines): it is one state machine, an attempt of a step from
//! its start to its recorded outcome (start, supervise, stream and cap its output, wait on exit,
//! signal or timeout, retry or fail), and splitting it would spread one decision (what a step's
//! end means) over several files. The supervisor, the sidecar paths and the output files are in
//! modules of their own.

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::executor::block_on;
use rustix::process::{kill_process_group, Pid, Signal};
use serde_json::{json, Value};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use waypoint_application::{FailedAttempt, StepCheckpoint, StepStart};
use waypoint_domain::{Artifact, Attempt, AttemptFailure, DecisionId, Message, PlanId, StepNumber, StepOutput};

use crate::error::{exit, one_line, CliError};
use crate::logs::CappedLog;
use crate::outputs::{digest_outputs, read_step_outputs};
use crate::plan_file::{PlanFile, Step, MAX_RETRY_DELAY};
use crate::progress::{Progress, StepEnd};
use crate::render;
use crate::sidecar::Sidecar;
use crate::store::Service;
use crate::supervise::{self, read_report, ShellEnd, GRACE};
use crate::ui::shown_path;

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
    /// Every completed step's outputs so far, by step name: `$WAYPOINT_OUTPUTS`.
    pub outputs: serde_json::Map<String, Value>,
}

/// How waiting for a step's process ended.
struct Waited {
    /// `None` when a second signal stopped the wait.
    status: Option<StepExit>,
    /// The first signal received while the step ran.
    signal: Option<i32>,
    /// The step ran past its timeout and was stopped.
    timed_out: bool,
}

/// One of a step's output streams.
type Stream = Box<dyn Read + Send>;

/// How one attempt ended, with the last lines of its stderr.
struct Ran {
    status: Option<StepExit>,
    signal: Option<i32>,
    timed_out: bool,
    tail: Vec<String>,
}

/// The longest line shown on the progress display or kept in the stderr tail; the rest of a
/// longer line is dropped (the log keeps the bytes, up to its cap).
const MAX_LINE_BYTES: usize = 8 * 1024;

/// Splits a stream's chunks into lines, holding at most [`MAX_LINE_BYTES`] of a line.
#[derive(Debug, Default)]
struct LineSplitter {
    pending: Vec<u8>,
    dropped: usize,
}

impl LineSplitter {
    fn push(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(String)) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.keep(&bytes[..end]);
            self.flush(emit);
            bytes = &bytes[end + 1..];
        }
        self.keep(bytes);
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.pending.len());
        let kept = bytes.len().min(room);
        self.pending.extend_from_slice(&bytes[..kept]);
        self.dropped += bytes.len() - kept;
    }

    fn flush(&mut self, emit: &mut impl FnMut(String)) {
        let mut line = String::from_utf8_lossy(&self.pending).trim_end_matches('\r').to_owned();
        if self.dropped > 0 {
            line.push_str(&format!(" … ({} more bytes on this line)", self.dropped));
        }
        emit(line);
        self.pending.clear();
        self.dropped = 0;
    }

    fn finish(&mut self, emit: &mut impl FnMut(String)) {
        if !self.pending.is_empty() || self.dropped > 0 {
            self.flush(emit);
        }
    }
}

impl Runner<'_> {
    /// Runs the steps from `from` to the end and completes the phase. Steps before `from` are
    /// reported as skipped; their recorded outputs are read back from the log for the steps that
    /// follow. The caller holds the run lock and has moved the plan to processing.
    pub fn run_from(&mut self, from: StepNumber) -> Result<Vec<StepReport>, CliError> {
        if from.get() > 1 {
            let view = block_on(self.service.load(self.plan_id))?;
            for checkpoint in &view.state.resume.checkpoints {
                let Some(step) = self.file.steps.get(checkpoint.step.get() as usize - 1) else { continue };
                let output =
                    checkpoint.output.as_ref().map_or(Value::Object(Default::default()), |o| o.as_value().clone());
                self.outputs.insert(step.name.clone(), output);
            }
        }
        let mut reports = Vec::with_capacity(self.file.steps.len());
        let last = self.file.steps.len() as u32;
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
            reports.push(self.run_step(n, step, n == last)?);
        }
        block_on(self.service.complete_phase(self.plan_id))?;
        Ok(reports)
    }

    /// Runs step `n`, attempt after attempt, until one succeeds, the retries run out, or a signal
    /// stops it.
    fn run_step(&mut self, n: u32, step: &Step, last: bool) -> Result<StepReport, CliError> {
        let number = StepNumber::new(n).expect("steps count from 1");
        let mut attempt = Attempt::FIRST;
        let mut delay = step.retry_delay;
        loop {
            let decision_id = new_decision_id(n);
            let start = StepStart {
                step: number,
                decision_id: decision_id.clone(),
                name: Some(step.step_name.clone()),
                attempt: Some(attempt),
                lease: None,
            };
            block_on(self.service.record_step_started(self.plan_id, start))?;
            if attempt == Attempt::FIRST {
                self.progress.started(n, &step.name);
            } else {
                self.progress.note(&format!("step {n} ({}): attempt {}", step.name, attempt.get()));
            }
            let ran = self.run_attempt(n, step, attempt, &decision_id)?;

            // A step that exited 0 did its work, even if a signal came meanwhile: record it.
            let report = match &ran.status {
                Some(status) if status.success() && !ran.timed_out => {
                    Some(self.checkpoint(n, step, number, attempt, decision_id)?)
                }
                _ => None,
            };
            match (ran.signal, report) {
                (Some(signal), Some(report)) if last => {
                    // The last step completed: the plan is done, whatever the signal meant.
                    self.progress.finished(n, &step.name, StepEnd::Completed);
                    block_on(self.service.complete_phase(self.plan_id))?;
                    let _ = report;
                    return Err(self.stopped_after_completion(signal, n));
                }
                (Some(signal), report) => {
                    let end = if report.is_some() { StepEnd::Completed } else { StepEnd::Interrupted };
                    self.progress.finished(n, &step.name, end);
                    return Err(self.interrupted(
                        signal,
                        n,
                        &format!("{} received during step {n}", signal_name(signal)),
                    ));
                }
                (None, Some(report)) => {
                    self.progress.finished(n, &step.name, StepEnd::Completed);
                    return Ok(report);
                }
                (None, None) => {}
            }
            let tail: Vec<String> = ran.tail;
            let (detail, code, failure) = if ran.timed_out {
                let limit = step.timeout.map_or_else(String::new, |t| format!(" of {}", human_duration(t)));
                (
                    format!("timed out (it ran past its timeout{limit} and was stopped)"),
                    Value::Null,
                    AttemptFailure::Timeout,
                )
            } else {
                let (detail, code) = exit_detail(ran.status.as_ref());
                (detail, code, attempt_failure(ran.status.as_ref()))
            };
            if attempt.get() > step.retries {
                return Err(self.fail(n, step, &detail, Some(&tail), code, ran.timed_out));
            }
            // Retries left: record the failed attempt, wait, and go again.
            let retry_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            let failed = FailedAttempt { step: number, attempt, reason: failure, retry_at: Some(retry_at) };
            block_on(self.service.record_attempt_failed(self.plan_id, failed))?;
            self.progress.note(&format!(
                "step {n} ({}) attempt {} {detail}; retrying in {} ({} left)",
                step.name,
                attempt.get(),
                human_duration(delay),
                render::count((step.retries + 1 - attempt.get()) as usize, "retry").replace("retrys", "retries"),
            ));
            if let Some(signal) = self.sleep_unless_signalled(delay) {
                self.progress.finished(n, &step.name, StepEnd::Interrupted);
                return Err(self.interrupted(
                    signal,
                    n,
                    &format!("{} received while step {n} waited to retry", signal_name(signal)),
                ));
            }
            delay = (delay * 2).min(MAX_RETRY_DELAY);
            attempt = attempt.next().expect("retries are bounded");
        }
    }

    /// Runs one attempt of step `n` under its supervisor, with its logs and output files.
    fn run_attempt(
        &mut self,
        n: u32,
        step: &Step,
        attempt: Attempt,
        decision_id: &DecisionId,
    ) -> Result<Ran, CliError> {
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
        let output_file = self.sidecar.output_file(self.plan_id, n, attempt.get());
        let outputs_file = self.sidecar.outputs_file(self.plan_id);
        std::fs::write(&output_file, b"")
            .and_then(|()| std::fs::write(&outputs_file, serde_json::to_vec_pretty(&self.outputs).unwrap_or_default()))
            .map_err(|e| {
                CliError::unexpected(format!("cannot prepare the step's output files beside the store: {e}"))
            })?;
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
            .current_dir(&step.workdir)
            .envs(&step.env)
            .env("WAYPOINT_PLAN_ID", self.plan_id.as_str())
            .env("WAYPOINT_STEP", n.to_string())
            .env("WAYPOINT_STEP_NAME", &step.name)
            .env("WAYPOINT_DECISION_ID", decision_id.as_str())
            .env("WAYPOINT_ATTEMPT", attempt.get().to_string())
            .env("WAYPOINT_OUTPUT", &output_file)
            .env("WAYPOINT_OUTPUTS", &outputs_file)
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
                let status = StepExit::Lost(format!("could not be started in {}: {e}", shown_path(&step.workdir)));
                return Ok(Ran { status: Some(status), signal: None, timed_out: false, tail: Vec::new() });
            }
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let logs = [
            CappedLog::create(self.sidecar.log_file(self.plan_id, n, attempt.get(), "out")),
            CappedLog::create(self.sidecar.log_file(self.plan_id, n, attempt.get(), "err")),
        ];
        let drained = self.forward_output(&mut child, &tail, logs);
        let group = Pid::from_child(&child);
        let exited = self.events.sender.clone();
        std::thread::spawn(move || {
            let report = read_report(lifeline);
            let end = StepExit::from_supervisor(report, child.wait());
            let _ = exited.send(Event::Exited { step: n, end });
        });
        let waited = self.wait(group, n, step.timeout)?;
        if waited.status.is_some() {
            // Let the output still in the pipes reach the display, the logs and the stderr tail.
            let deadline = Instant::now() + OUTPUT_DRAIN;
            for _ in 0..2 {
                if drained.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
                    break;
                }
            }
        }
        let tail = tail.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        Ok(Ran { status: waited.status, signal: waited.signal, timed_out: waited.timed_out, tail })
    }

    /// Waits `delay` before a retry; a signal meanwhile ends the wait and is returned.
    fn sleep_unless_signalled(&mut self, delay: Duration) -> Option<i32> {
        let until = Instant::now() + delay;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.events.receiver.recv_timeout(left.min(TICK)) {
                Ok(Event::Signal(signal)) => return Some(signal),
                Ok(Event::Exited { .. }) | Err(RecvTimeoutError::Timeout) => self.progress.tick(),
                Err(RecvTimeoutError::Disconnected) => unreachable!("the runner holds a sender"),
            }
        }
    }

    /// Records the checkpoint of a step that exited 0: its declared outputs must be files, and
    /// what it wrote to `$WAYPOINT_OUTPUT` must parse.
    fn checkpoint(
        &mut self,
        n: u32,
        step: &Step,
        number: StepNumber,
        attempt: Attempt,
        decision_id: DecisionId,
    ) -> Result<StepReport, CliError> {
        let snapshot_id = if step.outputs.is_empty() {
            None
        } else {
            match digest_outputs(&step.outputs) {
                Ok(digest) => Some(digest),
                Err(e) => {
                    let detail = format!("exited 0 but its declared {e}");
                    return Err(self.fail(n, step, &detail, None, json!(0), false));
                }
            }
        };
        let written = read_step_outputs(&self.sidecar.output_file(self.plan_id, n, attempt.get()));
        let output = match written {
            Ok(map) if map.is_empty() => None,
            Ok(map) => match StepOutput::new(Value::Object(map)) {
                Ok(output) => Some(output),
                Err(e) => {
                    return Err(self.fail(
                        n,
                        step,
                        &format!("exited 0 but its outputs are unusable: {e}"),
                        None,
                        json!(0),
                        false,
                    ))
                }
            },
            Err(e) => return Err(self.fail(n, step, &format!("exited 0 but {e}"), None, json!(0), false)),
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
            name: Some(step.step_name.clone()),
            output: output.clone(),
            fingerprint: Some(step.fingerprint.clone()),
        };
        block_on(self.service.record_step_checkpoint(self.plan_id, checkpoint))?;
        self.outputs
            .insert(step.name.clone(), output.map_or(Value::Object(Default::default()), StepOutput::into_value));
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
    /// second signal kills the group and stops waiting. Past `timeout`, the group gets SIGTERM,
    /// then SIGKILL after the grace period.
    fn wait(&mut self, group: Pid, n: u32, timeout: Option<Duration>) -> Result<Waited, CliError> {
        let mut first = None;
        let started = Instant::now();
        let mut kill_at: Option<Instant> = None;
        loop {
            match self.events.receiver.recv_timeout(TICK) {
                Ok(Event::Exited { step, end }) if step == n => {
                    return Ok(Waited { status: Some(end), signal: first, timed_out: kill_at.is_some() });
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
                    return Ok(Waited { status: None, signal: first, timed_out: kill_at.is_some() });
                }
                Err(RecvTimeoutError::Timeout) => self.progress.tick(),
                Err(RecvTimeoutError::Disconnected) => unreachable!("the runner holds a sender"),
            }
            match (timeout, kill_at) {
                (Some(limit), None) if started.elapsed() >= limit => {
                    let _ = kill_process_group(group, Signal::TERM);
                    kill_at = Some(Instant::now() + GRACE);
                    self.progress
                        .note(&format!("step {n} ran past its timeout of {}: stopping it", human_duration(limit)));
                }
                (_, Some(at)) if Instant::now() >= at => {
                    let _ = kill_process_group(group, Signal::KILL);
                }
                _ => {}
            }
        }
    }

    /// Passes the step's stdout and stderr through the progress display and into their capped
    /// logs, keeping stderr's last lines. Reads in chunks, so a step printing one huge line costs
    /// bounded memory. The receiver gets one message per stream when it closes.
    fn forward_output(
        &self,
        child: &mut Child,
        tail: &Arc<Mutex<VecDeque<String>>>,
        logs: [CappedLog; 2],
    ) -> Receiver<()> {
        let (done, drained) = mpsc::channel();
        let [out_log, err_log] = logs;
        let streams: [(Option<Stream>, CappedLog, bool); 2] = [
            (child.stdout.take().map(|s| Box::new(s) as Stream), out_log, false),
            (child.stderr.take().map(|s| Box::new(s) as Stream), err_log, true),
        ];
        for (stream, mut log, keep_tail) in streams {
            let Some(mut stream) = stream else {
                let _ = done.send(());
                continue;
            };
            let progress = Arc::clone(&self.progress);
            let tail = Arc::clone(tail);
            let done = done.clone();
            std::thread::spawn(move || {
                let mut lines = LineSplitter::default();
                let mut buf = vec![0u8; 64 * 1024];
                let mut emit = |line: String| {
                    progress.output(&line);
                    if keep_tail {
                        let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                        tail.push_back(line);
                        if tail.len() > TAIL_LINES {
                            tail.pop_front();
                        }
                    }
                };
                loop {
                    let n = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    log.write(&buf[..n]);
                    lines.push(&buf[..n], &mut emit);
                }
                lines.finish(&mut emit);
                let _ = done.send(());
            });
        }
        drained
    }

    /// Fails the plan for step `n` and returns the error that ends the run (exit 1).
    fn fail(
        &mut self,
        n: u32,
        step: &Step,
        detail: &str,
        tail: Option<&[String]>,
        exit_code: Value,
        timed_out: bool,
    ) -> CliError {
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
                    "step {n} ({}) {detail}{}; fix the cause, then run the plan file again (or `waypoint resume {}`)",
                    step.name,
                    last_line(&tail_text).map_or(String::new(), |l| format!(": {l}")),
                    self.plan_id
                ),
            ),
            Err(e) => CliError::from(e),
        };
        if timed_out {
            error = error.with("reason", "timeout");
        }
        error = error
            .with("plan_id", self.plan_id.as_str())
            .with("step", n)
            .with("step_name", step.name.as_str())
            .with("exit_code", exit_code)
            .with("stderr_tail", tail_text);
        error
    }

    /// The last step completed although a signal came while it ran: the phase is completed (not
    /// interrupted, which would leave a plan with every step done that could never complete), and
    /// the run still ends with the signal's exit code.
    fn stopped_after_completion(&self, signal: i32, step: u32) -> CliError {
        let code = if signal == SIGTERM { exit::SIGTERM } else { exit::SIGINT };
        CliError::new(
            code,
            "interrupted",
            format!(
                "{} received during step {step}, the last; the step completed, so plan {} completed",
                signal_name(signal),
                self.plan_id
            ),
        )
        .with("plan_id", self.plan_id.as_str())
        .with("step", step)
        .with("signal", signal_name(signal))
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
            format!(
                "{reason}; plan {id} stopped; run the plan file again to continue (or `waypoint resume {id}`)",
                id = self.plan_id
            ),
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

/// How an attempt failed, as `StepAttemptFailed` records it.
fn attempt_failure(status: Option<&StepExit>) -> AttemptFailure {
    match status {
        Some(StepExit::Code(code)) => AttemptFailure::Exit { code: *code },
        Some(StepExit::Signal(signal)) => AttemptFailure::Signal { signal: *signal },
        Some(StepExit::Lost(text)) => AttemptFailure::Error {
            message: Message::parse(&one_line(text))
                .unwrap_or_else(|_| Message::parse("the step could not run").expect("a short message is valid")),
        },
        None => AttemptFailure::Error {
            message: Message::parse("the step ended in an unknown way").expect("a short message is valid"),
        },
    }
}

/// `90s`, `2m30s`, `500ms`: a duration as people write it.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
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
