//! One function per command: open the store the way the command needs, call the service, print.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use futures::executor::block_on;
use waypoint_application::{
    NewPlan, PlanStore, PlanView, ResumePoint, ResumeRequest, RunLockGuard, ServiceError, StepCheckpoint, StepStart,
};
use waypoint_domain::{
    Fingerprint, Message, Phase, PlanId, ProcessingState, ResumeIneligibleReason, ResumeSummary, StepNumber,
};

use crate::cli::{CheckpointArgs, Cli, Command, CreateArgs, PlanCommand, ResumeArgs, RunArgs};
use crate::definition::{plan_file_path, read_plan_file};
use crate::error::{exit, CliError};
use crate::keys::{keyed_id, newest_generation};
use crate::plan_file::PlanFile;
use crate::progress::Progress;
use crate::render::{self, PlannedStep, ResumedDoc, RunDoc};
use crate::runner::{watch_signals, Events, Runner, StepReport};
use crate::store::{acquire_run_lock, runner_id, Service, StoreLocation};
use crate::ui::{escape_controls, shown_path, Ui};

pub fn execute(cli: Cli, ui: &Ui) -> Result<(), CliError> {
    let location = StoreLocation::parse(&cli.store)?;
    match cli.command {
        Command::Run(args) => run(&location, ui, args),
        Command::Plan(mut command) => {
            if let Some(id) = command.plan_id_mut() {
                *id = resolve_id(&location, id)?;
            }
            plan(&location, ui, command)
        }
        Command::Resume(mut args) => {
            args.id = resolve_id(&location, &args.id)?;
            plan(&location, ui, PlanCommand::Resume(args))
        }
        Command::Store(command) => crate::operate::store(&location, ui, command),
    }
}

fn plan(location: &StoreLocation, ui: &Ui, command: PlanCommand) -> Result<(), CliError> {
    match command {
        PlanCommand::Create(args) => create(location, ui, args),
        PlanCommand::Start { id, phase } => {
            let phase = Phase::from(phase);
            write(location, ui, &id, &format!("entered {phase}"), |s| block_on(s.start_phase(&id, phase, None)))
        }
        PlanCommand::TotalSteps { id, n } => {
            write(location, ui, &id, &format!("total steps set to {n}"), |s| block_on(s.set_total_steps(&id, n)))
        }
        PlanCommand::StepStarted { id, step, decision } => {
            write(location, ui, &id, &format!("step {step} started"), |s| {
                block_on(s.record_step_started(&id, StepStart::new(step, decision)))
            })
        }
        PlanCommand::Checkpoint(args) => checkpoint(location, ui, args),
        PlanCommand::Interrupt { id, reason } => interrupt(location, ui, &id, reason),
        PlanCommand::Fail { id, message } => {
            write(location, ui, &id, "failure recorded", |s| block_on(s.fail(&id, message)))
        }
        PlanCommand::CompletePhase { id } => {
            write(location, ui, &id, "phase completed", |s| block_on(s.complete_phase(&id)))
        }
        PlanCommand::Apply { id } => write(location, ui, &id, "applied", |s| block_on(s.apply(&id))),
        PlanCommand::Constrain { id, message } => {
            write(location, ui, &id, "constraint recorded", |s| block_on(s.constrain(&id, message)))
        }
        PlanCommand::Cancel { id, reason } => {
            write(location, ui, &id, "cancelled", |s| block_on(s.cancel(&id, reason)))
        }
        PlanCommand::List { resumable } => list(location, ui, resumable),
        PlanCommand::Show { id, outputs: false } => show(location, ui, &id),
        PlanCommand::Show { id, outputs: true } => show_outputs(location, ui, &id),
        PlanCommand::Logs { id, step, attempt } => logs(location, ui, &id, step, attempt),
        PlanCommand::History { id } => history(location, ui, &id),
        PlanCommand::Fork { id, from_step, new_id } => fork(location, ui, &id, from_step, new_id),
        PlanCommand::Resume(ResumeArgs { id, dry_run: true, fingerprint }) => {
            resume_preview(location, ui, &id, fingerprint)
        }
        PlanCommand::Resume(ResumeArgs { id, dry_run: false, fingerprint }) => resume(location, ui, &id, fingerprint),
    }
}

