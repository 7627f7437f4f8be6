//! The event-store port: `eventually::EventStore` over [`RecordedEvent`]s, plus the cheap reads a
//! store may serve from its own projections (one plan's view, the catalog of every plan), and
//! the steps' logs each store keeps beside the log (`logs`).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventually::store::{EventStore, Persisted, Select};
use futures::future::BoxFuture;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use waypoint_domain::{Attempt, DecodeError, EventId, PlanEvent, PlanId, PlanState, QueueName, StepNumber};

use crate::ports::RunLocks;
use crate::verify::{self, StoreStats, VerifyReport};

mod logs;
mod queues;

pub use logs::{LogStream, StepLog, STEP_LOG_CAP};
pub use queues::{in_queue, HeldQueueLock, QueueLimit, QueueLock};

/// What the application hands to a store: the domain event plus the envelope fields that the
/// application decides (id and time). The store adds the plan id, the version and the global
/// position (`Persisted::sequence_number`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The event's unique id.
    pub event_id: EventId,
    /// When it was recorded (UTC).
    pub recorded_at: DateTime<Utc>,
    /// The fact itself.
    pub event: PlanEvent,
}

/// A stored event with its full envelope.
pub type StoredEvent = Persisted<PlanId, RecordedEvent>;

/// The store port's error, the same for every store. Each adapter has its own error that converts
/// into this one. Messages say what happened, not what to run: remedies belong to the surface
/// (the CLI names its own commands).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer appended to the plan first: the expected version no longer holds.
    #[error("plan {plan_id} changed concurrently: expected version {expected}, found {actual}; reload and try again")]
    Conflict {
        /// The plan appended to.
        plan_id: PlanId,
        /// The version the caller decided on.
        expected: u32,
        /// The version the store holds.
        actual: u32,
    },
    /// Stored bytes are damaged. Nothing was skipped or rewritten.
    #[error("the store is corrupt at {location}: {detail}")]
    Corrupt {
        /// Where: a file and byte offset, or a table and row.
        location: String,
        /// What is wrong there.
        detail: String,
    },
    /// A stored record is intact but this build cannot read it (unknown type or schema version).
    #[error("cannot decode the record at {location}: {source}")]
    Decode {
        /// Where the record lies.
        location: String,
        /// Why it cannot be decoded.
        source: DecodeError,
    },
    /// The store cannot be reached: a server that does not answer, a connection that broke.
    /// Nothing acknowledged was lost; the same call may succeed later.
    #[error("the store at {location} cannot be reached: {detail}")]
    Unavailable {
        /// Where the store is (never with a password).
        location: String,
        /// What failed.
        detail: String,
    },
    /// An I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Another process holds the store in a way that excludes this operation.
    #[error("the store is locked by another process in an incompatible way: {0}")]
    Locked(String),
    /// An earlier write failed in a way that leaves its outcome unknown; the handle refuses
    /// further writes until the store is opened again.
    #[error("the store refuses writes until it is reopened: {0}")]
    Poisoned(String),
    /// The operation is not something this store does.
    #[error("the store does not support this: {0}")]
    Unsupported(&'static str),
    /// The input exceeds a limit of the store.
    #[error("input too large: {0}")]
    TooLarge(String),
    /// The plan was removed by retention: its id stays taken, and nothing is appended to it.
    #[error("plan {plan_id} was removed by retention at {removed_at}; its id is not reused")]
    Removed {
        /// The removed plan.
        plan_id: PlanId,
        /// When it was removed.
        removed_at: DateTime<Utc>,
    },
    /// The store holds no plan with this id, and the operation needs one (a step log belongs to
    /// a plan).
    #[error("plan {plan_id} not found in the store; create the plan before writing anything of its steps")]
    PlanNotFound {
        /// The plan asked for.
        plan_id: PlanId,
    },
}

impl eventually::store::AppendError for StoreError {
    fn is_conflict_error(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

impl StoreError {
    /// An I/O failure while doing `context`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io { context: context.into(), source }
    }
}

/// What a store keeps of a plan that retention removed: a tombstone, so the plan answers
/// "removed by retention" instead of "never existed", and its id is never reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// The removed plan.
    pub plan_id: PlanId,
    /// Its version when removed: how many events were removed (and archived).
    pub version: u32,
    /// When it was removed.
    pub removed_at: DateTime<Utc>,
    /// Where its events were archived, as the caller named the archive.
    pub archive: String,
}

