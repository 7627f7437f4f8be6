//! What a run waits for besides its step: SIGINT and SIGTERM, a worker's drain, and the exit of
//! the step's processes, as events on one channel, so the runner reacts to any of them at once
//! without polling.

use std::sync::mpsc::{self, Receiver, Sender};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::attempt::StepExit;
use crate::error::CliError;

/// What the runner waits for while a step runs: a signal, or a step's process exiting.
#[derive(Debug)]
pub enum Event {
    Signal(i32),
    Exited {
        step: u32,
        end: StepExit,
    },
    /// A worker drains (ADR 0017): the running step may finish, but no further step starts.
    Drain,
}

/// SIGINT and SIGTERM, handled by the runner instead of ending it, arrive here as events, next to
/// the exits of the steps' processes: the runner reacts to either at once, without polling.
#[derive(Debug)]
pub struct Events {
    pub(crate) sender: Sender<Event>,
    pub(crate) receiver: Receiver<Event>,
}

impl Events {
    /// Events that no signal reaches by itself: a worker's slot, told by the worker what its
    /// signals mean ([`Nudge`]).
    pub fn unwatched() -> Self {
        let (sender, receiver) = mpsc::channel();
        Events { sender, receiver }
    }

    /// A handle that tells the run using these events to drain or to stop.
    pub fn nudge(&self) -> Nudge {
        Nudge(self.sender.clone())
    }
}

/// Tells a run to drain (finish its step, start no other) or to stop as on a signal.
#[derive(Debug, Clone)]
pub struct Nudge(Sender<Event>);

impl Nudge {
    /// The running step may finish; the run then records its interruption and stops.
    pub fn drain(&self) {
        let _ = self.0.send(Event::Drain);
    }

    /// As if `signal` reached the run: it is passed to the running step's process group.
    pub fn signal(&self, signal: i32) {
        let _ = self.0.send(Event::Signal(signal));
    }
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
