//! The plan-file commands: `waypoint run FILE` (continued by key, `--new`, `--from-step`) and the
//! resume of a plan made from a plan file, with its preview. What runs, continues, is refused or
//! is given back is the step engine's decision (`waypoint_application::engine`); this module asks
//! it, hands the run to the step loop (`runner.rs`), and has `words` say the outcome.

use waypoint_application::engine::{EngineError, EngineRun, Prepared, ReadyRun};

use super::*;
use crate::error::engine_error;
use crate::keys::PlanFileKey;
use crate::runner::RunEnd;
use crate::store::AnyStore;

mod words;
use words::{
    already_completed, announce, outcome_of, refused, refused_resume, removed_newest, still_waiting, Continuing,
};

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
    let current = plan_file_source(&view).map(read_plan_file);
    words::preview(ui, &outcome.summary, &view, current.as_ref());
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
        print_resumed(ui, &block_on(service.resume_plan(id, request))?, &view, "");
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
    let doc = ResumedDoc { resumed: (&point).into(), steps: Some(&end.reports), summary: &summary };
    words::ran(ui, &service, &doc, end.stopped, &summary)
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
    announce(ui, &run, file, continuing.map(|c| c.why.as_str()), continuing.is_some_and(|c| c.failed));
    let end = run_plan_file(location, ui, run, file, events)?;
    let summary = block_on(service.build_resume_summary(&id, None))?;
    let doc = RunDoc {
        plan_id: &id,
        outcome: outcome_of(end.stopped, outcome),
        resumed: point.as_ref().map(Into::into),
        steps: &end.reports,
        waiting_for: summary.waiting_for.as_ref(),
        summary: &summary,
    };
    words::ran(ui, service, &doc, end.stopped, &summary)
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
    Runner::new(run, &location.sidecar(), file, progress, events, None).run_all()
}