/// What [`PlanStore::remove_plans`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovalReport {
    /// The plans removed, in the order asked.
    pub removed: Vec<PlanId>,
    /// The plans not removed because their version was no longer the one asked for (they moved,
    /// or were already removed, or never existed).
    pub skipped: Vec<PlanId>,
    /// Bytes the store gave back (to the file system or the database); 0 where it cannot tell.
    pub reclaimed_bytes: u64,
}

/// One plan's projection with the envelope facts that listings need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    /// The plan.
    pub plan_id: PlanId,
    /// The plan-stream version of the last event folded in.
    pub version: u32,
    /// When its last event was recorded.
    #[serde(with = "waypoint_domain::timestamp")]
    pub last_activity_at: DateTime<Utc>,
    /// Its state, folded from its events.
    pub state: PlanState,
}

impl PlanView {
    /// Folds one stored event into an optional view: the single fold every reader uses.
    pub fn fold(view: Option<PlanView>, stored: &StoredEvent) -> Option<PlanView> {
        Self::fold_parts(view, stored.source_id(), eventually::versioning::Versioned::version(stored), stored)
    }

    fn fold_parts(
        view: Option<PlanView>,
        plan_id: &PlanId,
        version: u32,
        recorded: &RecordedEvent,
    ) -> Option<PlanView> {
        match view {
            Some(mut view) => {
                view.apply(version, recorded);
                Some(view)
            }
            None => PlanState::fold(None, &recorded.event).map(|state| PlanView {
                plan_id: plan_id.clone(),
                version,
                last_activity_at: recorded.recorded_at,
                state,
            }),
        }
    }

    /// Folds the event at `version` of this plan into the view.
    pub fn apply(&mut self, version: u32, recorded: &RecordedEvent) {
        self.state.apply(&recorded.event);
        self.version = version;
        self.last_activity_at = recorded.recorded_at;
    }

    /// The same view with only the last checkpoint kept. Summaries, eligibility and listings
    /// read nothing else, so a compact view answers them identically while staying small no
    /// matter how long the plan's history is. Commands need the full view (a retry of an older
    /// step is matched against its checkpoint), so only read paths use compact views.
    pub fn compact(&mut self) {
        let checkpoints = &mut self.state.resume.checkpoints;
        if checkpoints.len() > 1 {
            checkpoints.drain(..checkpoints.len() - 1);
        }
        // A step's output (up to 1 MiB) is for the runs that continue the plan, which load the
        // full view; no summary reads it, and a catalog of many plans must stay small.
        if let Some(last) = checkpoints.last_mut() {
            last.output = None;
        }
        // The completed steps' names and digests grow with the plan too. Only a definition
        // check reads them all, and only for a plan that recorded a definition or a step
        // fingerprint; a plumbing plan or a library workflow keeps the last one, so its
        // summary costs the same at 5 steps as at 50,000. Commands that show every step's
        // name read the full view.
        let meta = &mut self.state.resume;
        if self.state.definition.is_empty() && !meta.has_step_fingerprints() {
            meta.keep_last_digest();
        }
    }

    /// Rebuilds a view from a plan's events in version order.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Option<PlanView> {
        events.into_iter().fold(None, PlanView::fold)
    }
}

/// Every plan's compact view (see [`PlanView::compact`]), keyed by id: the catalog projection.
/// Stores may checkpoint it and catch up from `position`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Every plan's compact view.
    pub plans: HashMap<PlanId, PlanView>,
    /// Global position of the last event folded in (0: none).
    pub position: u32,
}

impl Catalog {
    /// Folds one stored event in.
    pub fn apply(&mut self, stored: &StoredEvent) {
        let id = stored.source_id();
        // The hot path of replay: fold in place; only a plan's first event allocates its key.
        match self.plans.get_mut(id) {
            Some(view) => {
                view.apply(eventually::versioning::Versioned::version(stored), stored);
                view.compact();
            }
            None => {
                if let Some(mut view) = PlanView::fold(None, stored) {
                    view.compact();
                    self.plans.insert(id.clone(), view);
                }
            }
        }
        self.position = self.position.max(stored.sequence_number());
    }
}

impl eventually::projection::Projection for Catalog {
    type SourceId = PlanId;
    type Event = RecordedEvent;
    type Error = std::convert::Infallible;

    fn project(&mut self, event: StoredEvent) -> BoxFuture<'_, Result<(), Self::Error>> {
        self.apply(&event);
        Box::pin(futures::future::ready(Ok(())))
    }
}

