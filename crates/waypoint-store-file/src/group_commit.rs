//! Group commit: callers queue their requests, one of them leads and commits every queued
//! request in one batch (one write, one fdatasync), and each caller gets back its own results.
//!
//! Generic over the request and result types so the queue, leader and waiter machinery is tested
//! on its own (with a fake commit); the store's commit is in `commit.rs`.

use std::sync::{Arc, Condvar, Mutex};

/// Batches one leader commits before handing leadership on.
const MAX_LEADER_ROUNDS: usize = 4;

/// The queue of requests waiting for a commit.
#[derive(Debug)]
pub struct GroupCommit<R, O> {
    queue: Mutex<Queue<R, O>>,
}

/// Appends waiting for a commit, and whether some thread is leading one.
#[derive(Debug)]
struct Queue<R, O> {
    pending: Vec<Waiter<R, O>>,
    leader: bool,
}

/// One caller's requests and the slot its results (or the lead) are handed over in.
#[derive(Debug)]
struct Waiter<R, O> {
    requests: Vec<R>,
    slot: Arc<Slot<O>>,
}

/// Each caller waits on its own condition variable, so a finished commit wakes exactly the
/// callers it served (and at most one new leader), not every thread in the queue.
#[derive(Debug)]
struct Slot<O> {
    state: Mutex<SlotState<O>>,
    ready: Condvar,
}

#[derive(Debug, Default)]
enum SlotState<O> {
    #[default]
    Waiting,
    /// The previous leader handed over: this caller leads the next commit.
    Lead,
    Done(Vec<O>),
}

impl<O> Slot<O> {
    fn new() -> Self {
        Self { state: Mutex::new(SlotState::Waiting), ready: Condvar::new() }
    }

    fn set(&self, state: SlotState<O>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
        self.ready.notify_one();
    }
}

impl<R, O> Default for GroupCommit<R, O> {
    fn default() -> Self {
        Self { queue: Mutex::new(Queue { pending: Vec::new(), leader: false }) }
    }
}

impl<R, O> GroupCommit<R, O> {
    /// Queues `requests` and waits for their results, one per request in order. Whoever finds no
    /// commit running leads the next one: it calls `commit` with every queued caller's requests
    /// (which must return one result per request, in order, and must not panic), hands each
    /// caller its results, then calls `after_commit` before taking the next batch.
    pub fn submit(
        &self,
        requests: Vec<R>,
        mut commit: impl FnMut(Vec<R>) -> Vec<O>,
        mut after_commit: impl FnMut(),
    ) -> Vec<O> {
        let slot = Arc::new(Slot::new());
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.pending.push(Waiter { requests, slot: slot.clone() });
        if queue.leader {
            drop(queue);
            let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match std::mem::take(&mut *state) {
                    SlotState::Done(results) => return results,
                    SlotState::Lead => break,
                    SlotState::Waiting => state = slot.ready.wait(state).unwrap_or_else(|p| p.into_inner()),
                }
            }
            drop(state);
            queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        } else {
            queue.leader = true;
        }
        // Leading. Keep leading while callers queued up during the commit (a few rounds at most,
        // so this caller is not kept waiting long): a caller that comes back with its next
        // append then joins a full batch instead of starting a batch of one.
        let mut own = None;
        let mut last_batch = 0;
        for _round in 0..MAX_LEADER_ROUNDS {
            if last_batch > 1 && queue.pending.len() < last_batch / 2 {
                // The callers just served are still waking up to append again: let them reach
                // the queue so the next fdatasync serves them all, not one or two.
                drop(queue);
                std::thread::yield_now();
                queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            }
            let waiters = std::mem::take(&mut queue.pending);
            if waiters.is_empty() {
                break;
            }
            last_batch = waiters.len();
            drop(queue);
            let mut batch = Vec::new();
            let mut owners = Vec::with_capacity(waiters.len());
            for waiter in waiters {
                owners.push((waiter.slot, waiter.requests.len()));
                batch.extend(waiter.requests);
            }
            let mut results = commit(batch).into_iter();
            for (owner, count) in owners {
                let mine: Vec<_> = results.by_ref().take(count).collect();
                if Arc::ptr_eq(&owner, &slot) {
                    own = Some(mine);
                } else {
                    owner.set(SlotState::Done(mine));
                }
            }
            after_commit();
            queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if own.is_some() && queue.pending.len() < 2 {
                break;
            }
        }
        match queue.pending.first() {
            Some(next) => next.slot.set(SlotState::Lead),
            None => queue.leader = false,
        }
        drop(queue);
        own.expect("a leader commits its own requests in its first round")
    }

    /// Callers queued and not yet taken into a commit.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).pending.len()
    }
}

#[cfg(test)]
mod tests;