fn create(location: &StoreLocation, ui: &Ui, args: CreateArgs) -> Result<(), CliError> {
    let service = location.open_for_write()?;
    let new = NewPlan {
        id: args.id,
        name: args.name,
        total_steps: args.total_steps,
        fingerprint: args.fingerprint,
        source: None,
        steps: Vec::new(),
        start: None,
    };
    let view = block_on(service.create_plan(new))?;
    if ui.json() {
        let summary = block_on(service.build_resume_summary(&view.plan_id, None))?;
        ui.json_document(&summary);
    } else {
        ui.stdout(view.plan_id.as_str());
    }
    Ok(())
}

/// A lifecycle command on an existing plan, then a confirmation (rich) or the summary (json).
fn write<T>(
    location: &StoreLocation,
    ui: &Ui,
    id: &PlanId,
    done: &str,
    command: impl FnOnce(&Service) -> Result<T, waypoint_application::ServiceError>,
) -> Result<(), CliError> {
    let service = location.open_existing_for_write(id)?;
    command(&service)?;
    print_after_write(&service, ui, id, done)
}

/// `plan fork`: a new plan holding the source's steps before `from_step`.
fn fork(
    location: &StoreLocation,
    ui: &Ui,
    source: &PlanId,
    from_step: StepNumber,
    new_id: Option<PlanId>,
) -> Result<(), CliError> {
    let service = location.open_existing_for_write(source)?;
    let at_step = StepNumber::new(from_step.get() - 1).ok();
    let fork = block_on(service.fork_plan(source, at_step, new_id))?;
    let copied = at_step.map_or("no step copied".to_owned(), |n| format!("steps 1 to {n} copied"));
    let done = format!("forked from plan {source} ({copied}); `waypoint plan resume {}` runs it", fork.plan_id);
    print_after_write(&service, ui, &fork.plan_id, &done)
}

fn print_after_write(service: &Service, ui: &Ui, id: &PlanId, done: &str) -> Result<(), CliError> {
    let summary = block_on(service.build_resume_summary(id, None))?;
    if ui.json() {
        ui.json_document(&summary);
    } else {
        let style = ui.out;
        let progress = match (summary.total_steps, summary.last_completed_step) {
            (Some(total), last) => {
                format!(" · {} of {}", last.map_or(0, |s| s.get()), render::count(total.get() as usize, "step"))
            }
            (None, Some(last)) => format!(" · {} completed", render::count(last.get() as usize, "step")),
            (None, None) => String::new(),
        };
        ui.stdout(&format!(
            "{} {done} · plan {id}: {} ({}/{}){progress}",
            style.green("✓"),
            summary.status,
            summary.phase,
            summary.state
        ));
    }
    Ok(())
}

fn checkpoint(location: &StoreLocation, ui: &Ui, args: CheckpointArgs) -> Result<(), CliError> {
    let service = location.open_existing_for_write(&args.id)?;
    let step = args.step;
    let recorded = block_on(service.record_step_checkpoint(
        &args.id,
        StepCheckpoint {
            step,
            decision_id: args.decision,
            snapshot_id: args.snapshot,
            artifacts: args.artifacts,
            name: None,
            output: None,
            fingerprint: None,
        },
    ))?;
    let done = if recorded.appended {
        format!("step {step} checkpoint {} recorded", recorded.checkpoint.checkpoint_id)
    } else {
        format!("step {step} was already recorded with this payload; nothing written")
    };
    print_after_write(&service, ui, &args.id, &done)
}

fn list(location: &StoreLocation, ui: &Ui, resumable: bool) -> Result<(), CliError> {
    // Every plan's summary is built either way: filtering here costs nothing more, and lets an
    // empty listing say how many plans there are.
    let all = match location.open_read_only()? {
        Some(service) => block_on(service.list(false))?,
        None => Vec::new(),
    };
    let total = all.len();
    let plans: Vec<_> = all.into_iter().filter(|(_, summary)| summary.eligible || !resumable).collect();
    if ui.json() {
        ui.json_document(&render::PlansDoc { plans: plans.iter().map(|(_, summary)| summary).collect() });
    } else {
        ui.stdout(&render::plans_table(ui.out, &plans, Utc::now(), total, resumable));
    }
    Ok(())
}

