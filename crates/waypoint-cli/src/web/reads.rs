//! What the dashboard asks the store, as plain blocking calls over the same service the CLI
//! uses: each answers with the CLI's JSON document for the same question (a summary, a
//! history, logs, a resume preview) or the CLI's error. The server runs these on tokio's
//! blocking threads; `plan report` and `plan show --steps` call them directly.

use chrono::DateTime;
use futures::executor::block_on;
use serde::Serialize;
use waypoint_application::{
    CatalogCursor, CatalogPages, CatalogQuery, PlanStore, PlanView, QueueOverview, ServiceError, StoredEvent,
};
use waypoint_domain::{Attempt, Message, PlanId, PlanStatus, QueueName, QueueStanding, ResumeSummary, StepNumber};

use crate::definition::{plan_file_path, read_plan_file};
use crate::error::{exit, CliError};
use crate::logs::LogsDoc;
use crate::render::{self, HistoryDoc, PlannedStep};
use crate::steps::{steps_doc, StepsDoc};
use crate::store::{resolve_plan_id, LocationExt, Service, StoreLocation};

/// The most plans one page lists, and how many it lists unless asked.
pub const MAX_LIMIT: usize = 500;
pub const DEFAULT_LIMIT: usize = 50;

/// The services the dashboard reads and writes through: `list` checks recorded outputs only for
/// presence (a listing must not read every plan's outputs), `full` checks their digests (a
/// resume preview says what a resume would) and is the one actions write through.
#[derive(Debug, Clone)]
pub struct Stores {
    list: Service,
    full: Service,
    pub read_only: bool,
}

impl Stores {
    /// Opens the store at `location`: read-only with `read_only` (a store that does not exist
    /// yet is then an error), otherwise for writing (created if missing, as `run` does).
    pub fn open(location: &StoreLocation, read_only: bool) -> Result<Self, CliError> {
        let full = if read_only { None } else { Some(location.open_for_write()?) };
        let list = location.open_read_only()?.ok_or_else(|| {
            CliError::new(
                exit::STORE_UNREADABLE,
                "store_not_found",
                format!(
                    "there is no store at {}; give --store, or run a plan first (`waypoint run PLAN.toml`)",
                    location.display()
                ),
            )
        })?;
        let full = match full {
            Some(full) => full,
            None => location.open_read_only_with_digests()?.unwrap_or_else(|| list.clone()),
        };
        Ok(Self { list, full, read_only })
    }

    /// The listing service with a fresh plan-file cache: a server lives long, and a plan file
    /// edited since the last request must be read again.
    fn lister(&self) -> Service {
        self.list.clone().with_definition_probe(crate::definition::PlanFileProbe::default())
    }

    fn checker(&self) -> Service {
        self.full.clone().with_definition_probe(crate::definition::PlanFileProbe::default())
    }

    /// The plan `given` names, as the CLI resolves ids ([`resolve_plan_id`]).
    pub fn resolve(&self, given: &str) -> Result<PlanId, CliError> {
        let given = PlanId::parse(given).map_err(|e| CliError::usage("invalid_value", e.to_string()))?;
        resolve_plan_id(&self.list, &given)
    }

    /// Whether the store answers: the first plan of its listing is read.
    pub fn health(&self) -> Result<(), CliError> {
        block_on(self.list.store().catalog_page(&CatalogQuery::first(1)))
            .map(|_| ())
            .map_err(|e| ServiceError::from(e).into())
    }

    /// Walks the listing (only the open plans with `open_only`), newest activity first, `batch`
    /// plans at a time, while `visit` answers `true`: the live updates and the metrics hold one
    /// batch at a time, never the catalog.
    pub fn walk_listing(
        &self,
        open_only: bool,
        batch: usize,
        mut visit: impl FnMut(Vec<PlanView>) -> Result<bool, CliError>,
    ) -> Result<(), CliError> {
        // Page by page, letting the store go between pages: the server answers other requests
        // meanwhile.
        let mut pages = CatalogPages::new(CatalogQuery::first(batch).only_open(open_only));
        while let Some(page) = block_on(pages.next(self.list.store())).map_err(ServiceError::from)? {
            if !visit(page)? {
                break;
            }
        }
        Ok(())
    }

    /// One plan's compact view, or `None` if the store holds no such plan (any more).
    pub fn summary_view(&self, id: &PlanId) -> Result<Option<PlanView>, CliError> {
        block_on(self.list.store().load_summary_view(id)).map_err(|e| ServiceError::from(e).into())
    }

    /// The summaries of `views`, as `plan list` builds them.
    pub fn summarize(&self, views: &[PlanView]) -> Result<Vec<ResumeSummary>, CliError> {
        Ok(block_on(self.lister().summarize_views(views))?)
    }

