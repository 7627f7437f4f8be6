//! What `waypoint run FILE` and a plan file's resume say: the preview of a resume, which plan
//! starts or continues and why, how a run stopped early, and every refusal with what to do
//! about it. Nothing here decides; `run.rs` asks the engine and hands its answer here.

use std::path::Path;

use serde::Serialize;
use waypoint_application::engine::{EngineError, EngineRun};
use waypoint_application::{PlanView, Removal};
use waypoint_domain::{describe_changes, ChangedStep, PlanId, ProcessingState, ResumeIneligibleReason};
use waypoint_domain::{ResumeSummary, StepNumber};

use crate::commands::print_summary_block;
use crate::error::{exit, not_resumable, one_line, rerun_command, CliError};
use crate::plan_file::PlanFile;
use crate::render::{self, PlannedStep, PreviewDoc, RunDoc};
use crate::runner::Stopped;
use crate::store::{AnyStore, Service};
use crate::text::{count, escape_controls, local_time, shown_path, with_name};
use crate::ui::Ui;

/// `resume --dry-run` of a plan file's plan: its summary and, when its file (`current`) can be
/// read, what each step would do if it were resumed now.
pub(super) fn preview(ui: &Ui, summary: &ResumeSummary, view: &PlanView, current: Option<&Result<PlanFile, String>>) {
    let steps = match current {
        Some(Ok(file)) => Some(render::planned_steps(file, summary)),
        _ => None,
    };
    if ui.json() {
        ui.json_document(&PreviewDoc { summary, steps: steps.as_deref() });
        return;
    }
    let mut text = render::summary_block(ui, summary, view);
    if let Some(Err(e)) = current {
        text.push_str(&format!("\n{} {}\n", ui.out.yellow("!"), escape_controls(e)));
    }
    if let Some(steps) = &steps {
        text.push_str(&format!("\n{}\n", ui.out.bold("If resumed now:")));
        for planned in steps {
            let PlannedStep { step: n, name, action } = planned;
            let words = render::planned_step_words(planned, summary.status);
            let (mark, tail) = match *action {
                "skip" => (ui.out.dim("↷"), ui.out.dim(words)),
                "rerun" => (ui.out.yellow("↻"), ui.out.yellow(words)),
                _ => (ui.out.cyan("▶"), words.to_owned()),
            };
            text.push_str(&with_name(
                &format!("  {mark} {n}  "),
                &escape_controls(name),
                &format!("  {tail}"),
                ui.width,
            ));
            text.push('\n');
        }
    }
    ui.stdout(&text);
}

/// Which plan starts, or which continues, from which step, and why, each line within the width.
/// `failed`: the plan failed at the step it continues from, which runs again for that reason.
pub(super) fn announce(ui: &Ui, run: &EngineRun<AnyStore>, file: &PlanFile, why: Option<&str>, failed: bool) {
    let Some(point) = run.resumed() else {
        if ui.json() {
            ui.note(&format!("plan {}", run.plan_id()));
        } else {
            let head = format!("{} ", ui.out.cyan("▶"));
            let tail = format!(" · plan {} · {}", run.plan_id(), count(file.steps.len(), "step"));
            ui.stdout(&with_name(&head, &escape_controls(file.name.as_str()), &tail, ui.width));
        }
        return;
    };
    let head = format!("{} plan {} · ", if why.is_some() { "continuing" } else { "resuming" }, run.plan_id());
    let tail = format!(" · from step {} of {}", point.from_step, file.steps.len());
    let mut lines = vec![with_name(&head, &escape_controls(file.name.as_str()), &tail, ui.width - 2)];
    if let Some(why) = why {
        lines.push(format!("  because {why}"));
    }
    if point.rerun_uncertain && !failed {
        lines.push(format!("  step {} started but did not complete: it runs again", point.from_step));
    }
    if ui.json() {
        ui.note(&lines.join("\n"));
    } else {
        lines[0] = format!("{} {}", ui.out.green("↻"), lines[0]);
        ui.stdout(&lines.join("\n"));
    }
}

