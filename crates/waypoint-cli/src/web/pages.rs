//! The dashboard's HTML, as maud templates: every plan-supplied string (names, ids, outputs,
//! logs, messages) is spliced in by maud, which escapes it, so it is always text and never
//! markup. The same templates render the served pages and `plan report`'s one-file page (styles
//! inlined, no script, no actions).

use chrono::{DateTime, Utc};
use eventually::versioning::Versioned;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use waypoint_application::PlanView;
use waypoint_application::{QueueOverview, StoredEvent};
use waypoint_domain::{PlanStatus, ProcessingState, QueueName, ResumeSummary};

use super::reads::{Page, PageQuery, Preview};
use crate::error::CliError;
use crate::logs::LogsDoc;
use crate::render::{self, short_ids, TimelineEntry};
use crate::steps::{AttemptEntry, StepEntry, StepsDoc};
use crate::text::{ago, local_time as clock_time};
use crate::ui::Style;

/// The stylesheet, served at `/assets/app.css` and inlined into reports.
pub const CSS: &str = include_str!("assets/app.css");
/// The one script, served at `/assets/app.js`: live updates and actions.
pub const JS: &str = include_str!("assets/app.js");
/// The icon, served at `/assets/icon.svg`.
pub const ICON: &str = include_str!("assets/icon.svg");

/// How a page is delivered: by the server (assets linked, live, with actions unless read-only)
/// or as a report file (styles inlined, static).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Served { read_only: bool },
    Report,
}

fn layout(mode: Mode, title: &str, page: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @match mode {
                    Mode::Served { .. } => {
                        link rel="stylesheet" href="/assets/app.css";
                        link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
                        script src="/assets/app.js" defer {}
                    }
                    Mode::Report => {
                        meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:";
                        // Our own stylesheet, a constant of this binary: nothing a plan supplies.
                        style { (PreEscaped(CSS)) }
                    }
                }
                title { (title) " · Waypoint" }
            }
            body data-page=(page) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    @match mode {
                        Mode::Served { .. } => {
                            a.brand href="/" { span aria-hidden="true" { "◆ " } "Waypoint" }
                            nav.sections aria-label="Sections" {
                                a href="/" aria-current=[(page == "plans").then_some("page")] { "Plans" }
                                a href="/queues" aria-current=[(page == "queues").then_some("page")] { "Queues" }
                            }
                        }
                        Mode::Report => span.brand { span aria-hidden="true" { "◆ " } "Waypoint report" },
                    }
                    @if let Mode::Served { read_only: true } = mode {
                        span.badge { "read-only" }
                    }
                    @if matches!(mode, Mode::Served { .. }) {
                        span #live.live aria-live="polite" { "Live updates: connecting" }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// The status word with its icon; the word is always there, so nothing is said by colour alone.
pub fn status_badge(status: PlanStatus) -> Markup {
    let icon = match status {
        PlanStatus::Running => "▶",
        PlanStatus::Interrupted => "‖",
        PlanStatus::Crashed => "⚠",
        PlanStatus::Failed => "✗",
        PlanStatus::Completed => "✓",
        PlanStatus::Cancelled => "⊘",
        PlanStatus::Applied => "★",
        PlanStatus::NotStarted => "○",
        PlanStatus::Waiting => "?",
        PlanStatus::Paused => "‖",
        PlanStatus::Queued => "◷",
    };
    html! {
        span class={ "status status-" (status.as_str()) } {
            span.icon aria-hidden="true" { (icon) } " " (status_word(status))
        }
    }
}

fn status_word(status: PlanStatus) -> &'static str {
    match status {
        PlanStatus::NotStarted => "not started",
        other => other.as_str(),
    }
}

fn progress(summary: &ResumeSummary) -> Markup {
    let done = summary.last_completed_step.map_or(0, |s| s.get());
    html! {
        @match summary.total_steps {
            Some(total) => {
                progress value=(done) max=(total.get()) aria-hidden="true" {}
                " " span.progress-text { (done) " of " (total.get()) }
            }
            None => span.progress-text { (done) " done" },
        }
    }
}

