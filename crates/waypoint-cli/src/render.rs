//! Rich output for people (a summary block, a table of plans, a timeline of events) and the JSON
//! shapes for scripts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use eventually::versioning::Versioned;
use serde::Serialize;
use serde_json::Value;
use waypoint_application::{PlanView, RecordedEvent, ResumePoint, StoredEvent};
use waypoint_domain::{
    DecisionId, EventId, PlanEvent, PlanId, PlanStatus, ResumeIneligibleReason, ResumeSummary, StepName, StepNumber,
    LEASE_EXPIRED_REASON,
};

use crate::definition::plan_file_path;
use crate::error::rerun_command;
use crate::plan_file::PlanFile;
use crate::progress::bar;
use crate::text::{ago, columns, count, cut, cut_left, escape_controls, local_time, wrap};
use crate::ui::{Style, Ui};

/// A dry run: the summary object, plus for a plan file what a resume would do with each step.
#[derive(Debug, Serialize)]
pub struct PreviewDoc<'a> {
    #[serde(flatten)]
    pub summary: &'a ResumeSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<&'a [PlannedStep]>,
}

/// One step of a plan file in a dry run: `skip` (completed), `rerun` (the uncertain step) or `run`.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub step: u32,
    pub name: String,
    pub action: &'static str,
}

/// Each step of the plan file and what a resume would do with it: skip, rerun (the uncertain
/// step) or run, as `resume --dry-run` and the dashboard's preview say.
pub fn planned_steps(file: &PlanFile, summary: &ResumeSummary) -> Vec<PlannedStep> {
    let done = summary.last_completed_step.map_or(0, StepNumber::get);
    let uncertain = summary.uncertain_step.map(StepNumber::get);
    (1..)
        .zip(&file.steps)
        .map(|(n, step)| {
            let action = if n <= done {
                "skip"
            } else if Some(n) == uncertain {
                "rerun"
            } else {
                "run"
            };
            PlannedStep { step: n, name: step.name.clone(), action }
        })
        .collect()
}

/// What a resume would do with `step` of a plan whose status is `status`, and why: the wording of
/// `resume --dry-run` and of the dashboard's preview.
pub fn planned_step_words(step: &PlannedStep, status: PlanStatus) -> &'static str {
    match step.action {
        "skip" => "skipped: completed",
        "rerun" if status == PlanStatus::Failed => "runs again: it failed",
        "rerun" => "runs again: it started but did not complete",
        _ => "runs",
    }
}

/// What became of one step of the plan file in this run.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: u32,
    pub name: String,
    pub status: &'static str,
    pub decision_id: Option<DecisionId>,
    pub snapshot_id: Option<String>,
}

impl StepReport {
    /// A step that completed in an earlier run.
    pub fn skipped(step: u32, name: &str) -> Self {
        StepReport { step, name: name.to_owned(), status: "skipped", decision_id: None, snapshot_id: None }
    }

    /// A step this run completed, by the attempt that recorded `decision_id`.
    pub fn completed(step: u32, name: &str, decision_id: &DecisionId, snapshot_id: Option<String>) -> Self {
        let decision_id = Some(decision_id.clone());
        StepReport { step, name: name.to_owned(), status: "completed", decision_id, snapshot_id }
    }
}

/// A real resume: where work picked up, what ran (plan files), and the summary after it.
#[derive(Debug, Serialize)]
pub struct ResumedDoc<'a> {
    pub resumed: PointDoc,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<&'a [StepReport]>,
    pub summary: &'a ResumeSummary,
}

#[derive(Debug, Serialize)]
pub struct PointDoc {
    pub from_step: StepNumber,
    pub rerun_uncertain: bool,
    pub version: u32,
}

impl From<&ResumePoint> for PointDoc {
    fn from(point: &ResumePoint) -> Self {
        Self { from_step: point.from_step, rerun_uncertain: point.rerun_uncertain, version: point.version }
    }
}