/// The end of a run that went as far as it could: `doc` as JSON, or else what it stopped early
/// for and the plan's summary.
pub(super) fn ran(
    ui: &Ui,
    service: &Service,
    doc: &impl Serialize,
    stopped: Option<Stopped>,
    summary: &ResumeSummary,
) -> Result<(), CliError> {
    if ui.json() {
        ui.json_document(doc);
        Ok(())
    } else {
        say_stopped(ui, stopped, summary);
        print_summary_block(service, ui, &summary.plan_id, summary)
    }
}

/// Rich output for a run that stopped early: what it waits for and the command that lets it go
/// on, or that it was paused.
fn say_stopped(ui: &Ui, stopped: Option<Stopped>, summary: &ResumeSummary) {
    let id = &summary.plan_id;
    match (stopped, &summary.waiting_for) {
        (Some(Stopped::Waiting), Some(waiting)) => ui.stdout(&format!(
            "{} plan {id} waits at step {} for approval: {}\n  `waypoint plan approve {id}` lets the next run go on\n  `waypoint plan reject {id} --reason TEXT` stops it",
            ui.out.yellow("⏸"),
            waiting.step,
            escape_controls(&waiting.question),
        )),
        (Some(Stopped::Paused), _) => ui.stdout(&format!(
            "{} plan {id} paused before step {}; run it again to continue",
            ui.out.yellow("⏸"),
            summary.next_step.map_or_else(|| "-".to_owned(), |s| s.to_string()),
        )),
        _ => {}
    }
}