/// Where a page of the catalog starts: after the plan with this last activity and id in the
/// listing's order, newest activity first and, at equal times, plan ids in byte order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CatalogCursor {
    /// The last activity of the plan the previous page ended with.
    pub last_activity_at: DateTime<Utc>,
    /// That plan.
    pub plan_id: PlanId,
}

impl CatalogCursor {
    /// The cursor just after `view`.
    pub fn after(view: &PlanView) -> Self {
        Self { last_activity_at: view.last_activity_at, plan_id: view.plan_id.clone() }
    }

    /// Whether a plan with this activity and id comes after the cursor in the listing's order.
    pub fn precedes(&self, last_activity_at: DateTime<Utc>, plan_id: &PlanId) -> bool {
        last_activity_at < self.last_activity_at
            || (last_activity_at == self.last_activity_at && *plan_id > self.plan_id)
    }
}

/// The listing's order: newest activity first, then plan id.
pub fn listing_order(a: &PlanView, b: &PlanView) -> std::cmp::Ordering {
    b.last_activity_at.cmp(&a.last_activity_at).then_with(|| a.plan_id.cmp(&b.plan_id))
}

/// The listing `query` admits, page after page of [`PlanStore::catalog_page`] (its limit is the
/// page size): [`PlanStore::walk_catalog`]'s default, and the walk of a caller that must not hold
/// the store between pages (a server answering other requests meanwhile). A plan that moves
/// during the walk goes to the front, so it is listed once or not at all; every other plan is
/// listed once.
#[derive(Debug, Clone)]
pub struct CatalogPages {
    next: Option<CatalogQuery>,
}

impl CatalogPages {
    /// The pages of `query`'s listing, from its cursor on.
    pub fn new(query: CatalogQuery) -> Self {
        Self { next: Some(query) }
    }

    /// The next page, or `None` once the listing has ended (after a page shorter than the limit).
    pub async fn next<S: PlanStore>(&mut self, store: &S) -> Result<Option<Vec<PlanView>>, StoreError> {
        let Some(ask) = self.next.take() else { return Ok(None) };
        let page = store.catalog_page(&ask).await?;
        if page.len() >= ask.limit() {
            self.next = Some(ask.after(page.last().map(CatalogCursor::after)));
        }
        Ok(Some(page))
    }
}

/// What [`PlanStore::catalog_page`] is asked: how many views at most, where the page starts, and
/// which plans it admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogQuery {
    limit: usize,
    after: Option<CatalogCursor>,
    open_only: bool,
    /// Lowercase; never empty.
    text: Option<String>,
}

impl CatalogQuery {
    /// The first `limit` plans of the listing (at least one).
    pub fn first(limit: usize) -> Self {
        Self { limit: limit.max(1), after: None, open_only: false, text: None }
    }

    /// The same query with pages of `limit` plans (at least one).
    pub fn with_limit(self, limit: usize) -> Self {
        Self { limit: limit.max(1), ..self }
    }

    /// The same query starting after `cursor`.
    pub fn after(self, cursor: Option<CatalogCursor>) -> Self {
        Self { after: cursor, ..self }
    }

    /// Whether only plans that are not finished (not applied or cancelled) are admitted.
    pub fn is_open_only(&self) -> bool {
        self.open_only
    }

    /// The same query admitting only unfinished plans when `open_only` is set.
    pub fn only_open(self, open_only: bool) -> Self {
        Self { open_only, ..self }
    }

    /// The same query admitting only plans whose id or name contains `text`, ignoring case (an
    /// empty or blank text admits every plan).
    pub fn containing(self, text: Option<&str>) -> Self {
        let text = text.filter(|t| !t.trim().is_empty()).map(str::to_lowercase);
        Self { text, ..self }
    }

    /// How many views a page holds at most.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Where the page starts.
    pub fn cursor(&self) -> Option<&CatalogCursor> {
        self.after.as_ref()
    }

    /// The lowercase text a plan's id or name must contain, if any.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// Whether a plan at this activity and id lies after the cursor.
    pub fn starts_before(&self, last_activity_at: DateTime<Utc>, plan_id: &PlanId) -> bool {
        self.after.as_ref().is_none_or(|cursor| cursor.precedes(last_activity_at, plan_id))
    }