/// `plan create --if-absent`: the summary, and whether this call created the plan.
#[derive(Debug, Serialize)]
pub struct CreatedDoc<'a> {
    #[serde(flatten)]
    pub summary: &'a ResumeSummary,
    pub created: bool,
}

/// `waypoint run`: the plan, each step's outcome, and the summary at the end.
#[derive(Debug, Serialize)]
pub struct RunDoc<'a> {
    pub plan_id: &'a PlanId,
    /// `created` (a new plan), `resumed` (the file's plan continued) or `already_completed`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<PointDoc>,
    pub steps: &'a [StepReport],
    /// The step the plan waits at for approval, when the run stopped there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<&'a waypoint_domain::WaitingFor>,
    pub summary: &'a ResumeSummary,
}

/// `{"events": [{"version", "position", "type", "schema_version", "at", "data", "event_id"}]}`.
#[derive(Debug, Serialize)]
pub struct HistoryDoc {
    pub events: Vec<HistoryEntry>,
}

#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    pub version: u32,
    pub position: u32,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub schema_version: u16,
    pub at: DateTime<Utc>,
    pub data: Value,
    pub event_id: EventId,
}

pub fn history_doc(events: &[StoredEvent]) -> HistoryDoc {
    let events = events
        .iter()
        .map(|stored| {
            let recorded: &RecordedEvent = stored;
            HistoryEntry {
                version: stored.version(),
                position: stored.sequence_number(),
                event_type: recorded.event.event_type().as_str(),
                schema_version: recorded.event.schema_version(),
                at: recorded.recorded_at,
                data: serde_json::from_slice(&recorded.event.encode_data()).expect("encoded event data is JSON"),
                event_id: recorded.event_id,
            }
        })
        .collect();
    HistoryDoc { events }
}

/// The status word in its colour.
fn paint_status(style: Style, status: PlanStatus, text: &str) -> String {
    match status {
        PlanStatus::Completed | PlanStatus::Applied => style.green(text),
        PlanStatus::Failed | PlanStatus::Crashed => style.red(text),
        PlanStatus::Running => style.cyan(text),
        PlanStatus::Interrupted | PlanStatus::Waiting | PlanStatus::Paused | PlanStatus::Queued => style.yellow(text),
        PlanStatus::Cancelled | PlanStatus::NotStarted => style.dim(text),
    }
}

fn progress_text(summary: &ResumeSummary) -> String {
    let done = summary.last_completed_step.map_or(0, |s| s.get());
    match summary.total_steps {
        Some(total) => format!("{done}/{total}"),
        None if done > 0 => format!("{done} done"),
        None => "-".to_owned(),
    }
}

/// A reason a plan cannot resume, in a word or two for people.
fn reason_word(reason: ResumeIneligibleReason) -> &'static str {
    match reason {
        ResumeIneligibleReason::TerminalState => "final",
        ResumeIneligibleReason::ActionPhase => "not started",
        ResumeIneligibleReason::StillRunning => "running",
        ResumeIneligibleReason::NothingToResume => "done",
        ResumeIneligibleReason::DefinitionChanged => "changed",
        ResumeIneligibleReason::SnapshotMissing => "outputs gone",
        ResumeIneligibleReason::WaitingForApproval => "waiting",
        ResumeIneligibleReason::ApprovalRejected => "rejected",
    }
}

/// The name step `step` of the plan has, as far as the plan's record tells: the name it
/// completed under, the name it started under, or the one its definition gave it.
pub fn step_name(view: &PlanView, step: StepNumber) -> Option<&StepName> {
    let meta = &view.state.resume;
    let index = step.get() as usize - 1;
    let completed = meta.completed_digest(step).and_then(|digest| digest.name.as_ref());
    let started = meta.uncertain_name.as_ref().filter(|_| meta.uncertain_step == Some(step));
    completed.or(started).or_else(|| view.state.definition.get(index).map(|d| &d.name))
}

