//! Rich output for people (a summary block, a table of plans, a timeline of events) and the JSON
//! shapes for scripts.

use chrono::{DateTime, Utc};
use eventually::versioning::Versioned;
use serde::Serialize;
use serde_json::Value;
use waypoint_application::{PlanView, RecordedEvent, ResumePoint, StoredEvent};
use waypoint_domain::{
    DecisionId, EventId, PlanEvent, PlanId, PlanStatus, ResumeIneligibleReason, ResumeSummary, StepChange, StepNumber,
    LEASE_EXPIRED_REASON,
};

use crate::progress::bar;
use crate::text::{ago, count, cut, local_time};
use crate::ui::{escape_controls, Style};

/// `{"plans": [summary, …]}`. Keys keep the order they are written in (serde_json's
/// `preserve_order`, for `json!` documents too): the contract's order.
#[derive(Debug, Serialize)]
pub struct PlansDoc<'a> {
    pub plans: Vec<&'a ResumeSummary>,
}

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
        PlanStatus::Interrupted => style.yellow(text),
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

/// A reason a plan cannot resume, in a word or two for a table cell.
fn reason_word(reason: ResumeIneligibleReason) -> &'static str {
    match reason {
        ResumeIneligibleReason::TerminalState => "final",
        ResumeIneligibleReason::ActionPhase => "not started",
        ResumeIneligibleReason::StillRunning => "running",
        ResumeIneligibleReason::NothingToResume => "done",
        ResumeIneligibleReason::DefinitionChanged => "changed",
        ResumeIneligibleReason::SnapshotMissing => "outputs gone",
    }
}

/// Lines of `text` (control characters escaped), at most `max_lines`, each indented by `indent`
/// after the first.
fn indented(text: &str, indent: usize, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = lines.iter().take(max_lines).map(|l| escape_controls(l)).collect();
    if lines.len() > max_lines {
        out.push(format!("… ({} more lines)", lines.len() - max_lines));
    }
    out.join(&format!("\n{}", " ".repeat(indent)))
}