    /// Whether `view` is on a page of this query: after the cursor, and admitted by the filters.
    pub fn admits(&self, view: &PlanView) -> bool {
        self.starts_before(view.last_activity_at, &view.plan_id)
            && (!self.open_only || !view.state.state.is_terminal())
            && self.matches_text(view)
    }

    /// Whether `view`'s id or name contains the text (always, without one).
    pub fn matches_text(&self, view: &PlanView) -> bool {
        let Some(text) = &self.text else { return true };
        view.plan_id.as_str().to_lowercase().contains(text)
            || view.state.name.as_ref().is_some_and(|n| n.as_str().to_lowercase().contains(text))
    }

    /// The page out of `views`, in any order: those admitted, sorted, the first `limit`.
    pub fn select(&self, mut views: Vec<PlanView>) -> Vec<PlanView> {
        views.retain(|view| self.admits(view));
        if views.len() > self.limit {
            views.select_nth_unstable_by(self.limit, listing_order);
            views.truncate(self.limit);
        }
        views.sort_unstable_by(listing_order);
        views
    }
}

/// Whether `held` is `history` as written before: the same event ids in the same order. An
/// import that finds this skips the plan.
pub fn same_history(held: &[StoredEvent], history: &[StoredEvent]) -> bool {
    held.len() == history.len() && held.iter().zip(history).all(|(a, b)| a.event_id == b.event_id)
}