/// `step 2 (build)`, or `step 2` for a step whose name is not known; the name cut so that the
/// whole fits `max` columns.
pub fn step_label(step: StepNumber, name: Option<&str>, max: usize) -> String {
    let number = format!("step {step}");
    match name {
        Some(name) => {
            let room = max.saturating_sub(columns(&number) + 3).max(1);
            format!("{number} ({})", cut(&escape_controls(name), room))
        }
        None => number,
    }
}

/// The label column of a summary block: two spaces, ten for the label, two more.
const LABEL_COLUMNS: usize = 14;

/// The rows of a summary block, `  label       value`, every line within the width.
struct Rows<'a> {
    ui: &'a Ui,
    out: String,
}

impl Rows<'_> {
    fn room(&self) -> usize {
        self.ui.width.saturating_sub(LABEL_COLUMNS)
    }

    /// A row whose value may wrap: its later lines under its first (colour is allowed in it).
    fn row(&mut self, label: &str, value: &str) {
        let style = self.ui.out;
        for (i, line) in wrap(value, self.room(), self.room()).into_iter().enumerate() {
            let label = if i == 0 { label } else { "" };
            self.out.push_str(&format!("  {}  {line}\n", style.dim(&format!("{label:<10}"))));
        }
    }

    /// A row of several lines, each cut to the width rather than wrapped (an error message, which
    /// `show` shows whole in JSON).
    fn lines(&mut self, label: &str, text: &str, max_lines: usize, paint: impl Fn(&str) -> String) {
        let lines: Vec<&str> = text.lines().collect();
        let mut shown: Vec<String> =
            lines.iter().take(max_lines).map(|l| cut(&escape_controls(l), self.room())).collect();
        if lines.len() > max_lines {
            shown.push(format!("… ({} more lines)", lines.len() - max_lines));
        }
        let style = self.ui.out;
        for (i, line) in shown.iter().enumerate() {
            let label = if i == 0 { label } else { "" };
            self.out.push_str(&format!("  {}  {}\n", style.dim(&format!("{label:<10}")), paint(line)));
        }
    }
}

/// One row of a plan's summary as `plan show` says it: a label (empty: the row goes on with the
/// one above) and its value in words, with the status word and step names, never a phase or a
/// processing state unless `verbose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    pub label: &'static str,
    pub value: String,
    /// The recorded error: several lines, cut to the width (at most 24 lines) in a terminal and
    /// shown whole on the dashboard.
    pub error: bool,
}

