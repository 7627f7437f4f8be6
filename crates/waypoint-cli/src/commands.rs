//! One function per command: open the store the way the command needs, call the service, print.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::executor::block_on;
use waypoint_application::{NewPlan, PlanView, ResumeRequest, StepCheckpoint};
use waypoint_domain::{Fingerprint, Phase, PlanId, ResumeIneligibleReason, ResumeSummary, StepNumber};

use crate::cli::{CheckpointArgs, Cli, Command, CreateArgs, PlanCommand};
use crate::error::{exit, CliError};
use crate::plan_file::{fingerprint_of, PlanFile};
use crate::progress::Progress;
use crate::render::{self, PlannedStep, ResumedDoc, RunDoc};
use crate::runner::{watch_signals, Events, Runner, StepReport};
use crate::store::{acquire_run_lock, runner_id, Service, StoreLocation};
use crate::ui::Ui;

pub fn execute(cli: Cli, ui: &Ui) -> Result<(), CliError> {
    let location = StoreLocation::parse(&cli.store)?;
    match cli.command {
        Command::Run { file } => run(&location, ui, &file),
        Command::Plan(command) => plan(&location, ui, command),
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
                block_on(s.record_step_started(&id, step, decision))
            })
        }
        PlanCommand::Checkpoint(args) => checkpoint(location, ui, args),
        PlanCommand::Interrupt { id, reason } => {
            let service = location.open_existing_for_write(&id)?;
            let appended = block_on(service.record_shutdown(&id, reason))?;
            let done = if appended { "interruption recorded" } else { "already interrupted; nothing written" };
            print_after_write(&service, ui, &id, done)
        }
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
        PlanCommand::Show { id } => show(location, ui, &id),
        PlanCommand::History { id } => history(location, ui, &id),
        PlanCommand::Resume { id, dry_run: true, fingerprint } => resume_preview(location, ui, &id, fingerprint),
        PlanCommand::Resume { id, dry_run: false, fingerprint } => resume(location, ui, &id, fingerprint),
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

fn print_after_write(service: &Service, ui: &Ui, id: &PlanId, done: &str) -> Result<(), CliError> {
    let summary = block_on(service.build_resume_summary(id, None))?;
    if ui.json() {
        ui.json_document(&summary);
    } else {
        let style = ui.out;
        let progress = match (summary.total_steps, summary.last_completed_step) {
            (Some(total), last) => format!(" · {} of {total} steps", last.map_or(0, |s| s.get())),
            (None, Some(last)) => format!(" · {last} steps completed"),
            (None, None) => String::new(),
        };
        ui.stdout(&format!("{} {done} · plan {id}: {}/{}{progress}", style.green("✓"), summary.phase, summary.state));
    }
    Ok(())
}

fn checkpoint(location: &StoreLocation, ui: &Ui, args: CheckpointArgs) -> Result<(), CliError> {
    let service = location.open_existing_for_write(&args.id)?;
    let step = args.step;
    let recorded = block_on(service.record_step_checkpoint(
        &args.id,
        StepCheckpoint { step, decision_id: args.decision, snapshot_id: args.snapshot, artifacts: args.artifacts },
    ))?;
    let done = if recorded.appended {
        format!("step {step} checkpoint {} recorded", recorded.checkpoint.checkpoint_id)
    } else {
        format!("step {step} was already recorded with this payload; nothing written")
    };
    print_after_write(&service, ui, &args.id, &done)
}