fn show(location: &StoreLocation, ui: &Ui, id: &PlanId) -> Result<(), CliError> {
    let service = location.open_read_only_for(id)?;
    let summary = block_on(service.build_resume_summary(id, None))?;
    if ui.json() {
        ui.json_document(&summary);
        Ok(())
    } else {
        print_summary_block(&service, ui, id, &summary)
    }
}

/// The summary block of a plan whose summary is at hand (the view adds its name, source, error).
fn print_summary_block(service: &Service, ui: &Ui, id: &PlanId, summary: &ResumeSummary) -> Result<(), CliError> {
    let view = block_on(service.load_summary(id))?;
    ui.stdout(&render::summary_block(ui.out, summary, &view));
    Ok(())
}

fn history(location: &StoreLocation, ui: &Ui, id: &PlanId) -> Result<(), CliError> {
    let service = location.open_read_only_for(id)?;
    let events = block_on(service.history(id))?;
    if ui.json() {
        ui.json_document(&render::history_doc(&events));
    } else {
        ui.stdout(&render::timeline(ui.out, &events));
    }
    Ok(())
}

/// A plan created by `waypoint run`: its plan file, recorded when it was created.
fn plan_file_source(view: &PlanView) -> Option<&Path> {
    plan_file_path(&view.state)
}

fn resume_preview(
    location: &StoreLocation,
    ui: &Ui,
    id: &PlanId,
    fingerprint: Option<Fingerprint>,
) -> Result<(), CliError> {
    let service = location.open_read_only_for_preview(id)?;
    let view = block_on(service.load_summary(id))?;
    // The verdict, definition drift included, is the service's; the file is read here only to
    // name the steps a resume would skip and run.
    let outcome = block_on(service.resume_plan(id, ResumeRequest { dry_run: true, fingerprint, runner: None }))?;
    let summary = outcome.summary;
    let current = plan_file_source(&view).map(read_plan_file);
    let steps = match &current {
        Some(Ok(file)) => Some(planned_steps(file, &summary)),
        _ => None,
    };
    if ui.json() {
        ui.json_document(&render::PreviewDoc { summary: &summary, steps: steps.as_deref() });
    } else {
        let mut text = render::summary_block(ui.out, &summary, &view);
        if let Some(Err(e)) = &current {
            text.push_str(&format!("\n{} {}\n", ui.out.yellow("!"), escape_controls(e)));
        }
        if let Some(steps) = &steps {
            text.push_str(&format!("\n{}\n", ui.out.bold("If resumed now:")));
            for PlannedStep { step: n, name, action } in steps {
                let name = escape_controls(name);
                let line = match *action {
                    "skip" => format!("  {} {n}  {name}  {}", ui.out.dim("↷"), ui.out.dim("skipped: completed")),
                    "rerun" => format!(
                        "  {} {n}  {name}  {}",
                        ui.out.yellow("↻"),
                        ui.out.yellow("runs again: it started but did not complete")
                    ),
                    _ => format!("  {} {n}  {name}  runs", ui.out.cyan("▶")),
                };
                text.push_str(&line);
                text.push('\n');
            }
        }
        ui.stdout(&text);
    }
    Ok(())
}