    /// One page of plans, newest activity first, as `GET /api/v1/plans` answers. The store is
    /// asked a page at a time ([`PlanStore::catalog_page`]), so the server holds the plans it is
    /// sending and a batch of candidates, never the catalog; with a status or resumable filter,
    /// batches are summarized (a run-lock probe each) until the page is full.
    pub fn page(&self, query: &PageQuery) -> Result<Page, CliError> {
        let store = self.list.store();
        let service = self.lister();
        let filtered = query.status.is_some() || query.resumable;
        // One more than the page, to know whether a next page exists.
        let batch_size = if filtered { (query.limit + 1).max(64) } else { query.limit + 1 };
        let mut ask = CatalogQuery::first(batch_size)
            .only_open(query.resumable)
            .containing(query.q.as_deref())
            .after(query.cursor.clone().map(|c| c.0));
        let mut rows: Vec<(PlanView, ResumeSummary)> = Vec::with_capacity(query.limit + 1);
        loop {
            let batch = block_on(store.catalog_page(&ask)).map_err(ServiceError::from)?;
            let last_batch = batch.len() < batch_size;
            ask = ask.after(batch.last().map(CatalogCursor::after));
            let summaries = block_on(service.summarize_views(&batch))?;
            for (view, summary) in batch.into_iter().zip(summaries) {
                let wanted = query.status.is_none_or(|s| s == summary.status) && (summary.eligible || !query.resumable);
                if wanted && rows.len() <= query.limit {
                    rows.push((view, summary));
                }
            }
            if last_batch || rows.len() > query.limit {
                break;
            }
        }
        let next_cursor = if rows.len() > query.limit {
            rows.truncate(query.limit);
            rows.last().map(|(view, _)| Cursor(CatalogCursor::after(view)).to_string())
        } else {
            None
        };
        // An empty page says whether the store holds no plan at all, or none of these.
        let empty_store = rows.is_empty()
            && (query.cursor.is_none() && query.q.is_none() && !filtered
                || block_on(store.catalog_page(&CatalogQuery::first(1))).map_err(ServiceError::from)?.is_empty());
        Ok(Page { rows, next_cursor, empty_store })
    }

    /// The page `query` asks for: [`Stores::page`], or with a queue [`Stores::page_in_queue`].
    pub fn listing(&self, query: &PageQuery) -> Result<Page, CliError> {
        match &query.queue {
            None => self.page(query),
            Some(queue) => self.page_in_queue(query, queue),
        }
    }

    /// One page of the plans submitted to `queue` (what `plan list --queue NAME` keeps), newest
    /// activity first. Pages of the listing with the query's other filters ([`Stores::page`]) are
    /// read one after another until this one is full, so the server still holds a page at a time.
    pub fn page_in_queue(&self, query: &PageQuery, queue: &QueueName) -> Result<Page, CliError> {
        let mut ask = PageQuery { queue: None, limit: (query.limit + 1).clamp(64, MAX_LIMIT), ..query.clone() };
        let mut rows: Vec<(PlanView, ResumeSummary)> = Vec::with_capacity(query.limit + 1);
        let mut empty_store = None;
        loop {
            let page = self.page(&ask)?;
            empty_store.get_or_insert(page.empty_store);
            let after = page.rows.last().map(|(view, _)| Cursor(CatalogCursor::after(view)));
            let more = page.next_cursor.is_some();
            rows.extend(page.rows.into_iter().filter(|(_, summary)| summary.queue.as_ref() == Some(queue)));
            match after {
                Some(after) if more && rows.len() <= query.limit => ask.cursor = Some(after),
                _ => break,
            }
        }
        let next_cursor = if rows.len() > query.limit {
            rows.truncate(query.limit);
            rows.last().map(|(view, _)| Cursor(CatalogCursor::after(view)).to_string())
        } else {
            None
        };
        let empty_store = rows.is_empty() && empty_store.unwrap_or(false);
        Ok(Page { rows, next_cursor, empty_store })
    }

    /// Every queue as `queue list` shows it ([`crate::commands::list_queues`]).
    pub fn queues(&self) -> Result<Vec<QueueOverview>, CliError> {
        crate::commands::list_queues(Some(&self.list))
    }

    /// The plans a runner holds in `queue` now, oldest submission first: who runs what.
    pub fn running_in(&self, queue: &QueueName) -> Result<Vec<ResumeSummary>, CliError> {
        let plans = block_on(self.lister().queue_plans(queue))?;
        Ok(plans.into_iter().filter(|(_, standing)| *standing == QueueStanding::Running).map(|(s, _)| s).collect())
    }

