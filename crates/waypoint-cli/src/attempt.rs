//! One attempt of a shell step under the run's supervisor: its output files and environment,
//! `sh -c` in its own process group, its pipes streamed and capped, its logs written to the store
//! while it prints, and the wait for its exit, a signal (passed on to the step) or its timeout.
//! What the attempt's end means is the step engine's to decide; the runner (`runner.rs`) tells it.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use rustix::process::{kill_process_group, Pid, Signal};
use serde_json::Value;
use signal_hook::consts::SIGTERM;
use waypoint_application::engine::{format_duration, signal_name, AttemptTicket, EngineRun, StepFailure};
use waypoint_application::{LogStream, PlanStore};
use waypoint_domain::StepNumber;

use crate::capture;
use crate::error::{one_line, CliError};
use crate::logs::KeptTail;
use crate::plan_file::Step;
use crate::progress::Progress;
use crate::sidecar::{write_private, Sidecar};
use crate::signals::{Event, Events};
use crate::store::AnyStore;
use crate::supervise::{self, AttemptSpec, Begun, Ended, ShellEnd, Supervisor, GRACE};
use crate::text::shown_path;
use crate::worker::LeaseKeeper;

/// How often the progress display redraws while a step runs (its clock and spinner move).
pub const TICK: Duration = Duration::from_millis(100);
/// How long to wait, after a step exits, for output still buffered in its pipes. Output held open
/// by a process the step left behind must not keep the runner forever.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// How often a running step's output is written to the store while it prints.
const LOG_FLUSH_EVERY: Duration = Duration::from_secs(2);

/// How a step's shell ended, once its supervisor is gone (and with it every process of the step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepExit {
    Code(i32),
    Signal(i32),
    /// The step could not be run or watched: the text says why.
    Lost(String),
}

impl StepExit {
    fn from_supervisor(ended: Ended) -> Self {
        match ended.report {
            Some(ShellEnd::Exited(code)) => StepExit::Code(code),
            Some(ShellEnd::Signalled(signal)) => StepExit::Signal(signal),
            Some(ShellEnd::Failed(text)) => StepExit::Lost(text),
            // Killed (SIGKILL, the OOM killer) before it could report.
            None => {
                match ended.supervisor_died.flatten().and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)) {
                    Some(signal) => StepExit::Lost(format!(
                        "its supervisor was killed ({}) before the step ended",
                        signal_name(signal)
                    )),
                    None => StepExit::Lost("its supervisor ended without saying how the step ended".into()),
                }
            }
        }
    }
}

/// How one attempt ended.
pub struct Ran {
    /// `None` when a second signal stopped the wait.
    status: Option<StepExit>,
    /// The first signal received while the step ran.
    pub signal: Option<i32>,
    /// The timeout the step ran past, when it was stopped for it.
    timed_out: Option<Duration>,
    /// The last lines of its stderr.
    pub tail: Vec<String>,
}

impl Ran {
    /// An attempt whose step could not be run: `text` says why.
    fn lost(text: String) -> Self {
        Ran { status: Some(StepExit::Lost(text)), signal: None, timed_out: None, tail: Vec::new() }
    }

    /// How the attempt failed; `None` when the step exited 0 within its timeout.
    pub fn failure(&self) -> Option<StepFailure> {
        if let Some(limit) = self.timed_out {
            return Some(StepFailure::Timeout { limit });
        }
        Some(match &self.status {
            Some(StepExit::Code(0)) => return None,
            Some(StepExit::Code(code)) => StepFailure::Exit { code: *code },
            Some(StepExit::Signal(signal)) => StepFailure::Signal { signal: *signal },
            Some(StepExit::Lost(text)) => {
                StepFailure::Error { message: format!("could not be run: {}", one_line(text)) }
            }
            None => StepFailure::Error { message: "ended in an unknown way".to_owned() },
        })
    }
}

/// The output of the attempt that runs now: stdout's and stderr's kept ends, and when the store
/// last got them.
struct AttemptLogs {
    step: StepNumber,
    attempt: waypoint_domain::Attempt,
    streams: [(LogStream, KeptTail); 2],
    written_at: Instant,
    /// A log the store refused is said once, not on every flush.
    warned: bool,
}