/// The summary block for one plan: plain words first, codes only where they help.
pub fn summary_block(style: Style, summary: &ResumeSummary, view: &PlanView) -> String {
    let mut out = String::new();
    let status = summary.status;
    let title = match &view.state.name {
        Some(name) => {
            format!("{}  {}", style.bold(&escape_controls(name.as_str())), style.dim(summary.plan_id.as_str()))
        }
        None => format!("plan {}", style.bold(summary.plan_id.as_str())),
    };
    out.push_str(&title);
    out.push('\n');
    let mut row = |label: &str, value: String| {
        out.push_str(&format!("  {}  {value}\n", style.dim(&format!("{label:<10}"))));
    };
    row(
        "status",
        format!(
            "{} {}",
            paint_status(style, status, status.as_str()),
            style.dim(&format!("· {}/{}", summary.phase, summary.state))
        ),
    );
    let done = summary.last_completed_step.map_or(0, |s| s.get());
    let progress = match (summary.total_steps, summary.progress_percent) {
        (Some(total), Some(pct)) => {
            format!(
                "{} {done} of {} · {pct}%",
                style.green(&bar(done, total.get(), 20)),
                count(total.get() as usize, "step")
            )
        }
        _ => format!("{} completed · total unknown", count(done as usize, "step")),
    };
    row("progress", progress);
    if let Some(next) = summary.next_step {
        let mut text = format!("step {next}");
        if summary.uncertain_step == Some(next) {
            text.push_str(&style.yellow(" · it started but did not finish: it runs again"));
        }
        row("next", text);
    }
    // How it stopped matters only while it is stopped.
    if matches!(status, PlanStatus::Interrupted | PlanStatus::Crashed) {
        if let Some(interruption) = &summary.interruption {
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
    }
    if let (PlanStatus::Running, Some(lease)) = (status, &summary.lease) {
        row("lease", format!("held by {} until {}", lease.runner, local_time(lease.expires_at)));
    }
    if let Some(error) = &summary.error {
        row("error", style.red(&indented(error, 14, 24)));
    }
    for changed in &summary.changed_steps {
        let name = changed.name.as_ref().map_or(String::new(), |n| format!(" ({})", escape_controls(n.as_str())));
        let how = match changed.change {
            StepChange::Changed => "changed",
            StepChange::Replaced => "replaced by another step",
            StepChange::Removed => "removed",
            StepChange::Added => "added",
        };
        let when = if changed.completed { style.yellow("after it completed") } else { style.dim("not run yet") };
        row("changed", format!("step {}{name} {how}, {when}", changed.step));
    }
    if let Some(checkpoint) = summary.last_checkpoint_id {
        let mut text = cut(&checkpoint.to_string(), 9);
        if let Some(decision) = &summary.decision_id {
            text.push_str(&format!(" · decision {}", cut(decision.as_str(), 24)));
        }
        if let Some(snapshot) = &summary.snapshot_id {
            text.push_str(&format!(" · {}", cut(snapshot.as_str(), 19)));
        }
        row("checkpoint", text);
    }
    if let Some(source) = &view.state.source {
        row("plan file", escape_controls(source.as_str()));
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
        let mut first = true;
        for reason in &summary.reasons {
            let label = if first { "resumable" } else { "" };
            let prefix = if first { "no: " } else { "    " };
            row(label, format!("{prefix}{} · {}", style.yellow(reason.code()), reason.explanation()));
            first = false;
        }
    }
    out
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

/// One row per plan, newest activity first, in 80 columns: short ids (the shortest unique
/// prefix, at least 8 characters; any unique prefix of 4 or more is accepted as an id).
/// `total` is how many plans the store holds, to say so when none of them is listed.
pub fn plans_table(
    style: Style,
    rows: &[(PlanView, ResumeSummary)],
    now: DateTime<Utc>,
    total: usize,
    resumable: bool,
) -> String {
    if rows.is_empty() {
        return match (total, resumable) {
            (0, _) => "No plans here yet. Start one with `waypoint run PLAN.toml`.".to_owned(),
            (n, _) => format!(
                "None of the {} here can resume now; `waypoint plan list` shows {}.",
                count(n, "plan"),
                if n == 1 { "it" } else { "them all" }
            ),
        };
    }
    let headers = ["ID", "NAME", "STATUS", "STEPS", "RESUMABLE", "ACTIVE"];
    let ids: Vec<&str> = rows.iter().map(|(_, s)| s.plan_id.as_str()).collect();
    let shorts = short_ids(&ids);
    let cells: Vec<[String; 6]> = rows
        .iter()
        .zip(shorts)
        .map(|((view, summary), id)| {
            let resumable = if summary.eligible {
                "yes".to_owned()
            } else {
                let words: Vec<&str> = summary.reasons.iter().map(|r| reason_word(*r)).collect();
                cut(&format!("no: {}", words.join(",")), 16)
            };
            [
                cut(&id, 20),
                view.state.name.as_ref().map_or("-".to_owned(), |n| cut(&escape_controls(n.as_str()), 16)),
                summary.status.as_str().to_owned(),
                progress_text(summary),
                resumable,
                ago(view.last_activity_at, now),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| cells.iter().map(|row| row[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
        .collect();
    let pad = |text: &str, width: usize| format!("{text}{}", " ".repeat(width - text.chars().count()));
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

/// One line per event: version, time, type, what it says.
pub fn timeline(style: Style, events: &[StoredEvent]) -> String {
    let mut out = String::new();
    let width = events.iter().map(|e| e.event.event_type().as_str().len()).max().unwrap_or(0);
    for stored in events {
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
        out.push_str(&format!(
            "{} {}  {kind}  {}\n",
            style.dim(&format!("{:>4}", format!("v{}", stored.version()))),
            style.dim(&stored.recorded_at.format("%Y-%m-%d %H:%M:%S").to_string()),
            describe(event)
        ));
    }
    out
}

fn describe(event: &PlanEvent) -> String {
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
                parts.push(format!("from {}", escape_controls(source.as_str())));
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
            format!("step {} · decision {}", e.step, e.decision_id) + &leased(e.lease.as_ref())
        }
        PlanEvent::StepCompleted(e) => {
            let mut text = format!("step {} · decision {}", e.step, e.decision_id);
            if let Some(snapshot) = &e.snapshot_id {
                text.push_str(&format!(" · snapshot {}", cut(snapshot.as_str(), 19)));
            }
            text
        }
        PlanEvent::Interrupted(e) => cut(e.reason.as_str(), 100),
        PlanEvent::Resumed(e) => format!("from step {} · by {}", e.from_step, e.by) + &leased(e.lease.as_ref()),
        PlanEvent::PlanErrored(e) => cut(e.message.as_str(), 100),
        PlanEvent::PlanConstrained(e) => cut(e.message.as_str(), 100),
        PlanEvent::PhaseCompleted(e) => e.phase.to_string(),
        PlanEvent::PlanApplied(_) => String::new(),
        PlanEvent::PlanCancelled(e) => e.reason.as_ref().map_or(String::new(), |r| cut(r.as_str(), 100)),
        PlanEvent::StepAttemptFailed(e) => format!("step {} · attempt {} · {}", e.step, e.attempt, e.reason),
        PlanEvent::PlanForked(e) => match e.at_step {
            Some(step) => format!("from {} at step {step} · {} steps copied", e.source, e.checkpoints.len()),
            None => format!("from {} before step 1", e.source),
        },
        PlanEvent::LeaseRenewed(e) => {
            format!("runner {} · until {}", e.runner, e.expires_at.format("%Y-%m-%d %H:%M:%S"))
        }
    }
}

/// ` · lease R until T` for an event that grants a lease; nothing otherwise.
fn leased(lease: Option<&waypoint_domain::Lease>) -> String {
    lease.map_or(String::new(), |l| format!(" · lease {} until {}", l.runner, l.expires_at.format("%H:%M:%S")))
}
