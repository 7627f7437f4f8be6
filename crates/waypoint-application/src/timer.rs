//! A runtime-free timer: a future that completes after a duration, for retry delays and step
//! timeouts in async code that may run under any executor (or `block_on`). Each timer has a
//! thread that sleeps on a channel; dropping the timer wakes and ends that thread at once, so
//! a step that finishes long before its timeout leaves no sleeping thread behind.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::oneshot;

/// Completes once its duration has passed.
#[derive(Debug)]
pub(crate) struct Timer {
    fired: oneshot::Receiver<()>,
    // Dropped with the timer: the sleeping thread sees the channel close and ends.
    _cancel: mpsc::Sender<()>,
}

impl Timer {
    /// A timer that completes after `duration`.
    pub(crate) fn after(duration: Duration) -> Self {
        let (fire, fired) = oneshot::channel();
        let (cancel, cancelled) = mpsc::channel::<()>();
        if duration.is_zero() {
            let _ = fire.send(());
        } else {
            std::thread::spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = cancelled.recv_timeout(duration) {
                    let _ = fire.send(());
                }
            });
        }
        Timer { fired, _cancel: cancel }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A closed channel (the thread could not send) also ends the wait: never hang forever.
        Pin::new(&mut self.fired).poll(cx).map(|_| ())
    }
}