impl AttemptLogs {
    /// Writes the attempt's new output to the store: `done`, every stream that printed
    /// anything; otherwise only streams that printed since the last write, at most every
    /// [`LOG_FLUSH_EVERY`]. A log the store refuses is said once and does not stop the step:
    /// the step matters more than its log.
    fn write(&mut self, run: &EngineRun<AnyStore>, progress: &Progress, done: bool) {
        if !done && self.written_at.elapsed() < LOG_FLUSH_EVERY {
            return;
        }
        self.written_at = Instant::now();
        for (stream, tail) in &self.streams {
            let Some(log) = tail.take_log(self.step, self.attempt, *stream, done) else { continue };
            let written = block_on(run.service().store().put_step_log(run.plan_id(), log));
            if let (Err(e), false) = (written, self.warned) {
                self.warned = true;
                progress.note(&format!("the step's {stream} could not be kept in the store: {e}"));
            }
        }
    }
}

/// What one attempt borrows from its run.
pub struct Attempt<'r> {
    /// The engine's run: the plan, the attempt's trace context, the store its logs go to.
    pub run: &'r EngineRun<AnyStore>,
    pub sidecar: &'r Sidecar,
    pub progress: &'r Arc<Progress>,
    pub events: &'r Events,
    /// Every completed step's outputs so far, by step name: `$WAYPOINT_OUTPUTS`.
    pub outputs: &'r serde_json::Map<String, Value>,
    /// The run's step supervisor, started with its first attempt (or again after it died).
    pub supervisor: &'r mut Option<Supervisor>,
    /// For a run held by lease (a worker's): renewed while the step runs.
    pub lease: Option<&'r mut LeaseKeeper>,
    /// Set when a drain is asked for while the step runs: no further step starts.
    pub draining: &'r mut bool,
}