    /// The plan's summary and compact view (its name, source and last activity).
    pub fn summary(&self, id: &PlanId) -> Result<(ResumeSummary, PlanView), CliError> {
        let service = self.lister();
        let summary = block_on(service.build_resume_summary(id, None))?;
        let view = block_on(service.load_summary(id))?;
        Ok((summary, view))
    }

    /// Every event of the plan, oldest first.
    pub fn events(&self, id: &PlanId) -> Result<Vec<StoredEvent>, CliError> {
        Ok(block_on(self.list.history(id))?)
    }

    /// `plan history --format json`.
    pub fn history(&self, id: &PlanId) -> Result<HistoryDoc, CliError> {
        Ok(render::history_doc(&self.events(id)?))
    }

    /// `plan show --steps`: each step's attempts and output.
    pub fn steps(&self, id: &PlanId) -> Result<StepsDoc, CliError> {
        let (summary, _) = self.summary(id)?;
        Ok(steps_doc(id, &self.events(id)?, summary.status))
    }

    /// `plan logs --format json`: every recorded attempt (only `step` and `attempt` where given),
    /// with what the store kept of its stdout and stderr.
    pub fn logs(&self, id: &PlanId, step: Option<StepNumber>, attempt: Option<Attempt>) -> Result<LogsDoc, CliError> {
        crate::logs::logs_doc(&self.list, id, step, attempt)
    }

    /// `plan resume ID --dry-run --format json`: the verdict (outputs' digests checked), and for
    /// a plan file what a resume would do with each step.
    pub fn preview(&self, id: &PlanId) -> Result<Preview, CliError> {
        let service = self.checker();
        let view = block_on(service.load_summary(id))?;
        let request = waypoint_application::ResumeRequest { dry_run: true, ..Default::default() };
        let summary = block_on(service.resume_plan(id, request))?.summary;
        let steps = match plan_file_path(&view.state).map(read_plan_file) {
            Some(Ok(file)) => Some(render::planned_steps(&file, &summary)),
            _ => None,
        };
        Ok(Preview { summary, steps })
    }

    /// `plan cancel`: the summary after it.
    pub fn cancel(&self, id: &PlanId, reason: Option<&str>) -> Result<ResumeSummary, CliError> {
        self.writable()?;
        let reason = reason
            .filter(|r| !r.trim().is_empty())
            .map(Message::parse)
            .transpose()
            .map_err(|e| CliError::usage("invalid_value", e.to_string()))?;
        let service = self.checker();
        block_on(service.cancel(id, reason))?;
        Ok(block_on(self.lister().build_resume_summary(id, None))?)
    }

    /// `plan fork --from-step N`: the new plan's summary.
    pub fn fork(&self, id: &PlanId, from_step: u32) -> Result<ResumeSummary, CliError> {
        self.writable()?;
        let from_step = StepNumber::new(from_step).map_err(|e| CliError::usage("invalid_value", e.to_string()))?;
        let at_step = StepNumber::new(from_step.get() - 1).ok();
        let fork = block_on(self.checker().fork_plan(id, at_step, None))?;
        Ok(block_on(self.lister().build_resume_summary(&fork.plan_id, None))?)
    }

    /// `plan pause`, `plan approve` and `plan reject`: the summary after the decision. `by`
    /// names the person (the dashboard's user, as its client says, else `dashboard`).
    pub fn decide(&self, id: &PlanId, decision: Decision) -> Result<ResumeSummary, CliError> {
        self.writable()?;
        let text = |value: Option<String>| -> Result<Option<Message>, CliError> {
            value
                .filter(|t| !t.trim().is_empty())
                .map(|t| Message::parse(&t))
                .transpose()
                .map_err(|e| CliError::usage("invalid_value", e.to_string()))
        };
        let service = self.checker();
        match decision {
            Decision::Pause { by, reason } => block_on(service.pause(id, by, text(reason)?))?,
            Decision::Approve { by, step, comment } => block_on(service.approve(id, step, by, text(comment)?))?,
            Decision::Reject { by, step, reason } => {
                let reason = text(Some(reason))?
                    .ok_or_else(|| CliError::usage("invalid_value", "give the reason for the rejection"))?;
                block_on(service.reject(id, step, by, reason))?
            }
        };
        Ok(block_on(self.lister().build_resume_summary(id, None))?)
    }

    fn writable(&self) -> Result<(), CliError> {
        if self.read_only {
            return Err(read_only_refusal());
        }
        Ok(())
    }
}

/// The refusal of an action by a dashboard started with `--read-only` (HTTP 403).
pub fn read_only_refusal() -> CliError {
    CliError::new(
        exit::USAGE,
        "read_only",
        "this dashboard was started with --read-only, so it changes nothing; use the CLI, or restart `waypoint ui` without --read-only",
    )
}