/// The rows of a plan's summary: the one wording `plan show` prints in a terminal
/// ([`summary_block`]) and the dashboard's plan page shows. `room` is the columns a value may
/// take (a step's name and a path are cut to it); `style` paints the words that carry colour.
pub fn summary_rows(
    style: Style,
    verbose: bool,
    room: usize,
    summary: &ResumeSummary,
    view: &PlanView,
) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    let mut row = |label: &'static str, value: String| rows.push(SummaryRow { label, value, error: false });
    let status = summary.status;
    let mut status_text = paint_status(style, status, status.as_str());
    if verbose {
        status_text.push_str(&style.dim(&format!(" · {}/{}", summary.phase, summary.state)));
    }
    row("status", status_text);
    let done = summary.last_completed_step.map_or(0, |s| s.get());
    let progress = match (summary.total_steps, summary.progress_percent) {
        (Some(total), Some(pct)) => format!(
            "{} {done} of {} · {pct}%",
            style.green(&bar(done, total.get(), 20)),
            count(total.get() as usize, "step")
        ),
        _ => format!("{} completed · total unknown", count(done as usize, "step")),
    };
    row("progress", progress);
    if let Some(next) = summary.next_step {
        let label = step_label(next, step_name(view, next).map(StepName::as_str), room);
        if summary.uncertain_step == Some(next) {
            let why = match status {
                PlanStatus::Failed => "· it failed: it runs again",
                _ => "· it started but did not finish: it runs again",
            };
            row("next", format!("{label} {}", style.yellow(why)));
        } else {
            row("next", label);
        }
    }
    if let Some(waiting) = &summary.waiting_for {
        let label = step_label(waiting.step, waiting.name.as_ref().map(StepName::as_str), room);
        row("waiting", format!("{label} asks: {}", escape_controls(&waiting.question)));
    }
    // How it stopped matters only while it is stopped.
    if let (PlanStatus::Interrupted | PlanStatus::Crashed, Some(interruption)) = (status, &summary.interruption) {
        let mut text = if interruption.inferred && interruption.reason == LEASE_EXPIRED_REASON {
            "its runner's lease ran out without a heartbeat (lease_expired)".to_owned()
        } else if interruption.inferred {
            "its runner stopped without recording why (a crash)".to_owned()
        } else {
            escape_controls(&interruption.reason)
        };
        if let Some(at) = interruption.at {
            text.push_str(&format!(" · {}", local_time(at)));
        }
        row("stopped", text);
    }
    if let (PlanStatus::Running, Some(lease)) = (status, &summary.lease) {
        row("lease", format!("held by {} until {}", lease.runner, local_time(lease.expires_at)));
    }
    if let Some(queue) = &summary.queue {
        row("queue", queue.to_string());
    }
    if let Some(error) = &summary.error {
        rows.push(SummaryRow { label: "error", value: error.clone(), error: true });
    }
    let mut row = |label: &'static str, value: String| rows.push(SummaryRow { label, value, error: false });
    for changed in &summary.changed_steps {
        let when = if changed.completed { style.yellow("after it completed") } else { style.dim("not run yet") };
        row("changed", format!("{}, {when}", escape_controls(&changed.describe())));
    }
    let blocking: Vec<_> = summary.changed_steps.iter().filter(|c| c.completed).cloned().collect();
    if let Some((from, command)) = rerun_command(&summary.plan_id, plan_file_path(&view.state), &blocking) {
        row("", format!("`{command}` runs it again from step {from}"));
    }
    if let Some(checkpoint) = summary.last_checkpoint_id {
        let mut text = cut(&checkpoint.to_string(), 9);
        if let (Some(decision), true) = (&summary.decision_id, verbose) {
            text.push_str(&format!(" · decision {}", cut(decision.as_str(), 24)));
        }
        if let Some(snapshot) = &summary.snapshot_id {
            text.push_str(&format!(" · {}", cut(snapshot.as_str(), 19)));
        }
        row("checkpoint", text);
    }
    if let Some(forked) = &summary.forked_from {
        let copied = forked.step.map_or("no step copied".to_owned(), |n| format!("steps 1 to {n} copied"));
        row("forked", format!("from plan {} ({copied})", forked.plan_id));
    }
    if let Some(source) = &view.state.source {
        row("plan file", cut_left(&escape_controls(source.as_str()), room));
    }
    if summary.resume_count > 0 {
        let times = if summary.resume_count == 1 { "time" } else { "times" };
        row("resumed", format!("{} {times}", summary.resume_count));
    }
    if summary.eligible {
        row("resumable", format!("{} · waypoint resume {}", style.green("yes"), summary.plan_id));
    } else if status == PlanStatus::Completed {
        row("resumable", style.dim("no need: every step has completed"));
    } else {
        for (i, reason) in summary.reasons.iter().enumerate() {
            let word = match verbose {
                true => format!("{} ({})", reason_word(*reason), reason.code()),
                false => reason_word(*reason).to_owned(),
            };
            let prefix = if i == 0 { "no: " } else { "" };
            let label = if i == 0 { "resumable" } else { "" };
            row(label, format!("{prefix}{} · {}", style.yellow(&word), reason.explanation()));
        }
    }
    rows
}

/// The summary block for one plan: its name and id, then [`summary_rows`] within the width.
pub fn summary_block(ui: &Ui, summary: &ResumeSummary, view: &PlanView) -> String {
    let style = ui.out;
    let id = summary.plan_id.as_str();
    let title = match &view.state.name {
        Some(name) => {
            let room = ui.width.saturating_sub(columns(id) + 2).max(1);
            format!("{}  {}", style.bold(&cut(&escape_controls(name.as_str()), room)), style.dim(id))
        }
        None => format!("plan {}", style.bold(id)),
    };
    let mut rows = Rows { ui, out: format!("{title}\n") };
    let room = rows.room();
    for row in summary_rows(style, ui.verbose, room, summary, view) {
        if row.error {
            rows.lines(row.label, &row.value, 24, |line| style.red(line));
        } else {
            rows.row(row.label, &row.value);
        }
    }
    rows.out
}