impl Attempt<'_> {
    /// Runs attempt `ticket` of step `n` under the run's supervisor, with its logs and output
    /// files.
    pub fn run(mut self, n: u32, step: &Step, ticket: &AttemptTicket) -> Result<Ran, CliError> {
        let plan_id = self.run.plan_id();
        self.sidecar
            .prepare(plan_id)
            .map_err(|e| CliError::unexpected(format!("cannot create the plan's run folder beside the store: {e}")))?;
        let output_file = self.sidecar.output_file(plan_id);
        let outputs_file = self.sidecar.outputs_file(plan_id);
        write_private(&output_file, b"")
            .and_then(|()| write_private(&outputs_file, &serde_json::to_vec_pretty(self.outputs).unwrap_or_default()))
            .map_err(|e| {
                CliError::unexpected(format!("cannot prepare the step's output files beside the store: {e}"))
            })?;
        let pipes =
            |what| move |e: std::io::Error| CliError::unexpected(format!("cannot create the step's {what} pipe: {e}"));
        let (stdout, stdout_end) = std::io::pipe().map_err(pipes("stdout"))?;
        let (stderr, stderr_end) = std::io::pipe().map_err(pipes("stderr"))?;
        // The runner's environment, without the store's location (it may carry a password: no
        // step needs it, none gets it), with the step's own and Waypoint's variables.
        let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        env.remove(OsStr::new("WAYPOINT_STORE"));
        env.extend(step.env.iter().map(|(k, v)| (k.into(), v.into())));
        let ours = [
            ("WAYPOINT_PLAN_ID", plan_id.as_str().into()),
            ("WAYPOINT_STEP", n.to_string().into()),
            ("WAYPOINT_STEP_NAME", step.name.as_str().into()),
            ("WAYPOINT_DECISION_ID", ticket.decision_id.as_str().into()),
            ("WAYPOINT_ATTEMPT", ticket.attempt.get().to_string().into()),
            ("WAYPOINT_OUTPUT", output_file.into_os_string()),
            ("WAYPOINT_OUTPUTS", outputs_file.into_os_string()),
        ];
        env.extend(ours.into_iter().map(|(k, v): (&str, OsString)| (k.into(), v)));
        // The attempt's span, so that the step's own spans nest under it.
        env.extend(self.run.step_trace_environment().into_iter().map(|(k, v)| (k.into(), v.into())));
        let spec = AttemptSpec {
            lock: self.sidecar.attempt_lock(plan_id),
            program: supervise::shell().into(),
            args: vec!["-c".into(), step.run.as_str().into()],
            dir: step.workdir.clone(),
            env,
            stdout: stdout_end.into(),
            stderr: stderr_end.into(),
        };
        let (group, ending) = match self.supervisor()?.begin(spec) {
            Ok(Begun::Started(group, ending)) => (group, ending),
            Ok(Begun::Refused(text)) => return Ok(Ran::lost(text)),
            Err(e) => {
                *self.supervisor = None;
                return Ok(Ran::lost(format!("could not be started in {}: {e}", shown_path(&step.workdir))));
            }
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let kept = [KeptTail::default(), KeptTail::default()];
        let mut logs = AttemptLogs {
            step: ticket.step,
            attempt: ticket.attempt,
            streams: [(LogStream::Stdout, kept[0].clone()), (LogStream::Stderr, kept[1].clone())],
            written_at: Instant::now(),
            warned: false,
        };
        let drained = capture::forward(self.progress, [Box::new(stdout), Box::new(stderr)], &tail, kept);
        let exited = self.events.sender.clone();
        std::thread::spawn(move || {
            let end = StepExit::from_supervisor(ending.wait());
            let _ = exited.send(Event::Exited { step: n, end });
        });
        let waited = self.wait(group, n, step.timeout, &mut logs)?;
        if waited.status.is_some() {
            // Let the output still in the pipes reach the display, the logs and the stderr tail.
            let deadline = Instant::now() + OUTPUT_DRAIN;
            for _ in 0..2 {
                if drained.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
                    break;
                }
            }
        }
        logs.write(self.run, self.progress, true);
        let tail = tail.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        Ok(Ran { tail, ..waited })
    }

    /// The run's step supervisor, started now if it is not running (the first attempt, or one
    /// after the last supervisor died).
    fn supervisor(&mut self) -> Result<&mut Supervisor, CliError> {
        if self.supervisor.as_ref().is_none_or(Supervisor::is_gone) {
            let started = Supervisor::start()
                .map_err(|e| CliError::unexpected(format!("cannot start the step supervisor: {e}")))?;
            *self.supervisor = Some(started);
        }
        Ok(self.supervisor.as_mut().expect("started above"))
    }

    /// Waits for step `n`'s process, passing the first SIGINT/SIGTERM on to its process group. A
    /// second signal kills the group and stops waiting. Past `timeout`, the group gets SIGTERM,
    /// then SIGKILL after the grace period. The tail of the result is left empty.
    fn wait(&mut self, group: Pid, n: u32, timeout: Option<Duration>, logs: &mut AttemptLogs) -> Result<Ran, CliError> {
        let mut first = None;
        let started = Instant::now();
        let mut kill_at: Option<Instant> = None;
        let ran = |status, first, kill_at: Option<Instant>| Ran {
            status,
            signal: first,
            timed_out: timeout.filter(|_| kill_at.is_some()),
            tail: Vec::new(),
        };
        loop {
            match self.events.receiver.recv_timeout(TICK) {
                Ok(Event::Exited { step, end }) if step == n => return Ok(ran(Some(end), first, kill_at)),
                // A step that a second signal stopped waiting for, exiting late.
                Ok(Event::Exited { .. }) => {}
                Ok(Event::Signal(signal)) if first.is_none() => {
                    first = Some(signal);
                    let _ = kill_process_group(group, if signal == SIGTERM { Signal::TERM } else { Signal::INT });
                    self.progress.note(&format!(
                        "{} received: waiting for step {n} to stop; Ctrl-C again stops waiting",
                        signal_name(signal)
                    ));
                }
                Ok(Event::Signal(_)) => {
                    let _ = kill_process_group(group, Signal::KILL);
                    return Ok(ran(None, first, kill_at));
                }
                // The step may finish; the run stops at the next step boundary.
                Ok(Event::Drain) => *self.draining = true,
                Err(RecvTimeoutError::Timeout) => {
                    self.progress.tick();
                    logs.write(self.run, self.progress, false);
                    if let Some(Err(lost)) = self.lease.as_mut().map(|keeper| keeper.keep(self.run)) {
                        let _ = kill_process_group(group, Signal::KILL);
                        return Err(lost);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => unreachable!("the runner holds a sender"),
            }
            match (timeout, kill_at) {
                (Some(limit), None) if started.elapsed() >= limit => {
                    let _ = kill_process_group(group, Signal::TERM);
                    kill_at = Some(Instant::now() + GRACE);
                    self.progress
                        .note(&format!("step {n} ran past its timeout of {}: stopping it", format_duration(limit)));
                }
                (_, Some(at)) if Instant::now() >= at => {
                    let _ = kill_process_group(group, Signal::KILL);
                }
                _ => {}
            }
        }
    }
}