/// The outcome word of a run that went as far as it could: its own, or why it stopped early.
pub(super) fn outcome_of(stopped: Option<Stopped>, outcome: &'static str) -> &'static str {
    match stopped {
        Some(Stopped::Waiting) => "waiting",
        Some(Stopped::Paused) => "paused",
        None => outcome,
    }
}

/// `run FILE` when the file's plan still waits for an approval: it says so (exit 0).
pub(super) fn still_waiting(ui: &Ui, summary: &ResumeSummary) -> Result<(), CliError> {
    if ui.json() {
        let doc = RunDoc {
            plan_id: &summary.plan_id,
            outcome: "waiting",
            resumed: None,
            steps: &[],
            waiting_for: summary.waiting_for.as_ref(),
            summary,
        };
        ui.json_document(&doc);
    } else {
        say_stopped(ui, Some(Stopped::Waiting), summary);
    }
    Ok(())
}

/// A plan file's plan that cannot resume (exit 4): every reason, every step changed since it
/// completed, and what to run instead with the plan file at `file`.
pub(super) fn refused_resume(
    plan_id: PlanId,
    reasons: Vec<ResumeIneligibleReason>,
    summary: &ResumeSummary,
    file: &Path,
) -> CliError {
    let blocking: Vec<ChangedStep> = summary.changed_steps.iter().filter(|c| c.completed).cloned().collect();
    let remedy = match rerun_command(&plan_id, Some(file), &blocking) {
        Some((from, command)) => format!("; `{command}` runs it again from step {from}, `--new` starts over"),
        None => format!("; `waypoint run --new {}` starts over", shown_path(file)),
    };
    CliError::service(not_resumable(plan_id, reasons, summary), &remedy)
}

/// Why `run FILE` continues an earlier plan rather than starting one: what `announce` says.
pub(super) struct Continuing {
    pub(super) why: String,
    /// The plan failed at the step it continues from.
    pub(super) failed: bool,
}

impl Continuing {
    /// The file's plan, as it stood before the run: how it stopped.
    pub(super) fn stopped(summary: &ResumeSummary) -> Self {
        Continuing { why: why_continue(summary), failed: summary.state == ProcessingState::Errored }
    }

    /// A fork of the file's plan `source`, made to run from step `from`.
    pub(super) fn fork(source: &PlanId, from: StepNumber) -> Self {
        Continuing { why: fork_words(source, from), failed: false }
    }
}

/// Why a plan file's plan is continued, in words: how it stopped.
fn why_continue(summary: &ResumeSummary) -> String {
    match (&summary.interruption, summary.state) {
        (Some(i), _) if i.inferred => "its runner stopped without recording why (a crash)".to_owned(),
        (Some(i), ProcessingState::Queued) => format!("it was interrupted ({})", i.reason),
        (_, ProcessingState::Errored) => match &summary.error {
            Some(message) => format!("it failed ({})", one_line(message)),
            None => "it failed".to_owned(),
        },
        _ => match &summary.forked_from {
            Some(fork) => fork_words(&fork.plan_id, summary.next_step.unwrap_or(StepNumber::FIRST)),
            None => "it has steps left to run".to_owned(),
        },
    }
}

/// `it is a fork of plan X that runs from step N`.
fn fork_words(source: &PlanId, from: StepNumber) -> String {
    format!("it is a fork of plan {source} that runs from step {from}")
}

/// `run FILE` when retention removed the file's newest plan: it had finished, so, as for a
/// completed plan, nothing runs unless `--new` asks for a fresh plan.
pub(super) fn removed_newest(ui: &Ui, removal: &Removal, file: &PlanFile) -> Result<(), CliError> {
    let id = &removal.plan_id;
    if ui.json() {
        ui.json_document(&serde_json::json!({
            "plan_id": id,
            "outcome": "removed",
            "removed_at": removal.removed_at.to_rfc3339(),
            "archive": removal.archive,
            "steps": [],
        }));
    } else {
        ui.stdout(&format!(
            "{} plan {id} · {} · finished, and removed by retention at {}; nothing to run\n  its events are in {}; \
             `waypoint run --new {}` starts a fresh plan",
            ui.out.green("✓"),
            escape_controls(file.name.as_str()),
            local_time(removal.removed_at),
            escape_controls(&removal.archive),
            shown_path(&file.path),
        ));
    }
    Ok(())
}

/// The engine's refusal to run the plan file's plan (`plan_id`, or the plan it names), with
/// what to do about it.
pub(super) fn refused(error: EngineError, plan_id: &PlanId, file: &Path) -> CliError {
    match error {
        EngineError::StillRunning { plan_id } => CliError::new(
            exit::CONFLICT,
            "run_lock_busy",
            format!("plan {plan_id} of this plan file is running in another process; wait for it, or start a separate plan with `waypoint run --new`"),
        )
        .with("plan_id", plan_id.as_str())
        .with_reasons(vec![ResumeIneligibleReason::StillRunning]),
        EngineError::NotResumable { plan_id, reasons, summary } if reasons == [ResumeIneligibleReason::ApprovalRejected] => {
            let mut error = refused_resume(plan_id, reasons, &summary, file);
            error.code = "approval_rejected";
            error
        }
        EngineError::NotResumable { plan_id, reasons, summary } => refused_resume(plan_id, reasons, &summary, file),
        other => crate::error::engine_error(plan_id, other),
    }
}

/// `run FILE` when the file's newest plan finished: nothing runs unless `--new` asks. A file
/// edited since the plan completed is named step by step, with the command that runs it again
/// from the first changed step.
pub(super) fn already_completed(ui: &Ui, summary: &ResumeSummary, file: &PlanFile) -> Result<(), CliError> {
    let id = &summary.plan_id;
    if ui.json() {
        let doc =
            RunDoc { plan_id: id, outcome: "already_completed", resumed: None, steps: &[], waiting_for: None, summary };
        ui.json_document(&doc);
        return Ok(());
    }
    let steps = summary.total_steps.map_or(file.steps.len(), |t| t.get() as usize);
    let head = format!("{} plan {id} · ", ui.out.green("✓"));
    let mut lines = vec![
        with_name(&head, &escape_controls(file.name.as_str()), "", ui.width),
        format!("  already completed {}; nothing to run", count(steps, "step")),
    ];
    if !summary.changed_steps.is_empty() {
        let changes = escape_controls(&describe_changes(&summary.changed_steps));
        lines.push(format!("  since it completed, the plan file changed: {changes}"));
    }
    if let Some((from, command)) = rerun_command(id, Some(&file.path), &summary.changed_steps) {
        lines.push(format!("  `{command}` runs it again from step {from}"));
    }
    lines.push(format!("  `waypoint run --new {}` starts a fresh plan", shown_path(&file.path)));
    ui.stdout(&lines.join("\n"));
    Ok(())
}