/// "yes" or why not, in words.
fn resumable_words(summary: &ResumeSummary) -> Markup {
    html! {
        @if summary.eligible {
            span.yes { "yes" }
        } @else if summary.status == PlanStatus::Completed {
            span.no { "no need: every step has completed" }
        } @else {
            span.no {
                "no: "
                @for (i, reason) in summary.reasons.iter().enumerate() {
                    @if i > 0 { "; " }
                    (reason.explanation())
                }
            }
        }
    }
}

fn time(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) title=(clock_time(at)) { (ago(at, now)) } }
}

fn plan_title(view: &PlanView) -> String {
    view.state.name.as_ref().map_or_else(|| format!("plan {}", view.plan_id), |n| n.as_str().to_owned())
}

/// `/`: the plan list with its filters; the live part is [`plans_live`].
pub fn plans_page(mode: Mode, page: &Page, query: &PageQuery, now: DateTime<Utc>) -> Markup {
    let body = html! {
        h1 { "Plans" }
        form.filters method="get" action="/" role="search" {
            label { "Status "
                select name="status" {
                    option value="" selected[query.status.is_none()] { "any" }
                    @for status in PlanStatus::ALL {
                        option value=(status.as_str()) selected[query.status == Some(status)] { (status_word(status)) }
                    }
                }
            }
            label { input type="checkbox" name="resumable" value="true" checked[query.resumable]; " can resume now" }
            label { "Search "
                input type="search" name="q" value=(query.q.as_deref().unwrap_or("")) placeholder="name or id";
            }
            label { "Queue "
                input type="text" name="queue" value=(query.queue.as_ref().map_or("", |q| q.as_str())) placeholder="any" size="12";
            }
            @if query.limit != super::reads::DEFAULT_LIMIT {
                input type="hidden" name="limit" value=(query.limit);
            }
            button type="submit" { "Filter" }
        }
        div #plans-live { (plans_live(page, query, now)) }
    };
    layout(mode, "Plans", "plans", body)
}