/// Each step of the plan file and what a resume would do with it: skip, rerun (the uncertain
/// step) or run.
fn planned_steps(file: &PlanFile, summary: &ResumeSummary) -> Vec<PlannedStep> {
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

fn resume(location: &StoreLocation, ui: &Ui, id: &PlanId, fingerprint: Option<Fingerprint>) -> Result<(), CliError> {
    let service = location.open_existing_for_write(id)?;
    let view = block_on(service.load_summary(id))?;
    let Some(path) = plan_file_source(&view).map(Path::to_path_buf) else {
        let request = ResumeRequest { dry_run: false, fingerprint, runner: None };
        let outcome = block_on(service.resume_plan(id, request))?;
        let point = outcome.resumed.expect("a real resume returns its resume point");
        if ui.json() {
            ui.json_document(&ResumedDoc { resumed: (&point).into(), steps: None, summary: &outcome.summary });
        } else {
            let again = if point.rerun_uncertain { " (it started but did not complete, so it runs again)" } else { "" };
            ui.stdout(&format!("{} resumed from step {}{again}", ui.out.green("↻"), point.from_step));
            ui.stdout(&render::summary_block(ui.out, &outcome.summary, &view));
        }
        return Ok(());
    };
    let events = watch_signals()?;
    let lock = acquire_run_lock(&service, id)?;
    let (point, reports) = resume_plan_file(location, &service, ui, &view, &path, fingerprint, &events, lock, None)?;
    let summary = block_on(service.build_resume_summary(id, None))?;
    if ui.json() {
        ui.json_document(&ResumedDoc { resumed: (&point).into(), steps: Some(&reports), summary: &summary });
        Ok(())
    } else {
        print_summary_block(&service, ui, id, &summary)
    }
}

/// Resumes a plan made from the plan file at `path`: the file is read again and checked, the run
/// lock taken, `Resumed` recorded, then the remaining steps run. `why` is what `run FILE` says
/// about why it continues this plan.
#[allow(clippy::too_many_arguments)]
fn resume_plan_file(
    location: &StoreLocation,
    service: &Service,
    ui: &Ui,
    view: &PlanView,
    path: &Path,
    fingerprint: Option<Fingerprint>,
    events: &Events,
    lock: RunLockGuard,
    why: Option<&str>,
) -> Result<(ResumePoint, Vec<StepReport>), CliError> {
    let id = &view.plan_id;
    // The resume decides, through the definition probe, whether the file as it is now may run:
    // a changed completed step is `definition_changed`; a fixed pending step is fine.
    let request = ResumeRequest { dry_run: false, fingerprint, runner: Some(lock.runner().clone()) };
    let file = match read_plan_file(path) {
        Ok(file) => {
            // What only the file system can tell is checked before `Resumed` is written.
            file.check_runnable()?;
            Some(file)
        }
        Err(_) => None,
    };
    let outcome = block_on(service.resume_plan(id, request))?;
    let point = outcome.resumed.expect("a real resume returns its resume point");
    let Some(file) = file else {
        return Err(CliError::unexpected("the plan file cannot be read, yet the plan was found eligible; report this"));
    };
    // One short line each, so that they fit a terminal of 80 columns.
    let mut lines = vec![format!(
        "{} plan {id} · {} · from step {} of {}",
        if why.is_some() { "continuing" } else { "resuming" },
        escape_controls(file.name.as_str()),
        point.from_step,
        file.steps.len(),
    )];
    if let Some(why) = why {
        lines.push(format!("  because {why}"));
    }
    if point.rerun_uncertain {
        lines.push(format!("  step {} started but did not complete: it runs again", point.from_step));
    }
    if ui.json() {
        ui.note(&lines.join("\n"));
    } else {
        lines[0] = format!("{} {}", ui.out.green("↻"), lines[0]);
        ui.stdout(&lines.join("\n"));
    }
    let reports = run_plan_file(location, service, ui, id, &file, point.from_step, events)?;
    drop(lock);
    Ok((point, reports))
}

/// Why a plan file's plan is continued, in words: how it stopped.
fn why_continue(view: &PlanView, summary: &ResumeSummary) -> String {
    match (&summary.interruption, view.state.state) {
        (Some(i), _) if i.inferred => "its runner stopped without recording why (a crash)".to_owned(),
        (Some(i), ProcessingState::Queued) => format!("it was interrupted ({})", i.reason),
        (_, ProcessingState::Errored) => match &view.state.last_error {
            Some(message) => format!("it failed ({})", crate::error::one_line(message.as_str())),
            None => "it failed".to_owned(),
        },
        _ => format!("it is {}", summary.state),
    }
}

/// Whether a plan with this id is in the store.
fn plan_exists(service: &Service, id: &PlanId) -> Result<bool, CliError> {
    match block_on(service.load_summary(id)) {
        Ok(_) => Ok(true),
        Err(ServiceError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn run(location: &StoreLocation, ui: &Ui, args: RunArgs) -> Result<(), CliError> {
    // Everything that can be refused is checked before the store is touched.
    let file = PlanFile::load(&args.file)?;
    let source = file.source()?;
    let events = watch_signals()?;
    let service = location.open_for_write()?;
    let newest = newest_generation(|g| plan_exists(&service, &keyed_id(&file.path, g)))?;
    // `--from-step N`: a fork of the file's newest plan at step N-1, as the file's next plan,
    // resumed at step N with the file as it is now.
    match (args.from_step, newest) {
        (Some(from), Some(generation)) if from != StepNumber::FIRST => {
            let source_id = keyed_id(&file.path, generation);
            return fork_run(location, &service, ui, &source_id, generation + 1, &file, from, &events);
        }
        (Some(from), None) if from != StepNumber::FIRST => {
            return Err(CliError::usage(
                "invalid_value",
                format!(
                    "--from-step: the store holds no plan of {} to run again from; run it without --from-step",
                    shown_path(&file.path)
                ),
            ))
        }
        _ => {}
    }
    if let (Some(generation), false, None) = (newest, args.new, args.from_step) {
        return continue_run(location, &service, ui, &keyed_id(&file.path, generation), &file, &events);
    }
    // The run lock first, then the plan created and started in one append: a crash at any moment
    // leaves either no plan or one that is processing under a runner, which a resume can infer.
    let id = keyed_id(&file.path, newest.map_or(1, |g| g + 1));
    let _lock = acquire_run_lock(&service, &id)?;
    let new = NewPlan {
        id: Some(id.clone()),
        name: Some(file.name.clone()),
        total_steps: Some(file.total_steps()),
        fingerprint: Some(file.fingerprint.clone()),
        source: Some(source),
        steps: file.step_definitions(),
        start: Some((Phase::Strategize, Some(runner_id()))),
    };
    block_on(service.create_plan(new))?;
    if ui.json() {
        ui.note(&format!("plan {id}"));
    } else {
        ui.stdout(&format!(
            "{} {} · plan {} · {}",
            ui.out.cyan("▶"),
            ui.out.bold(file.name.as_str()),
            id,
            render::count(file.steps.len(), "step")
        ));
    }
    let reports = run_plan_file(location, &service, ui, &id, &file, StepNumber::FIRST, &events)?;
    let summary = block_on(service.build_resume_summary(&id, None))?;
    if ui.json() {
        ui.json_document(&RunDoc {
            plan_id: &id,
            outcome: "created",
            resumed: None,
            steps: &reports,
            summary: &summary,
        });
        Ok(())
    } else {
        print_summary_block(&service, ui, &id, &summary)
    }
}

/// `run --from-step N`: forks plan `source` at step N-1 as the file's plan of `generation`, then
/// resumes the fork at step N with the file as it is now. Steps 1..N-1 must have completed and be
/// unchanged in the file; both are checked before anything is written.
#[allow(clippy::too_many_arguments)]
fn fork_run(
    location: &StoreLocation,
    service: &Service,
    ui: &Ui,
    source: &PlanId,
    generation: u64,
    file: &PlanFile,
    from: StepNumber,
    events: &Events,
) -> Result<(), CliError> {
    check_kept_steps(service, source, file, from)?;
    let id = keyed_id(&file.path, generation);
    let lock = acquire_run_lock(service, &id)?;
    let at_step = StepNumber::new(from.get() - 1).expect("from is past the first step");
    block_on(service.fork_plan(source, Some(at_step), Some(id.clone())))?;
    let view = block_on(service.load_summary(&id))?;
    let why = format!("it is a fork of plan {source} at step {at_step}");
    let (point, reports) = resume_plan_file(location, service, ui, &view, &file.path, None, events, lock, Some(&why))?;
    let summary = block_on(service.build_resume_summary(&id, None))?;
    if ui.json() {
        ui.json_document(&RunDoc {
            plan_id: &id,
            outcome: "forked",
            resumed: Some((&point).into()),
            steps: &reports,
            summary: &summary,
        });
        Ok(())
    } else {
        print_summary_block(service, ui, &id, &summary)
    }
}

/// Steps 1..`from`-1 of plan `source`, kept by `run --from-step`, must have completed, and their
/// definitions in the file must not have changed since.
fn check_kept_steps(service: &Service, source: &PlanId, file: &PlanFile, from: StepNumber) -> Result<(), CliError> {
    let view = block_on(service.load(source))?;
    let keep = from.get() - 1;
    let done = view.state.resume.last_completed_step.map_or(0, StepNumber::get);
    if done < keep || view.state.phase != Phase::Strategize {
        return Err(CliError::new(
            exit::INVALID_COMMAND,
            "step_not_completed",
            format!(
                "--from-step {from}: step {keep} of plan {source} has not completed; run from step {} at most",
                done + 1
            ),
        )
        .with("plan_id", source.as_str()));
    }
    let checkpoints: Vec<_> = view.state.resume.checkpoints.iter().take(keep as usize).cloned().collect();
    let changed: Vec<String> = checkpoints
        .iter()
        .zip(&file.steps)
        .filter(|(c, s)| {
            c.fingerprint.as_ref().is_some_and(|f| *f != s.fingerprint)
                || c.name.as_ref().is_some_and(|n| *n != s.step_name)
        })
        .map(|(c, s)| format!("{} ({})", c.step, escape_controls(&s.name)))
        .collect();
    if !changed.is_empty() {
        return Err(CliError::new(
            exit::NOT_ELIGIBLE,
            "not_eligible",
            format!(
                "--from-step {from}: step {} changed since it completed; run from the first changed step",
                changed.join(", ")
            ),
        )
        .with_reasons(vec![ResumeIneligibleReason::DefinitionChanged])
        .with("plan_id", source.as_str()));
    }
    Ok(())
}

/// `run FILE` when the store already holds the file's newest plan `id`: resume it, refuse while
/// it runs, or say it has completed.
fn continue_run(
    location: &StoreLocation,
    service: &Service,
    ui: &Ui,
    id: &PlanId,
    file: &PlanFile,
    events: &Events,
) -> Result<(), CliError> {
    // The run lock first: a live runner is refused at once; a step left by a runner that died is
    // waited for while its supervisor stops it.
    let lock = acquire_run_lock(service, id).map_err(|e| match e.code {
        "run_lock_busy" => CliError::new(
            exit::CONFLICT,
            "run_lock_busy",
            format!("plan {id} of this plan file is running in another process; wait for it, or start a separate plan with `waypoint run --new`"),
        )
        .with("plan_id", id.as_str())
        .with_reasons(vec![ResumeIneligibleReason::StillRunning]),
        _ => e,
    })?;
    let view = block_on(service.load_summary(id))?;
    let preview = ResumeRequest { dry_run: true, fingerprint: None, runner: Some(lock.runner().clone()) };
    let summary = block_on(service.resume_plan(id, preview))?.summary;
    let finished = summary.state == ProcessingState::Complete
        || (summary.reasons.contains(&ResumeIneligibleReason::NothingToResume) && summary.next_step.is_none());
    if finished || plan_file_source(&view).is_none() {
        if ui.json() {
            ui.json_document(&RunDoc {
                plan_id: id,
                outcome: "already_completed",
                resumed: None,
                steps: &[],
                summary: &summary,
            });
        } else {
            ui.stdout(&format!(
                "{} plan {id} · {} · already completed {}; nothing to run\n  `waypoint run --new {}` starts a fresh plan",
                ui.out.green("✓"),
                escape_controls(file.name.as_str()),
                render::count(file.steps.len(), "step"),
                shown_path(&file.path),
            ));
        }
        return Ok(());
    }
    let why = why_continue(&view, &summary);
    let (point, reports) = resume_plan_file(location, service, ui, &view, &file.path, None, events, lock, Some(&why))
        .map_err(|mut e| {
        if e.exit == exit::NOT_ELIGIBLE {
            let hint = match summary.changed_steps.iter().find(|c| c.completed) {
                Some(changed) => format!(
                    "; `waypoint run --from-step {} {}` runs again from the changed step, `--new` starts over",
                    changed.step,
                    shown_path(&file.path)
                ),
                None => format!("; `waypoint run --new {}` starts over", shown_path(&file.path)),
            };
            e.message.push_str(&hint);
        }
        e
    })?;
    let summary = block_on(service.build_resume_summary(id, None))?;
    if ui.json() {
        ui.json_document(&RunDoc {
            plan_id: id,
            outcome: "resumed",
            resumed: Some((&point).into()),
            steps: &reports,
            summary: &summary,
        });
        Ok(())
    } else {
        print_summary_block(service, ui, id, &summary)
    }
}

fn run_plan_file(
    location: &StoreLocation,
    service: &Service,
    ui: &Ui,
    id: &PlanId,
    file: &PlanFile,
    from: StepNumber,
    events: &Events,
) -> Result<Vec<StepReport>, CliError> {
    let total = u32::try_from(file.steps.len()).expect("checked when parsed");
    let progress = Arc::new(Progress::new(ui.err, ui.stderr_is_terminal, total));
    let sidecar = location.sidecar();
    let mut runner =
        Runner { service, sidecar: &sidecar, plan_id: id, file, progress, events, outputs: Default::default() };
    runner.run_from(from)
}

/// The full id of the plan `given` names: itself when a plan has that id, otherwise the one plan
/// whose id starts with it (at least [`MIN_PREFIX`] characters, as git abbreviates). Only a
/// given id that is not a full id costs a read of the catalog.
fn resolve_id(location: &StoreLocation, given: &PlanId) -> Result<PlanId, CliError> {
    let Some(service) = location.open_read_only()? else { return Ok(given.clone()) };
    match block_on(service.load_summary(given)) {
        Ok(_) => return Ok(given.clone()),
        Err(ServiceError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if given.as_str().len() < MIN_PREFIX {
        return Ok(given.clone());
    }
    let mut candidates: Vec<PlanId> = block_on(service.store().catalog())
        .map_err(|e| CliError::from(ServiceError::from(e)))?
        .into_iter()
        .map(|view| view.plan_id)
        .filter(|id| id.as_str().starts_with(given.as_str()))
        .collect();
    candidates.sort();
    match candidates.len() {
        0 => Ok(given.clone()),
        1 => Ok(candidates.remove(0)),
        _ => {
            let listed: Vec<&str> = candidates.iter().map(PlanId::as_str).collect();
            Err(CliError::usage(
                "ambiguous_id",
                format!(
                    "{given} is the start of {} plan ids: {}; give more of the id",
                    listed.len(),
                    listed.join(", ")
                ),
            )
            .with("candidates", listed))
        }
    }
}

/// The shortest id prefix git would accept here.
const MIN_PREFIX: usize = 4;

/// `plan interrupt`: takes the plan's run lock first, so that a plan being run by `waypoint
/// run` is never marked interrupted under its runner's feet (its next checkpoint would be
/// refused and the completed work lost): stop a runner with a signal instead.
fn interrupt(location: &StoreLocation, ui: &Ui, id: &PlanId, reason: Message) -> Result<(), CliError> {
    let service = location.open_existing_for_write(id)?;
    block_on(service.load_summary(id))?;
    let _lock = acquire_run_lock(&service, id).map_err(|e| match e.code {
        "run_lock_busy" => CliError::new(
            exit::CONFLICT,
            "run_lock_busy",
            format!("plan {id} is being run by a waypoint process; stop it with Ctrl-C (or `kill -INT` its pid), which records the interruption"),
        )
        .with("plan_id", id.as_str())
        .with_reasons(vec![ResumeIneligibleReason::StillRunning]),
        _ => e,
    })?;
    let appended = block_on(service.record_shutdown(id, reason))?;
    let done = if appended { "interruption recorded" } else { "already interrupted; nothing written" };
    print_after_write(&service, ui, id, done)
}

/// `plan show ID --outputs`: every completed step's recorded output, by step name (or number,
/// for a step recorded without a name).
fn show_outputs(location: &StoreLocation, ui: &Ui, id: &PlanId) -> Result<(), CliError> {
    let service = location.open_read_only_for(id)?;
    let view = block_on(service.load(id))?;
    // In step order, for people; the JSON object is keyed by step name.
    let ordered: Vec<(String, serde_json::Value)> = view
        .state
        .resume
        .checkpoints
        .iter()
        .map(|checkpoint| {
            let key = checkpoint.name.as_ref().map_or_else(|| checkpoint.step.to_string(), |n| n.as_str().to_owned());
            let value = checkpoint
                .output
                .as_ref()
                .map_or(serde_json::Value::Object(Default::default()), |o| o.as_value().clone());
            (key, value)
        })
        .collect();
    let outputs: serde_json::Map<String, serde_json::Value> = ordered.iter().cloned().collect();
    if ui.json() {
        ui.json_document(&serde_json::json!({ "plan_id": id, "outputs": outputs }));
    } else if outputs.is_empty() {
        ui.stdout(&format!("plan {id} has no completed step in its current phase"));
    } else {
        let mut text = String::new();
        for (step, values) in &ordered {
            text.push_str(&format!("{}\n", ui.out.bold(&escape_controls(step))));
            match values.as_object() {
                Some(map) if map.is_empty() => text.push_str(&format!("  {}\n", ui.out.dim("(no outputs)"))),
                Some(map) => {
                    for (key, value) in map {
                        let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                        text.push_str(&format!("  {} = {}\n", escape_controls(key), escape_controls(&value)));
                    }
                }
                None => text.push_str(&format!("  {}\n", escape_controls(&values.to_string()))),
            }
        }
        ui.stdout(&text);
    }
    Ok(())
}

/// `plan logs`: the stored stdout and stderr of each attempt of each step.
fn logs(
    location: &StoreLocation,
    ui: &Ui,
    id: &PlanId,
    step: Option<StepNumber>,
    attempt: Option<u32>,
) -> Result<(), CliError> {
    let service = location.open_read_only_for(id)?;
    block_on(service.load_summary(id))?;
    let dir = location.sidecar().logs_dir(id);
    let found: Vec<crate::logs::AttemptLogs> = crate::logs::list(&dir)
        .map_err(|e| CliError::unexpected(format!("cannot list the logs in {}: {e}", shown_path(&dir))))?
        .into_iter()
        .filter(|l| step.is_none_or(|s| s.get() == l.step) && attempt.is_none_or(|a| a == l.attempt))
        .collect();
    let read = |path: &Option<std::path::PathBuf>| {
        path.as_ref()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned())
            .unwrap_or_default()
    };
    if ui.json() {
        let entries: Vec<serde_json::Value> = found
            .iter()
            .map(|l| serde_json::json!({"step": l.step, "attempt": l.attempt, "stdout": read(&l.stdout), "stderr": read(&l.stderr)}))
            .collect();
        ui.json_document(&serde_json::json!({"plan_id": id, "cap_bytes": crate::logs::LOG_CAP, "logs": entries}));
        return Ok(());
    }
    if found.is_empty() {
        ui.stdout(&format!(
            "no logs for plan {id}{}; logs are kept for steps run by `waypoint run` (the last 1 MiB of each stream)",
            step.map_or(String::new(), |s| format!(" step {s}"))
        ));
        return Ok(());
    }
    let mut text = String::new();
    for l in &found {
        for (stream, path) in [("stdout", &l.stdout), ("stderr", &l.stderr)] {
            let body = read(path);
            text.push_str(&format!(
                "{}\n",
                ui.out.bold(&format!("── step {} · attempt {} · {stream}", l.step, l.attempt))
            ));
            if body.is_empty() {
                text.push_str(&format!("{}\n", ui.out.dim("(empty)")));
            } else {
                text.push_str(&escape_terminal(&body));
                if !body.ends_with('\n') {
                    text.push('\n');
                }
            }
        }
    }
    ui.stdout(&text);
    Ok(())
}

/// A step's output as it may reach a terminal: control characters other than newline and tab
/// escaped (colour sequences included).
fn escape_terminal(text: &str) -> String {
    text.split('\n')
        .map(|line| line.split('\t').map(escape_controls).collect::<Vec<_>>().join("\t"))
        .collect::<Vec<_>>()
        .join("\n")
}
