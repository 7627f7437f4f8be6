//! The plan-file commands: `waypoint run FILE` (continued by key, `--new`, `--from-step`) and the
//! resume of a plan made from a plan file, with its preview. What runs, continues, is refused or
//! is given back is the step engine's decision (`waypoint_application::engine`); this module
//! presents it and hands the run to the process executor (`runner.rs`).

use waypoint_application::engine::{EngineError, EngineRun, Prepared, ReadyRun};
use waypoint_domain::{describe_changes, ChangedStep, PlanStatus};

use super::*;
use crate::error::rerun_command;
use crate::error::{engine_error, not_resumable};
use crate::keys::PlanFileKey;
use crate::runner::{RunEnd, Stopped};
use crate::store::AnyStore;
use crate::text::with_name;

/// A plan created by `waypoint run`: its plan file, recorded when it was created.
fn plan_file_source(view: &PlanView) -> Option<&Path> {
    plan_file_path(&view.state)
}

pub(super) fn resume_preview(
    location: &StoreLocation,
    ui: &Ui,
    id: &PlanId,
    fingerprint: Option<Fingerprint>,
) -> Result<(), CliError> {
    let service = location.open_read_only_for_preview(id)?;
    let view = block_on(service.load_summary(id))?;
    // The verdict, definition drift included, is the service's; the file is read here only to
    // name the steps a resume would skip and run.
    let outcome =
        block_on(service.resume_plan(id, ResumeRequest { dry_run: true, fingerprint, ..ResumeRequest::default() }))?;
    let summary = outcome.summary;
    let current = plan_file_source(&view).map(read_plan_file);
    let steps = match &current {
        Some(Ok(file)) => Some(render::planned_steps(file, &summary)),
        _ => None,
    };
    if ui.json() {
        ui.json_document(&render::PreviewDoc { summary: &summary, steps: steps.as_deref() });
    } else {
        let mut text = render::summary_block(ui, &summary, &view);
        if let Some(Err(e)) = &current {
            text.push_str(&format!("\n{} {}\n", ui.out.yellow("!"), escape_controls(e)));
        }
        if let Some(steps) = &steps {
            text.push_str(&format!("\n{}\n", ui.out.bold("If resumed now:")));
            for PlannedStep { step: n, name, action } in steps {
                let (mark, tail) = match *action {
                    "skip" => (ui.out.dim("↷"), ui.out.dim("skipped: completed")),
                    "rerun" if summary.status == PlanStatus::Failed => {
                        (ui.out.yellow("↻"), ui.out.yellow("runs again: it failed"))
                    }
                    "rerun" => (ui.out.yellow("↻"), ui.out.yellow("runs again: it started but did not complete")),
                    _ => (ui.out.cyan("▶"), "runs".to_owned()),
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
    Ok(())
}

pub(super) fn resume(
    location: &StoreLocation,
    ui: &Ui,
    id: &PlanId,
    fingerprint: Option<Fingerprint>,
) -> Result<(), CliError> {
    let service = location.open_existing_for_write(id)?;
    let view = block_on(service.load_summary(id))?;
    // A file that cannot be read now refuses the resume below (definition_changed). A submitted
    // plan's definition is the one stored with it, run in the current folder as a worker would.
    let source = match plan_file_source(&view) {
        Some(path) => Some((path.to_path_buf(), read_plan_file(path))),
        None if view.state.submission.is_some() => {
            let here = std::env::current_dir()
                .map_err(|e| CliError::unexpected(format!("cannot read the current folder: {e}")))?;
            let file = crate::worker::submitted_plan_file(&service, id, &here);
            let path = file.as_ref().map_or_else(|_| here.join("plan.toml"), |file| file.path.clone());
            Some((path, file))
        }
        None => None,
    };
    let Some((path, file)) = source else {
        let request = ResumeRequest { dry_run: false, fingerprint, ..ResumeRequest::default() };
        let outcome = block_on(service.resume_plan(id, request))?;
        let point = outcome.resumed.expect("a real resume returns its resume point");
        if ui.json() {
            ui.json_document(&ResumedDoc { resumed: (&point).into(), steps: None, summary: &outcome.summary });
        } else {
            let again = if point.rerun_uncertain { " (it started but did not complete, so it runs again)" } else { "" };
            ui.stdout(&format!("{} resumed from step {}{again}", ui.out.green("↻"), point.from_step));
            ui.stdout(&render::summary_block(ui, &outcome.summary, &view));
        }
        return Ok(());
    };
    if let Some(fingerprint) = fingerprint {
        // The caller's whole-plan fingerprint is checked as a plain resume would.
        let preview = ResumeRequest { dry_run: true, fingerprint: Some(fingerprint), ..ResumeRequest::default() };
        let summary = block_on(service.resume_plan(id, preview))?.summary;
        if !summary.eligible {
            return Err(refused_resume(id.clone(), summary.reasons.clone(), &summary, &path));
        }
    }
    let events = watch_signals()?;
    let definition = file.as_ref().ok().map(PlanFile::run_definition).transpose()?;
    let prepared = block_on(service.prepare_continue(id, definition, runner_id()));
    let ready = match prepared.map_err(|e| refused(e, id, &path))? {
        Prepared::Continue(ready, _) => ready,
        Prepared::Finished(finished) => {
            return Err(refused_resume(id.clone(), finished.summary.reasons.clone(), &finished.summary, &path))
        }
        Prepared::Removed(removal) => return Err(ServiceError::Removed(removal).into()),
        Prepared::Fresh(_) => unreachable!("an existing plan is never fresh"),
    };
    let file = file.map_err(|e| {
        CliError::new(exit::INVALID_COMMAND, "invalid_value", format!("plan {id}: {}", escape_controls(&e)))
    })?;
    // What only the file system can tell is checked before `Resumed` is written.
    file.check_runnable()?;
    let run = block_on(ready.start()).map_err(|e| refused(e, id, &path))?;
    let point = run.resumed().expect("a resumed run has its resume point");
    announce(ui, &run, &file, None, view.state.state == ProcessingState::Errored);
    let end = run_plan_file(location, ui, run, &file, &events)?;
    let summary = block_on(service.build_resume_summary(id, None))?;
    if ui.json() {
        ui.json_document(&ResumedDoc { resumed: (&point).into(), steps: Some(&end.reports), summary: &summary });
        Ok(())
    } else {
        say_stopped(ui, end.stopped, &summary);
        print_summary_block(&service, ui, id, &summary)
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
fn outcome_of(stopped: Option<Stopped>, outcome: &'static str) -> &'static str {
    match stopped {
        Some(Stopped::Waiting) => "waiting",
        Some(Stopped::Paused) => "paused",
        None => outcome,
    }
}

/// `run FILE` when the file's plan still waits for an approval: it says so (exit 0).
fn still_waiting(ui: &Ui, summary: &ResumeSummary) -> Result<(), CliError> {
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
fn refused_resume(
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

/// Which plan continues, from which step, and why, each line within the width. `failed`: the
/// plan failed at the step it continues from, which runs again for that reason.
fn announce(ui: &Ui, run: &EngineRun<AnyStore>, file: &PlanFile, why: Option<&str>, failed: bool) {
    let Some(point) = run.resumed() else { return };
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

/// Why `run FILE` continues an earlier plan rather than starting one: what `announce` says.
struct Continuing {
    why: String,
    /// The plan failed at the step it continues from.
    failed: bool,
}

impl Continuing {
    /// The file's plan, as it stood before the run: how it stopped.
    fn stopped(summary: &ResumeSummary) -> Self {
        Continuing { why: why_continue(summary), failed: summary.state == ProcessingState::Errored }
    }

    /// A fork of the file's plan `source`, made to run from step `from`.
    fn fork(source: &PlanId, from: StepNumber) -> Self {
        Continuing { why: fork_words(source, from), failed: false }
    }
}

/// Why a plan file's plan is continued, in words: how it stopped.
fn why_continue(summary: &ResumeSummary) -> String {
    match (&summary.interruption, summary.state) {
        (Some(i), _) if i.inferred => "its runner stopped without recording why (a crash)".to_owned(),
        (Some(i), ProcessingState::Queued) => format!("it was interrupted ({})", i.reason),
        (_, ProcessingState::Errored) => match &summary.error {
            Some(message) => format!("it failed ({})", crate::error::one_line(message)),
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
fn removed_newest(ui: &Ui, removal: &Removal, file: &PlanFile) -> Result<(), CliError> {
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

pub(super) fn run(location: &StoreLocation, ui: &Ui, args: RunArgs) -> Result<(), CliError> {
    // Everything that can be refused is checked before the store is touched.
    let file = PlanFile::load(&args.file)?;
    let definition = file.run_definition()?;
    let from = args.from_step.filter(|from| *from != StepNumber::FIRST);
    if from.is_some() && args.new {
        return Err(CliError::usage(
            "invalid_value",
            "--new starts the plan file over and --from-step keeps its first steps; give one of them",
        ));
    }
    if let Some(from) = from.filter(|from| from.get() as usize > file.steps.len()) {
        return Err(CliError::usage(
            "invalid_value",
            format!("--from-step {from}: the plan file has {}", count(file.steps.len(), "step")),
        ));
    }
    let events = watch_signals()?;
    let service = location.open_for_write()?;
    let key = PlanFileKey(&file.path);
    if let Some(from) = from {
        // A fork of the file's newest plan keeping steps 1..from-1, as the file's next plan,
        // resumed at `from` with the file as it is now.
        let ready = block_on(service.prepare_fork_run(&key, definition, runner_id(), from))
            .map_err(|e| engine_error(&keyed_id(&file.path, 1), e))?
            .ok_or_else(|| {
                CliError::usage(
                    "invalid_value",
                    format!(
                        "--from-step: the store holds no plan of {} to run again from; run it without --from-step",
                        shown_path(&file.path)
                    ),
                )
            })?;
        let (source, _) = ready.forks().expect("a fork run names its source");
        let continuing = Continuing::fork(source, from);
        return start_and_run(location, ui, &service, ready, &file, Some(&continuing), &events, "forked");
    }
    let prepared = match block_on(service.prepare_run(&key, definition, runner_id(), args.new)) {
        // Still waiting for a person: nothing to run yet, and nothing wrong.
        Err(EngineError::NotResumable { summary, .. }) if summary.waiting_for.is_some() => {
            return still_waiting(ui, &summary);
        }
        other => other,
    };
    match prepared.map_err(|e| refused(e, &keyed_id(&file.path, 1), &file.path))? {
        Prepared::Fresh(ready) => start_and_run(location, ui, &service, ready, &file, None, &events, "created"),
        Prepared::Continue(ready, summary) => {
            let continuing = Continuing::stopped(&summary);
            start_and_run(location, ui, &service, ready, &file, Some(&continuing), &events, "resumed")
        }
        Prepared::Finished(finished) => already_completed(ui, &finished.summary, &file),
        Prepared::Removed(removal) => removed_newest(ui, &removal, &file),
    }
}

/// The engine's refusal to run the plan file's plan (`plan_id`, or the plan it names), with
/// what to do about it.
fn refused(error: EngineError, plan_id: &PlanId, file: &Path) -> CliError {
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
        other => engine_error(plan_id, other),
    }
}

/// `run FILE` when the file's newest plan finished: nothing runs unless `--new` asks. A file
/// edited since the plan completed is named step by step, with the command that runs it again
/// from the first changed step.
fn already_completed(ui: &Ui, summary: &ResumeSummary, file: &PlanFile) -> Result<(), CliError> {
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

/// Starts the prepared run (creates, resumes or forks the plan), runs the file's steps and
/// prints the outcome.
#[allow(clippy::too_many_arguments)]
fn start_and_run(
    location: &StoreLocation,
    ui: &Ui,
    service: &Service,
    ready: ReadyRun<AnyStore>,
    file: &PlanFile,
    continuing: Option<&Continuing>,
    events: &Events,
    outcome: &'static str,
) -> Result<(), CliError> {
    let id = ready.plan_id().clone();
    if outcome != "created" {
        // What only the file system can tell is checked before `Resumed` is written.
        file.check_runnable()?;
    }
    let run = block_on(ready.start()).map_err(|e| match e {
        EngineError::NotResumable { .. } => refused(e, &id, &file.path),
        other => engine_error(&id, other),
    })?;
    let point = run.resumed();
    if point.is_none() {
        if ui.json() {
            ui.note(&format!("plan {id}"));
        } else {
            let head = format!("{} ", ui.out.cyan("▶"));
            let tail = format!(" · plan {id} · {}", count(file.steps.len(), "step"));
            ui.stdout(&with_name(&head, &escape_controls(file.name.as_str()), &tail, ui.width));
        }
    } else {
        announce(ui, &run, file, continuing.map(|c| c.why.as_str()), continuing.is_some_and(|c| c.failed));
    }
    let end = run_plan_file(location, ui, run, file, events)?;
    let summary = block_on(service.build_resume_summary(&id, None))?;
    if ui.json() {
        ui.json_document(&RunDoc {
            plan_id: &id,
            outcome: outcome_of(end.stopped, outcome),
            resumed: point.as_ref().map(Into::into),
            steps: &end.reports,
            waiting_for: summary.waiting_for.as_ref(),
            summary: &summary,
        });
        Ok(())
    } else {
        say_stopped(ui, end.stopped, &summary);
        print_summary_block(service, ui, &id, &summary)
    }
}

fn run_plan_file(
    location: &StoreLocation,
    ui: &Ui,
    run: EngineRun<AnyStore>,
    file: &PlanFile,
    events: &Events,
) -> Result<RunEnd, CliError> {
    let total = u32::try_from(file.steps.len()).expect("checked when parsed");
    let progress = Arc::new(Progress::new(ui.err, ui.stderr_is_terminal, total, ui.width));
    let sidecar = location.sidecar();
    let outputs = Default::default();
    Runner {
        run,
        sidecar: &sidecar,
        file,
        progress,
        events,
        outputs,
        logs: None,
        lease: None,
        draining: false,
        supervisor: None,
    }
    .run_all()
}
