//! The plan-file commands: `waypoint run FILE` (continued by key, `--new`, `--from-step`) and the
//! resume of a plan made from a plan file, with its preview. The lifecycle and read commands are
//! in the parent module.

use super::*;

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
        block_on(service.resume_plan(id, ResumeRequest { dry_run: true, fingerprint, runner: None, lease: None }))?;
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

pub(super) fn resume(
    location: &StoreLocation,
    ui: &Ui,
    id: &PlanId,
    fingerprint: Option<Fingerprint>,
) -> Result<(), CliError> {
    let service = location.open_existing_for_write(id)?;
    let view = block_on(service.load_summary(id))?;
    let Some(path) = plan_file_source(&view).map(Path::to_path_buf) else {
        let request = ResumeRequest { dry_run: false, fingerprint, runner: None, lease: None };
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
    let request = ResumeRequest { dry_run: false, fingerprint, runner: Some(lock.runner().clone()), lease: None };
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

/// Whether a plan with this id is in the store, or was until retention removed it: either way
/// its id is taken, and the generations of a plan file stay without gaps.
fn plan_exists(service: &Service, id: &PlanId) -> Result<bool, CliError> {
    match block_on(service.load_summary(id)) {
        Ok(_) | Err(ServiceError::Removed(_)) => Ok(true),
        Err(ServiceError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
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
            render::clock_time(removal.removed_at),
            escape_controls(&removal.archive),
            shown_path(&file.path),
        ));
    }
    Ok(())
}

pub(super) fn run(location: &StoreLocation, ui: &Ui, args: RunArgs) -> Result<(), CliError> {
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
        let id = keyed_id(&file.path, generation);
        if let Some(removal) = block_on(service.store().removal(&id)).map_err(ServiceError::from)? {
            return removed_newest(ui, &removal, &file);
        }
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
    let preview = ResumeRequest { dry_run: true, fingerprint: None, runner: Some(lock.runner().clone()), lease: None };
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