/// The shortest prefix of each id (at least 8 characters) that no other id in `ids` shares.
pub fn short_ids(ids: &[&str]) -> Vec<String> {
    let mut sorted: Vec<&str> = ids.to_vec();
    sorted.sort_unstable();
    ids.iter()
        .map(|id| {
            let at = sorted.binary_search(id).unwrap_or(0);
            let common = |other: Option<&&str>| {
                other
                    .filter(|o| **o != *id)
                    .map_or(0, |o| id.chars().zip(o.chars()).take_while(|(a, b)| a == b).count())
            };
            let shared = common(at.checked_sub(1).and_then(|i| sorted.get(i))).max(common(sorted.get(at + 1)));
            let len = (shared + 1).max(8).min(id.chars().count());
            id.chars().take(len).collect()
        })
        .collect()
}

/// One row per plan, newest activity first, within the width: short ids (the shortest unique
/// prefix, at least 8 characters; any unique prefix of 4 or more is accepted as an id), the name
/// cut to the room the other columns leave. `total` is how many plans the store holds, to say so
/// when none of them is listed.
pub fn plans_table(ui: &Ui, rows: &[(PlanView, ResumeSummary)], now: DateTime<Utc>, total: usize) -> String {
    let style = ui.out;
    if rows.is_empty() {
        return match total {
            0 => "No plans here yet. Start one with `waypoint run PLAN.toml`.".to_owned(),
            n => format!(
                "None of the {} here can resume now; `waypoint plan list` shows {}.",
                count(n, "plan"),
                if n == 1 { "it" } else { "them all" }
            ),
        };
    }
    const NAME: usize = 1;
    let headers = ["ID", "NAME", "STATUS", "STEPS", "RESUMABLE", "ACTIVE"];
    let ids: Vec<&str> = rows.iter().map(|(_, s)| s.plan_id.as_str()).collect();
    let mut cells: Vec<[String; 6]> = rows
        .iter()
        .zip(short_ids(&ids))
        .map(|((view, summary), id)| {
            let resumable = if summary.eligible {
                "yes".to_owned()
            } else {
                let words: Vec<&str> = summary.reasons.iter().map(|r| reason_word(*r)).collect();
                cut(&format!("no: {}", words.join(",")), 16)
            };
            [
                cut(&id, 20),
                view.state.name.as_ref().map_or("-".to_owned(), |n| escape_controls(n.as_str())),
                summary.status.as_str().to_owned(),
                progress_text(summary),
                resumable,
                ago(view.last_activity_at, now),
            ]
        })
        .collect();
    let widest = |cells: &[[String; 6]], i: usize| {
        cells.iter().map(|row| columns(&row[i])).chain([headers[i].len()]).max().unwrap_or(0)
    };
    let others: usize = (0..headers.len()).filter(|&i| i != NAME).map(|i| widest(&cells, i)).sum();
    let name_room = ui.width.saturating_sub(others + 2 * (headers.len() - 1)).max(headers[NAME].len());
    for row in &mut cells {
        row[NAME] = cut(&row[NAME], name_room);
    }
    let widths: Vec<usize> = (0..headers.len()).map(|i| widest(&cells, i)).collect();
    let pad = |text: &str, width: usize| format!("{text}{}", " ".repeat(width.saturating_sub(columns(text))));
    let mut out = String::new();
    let header: Vec<String> = headers.iter().zip(&widths).map(|(h, w)| pad(h, *w)).collect();
    out.push_str(&style.bold(header.join("  ").trim_end()));
    out.push('\n');
    for ((_, summary), row) in rows.iter().zip(&cells) {
        let painted: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                // The last column is not padded: trailing blanks would sit inside its colour.
                let padded = if i + 1 == headers.len() { cell.clone() } else { pad(cell, *width) };
                match i {
                    2 => paint_status(style, summary.status, &padded),
                    4 if summary.eligible => style.green(&padded),
                    4 => style.dim(&padded),
                    5 => style.dim(&padded),
                    _ => padded,
                }
            })
            .collect();
        out.push_str(painted.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One event of a plan's history in words, as `plan history` says it.
#[derive(Debug)]
pub struct TimelineEntry<'a> {
    pub stored: &'a StoredEvent,
    /// What the event says, steps named, in at most the room it was given.
    pub text: String,
}

