//! Noticing changes: a poller reads the front of the store's listing (the plans active since the
//! last poll, newest first, a page at a time) about once a second and, for each plan whose
//! version moved, sends its summary to every Server-Sent Events subscriber (`plan`
//! events) and counts its new step events into the metrics. It remembers only the plans that
//! changed in the last few seconds and the plans in `processing` (whose runner may vanish
//! without an event), never every plan.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use waypoint_application::{PlanView, StoredEvent};
use waypoint_domain::{PlanEvent, PlanId, PlanStatus, ProcessingState};

use super::metrics::Metrics;
use super::reads::Stores;

/// How far back a change is looked for again, for writers whose clocks trail the newest
/// activity seen (the same machine's processes, or a PostgreSQL store's clients).
const SLACK: chrono::Duration = chrono::Duration::seconds(5);

/// The shortest wait between two polls; a slow store stretches it to ten times the poll's read,
/// so the poller never takes more than a tenth of a core.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The `plan` events, as the JSON summaries sent to subscribers.
#[derive(Debug, Clone)]
pub struct Live {
    sender: broadcast::Sender<Arc<str>>,
}

impl Live {
    pub fn new() -> Self {
        Self { sender: broadcast::channel(1024).0 }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.sender.subscribe()
    }
}

/// What the poller remembers between two polls.
#[derive(Debug)]
struct Seen {
    /// When the server started: the metrics count what happened since.
    started: DateTime<Utc>,
    /// The newest last activity seen (at first, the server's start: a change made while it
    /// started up is not missed).
    watermark: DateTime<Utc>,
    /// Plans active within [`SLACK`] of the watermark, at the version last seen.
    recent: HashMap<PlanId, u32>,
    /// Plans in `processing` and the status last seen: a runner's death changes it without an event.
    processing: HashMap<PlanId, PlanStatus>,
    /// Whether the plans in `processing` at the start were looked for.
    scanned: bool,
}

/// Plans read at once while the poller walks the listing.
const POLL_PAGE: usize = 200;

/// Polls forever on the runtime (the store calls on its blocking threads).
pub fn spawn_poller(stores: Stores, live: Live, metrics: Arc<Metrics>) {
    let now = Utc::now();
    let seen =
        Seen { started: now, watermark: now, recent: HashMap::new(), processing: HashMap::new(), scanned: false };
    let seen = Arc::new(Mutex::new(seen));
    tokio::spawn(async move {
        loop {
            let started = Instant::now();
            let (stores, live, metrics, seen) = (stores.clone(), live.clone(), metrics.clone(), seen.clone());
            let _ = tokio::task::spawn_blocking(move || {
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                // A failed read is tried again at the next poll; /healthz reports the store's state.
                if let Ok(sent) = poll(&stores, &mut seen, &metrics) {
                    for summary in sent {
                        let _ = live.sender.send(summary.into());
                    }
                }
            })
            .await;
            tokio::time::sleep(MIN_INTERVAL.max(started.elapsed() * 10)).await;
        }
    });
}

