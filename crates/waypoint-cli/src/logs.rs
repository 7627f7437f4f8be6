//! Step logs while a step runs: each stream's end is kept in memory (the last
//! [`STEP_LOG_CAP`] bytes, and how many earlier bytes were cut) and written through the store
//! port, so any process that reads the store can read it (`plan logs`, from any machine). The
//! runner writes a stream's log when its attempt ends and every few seconds while it prints, so
//! a runner killed outright loses at most the last few seconds of output.

use std::sync::{Arc, Mutex};

use waypoint_application::{LogStream, StepLog, STEP_LOG_CAP};
use waypoint_domain::{Attempt, StepNumber};

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