/// A resume preview, owned; [`Preview::doc`] is the CLI's document.
#[derive(Debug, Clone)]
pub struct Preview {
    pub summary: ResumeSummary,
    pub steps: Option<Vec<PlannedStep>>,
}

impl Preview {
    pub fn doc(&self) -> render::PreviewDoc<'_> {
        render::PreviewDoc { summary: &self.summary, steps: self.steps.as_deref() }
    }
}

/// A listing request: filters, page size and where the page starts.
#[derive(Debug, Clone)]
pub struct PageQuery {
    pub status: Option<PlanStatus>,
    pub resumable: bool,
    pub q: Option<String>,
    /// Only plans submitted to this queue, as `plan list --queue` (see [`Stores::listing`]).
    pub queue: Option<QueueName>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// The first page of every plan, as many as a page holds unless asked.
impl Default for PageQuery {
    fn default() -> Self {
        Self { status: None, resumable: false, q: None, queue: None, limit: DEFAULT_LIMIT, cursor: None }
    }
}

impl PageQuery {
    /// Parses the query string's fields (`status`, `resumable`, `q`, `queue`, `limit`, `cursor`); a bad
    /// value is a usage error (HTTP 400).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Self, CliError> {
        let bad = |message: String| CliError::usage("invalid_value", message);
        let status = match get("status").filter(|s| !s.is_empty() && s != "all") {
            None => None,
            Some(word) => Some(PlanStatus::ALL.into_iter().find(|s| s.as_str() == word).ok_or_else(|| {
                let words: Vec<&str> = PlanStatus::ALL.iter().map(|s| s.as_str()).collect();
                bad(format!("status {word:?} is not a status; give one of {}", words.join(", ")))
            })?),
        };
        let resumable = match get("resumable").as_deref() {
            None | Some("" | "false" | "0") => false,
            Some("true" | "1" | "on") => true,
            Some(other) => return Err(bad(format!("resumable {other:?} is not true or false"))),
        };
        let limit = match get("limit").filter(|l| !l.is_empty()) {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(bad(format!("limit {text:?} is not a number from 1 to {MAX_LIMIT}"))),
            },
        };
        let cursor =
            match get("cursor").filter(|c| !c.is_empty()) {
                None => None,
                Some(text) => Some(Cursor::parse(&text).ok_or_else(|| {
                    bad(format!("cursor {text:?} is not one this server gave; start again without it"))
                })?),
            };
        let queue = match get("queue").filter(|q| !q.is_empty()) {
            None => None,
            Some(text) => {
                Some(QueueName::parse(&text).map_err(|e| bad(format!("queue {text:?} is not a queue's name: {e}")))?)
            }
        };
        Ok(Self { status, resumable, q: get("q").filter(|q| !q.trim().is_empty()), queue, limit, cursor })
    }
}

/// Where the next page starts, as the API writes it: `NANOS.PLAN_ID`, after that plan in the
/// listing's order (newest activity first, then id). Plans that change meanwhile move to the
/// front, so a page never repeats or skips a plan that did not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(CatalogCursor);

impl Cursor {
    fn parse(text: &str) -> Option<Self> {
        let (nanos, id) = text.split_once('.')?;
        let last_activity_at = DateTime::from_timestamp_nanos(nanos.parse().ok()?);
        Some(Self(CatalogCursor { last_activity_at, plan_id: PlanId::parse(id).ok()? }))
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0.last_activity_at.timestamp_nanos_opt().unwrap_or(i64::MAX), self.0.plan_id)
    }
}

/// One page of plans with their views (for names and last activity) and summaries.
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<(PlanView, ResumeSummary)>,
    pub next_cursor: Option<String>,
    /// Whether the page is empty because the store holds no plan at all.
    pub empty_store: bool,
}

/// `{"plans": [summary…], "next_cursor": C or null}`.
#[derive(Debug, Serialize)]
pub struct PageDoc<'a> {
    pub plans: Vec<&'a ResumeSummary>,
    pub next_cursor: Option<&'a str>,
}

impl Page {
    pub fn doc(&self) -> PageDoc<'_> {
        PageDoc { plans: self.rows.iter().map(|(_, s)| s).collect(), next_cursor: self.next_cursor.as_deref() }
    }
}

/// A person's decision about a plan, from the dashboard.
#[derive(Debug)]
pub enum Decision {
    /// Stop it at its next step boundary.
    Pause { by: waypoint_domain::Actor, reason: Option<String> },
    /// Let the step it waits at run.
    Approve { by: waypoint_domain::Actor, step: Option<StepNumber>, comment: Option<String> },
    /// Fail it at the step it waits at.
    Reject { by: waypoint_domain::Actor, step: Option<StepNumber>, reason: String },
}