/// The table of one page of plans and the links to the next page.
pub fn plans_live(page: &Page, query: &PageQuery, now: DateTime<Utc>) -> Markup {
    let ids: Vec<&str> = page.rows.iter().map(|(view, _)| view.plan_id.as_str()).collect();
    let shorts = short_ids(&ids);
    html! {
        @if page.rows.is_empty() {
            p.empty {
                @if page.empty_store { "No plans here yet. Start one with " code { "waypoint run PLAN.toml" } "." }
                @else { "No plan matches these filters." }
            }
        } @else {
            table.plans {
                caption.visually-hidden { "Plans, newest activity first" }
                thead { tr {
                    th scope="col" { "Status" } th scope="col" { "Name" } th scope="col" { "Id" }
                    th scope="col" { "Progress" } th scope="col" { "Can resume" }
                    th scope="col" { "Queue · worker" } th scope="col" { "Last activity" }
                } }
                tbody {
                    @for ((view, summary), short) in page.rows.iter().zip(&shorts) {
                        tr data-plan-id=(view.plan_id) {
                            td { (status_badge(summary.status)) }
                            td.name { a href={ "/plans/" (view.plan_id) } { (plan_title(view)) } }
                            td { code title=(view.plan_id) { (short) } }
                            td.progress { (progress(summary)) }
                            td.resumable { (resumable_words(summary)) }
                            td.queue { (queue_and_worker(summary, query)) }
                            td { (time(view.last_activity_at, now)) }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if query.cursor.is_some() {
                a href=(list_href(query, None)) { "← First page" }
            }
            @if let Some(next) = &page.next_cursor {
                a href=(list_href(query, Some(next))) rel="next" { "Next page →" }
            }
            span.count { (page.rows.len()) " shown" }
        }
    }
}

/// The queue a plan was submitted to (a link to the list of its plans) and the worker (any
/// lease holder) that runs it now: `builds · worker-host-12-1`, `builds`, or `-`.
fn queue_and_worker(summary: &ResumeSummary, query: &PageQuery) -> Markup {
    let worker = summary.lease.as_ref().filter(|_| summary.status == PlanStatus::Running).map(|l| l.runner.to_string());
    html! {
        @if let Some(queue) = &summary.queue {
            a href=(queue_href(queue, query)) title={ "Plans of queue " (queue) } { (queue) }
        }
        @match (summary.queue.is_some(), worker) {
            (true, Some(worker)) => { " · " (worker) }
            (false, Some(worker)) => (worker),
            (true, None) => {},
            (false, None) => "-",
        }
    }
}

/// The list of `queue`'s plans, with the list's other filters.
fn queue_href(queue: &QueueName, query: &PageQuery) -> String {
    let query = PageQuery { queue: Some(queue.clone()), cursor: None, ..query.clone() };
    list_href(&query, None)
}

/// The list's address with the same filters, at `cursor`.
fn list_href(query: &PageQuery, cursor: Option<&str>) -> String {
    let mut parts: Vec<(&str, String)> = Vec::new();
    if let Some(status) = query.status {
        parts.push(("status", status.as_str().to_owned()));
    }
    if query.resumable {
        parts.push(("resumable", "true".to_owned()));
    }
    if let Some(q) = &query.q {
        parts.push(("q", q.clone()));
    }
    if let Some(queue) = &query.queue {
        parts.push(("queue", queue.to_string()));
    }
    if query.limit != super::reads::DEFAULT_LIMIT {
        parts.push(("limit", query.limit.to_string()));
    }
    if let Some(cursor) = cursor {
        parts.push(("cursor", cursor.to_owned()));
    }
    let encoded: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    if encoded.is_empty() {
        "/".to_owned()
    } else {
        format!("/?{}", encoded.join("&"))
    }
}

/// Percent-encoding of a query value (everything but unreserved characters).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What the queues page shows: every queue as `queue list` shows it, and for each (in the
/// same order) the plans a runner holds in it now.
#[derive(Debug)]
pub struct QueueBoard {
    pub queues: Vec<QueueOverview>,
    pub running: Vec<Vec<ResumeSummary>>,
}

/// `/queues`: every queue, its limit and what it holds, and which worker runs which plan; the
/// live part is [`queues_live`].
pub fn queues_page(mode: Mode, board: &QueueBoard) -> Markup {
    let body = html! {
        h1 { "Queues" }
        p.hint { "Plans submitted with " code { "waypoint submit" } " wait in a queue until a "
            code { "waypoint worker" } " claims them. The same as " code { "waypoint queue list" } "." }
        div #queues-live { (queues_live(board)) }
    };
    layout(mode, "Queues", "queues", body)
}

/// The queues' table and who runs what.
pub fn queues_live(board: &QueueBoard) -> Markup {
    let all = PageQuery::default();
    html! {
        @if board.queues.is_empty() {
            p.empty { "No queues yet. Submit a plan with " code { "waypoint submit PLAN.toml" } "." }
        } @else {
            table.queues {
                caption.visually-hidden { "Queues, by name" }
                thead { tr {
                    th scope="col" { "Queue" } th.number scope="col" { "Limit" } th.number scope="col" { "Queued" }
                    th.number scope="col" { "Running" } th.number scope="col" { "Held" } th scope="col" { "Running now (worker: plan)" }
                } }
                tbody {
                    @for (queue, running) in board.queues.iter().zip(&board.running) {
                        tr data-queue=(queue.queue) {
                            th scope="row" { a href=(queue_href(&queue.queue, &all)) title={ "Plans of queue " (queue.queue) } { (queue.queue) } }
                            td.number { @match queue.limit { Some(limit) => (limit), None => "none" } }
                            td.number { (queue.claimable) }
                            td.number { (queue.running) }
                            td.number { (queue.settled) }
                            td.workers {
                                @if running.is_empty() {
                                    span.empty { "-" }
                                } @else {
                                    ul.workers {
                                        @for summary in running {
                                            li {
                                                @if let Some(lease) = &summary.lease { (lease.runner) ": " }
                                                a href={ "/plans/" (summary.plan_id) } { code { (summary.plan_id) } }
                                                @if let Some(next) = summary.next_step { " · step " (next) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p.hint { "Queued: a worker may claim it now. Running: a worker holds it; a limit counts these. Held: nobody claims it (paused, or waiting for a person)." }
        }
    }
}

/// Everything the plan page shows.
#[derive(Debug)]
pub struct PlanPage {
    pub summary: ResumeSummary,
    pub view: PlanView,
    pub steps: StepsDoc,
    pub logs: LogsDoc,
    pub preview: Result<Preview, CliError>,
    /// Every event of the plan, oldest first: the history, in words.
    pub events: Vec<StoredEvent>,
}

/// The columns a value of the summary or a line of the history may take on a page: wide enough
/// that the browser, not the text, decides where lines break (a step's name is at most 200
/// characters), short enough that a runaway message stays a line.
const PAGE_COLUMNS: usize = 400;

/// `/plans/ID` (and `plan report`): the live part is [`plan_live`].
pub fn plan_page(mode: Mode, plan: &PlanPage, now: DateTime<Utc>) -> Markup {
    let body = html! {
        p.crumbs { @if matches!(mode, Mode::Served { .. }) { a href="/" { "← All plans" } } }
        div #plan-live data-plan-id=(plan.summary.plan_id) { (plan_live(mode, plan, now)) }
    };
    layout(mode, &plan_title(&plan.view), "plan", body)
}

/// The plan page's content, rendered again on every change of the plan.
pub fn plan_live(mode: Mode, plan: &PlanPage, now: DateTime<Utc>) -> Markup {
    let summary = &plan.summary;
    html! {
        h1 { (plan_title(&plan.view)) }
        p.ids { "Plan " code { (summary.plan_id) } " · " (status_badge(summary.status))
            " · last activity " (time(plan.view.last_activity_at, now)) }
        section aria-labelledby="h-summary" {
            h2 #h-summary { "Summary" }
            (summary_table(plan))
        }
        @if let Mode::Served { read_only } = mode {
            (actions(summary, read_only))
        }
        section aria-labelledby="h-steps" {
            h2 #h-steps { "Steps" }
            (steps_timeline(&plan.steps, &plan.logs, now))
        }
        section aria-labelledby="h-preview" {
            h2 #h-preview { "If resumed now" }
            @match &plan.preview {
                Ok(preview) => (preview_words(preview)),
                Err(e) => p.no { "The preview could not be made: " (e.message) },
            }
        }
        section aria-labelledby="h-history" {
            h2 #h-history { "History" }
            (history_table(&plan.events))
        }
    }
}

/// The plan's summary in the words of `plan show` ([`render::summary_rows`]): its status word,
/// progress, the step it runs next and why, how it stopped, its error, whether it can resume.
fn summary_table(plan: &PlanPage) -> Markup {
    let rows = render::summary_rows(Style::plain(), false, PAGE_COLUMNS, &plan.summary, &plan.view);
    html! {
        table.summary {
            caption.visually-hidden { "The plan's summary" }
            tbody {
                @for row in &rows {
                    tr class=[row.label.is_empty().then_some("continued")] {
                        th scope="row" { (row.label) }
                        @if row.error {
                            td.error-box { pre { (row.value) } }
                        } @else {
                            td { (row.value) }
                        }
                    }
                }
            }
        }
    }
}

/// The buttons for what the plan allows now, and the place their refusals are shown.
fn actions(summary: &ResumeSummary, read_only: bool) -> Markup {
    let id = summary.plan_id.as_str();
    // What the rules allow (`plan cancel` refuses a plan in `action` or finished).
    let can_cancel = summary.phase != waypoint_domain::Phase::Action && !summary.state.is_terminal();
    // `plan pause` takes a running or stopped plan that is not already paused.
    let can_pause = matches!(summary.state, ProcessingState::Processing | ProcessingState::Queued)
        && summary.phase != waypoint_domain::Phase::Action
        && summary.status != PlanStatus::Paused
        && summary.waiting_for.is_none();
    let next = summary.next_step.map_or_else(|| summary.last_completed_step.map_or(1, |s| s.get() + 1), |s| s.get());
    html! {
        section aria-labelledby="h-actions" {
            h2 #h-actions { "Actions" }
            @if read_only {
                p { "This dashboard is read-only: it changes nothing. Use the CLI, or start " code { "waypoint ui" } " without " code { "--read-only" } "." }
            } @else {
                div #action-message role="alert" tabindex="-1" {}
                div.actions {
                    @if let Some(waiting) = &summary.waiting_for {
                        form.action data-action="approve" data-plan-id=(id) {
                            label { "Comment (optional) " input type="text" name="comment" maxlength="500"; }
                            button type="submit" { "Approve step " (waiting.step) }
                        }
                        form.action data-action="reject" data-plan-id=(id) {
                            label { "Reason " input type="text" name="reason" maxlength="500" required; }
                            button type="submit" { "Reject step " (waiting.step) }
                        }
                    }
                    @if can_pause {
                        form.action data-action="pause" data-plan-id=(id) {
                            button type="submit" { "Pause" }
                            span.hint { "Stops at its next step boundary; it continues when run again" }
                        }
                    }
                    @if can_cancel {
                        form.action data-action="cancel" data-plan-id=(id) {
                            label { "Reason (optional) " input type="text" name="reason" maxlength="500"; }
                            button type="submit" { "Cancel plan" }
                        }
                    }
                    form.action data-action="fork" data-plan-id=(id) {
                        label { "Run again from step " input type="number" name="from_step" min="1" value=(next) required; }
                        button type="submit" { "Fork" }
                        span.hint { "Makes a new plan with the steps before it copied; resume it with the CLI" }
                    }
                }
            }
        }
    }
}

/// Each step with every attempt drawn to scale on one time axis, its logs and its output.
fn steps_timeline(steps: &StepsDoc, logs: &LogsDoc, now: DateTime<Utc>) -> Markup {
    let attempts = steps.steps.iter().flat_map(|s| &s.attempts);
    let start = attempts.clone().map(|a| a.started_at).min();
    let end = attempts.map(|a| a.ended_at.unwrap_or(if a.outcome == "running" { now } else { a.started_at })).max();
    let axis = match (start, end) {
        (Some(start), Some(end)) => Some((start, ((end - start).num_milliseconds()).max(1) as f64)),
        _ => None,
    };
    html! {
        @if steps.steps.is_empty() {
            p.empty { "No step has been recorded." }
        } @else {
            @if let (Some((start, span)), Some(end)) = (axis, end) {
                p.axis { "Time axis: " (clock_time(start)) " to " (clock_time(end)) " (" (duration_words(span as i64)) "); each bar is one attempt." }
            }
            ol.steps {
                @for step in &steps.steps {
                    li class={ "step step-" (step.status) } {
                        div.step-head {
                            span.step-no { "Step " (step.step) }
                            " "
                            span.step-name { (step.name.as_deref().unwrap_or("(no name)")) }
                            " · "
                            span class={ "step-status outcome-" (step.status) } { (step.status) }
                            " · " (attempt_count(step))
                        }
                        @for attempt in &step.attempts {
                            (attempt_row(step, attempt, axis, logs, now))
                        }
                        @if let Some(output) = &step.output {
                            details.output {
                                summary { "Output of step " (step.step) }
                                pre { (serde_json::to_string_pretty(output).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn attempt_count(step: &StepEntry) -> String {
    match step.attempts.len() {
        0 => "not run yet".to_owned(),
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    }
}

fn attempt_row(
    step: &StepEntry,
    attempt: &AttemptEntry,
    axis: Option<(DateTime<Utc>, f64)>,
    logs: &LogsDoc,
    now: DateTime<Utc>,
) -> Markup {
    let end = attempt.ended_at.or((attempt.outcome == "running").then_some(now));
    let millis = end.map(|e| (e - attempt.started_at).num_milliseconds().max(0));
    let (x, width) = match axis {
        Some((start, span)) => {
            let x = (attempt.started_at - start).num_milliseconds() as f64 / span * 1000.0;
            let w = millis.unwrap_or(0) as f64 / span * 1000.0;
            (x.clamp(0.0, 1000.0), w.clamp(4.0, 1000.0))
        }
        None => (0.0, 4.0),
    };
    let log = logs.logs.iter().find(|l| l.step.get() == step.step && l.attempt == attempt.attempt);
    let label = format!(
        "attempt {}: {}{}",
        attempt.attempt,
        attempt.outcome,
        millis.map_or(String::new(), |m| format!(", {}", duration_words(m)))
    );
    html! {
        div.attempt {
            div.attempt-text {
                "Attempt " (attempt.attempt) " · "
                span class={ "outcome outcome-" (attempt.outcome) } { (outcome_icon(attempt.outcome)) " " (attempt.outcome) }
                @if let Some(code) = attempt.exit_code { " · exit code " (code) }
                " · " (millis.map_or_else(|| "length unknown".to_owned(), duration_words))
                " · started " (time(attempt.started_at, now))
                @if let Some(reason) = attempt.reason.as_ref().filter(|r| attempt.exit_code.is_none_or(|c| **r != format!("exit code {c}"))) {
                    " · " span.reason { (reason) }
                }
            }
            svg.bar viewBox="0 0 1000 14" preserveAspectRatio="none" role="img" aria-label=(label) {
                rect.track x="0" y="0" width="1000" height="14" {}
                rect class={ "fill outcome-" (attempt.outcome) } x=(format!("{x:.1}")) y="0" width=(format!("{width:.1}")) height="14" {}
            }
            @if let Some(log) = log {
                details.logs id={ "logs-" (step.step) "-" (attempt.attempt) } {
                    summary { "Logs of step " (step.step) ", attempt " (attempt.attempt) }
                    h4 { "stdout" }
                    @if log.stdout.is_empty() { p.empty { "(empty)" } } @else { pre.log { (log.stdout) } }
                    h4 { "stderr" }
                    @if log.stderr.is_empty() { p.empty { "(empty)" } } @else { pre.log.stderr { (log.stderr) } }
                }
            }
        }
    }
}

fn outcome_icon(outcome: &str) -> &'static str {
    match outcome {
        "completed" => "✓",
        "running" => "▶",
        "failed" => "✗",
        "timeout" => "◷",
        "interrupted" => "‖",
        "crashed" => "⚠",
        "cancelled" => "⊘",
        _ => "•",
    }
}

/// `850ms`, `12.3s`, `4m 05s`, `2h 10m`.
fn duration_words(millis: i64) -> String {
    match millis {
        ..1_000 => format!("{millis}ms"),
        1_000..60_000 => format!("{:.1}s", millis as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {:02}s", millis / 60_000, (millis / 1000) % 60),
        _ => format!("{}h {:02}m", millis / 3_600_000, (millis / 60_000) % 60),
    }
}

/// The resume preview in words: which steps a resume would skip, run again and run.
fn preview_words(preview: &Preview) -> Markup {
    let summary = &preview.summary;
    html! {
        @if !summary.eligible {
            @if summary.status == PlanStatus::Completed {
                p { "Nothing to resume: every step has completed." }
            } @else {
                p.no { "A resume would be refused now:" }
                ul { @for reason in &summary.reasons { li { (reason.explanation()) " (" code { (reason.code()) } ")" } } }
            }
        } @else if let Some(steps) = &preview.steps {
            p { "A resume would run the plan file's steps this way:" }
            ol.preview {
                @for step in steps {
                    li { "step " (step.step) " (" (step.name) "): " (render::planned_step_words(step, summary.status)) }
                }
            }
        } @else {
            p {
                @match summary.next_step {
                    Some(n) if summary.uncertain_step == Some(n) => { "Resuming would run step " (n) " again, because it started but did not finish, and go on from there." }
                    Some(n) => { "Resuming would continue at step " (n) "." }
                    None => { "Resuming would continue the plan." }
                }
            }
        }
        @if summary.eligible {
            p { "To resume: " code { "waypoint resume " (summary.plan_id) } }
        }
    }
}

/// Every event in the words of `plan history` ([`render::timeline_entries`]), steps named.
fn history_table(events: &[StoredEvent]) -> Markup {
    html! {
        table.history {
            caption.visually-hidden { "Every recorded event, oldest first" }
            thead { tr { th scope="col" { "#" } th scope="col" { "Recorded" } th scope="col" { "Event" } th scope="col" { "What it says" } } }
            tbody {
                @for TimelineEntry { stored, text } in render::timeline_entries(events, PAGE_COLUMNS) {
                    tr {
                        td { (stored.version()) }
                        td { (clock_time(stored.recorded_at)) }
                        td { code { (stored.event.event_type().as_str()) } }
                        td.data { (text) }
                    }
                }
            }
        }
    }
}

/// A page saying what went wrong (the API's errors are JSON; pages get this).
pub fn error_page(mode: Mode, error: &CliError) -> Markup {
    let body = html! {
        h1 { "Something is wrong" }
        p.no { (error.message) }
        p { code { (error.code) } }
        p { a href="/" { "← All plans" } }
    };
    layout(mode, "Error", "error", body)
}