fn list(location: &StoreLocation, ui: &Ui, resumable: bool) -> Result<(), CliError> {
    let plans = match location.open_read_only()? {
        Some(service) => block_on(service.list(resumable))?,
        None => Vec::new(),
    };
    if ui.json() {
        ui.json_document(&render::PlansDoc { plans: plans.iter().map(|(_, summary)| summary).collect() });
    } else {
        ui.stdout(&render::plans_table(ui.out, &plans, DateTime::<Utc>::from(std::time::SystemTime::now())));
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

/// A plan created by `waypoint run`: its plan file, recorded when it was created. Its steps are
/// the strategize phase; a plan moved on to another phase by hand resumes as a plain plan.
fn plan_file_source(view: &PlanView) -> Option<&Path> {
    let source = view.state.source.as_ref()?;
    (view.state.phase == Phase::Strategize).then(|| Path::new(source.as_str()))
}

/// The plan file as it is now: its bytes' fingerprint and, when it still parses, the file.
struct CurrentPlanFile {
    fingerprint: Fingerprint,
    file: Option<PlanFile>,
}

fn read_plan_file(path: &Path) -> Result<CurrentPlanFile, std::io::Error> {
    let bytes = std::fs::read(path)?;
    Ok(CurrentPlanFile { fingerprint: fingerprint_of(&bytes), file: PlanFile::parse(path, &bytes).ok() })
}

/// The fingerprint a resume checks: a changed plan file always counts; otherwise the caller's.
pub fn fingerprint_to_check(
    recorded: Option<&Fingerprint>,
    current: Option<&Fingerprint>,
    given: Option<Fingerprint>,
) -> Option<Fingerprint> {
    match current {
        Some(current) if Some(current) != recorded => Some(current.clone()),
        _ => given.or_else(|| current.cloned()),
    }
}

fn resume_preview(
    location: &StoreLocation,
    ui: &Ui,
    id: &PlanId,
    fingerprint: Option<Fingerprint>,
) -> Result<(), CliError> {
    let service = location.open_read_only_for(id)?;
    let view = block_on(service.load_summary(id))?;
    let current = plan_file_source(&view).map(read_plan_file);
    let current_fp = current.as_ref().and_then(|c| c.as_ref().ok()).map(|c| &c.fingerprint);
    let fingerprint = fingerprint_to_check(view.state.fingerprint.as_ref(), current_fp, fingerprint);
    let outcome = block_on(service.resume_plan(id, ResumeRequest { dry_run: true, fingerprint, runner: None }))?;
    let mut summary = outcome.summary;
    if matches!(current, Some(Err(_))) && !summary.reasons.contains(&ResumeIneligibleReason::DefinitionChanged) {
        summary.reasons.push(ResumeIneligibleReason::DefinitionChanged);
        summary.eligible = false;
    }
    let steps = match &current {
        Some(Ok(CurrentPlanFile { file: Some(file), .. })) => Some(planned_steps(file, &summary)),
        _ => None,
    };
    if ui.json() {
        ui.json_document(&render::PreviewDoc { summary: &summary, steps: steps.as_deref() });
    } else {
        let mut text = render::summary_block(ui.out, &summary, &view);
        if let Some(Err(e)) = &current {
            text.push_str(&format!("\n{} cannot read the plan file: {e}\n", ui.out.yellow("!")));
        }
        if let Some(steps) = &steps {
            text.push_str(&format!("\n{}\n", ui.out.bold("If resumed now:")));
            for PlannedStep { step: n, name, action } in steps {
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
    let current = read_plan_file(&path).map_err(|e| {
        CliError::new(
            exit::NOT_ELIGIBLE,
            "not_eligible",
            format!(
                "plan {id} cannot resume: its plan file {} cannot be read ({e}); restore it, or start over with `waypoint run`",
                path.display()
            ),
        )
        .with_reasons(vec![ResumeIneligibleReason::DefinitionChanged])
        .with("plan_id", id.as_str())
    })?;
    let fingerprint = fingerprint_to_check(view.state.fingerprint.as_ref(), Some(&current.fingerprint), fingerprint);
    // Only the file the plan was created from may run; a changed one is refused by the resume.
    let unchanged = view.state.fingerprint.as_ref() == Some(&current.fingerprint);
    if unchanged && current.file.is_none() {
        return Err(CliError::unexpected(format!("the plan file {} no longer parses", path.display())));
    }

    let events = watch_signals()?;
    let _lock = acquire_run_lock(&service, id)?;
    let request = ResumeRequest { dry_run: false, fingerprint, runner: Some(runner_id()) };
    let outcome = block_on(service.resume_plan(id, request))?;
    let point = outcome.resumed.expect("a real resume returns its resume point");
    let Some(file) = current.file.filter(|_| unchanged) else {
        return Err(CliError::unexpected("the plan file changed, yet the plan was found eligible; report this"));
    };
    if !ui.json() {
        let again = if point.rerun_uncertain {
            format!("; step {} started but did not complete, so it runs again", point.from_step)
        } else {
            String::new()
        };
        ui.stdout(&format!(
            "{} resuming {} · plan {id} from step {} of {}{again}",
            ui.out.green("↻"),
            ui.out.bold(file.name.as_str()),
            point.from_step,
            file.steps.len()
        ));
    }
    let reports = run_plan_file(&service, ui, id, &file, point.from_step, &events)?;
    let summary = block_on(service.build_resume_summary(id, None))?;
    if ui.json() {
        ui.json_document(&ResumedDoc { resumed: (&point).into(), steps: Some(&reports), summary: &summary });
        Ok(())
    } else {
        print_summary_block(&service, ui, id, &summary)
    }
}

fn run(location: &StoreLocation, ui: &Ui, path: &Path) -> Result<(), CliError> {
    // Everything that can be refused is checked before the store is touched.
    let file = PlanFile::load(path)?;
    let source = file.source()?;
    let events = watch_signals()?;
    let service = location.open_for_write()?;
    // The run lock first, then the plan created and started in one append: a crash at any moment
    // leaves either no plan or one that is processing under a runner, which a resume can infer.
    let id = PlanId::from_uuid(uuid::Uuid::new_v4());
    let _lock = acquire_run_lock(&service, &id)?;
    let new = NewPlan {
        id: Some(id.clone()),
        name: Some(file.name.clone()),
        total_steps: Some(file.total_steps()),
        fingerprint: Some(file.fingerprint.clone()),
        source: Some(source),
        start: Some((Phase::Strategize, Some(runner_id()))),
    };
    block_on(service.create_plan(new))?;
    if ui.json() {
        ui.note(&format!("plan {id}"));
    } else {
        ui.stdout(&format!(
            "{} {} · plan {} · {} steps",
            ui.out.cyan("▶"),
            ui.out.bold(file.name.as_str()),
            id,
            file.steps.len()
        ));
    }
    let reports = run_plan_file(&service, ui, &id, &file, StepNumber::FIRST, &events)?;
    let summary = block_on(service.build_resume_summary(&id, None))?;
    if ui.json() {
        ui.json_document(&RunDoc { plan_id: &id, steps: &reports, summary: &summary });
        Ok(())
    } else {
        print_summary_block(&service, ui, &id, &summary)
    }
}

fn run_plan_file(
    service: &Service,
    ui: &Ui,
    id: &PlanId,
    file: &PlanFile,
    from: StepNumber,
    events: &Events,
) -> Result<Vec<StepReport>, CliError> {
    let total = u32::try_from(file.steps.len()).expect("checked when parsed");
    let progress = Arc::new(Progress::new(ui.err, ui.stderr_is_terminal, total));
    let mut runner = Runner { service, plan_id: id, file, progress, events };
    runner.run_from(from)
}