/// Every event of a plan in words, oldest first: the one wording `plan history` prints
/// ([`timeline`]) and the dashboard's history shows. `room` is the columns each text may take.
pub fn timeline_entries(events: &[StoredEvent], room: usize) -> Vec<TimelineEntry<'_>> {
    let mut names = StepNames::default();
    events
        .iter()
        .map(|stored| {
            names.learn(&stored.event);
            TimelineEntry { stored, text: cut(&describe(&stored.event, &names, room), room) }
        })
        .collect()
}

/// One line per event, within the width: version, local time, type, what it says (steps named).
pub fn timeline(ui: &Ui, events: &[StoredEvent]) -> String {
    let style = ui.out;
    let mut out = String::new();
    let width = events.iter().map(|e| e.event.event_type().as_str().len()).max().unwrap_or(0);
    let versions = events.iter().map(|e| format!("v{}", e.version()).len()).max().unwrap_or(0);
    // Every line's time takes the same columns.
    let at_columns = columns(&local_time(DateTime::<Utc>::UNIX_EPOCH));
    let room = ui.width.saturating_sub(versions + 1 + at_columns + 2 + width + 2);
    for TimelineEntry { stored, text } in timeline_entries(events, room) {
        let event = &stored.event;
        let kind = format!("{:<width$}", event.event_type().as_str());
        let kind = match event {
            PlanEvent::StepCompleted(_) | PlanEvent::PhaseCompleted(_) | PlanEvent::PlanApplied(_) => {
                style.green(&kind)
            }
            PlanEvent::Interrupted(_) | PlanEvent::Resumed(_) | PlanEvent::StepAttemptFailed(_) => style.yellow(&kind),
            PlanEvent::PlanErrored(_) | PlanEvent::PlanConstrained(_) | PlanEvent::PlanCancelled(_) => style.red(&kind),
            _ => style.cyan(&kind),
        };
        let version = format!("{:>versions$}", format!("v{}", stored.version()));
        let at = local_time(stored.recorded_at);
        let line = format!("{} {}  {kind}  {text}", style.dim(&version), style.dim(&at));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The names of a plan's steps as its history tells them, event after event.
#[derive(Debug, Default)]
struct StepNames(BTreeMap<StepNumber, String>);

impl StepNames {
    fn learn(&mut self, event: &PlanEvent) {
        let named: Vec<(StepNumber, &StepName)> = match event {
            PlanEvent::PlanCreated(e) => {
                (1..).zip(&e.steps).filter_map(|(n, d)| Some((StepNumber::new(n).ok()?, &d.name))).collect()
            }
            PlanEvent::PlanForked(e) => e.checkpoints.iter().filter_map(|c| Some((c.step, c.name.as_ref()?))).collect(),
            PlanEvent::StepStarted(e) => e.name.iter().map(|name| (e.step, name)).collect(),
            PlanEvent::StepCompleted(e) => e.name.iter().map(|name| (e.step, name)).collect(),
            _ => Vec::new(),
        };
        for (step, name) in named {
            self.0.insert(step, escape_controls(name.as_str()));
        }
    }

    /// `step 2 (build)` within `max` columns.
    fn label(&self, step: StepNumber, max: usize) -> String {
        step_label(step, self.0.get(&step).map(String::as_str), max)
    }
}

/// What an event says, in at most about `room` columns (a step's name is cut first).
fn describe(event: &PlanEvent, names: &StepNames, room: usize) -> String {
    // A step's label gets what the rest of its line leaves, and at least half the line: the
    // rest is cut before the step's name is.
    let step = |step: StepNumber, rest: usize| names.label(step, room.saturating_sub(rest).max(room / 2));
    match event {
        PlanEvent::PlanCreated(e) => {
            let mut parts = Vec::new();
            if let Some(name) = &e.name {
                parts.push(format!("{:?}", name.as_str()));
            }
            if let Some(total) = e.total_steps {
                parts.push(format!("{total} steps"));
            }
            if let Some(source) = &e.source {
                parts.push(format!("from {}", cut_left(&escape_controls(source.as_str()), room / 2)));
            }
            parts.join(" · ")
        }
        PlanEvent::PhaseStarted(e) => {
            let text = match &e.runner {
                Some(runner) => format!("{} · runner {runner}", e.phase),
                None => e.phase.to_string(),
            };
            text + &leased(e.lease.as_ref())
        }
        PlanEvent::TotalStepsSet(e) => format!("{} steps", e.total_steps),
        PlanEvent::StepStarted(e) => {
            let rest = format!(" · decision {}", e.decision_id) + &leased(e.lease.as_ref());
            step(e.step, columns(&rest)) + &rest
        }
        PlanEvent::StepCompleted(e) => {
            let mut rest = format!(" · decision {}", e.decision_id);
            if let Some(snapshot) = &e.snapshot_id {
                rest.push_str(&format!(" · snapshot {}", cut(snapshot.as_str(), 19)));
            }
            step(e.step, columns(&rest)) + &rest
        }
        PlanEvent::Interrupted(e) => escape_controls(e.reason.as_str()),
        PlanEvent::Resumed(e) => {
            let rest = format!(" · by {}", e.by) + &leased(e.lease.as_ref());
            format!("from {}", step(e.from_step, columns(&rest) + 5)) + &rest
        }
        PlanEvent::PlanErrored(e) => escape_controls(e.message.as_str()),
        PlanEvent::PlanConstrained(e) => escape_controls(e.message.as_str()),
        PlanEvent::PhaseCompleted(e) => e.phase.to_string(),
        PlanEvent::PlanApplied(_) => String::new(),
        PlanEvent::PlanCancelled(e) => e.reason.as_ref().map_or(String::new(), |r| escape_controls(r.as_str())),
        PlanEvent::StepAttemptFailed(e) => {
            let rest = format!(" · attempt {} · {}", e.attempt, e.reason);
            step(e.step, columns(&rest)) + &rest
        }
        PlanEvent::PlanForked(e) => match e.at_step {
            Some(at) => format!("from {} at step {at} · {at} steps copied", e.source),
            None => format!("from {} before step 1", e.source),
        },
        PlanEvent::LeaseRenewed(e) => format!("runner {} · until {}", e.runner, local_time(e.expires_at)),
        PlanEvent::ApprovalRequested(e) => {
            let rest = format!(" · {}", escape_controls(e.question.as_str()));
            step(e.step, columns(&rest)) + &rest
        }
        PlanEvent::StepApproved(e) => {
            let rest = format!(" · by {}", e.by);
            step(e.step, columns(&rest)) + &rest
        }
        PlanEvent::StepRejected(e) => {
            let rest = format!(" · by {} · {}", e.by, escape_controls(e.reason.as_str()));
            step(e.step, columns(&rest)) + &rest
        }
        PlanEvent::PauseRequested(e) => format!("by {}", e.by),
        PlanEvent::PlanSubmitted(e) => format!("to queue {} · {}", e.queue, escape_controls(&e.definition.file_name)),
    }
}

/// ` · lease R until T` for an event that grants a lease; nothing otherwise.
fn leased(lease: Option<&waypoint_domain::Lease>) -> String {
    lease.map_or(String::new(), |l| format!(" · lease {} until {}", l.runner, local_time(l.expires_at)))
}