/// One poll: the summaries of the plans that changed since the last one, as JSON.
fn poll(stores: &Stores, seen: &mut Seen, metrics: &Metrics) -> Result<Vec<String>, crate::error::CliError> {
    let watermark = seen.watermark;
    let since = watermark - SLACK;
    // Only the front of the listing (newest activity first) can hold a change: it is read a
    // page at a time until the activity is older than `since`.
    let mut views: Vec<PlanView> = Vec::new();
    stores.walk_listing(false, POLL_PAGE, |page| {
        let before = views.len();
        views.extend(page.into_iter().filter(|view| view.last_activity_at >= since));
        Ok(views.len() - before == POLL_PAGE)
    })?;
    let mut watched: Vec<PlanView> = Vec::new();
    if !seen.scanned {
        // The plans in `processing` when the server starts: the open plans, a page at a time.
        stores.walk_listing(true, POLL_PAGE, |page| {
            watched.extend(page.into_iter().filter(|view| is_processing(view) && view.last_activity_at < since));
            Ok(true)
        })?;
        seen.scanned = true;
    }
    let newest = views.iter().map(|v| v.last_activity_at).max();
    let mut changed: Vec<PlanView> = Vec::new();
    for view in &views {
        let moved = seen.recent.get(&view.plan_id) != Some(&view.version);
        if moved {
            changed.push(view.clone());
        } else if seen.processing.contains_key(&view.plan_id) || is_processing(view) {
            watched.push(view.clone());
        }
    }
    // Processing plans that did not move lately: their runner may have vanished.
    let front: std::collections::HashSet<&PlanId> = views.iter().map(|v| &v.plan_id).collect();
    let quiet: Vec<PlanId> = seen.processing.keys().filter(|id| !front.contains(id)).cloned().collect();
    for id in quiet {
        match stores.summary_view(&id)? {
            Some(view) => watched.push(view),
            None => {
                seen.processing.remove(&id);
            }
        }
    }
    for view in &changed {
        let known = seen.recent.get(&view.plan_id).copied();
        if let Ok(events) = stores.events(&view.plan_id) {
            let unseen = |stored: &StoredEvent| match known {
                Some(version) => eventually::versioning::Versioned::version(stored) > version,
                None => stored.recorded_at >= since,
            };
            let started = seen.started;
            count_steps(&events, |stored| unseen(stored) && stored.recorded_at >= started, metrics);
        }
    }
    let mut sent = Vec::new();
    let changed_summaries = stores.summarize(&changed)?;
    let watched_summaries = stores.summarize(&watched)?;
    for summary in changed_summaries {
        sent.push(serde_json::to_string(&summary).expect("a summary serializes"));
        seen.processing.remove(&summary.plan_id);
        if summary.state == ProcessingState::Processing {
            seen.processing.insert(summary.plan_id.clone(), summary.status);
        }
    }
    for summary in watched_summaries {
        let before = seen.processing.remove(&summary.plan_id);
        if before.is_some_and(|status| status != summary.status) {
            sent.push(serde_json::to_string(&summary).expect("a summary serializes"));
        }
        if summary.state == ProcessingState::Processing {
            seen.processing.insert(summary.plan_id.clone(), summary.status);
        }
    }
    let watermark = newest.map_or(watermark, |n| n.max(watermark));
    seen.watermark = watermark;
    seen.recent = recent(&views, watermark);
    Ok(sent)
}

fn is_processing(view: &PlanView) -> bool {
    view.state.state == ProcessingState::Processing
}

/// The plans active within [`SLACK`] of `watermark`, at their versions.
fn recent(views: &[PlanView], watermark: DateTime<Utc>) -> HashMap<PlanId, u32> {
    views
        .iter()
        .filter(|view| view.last_activity_at >= watermark - SLACK)
        .map(|view| (view.plan_id.clone(), view.version))
        .collect()
}

/// Counts the step events of one plan's history that `is_new` picks: attempts started, steps
/// completed, attempts failed, and each ended attempt's length (its start may be older).
fn count_steps(events: &[StoredEvent], is_new: impl Fn(&StoredEvent) -> bool, metrics: &Metrics) {
    let mut open: HashMap<u32, DateTime<Utc>> = HashMap::new();
    for stored in events {
        let new = is_new(stored);
        let at = stored.recorded_at;
        let seconds = |start: DateTime<Utc>| (at - start).num_milliseconds().max(0) as f64 / 1000.0;
        match &stored.event {
            PlanEvent::StepStarted(e) => {
                open.insert(e.step.get(), at);
                if new {
                    metrics.attempt_started();
                }
            }
            PlanEvent::StepCompleted(e) => {
                let start = open.remove(&e.step.get());
                if new {
                    metrics.step_completed(start.map(seconds));
                }
            }
            PlanEvent::StepAttemptFailed(e) => {
                let start = open.remove(&e.step.get());
                if new {
                    metrics.step_failed(start.map(seconds));
                }
            }
            PlanEvent::PlanErrored(_) => {
                for (_, start) in open.drain() {
                    if new {
                        metrics.step_failed(Some(seconds(start)));
                    }
                }
            }
            PlanEvent::Interrupted(_)
            | PlanEvent::PlanCancelled(_)
            | PlanEvent::Resumed(_)
            | PlanEvent::PhaseStarted(_)
            | PlanEvent::PlanConstrained(_) => open.clear(),
            _ => {}
        }
    }
}
