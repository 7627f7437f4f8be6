//! Step logs while a step runs: each stream's end is kept in memory (the last
//! [`STEP_LOG_CAP`] bytes, and how many earlier bytes were cut) and written through the store
//! port, so any process that reads the store can read it (`plan logs`, from any machine). The
//! runner writes a stream's log when its attempt ends and every few seconds while it prints, so
//! a runner killed outright loses at most the last few seconds of output.
//!
//! [`logs_doc`] reads them back, for `plan logs` and the dashboard alike.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use futures::executor::block_on;
use serde::Serialize;
use waypoint_application::{LogStream, PlanStore, ServiceError, StepLog, STEP_LOG_CAP};
use waypoint_domain::{Attempt, PlanEvent, PlanId, StepNumber};

use crate::error::CliError;
use crate::store::Service;

/// The kept end of one stream, shared by the thread that reads the stream and the runner that
/// writes it to the store.
#[derive(Debug, Clone, Default)]
pub struct KeptTail(Arc<Mutex<Tail>>);

#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
    cut: u64,
    /// Bytes arrived since the store last got this tail.
    dirty: bool,
}

impl KeptTail {
    /// Adds what the stream printed, dropping the front beyond the cap. The buffer may grow to
    /// twice the cap before it is cut back, so each byte is moved at most once.
    pub fn push(&self, bytes: &[u8]) {
        let mut tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        tail.bytes.extend_from_slice(bytes);
        tail.dirty |= !bytes.is_empty();
        if tail.bytes.len() > 2 * STEP_LOG_CAP {
            let over = tail.bytes.len() - STEP_LOG_CAP;
            tail.bytes.drain(..over);
            tail.cut += over as u64;
        }
    }

    /// The stream's log as the store keeps it, if anything arrived since the last call (or, with
    /// `always`, if anything arrived at all).
    pub fn take_log(&self, step: StepNumber, attempt: Attempt, stream: LogStream, always: bool) -> Option<StepLog> {
        let mut tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !tail.dirty && !(always && (!tail.bytes.is_empty() || tail.cut > 0)) {
            return None;
        }
        tail.dirty = false;
        let over = tail.bytes.len().saturating_sub(STEP_LOG_CAP);
        let bytes = tail.bytes[over..].to_vec();
        Some(StepLog { step, attempt, stream, bytes, cut: tail.cut + over as u64 })
    }
}

/// The text `plan logs` shows for a stored log: its bytes, after a line saying how much was cut.
pub fn shown(log: &StepLog) -> String {
    let text = String::from_utf8_lossy(&log.bytes);
    if log.cut == 0 {
        text.into_owned()
    } else {
        format!("[waypoint: {} earlier bytes cut; only the last 1 MiB is kept]\n{text}", log.cut)
    }
}

/// `plan logs --format json`, and the dashboard's `/api/v1/plans/ID/logs`:
/// `{"plan_id", "cap_bytes", "logs": [{"step", "attempt", "stdout", "stderr"}]}`.
#[derive(Debug, Clone, Serialize)]
pub struct LogsDoc {
    pub plan_id: PlanId,
    pub cap_bytes: usize,
    pub logs: Vec<LogEntry>,
}

/// One attempt's kept output; a stream that printed nothing is empty.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub step: StepNumber,
    pub attempt: u32,
    pub stdout: String,
    pub stderr: String,
}

/// Every attempt the plan recorded (only `step` and `attempt` where given), whether or not it
/// printed anything, with what the store kept of its stdout and stderr, in step and attempt
/// order.
pub fn logs_doc(
    service: &Service,
    id: &PlanId,
    step: Option<StepNumber>,
    attempt: Option<Attempt>,
) -> Result<LogsDoc, CliError> {
    let mut attempts: BTreeSet<(StepNumber, Attempt)> = block_on(service.history(id))?
        .iter()
        .filter_map(|stored| match &stored.event {
            PlanEvent::StepStarted(started) => Some((started.step, started.attempt?)),
            _ => None,
        })
        .collect();
    let stored = block_on(service.store().step_logs(id, step, attempt)).map_err(ServiceError::from)?;
    attempts.extend(stored.iter().map(|log| (log.step, log.attempt)));
    let text_of = |step: StepNumber, attempt: Attempt, stream: LogStream| {
        stored
            .iter()
            .find(|log| (log.step, log.attempt, log.stream) == (step, attempt, stream))
            .map(shown)
            .unwrap_or_default()
    };
    let logs = attempts
        .into_iter()
        .filter(|(s, a)| step.is_none_or(|want| want == *s) && attempt.is_none_or(|want| want == *a))
        .map(|(s, a)| LogEntry {
            step: s,
            attempt: a.get(),
            stdout: text_of(s, a, LogStream::Stdout),
            stderr: text_of(s, a, LogStream::Stderr),
        })
        .collect();
    Ok(LogsDoc { plan_id: id.clone(), cap_bytes: STEP_LOG_CAP, logs })
}