/// The store port the service needs: `eventually`'s event store over [`RecordedEvent`]s, the
/// plan's run locks, and the cheap reads a store may serve from its own projections. `append`
/// takes `&mut self` in `eventually`, so handles are cheap clones that share one store.
///
/// Every store passes the conformance kit (`waypoint_application::testkit`, feature `testkit`):
/// the same scenarios, the same errors, the same answers.
pub trait PlanStore:
    EventStore<SourceId = PlanId, Event = RecordedEvent, Error = StoreError> + Clone + Send + Sync + 'static
{
    /// The run locks of this store: OS file locks for a directory, session locks for a server.
    fn run_locks(&self) -> Arc<dyn RunLocks>;

    /// A digest of everything the store holds, log and projections alike. Equal before and
    /// after an operation exactly when it wrote nothing: read-only commands are checked with it.
    fn content_fingerprint(&self) -> BoxFuture<'_, Result<String, StoreError>>;

    /// The store's clock: the one time every process sharing the store agrees on, by which
    /// leases are granted and judged (ADR 0011). A server store asks its server (PostgreSQL's
    /// `now()`); a store on one machine answers with that machine's clock. Wrappers delegate,
    /// so there is no default.
    fn now(&self) -> BoxFuture<'_, Result<DateTime<Utc>, StoreError>>;

    /// One plan's current view, or `None` if it has no events. Stores override this to serve it
    /// from a snapshot so the cost does not grow with the plan's history.
    fn load_view<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<PlanView>, StoreError>> {
        Box::pin(async move {
            let events: Vec<StoredEvent> = self.stream(plan_id.clone(), Select::All).await?.try_collect().await?;
            Ok(PlanView::replay(&events))
        })
    }

    /// One plan's compact view (see [`PlanView::compact`]) for summaries and eligibility. Stores
    /// override this to serve it from their catalog, so a preview costs the same for a plan of
    /// ten events as for one of a hundred thousand.
    fn load_summary_view<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<PlanView>, StoreError>> {
        Box::pin(async move {
            let mut view = self.load_view(plan_id).await?;
            if let Some(view) = view.as_mut() {
                view.compact();
            }
            Ok(view)
        })
    }

    /// Every plan's compact view. Stores override this to serve it from a checkpointed catalog.
    fn catalog(&self) -> BoxFuture<'_, Result<Vec<PlanView>, StoreError>> {
        Box::pin(async move {
            let mut catalog = Catalog::default();
            let mut stream = self.stream_all(Select::All).await?;
            while let Some(stored) = stream.try_next().await? {
                catalog.apply(&stored);
            }
            Ok(catalog.plans.into_values().collect())
        })
    }

    /// The compact views of the plans that are not finished (not applied or cancelled): what a
    /// listing of resumable plans starts from. Stores that keep finished plans apart override
    /// this so the listing never reads them.
    fn open_catalog(&self) -> BoxFuture<'_, Result<Vec<PlanView>, StoreError>> {
        Box::pin(async move {
            let mut views = self.catalog().await?;
            views.retain(|view| !view.state.state.is_terminal());
            Ok(views)
        })
    }

    /// [`Self::open_catalog`] in parts, for a caller that need not hold the views in one vector
    /// (a listing sorts them by index): a store that decodes its rows on several threads hands
    /// over each thread's views where they are, instead of moving them all into one. The
    /// default is the whole of `open_catalog` as one part.
    fn open_catalog_parts(&self) -> BoxFuture<'_, Result<Vec<Vec<PlanView>>, StoreError>> {
        Box::pin(async move { Ok(vec![self.open_catalog().await?]) })
    }

    // ---- The catalog a page at a time (ADR 0009, "Pages of the listing") ----

    /// At most `query.limit` compact views, in the listing's order (newest activity first, then
    /// plan id; see [`CatalogCursor`]), after `query`'s cursor and admitted by its filters. Fewer
    /// than the limit means the listing ends there. A caller pages on from the last view's
    /// cursor, so it holds one page at a time; a plan that moves meanwhile goes to the front and
    /// is neither repeated nor skipped among the plans that did not. Plans removed by retention
    /// are never listed. The default sorts the whole catalog; stores override it with an order
    /// they keep, so that a page costs what its plans cost, not what the store holds.
    fn catalog_page<'a>(&'a self, query: &'a CatalogQuery) -> BoxFuture<'a, Result<Vec<PlanView>, StoreError>> {
        Box::pin(async move {
            let views = if query.is_open_only() { self.open_catalog().await? } else { self.catalog().await? };
            Ok(query.select(views))
        })
    }

    /// The whole listing that `query` admits (its limit is the batch size), in the listing's
    /// order, a batch at a time: `visit` gets each batch and answers whether to go on. The caller
    /// holds one batch, never the catalog, so a listing of a million plans costs memory in the
    /// batch. The default pages through [`Self::catalog_page`], so a plan that moves during the
    /// walk goes to the front and is listed once or not at all; a store that can hold one state
    /// of its catalog for the whole walk (the file store) lists each plan of that state once.
    fn walk_catalog<'a>(
        &'a self,
        query: CatalogQuery,
        visit: &'a mut (dyn FnMut(Vec<PlanView>) -> bool + Send),
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut pages = CatalogPages::new(query);
            while let Some(page) = pages.next(self).await? {
                if !visit(page) {
                    break;
                }
            }
            Ok(())
        })
    }

    // ---- end of the catalog a page at a time ----

    /// Rebuilds every projection from the log and compares it with what the store serves,
    /// naming each difference. Stores with projections of their own (checkpoints, indexes,
    /// snapshots) override this to check those too, and may start from [`verify::verify_folds`].
    fn verify(&self) -> BoxFuture<'_, Result<VerifyReport, StoreError>> {
        Box::pin(verify::verify_folds(self))
    }

    /// Removes every event of each `(plan, version)` whose current version is exactly `version`,
    /// leaving a tombstone ([`Removal`], with `removed_at` and `archive`) that
    /// [`Self::removal`] answers and that refuses any later append to that id
    /// ([`StoreError::Removed`]). Retention: the caller chooses finished plans and archives their
    /// events first; the store only checks versions, atomically with the removal, so a plan that
    /// moved is skipped, never half removed. Other plans, and writers appending to them meanwhile,
    /// lose nothing. Positions of the remaining events do not change (the global order keeps
    /// gaps where removed events were). A removed plan's step logs are removed with it (the
    /// caller archives them too), and a later [`Self::put_step_log`] to it is refused.
    fn remove_plans<'a>(
        &'a self,
        plans: &'a [(PlanId, u32)],
        removed_at: DateTime<Utc>,
        archive: &'a str,
    ) -> BoxFuture<'a, Result<RemovalReport, StoreError>>;

    /// The tombstone of a plan removed by retention; `None` for a plan that exists or never did.
    fn removal<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<Removal>, StoreError>>;

    /// The tombstones of every plan removed by retention whose id starts with `prefix`, in id
    /// order: what an abbreviated id that names no plan the store holds may still name. May read
    /// every removal the store keeps; it is asked only when no plan matches.
    fn removals_with_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Removal>, StoreError>>;

    /// Writes whole plan histories taken from another store (an archive, a migration), keeping
    /// their event ids, times and versions; durable when it returns. A plan this store already
    /// holds with the same event ids is left as it is (so an interrupted archive can be written
    /// again); one it holds with other events is a [`StoreError::Conflict`]. Stores override this
    /// to write many plans per durable write.
    fn import_plans(&self, histories: Vec<Vec<StoredEvent>>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for history in histories {
                let Some(first) = history.first() else { continue };
                let plan_id = first.source_id().clone();
                let held: Vec<StoredEvent> = self.stream(plan_id.clone(), Select::All).await?.try_collect().await?;
                if held.is_empty() {
                    let events = history.into_iter().map(|stored| stored.take()).collect();
                    self.clone().append(plan_id, eventually::store::Expected::Exact(0), events).await?;
                } else if !same_history(&held, &history) {
                    return Err(StoreError::Conflict {
                        plan_id,
                        expected: 0,
                        actual: eventually::versioning::Versioned::version(held.last().expect("not empty")),
                    });
                }
            }
            Ok(())
        })
    }

    /// Stores the kept end of one stream of one attempt of a step of `plan_id`, replacing what
    /// was stored for that (step, attempt, stream): a runner calls it again and again while the
    /// step prints, each time with the whole kept tail. Durable and whole when it returns: a
    /// reader sees the previous log or this one, never part of either.
    ///
    /// Refused, with nothing written: bytes longer than [`STEP_LOG_CAP`] or a cut over
    /// [`StepLog::MAX_CUT`] ([`StoreError::TooLarge`], see [`StepLog::check_limits`]); a plan
    /// removed by retention ([`StoreError::Removed`]); a plan the store does not hold
    /// ([`StoreError::PlanNotFound`]: a log belongs to a plan, and retention removes it with that
    /// plan, so a log of no plan would never be removed). Attempt numbers never repeat for a plan
    /// and step, so a later attempt's log never replaces an earlier attempt's.
    fn put_step_log<'a>(&'a self, plan_id: &'a PlanId, log: StepLog) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The step logs of `plan_id`, only those of `step` and of `attempt` where given, ordered by
    /// step, attempt and stream (standard output first). A plan with none, an unknown plan and
    /// a plan removed by retention all have none: [`Self::removal`] tells them apart. Logs are
    /// not events: they are not in the log, in `verify`, or bound by checkpoints.
    fn step_logs<'a>(
        &'a self,
        plan_id: &'a PlanId,
        step: Option<StepNumber>,
        attempt: Option<Attempt>,
    ) -> BoxFuture<'a, Result<Vec<StepLog>, StoreError>>;

    /// How much the store holds. Stores override this to add their size in bytes.
    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, StoreError>> {
        Box::pin(async move { Ok(StoreStats::from_views(&self.catalog().await?, None)) })
    }

    // ---------------------------------------------------------------------------------------
    // Workers and queues (ADR 0017). One block, apart from the rest of the port: the claim
    // index, the claim lock and the queue limits.
    // ---------------------------------------------------------------------------------------

    /// The claim index of `queue`: the compact views of every plan submitted to it that is
    /// still in it ([`in_queue`]: not yet claimed, or running, or stopped without finishing or
    /// failing), oldest submission first (ties by plan id). Stores override this to serve it
    /// from an index of their own, so a claim never reads every plan; the default filters the
    /// open catalog.
    fn queue_plans<'a>(&'a self, queue: &'a QueueName) -> BoxFuture<'a, Result<Vec<PlanView>, StoreError>> {
        Box::pin(async move {
            let mut views = self.open_catalog().await?;
            views.retain(|view| in_queue(&view.state) == Some(queue));
            queues::sort_oldest_first(&mut views);
            Ok(views)
        })
    }

    /// Takes `queue`'s claim lock, waiting while another claimant (in this process or any other
    /// process sharing the store) holds it. Claims of one queue happen one at a time, so a
    /// queue's limit holds across every worker; the expected-version check still fences every
    /// claim on its own. The lock is released when the guard drops, or when its holder's
    /// process (or connection) dies. Wrappers delegate, so there is no default.
    fn lock_queue<'a>(&'a self, queue: &'a QueueName) -> BoxFuture<'a, Result<QueueLock, StoreError>>;

    /// Every queue that carries a limit on its running plans, by name.
    fn queue_limits(&self) -> BoxFuture<'_, Result<Vec<QueueLimit>, StoreError>>;

    /// Sets `queue`'s limit on running plans (`None`: no limit). Durable when it returns.
    fn set_queue_limit<'a>(&'a self, queue: &'a QueueName, limit: Option<u32>)
        -> BoxFuture<'a, Result<(), StoreError>>;
}
