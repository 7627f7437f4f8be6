//! Step logs on the store port: the kept end of each attempt's standard output and standard
//! error, stored beside the plan's events by the store itself so that any process that can read
//! the store can read them. Logs are not events: they are replaced while a step prints, are not
//! folded into any view, and are not part of what `verify` checks.

use std::fmt;

use waypoint_domain::{Attempt, PlanId, StepNumber};

use super::StoreError;

/// The most of each stream's end a store keeps per attempt: 1 MiB. A runner keeps the last
/// `STEP_LOG_CAP` bytes and counts the rest in [`StepLog::cut`]; a longer log is refused.
pub const STEP_LOG_CAP: usize = 1024 * 1024;

/// Which of an attempt's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStream {
    /// Both streams, in the order listings show them.
    pub const ALL: [LogStream; 2] = [LogStream::Stdout, LogStream::Stderr];

    /// `stdout` or `stderr`: the stable name stores and surfaces use.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }

    /// The stream named `name` by [`Self::as_str`].
    pub fn parse(name: &str) -> Option<LogStream> {
        LogStream::ALL.into_iter().find(|stream| stream.as_str() == name)
    }
}

impl fmt::Display for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kept end of one stream of one attempt of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLog {
    /// The step that printed it.
    pub step: StepNumber,
    /// Which attempt of the step.
    pub attempt: Attempt,
    /// Which stream.
    pub stream: LogStream,
    /// The stream's last bytes, at most [`STEP_LOG_CAP`].
    pub bytes: Vec<u8>,
    /// How many earlier bytes of the stream were dropped to keep `bytes` within the cap.
    pub cut: u64,
}

impl StepLog {
    /// What a log is stored under within its plan, and the order reads return logs in: step,
    /// attempt, then stream (standard output first).
    pub fn key(&self) -> (StepNumber, Attempt, LogStream) {
        (self.step, self.attempt, self.stream)
    }

    /// Whether a read filtered to `step` and `attempt` (each `None`: any) returns this log.
    pub fn matches(&self, step: Option<StepNumber>, attempt: Option<Attempt>) -> bool {
        step.is_none_or(|step| step == self.step) && attempt.is_none_or(|attempt| attempt == self.attempt)
    }

    /// The largest [`Self::cut`] a store keeps: a signed 64-bit count, what every store's
    /// integers hold (more than any stream a step can print).
    pub const MAX_CUT: u64 = i64::MAX as u64;

    /// Why this log is over a store's limits, if it is: bytes longer than [`STEP_LOG_CAP`], or
    /// a cut over [`Self::MAX_CUT`]. Stores refuse such a log before they write anything, with
    /// this message in their "too large" error.
    pub fn over_limits(&self, plan_id: &PlanId) -> Option<String> {
        let what = format!("the {} log of plan {plan_id} step {} attempt {}", self.stream, self.step, self.attempt);
        if self.bytes.len() > STEP_LOG_CAP {
            return Some(format!(
                "{what} is {} bytes; a store keeps at most the last {STEP_LOG_CAP} bytes of a stream: keep only \
                 its end and count the rest as cut",
                self.bytes.len()
            ));
        }
        (self.cut > Self::MAX_CUT).then(|| {
            format!("{what} counts {} bytes cut; a store counts at most {} cut bytes", self.cut, Self::MAX_CUT)
        })
    }

    /// [`Self::over_limits`] as the port's error, [`StoreError::TooLarge`].
    pub fn check_limits(&self, plan_id: &PlanId) -> Result<(), StoreError> {
        self.over_limits(plan_id).map_or(Ok(()), |detail| Err(StoreError::TooLarge(detail)))
    }
}

#[cfg(test)]
mod tests;
