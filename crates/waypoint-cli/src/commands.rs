//! One function per command: open the store the way the command needs, call the service, print.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::executor::block_on;
use waypoint_application::{
    Listing, LogStream, NewPlan, PlanView, ResumeOutcome, ResumeRequest, ServiceError, StepCheckpoint, StepStart,
};
use waypoint_domain::{
    Attempt, Fingerprint, Message, Phase, PlanId, ProcessingState, ResumeIneligibleReason, ResumeSummary, StepNumber,
};

use crate::cli::{CheckpointArgs, Cli, Command, CreateArgs, PlanCommand, ResumeArgs, RunArgs};
use crate::definition::{plan_file_path, read_plan_file};
use crate::error::{exit, CliError};
use crate::keys::{keyed_id, random_id, PlanFileKey};
use crate::plan_file::PlanFile;
use crate::progress::Progress;
use crate::render::{self, ResumedDoc, RunDoc};
use crate::runner::Runner;
use crate::signals::{watch_signals, Events};
use crate::store::{acquire_run_lock, resolve_plan_id, runner_id, LocationExt, Service, StoreLocation};
use crate::text::{columns, count, cut, local_time};
use crate::text::{escape_controls, shown_path};
use crate::ui::Ui;

mod lease;
mod queues;
mod run;

pub use queues::{list_queues, queues_doc, PLAN_FILE_FORMAT};
use run::{resume, resume_preview, run};

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
        Command::Ui(args) => crate::web::serve(&location, ui, args),
        Command::Submit(args) => queues::submit(&location, ui, args),
        Command::Worker(args) => crate::worker::work(&location, ui, args),
        Command::Queue(command) => queues::queue(&location, ui, command),
    }
}

fn plan(location: &StoreLocation, ui: &Ui, command: PlanCommand) -> Result<(), CliError> {
    match command {
        PlanCommand::Create(args) => create(location, ui, args),
        PlanCommand::Start { id, phase, lease } => {
            let phase = Phase::from(phase);
            match lease.request() {
                Some(lease) => lease::start(location, ui, &id, phase, lease),
                None => write(location, ui, &id, &entered(ui, phase), |s| block_on(s.start_phase(&id, phase, None))),
            }
        }
        PlanCommand::TotalSteps { id, n } => {
            write(location, ui, &id, &format!("total steps set to {n}"), |s| block_on(s.set_total_steps(&id, n)))
        }
        PlanCommand::StepStarted { id, step, decision, lease } => {
            let start = StepStart { lease: lease.request(), ..StepStart::new(step, decision) };
            write(location, ui, &id, &format!("step {step} started"), |s| block_on(s.record_step_started(&id, start)))
        }
        PlanCommand::Heartbeat { id, runner, lease } => lease::heartbeat(location, ui, &id, runner, lease),
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
        PlanCommand::Approve { id, step, by, comment } => {
            let by = by.unwrap_or_else(login_name);
            let done = format!("approved by {by}; run the plan again to go on");
            write(location, ui, &id, &done, |s| block_on(s.approve(&id, step, by.clone(), comment)))
        }
        PlanCommand::Reject { id, step, reason, by } => {
            let by = by.unwrap_or_else(login_name);
            let done = format!("rejected by {by}");
            write(location, ui, &id, &done, |s| block_on(s.reject(&id, step, by.clone(), reason)))
        }
        PlanCommand::Pause { id, reason } => {
            let done = "pause asked for: the plan stops at its next step boundary";
            write(location, ui, &id, done, |s| block_on(s.pause(&id, login_name(), reason)))
        }
        PlanCommand::List { resumable, queue } => list(location, ui, resumable, queue.as_ref()),
        PlanCommand::Show { id, steps: true, .. } => crate::web::show_steps(location, ui, &id),
        PlanCommand::Show { id, outputs: false, .. } => show(location, ui, &id),
        PlanCommand::Show { id, outputs: true, .. } => show_outputs(location, ui, &id),
        PlanCommand::Report { id, output } => crate::web::report(location, ui, &id, output.as_deref()),
        PlanCommand::Logs { id, step, attempt } => logs(location, ui, &id, step, attempt),
        PlanCommand::History { id } => history(location, ui, &id),
        PlanCommand::Fork { id, from_step, new_id } => fork(location, ui, &id, from_step, new_id),
        PlanCommand::Resume(ResumeArgs { id, dry_run: true, fingerprint, .. }) => {
            resume_preview(location, ui, &id, fingerprint)
        }
        PlanCommand::Resume(ResumeArgs { id, dry_run: false, fingerprint, lease }) => match lease.request() {
            Some(lease) => lease::resume(location, ui, &id, fingerprint, lease),
            None => resume(location, ui, &id, fingerprint),
        },
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
    let (plan_id, created) = match block_on(service.create_plan(new.clone())) {
        Ok(view) => (view.plan_id, true),
        Err(ServiceError::Plan { plan_id, source: waypoint_domain::PlanError::AlreadyExists }) if args.if_absent => {
            (plan_id, false)
        }
        Err(e) => return Err(e.into()),
    };
    if ui.json() {
        let summary = block_on(service.build_resume_summary(&plan_id, None))?;
        if args.if_absent {
            ui.json_document(&render::CreatedDoc { summary: &summary, created });
        } else {
            ui.json_document(&summary);
        }
    } else {
        ui.stdout(plan_id.as_str());
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
    let new_id = match new_id {
        Some(id) => id,
        None => fork_id(&service, &block_on(service.load_summary(source))?)?,
    };
    let at_step = StepNumber::new(from_step.get() - 1).ok();
    let fork = block_on(service.fork_plan(source, at_step, Some(new_id)))?;
    let copied = at_step.map_or("no step copied".to_owned(), |n| format!("steps 1 to {n} copied"));
    let done = format!(
        "forked plan {source} to run from step {from_step} ({copied}); `waypoint plan resume {}` runs it",
        fork.plan_id
    );
    print_after_write(&service, ui, &fork.plan_id, &done)
}

/// The id of a fork of `source` when none is given: a plan file's plan's fork is the file's
/// next plan (so `waypoint run FILE` continues it, as the file's newest); any other plan's gets
/// a short random id of the same shape.
fn fork_id(service: &Service, source: &PlanView) -> Result<PlanId, CliError> {
    let Some(path) = plan_file_path(&source.state) else { return Ok(random_id()) };
    let newest = block_on(service.newest_generation(&PlanFileKey(path)))?;
    Ok(keyed_id(path, newest.map_or(1, |g| g + 1)))
}

fn print_after_write(service: &Service, ui: &Ui, id: &PlanId, done: &str) -> Result<(), CliError> {
    let summary = block_on(service.build_resume_summary(id, None))?;
    if ui.json() {
        ui.json_document(&summary);
    } else {
        let style = ui.out;
        let progress = match (summary.total_steps, summary.last_completed_step) {
            (Some(total), last) => {
                format!(" · {} of {}", last.map_or(0, |s| s.get()), count(total.get() as usize, "step"))
            }
            (None, Some(last)) => format!(" · {} completed", count(last.get() as usize, "step")),
            (None, None) => String::new(),
        };
        let states = if ui.verbose { format!(" ({}/{})", summary.phase, summary.state) } else { String::new() };
        ui.stdout(&format!("{} {done} · plan {id}: {}{states}{progress}", style.green("✓"), summary.status));
    }
    Ok(())
}

/// What `plan start` says it did: the phase by name only with `-v`, as rich output names no phase.
fn entered(ui: &Ui, phase: Phase) -> String {
    if ui.verbose {
        format!("entered {phase}")
    } else {
        "phase started".to_owned()
    }
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
            name: args.name,
            output: args.output,
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

fn list(
    location: &StoreLocation,
    ui: &Ui,
    resumable: bool,
    queue: Option<&waypoint_domain::QueueName>,
) -> Result<(), CliError> {
    // A resumable listing reads only the plans that are not finished (ADR 0009): a store of many
    // finished plans lists its few resumable ones at their cost, not the store's.
    let service = location.open_read_only()?;
    if ui.json() {
        let mut document = ui.json_list("plans");
        match &service {
            // Every plan: streamed, so memory does not grow with the store.
            Some(service) if !resumable => stream_listing(service, queue, &mut document)?,
            Some(service) => {
                let listing = block_on(service.listing(resumable))?;
                print_listing(service, &listing, queue, &mut document);
                // The process ends next: freeing ten thousand views one by one would only delay it.
                std::mem::forget(listing);
            }
            None => {}
        }
        document.finish_stdout();
        return Ok(());
    }
    let listed = match &service {
        Some(service) => block_on(service.list(resumable))?,
        None => Vec::new(),
    };
    let listed_count = listed.len();
    let plans = match queue {
        Some(_) => listed.into_iter().filter(|(_, summary)| in_queue(summary, queue)).collect(),
        None => listed,
    };
    // An empty table says how many plans the store holds: counted only then, and only for people.
    let total = match &service {
        Some(service) if resumable && plans.is_empty() => block_on(service.list(false))?.len(),
        _ => listed_count,
    };
    ui.stdout(&render::plans_table(ui, &plans, DateTime::<Utc>::from(std::time::SystemTime::now()), total));
    Ok(())
}

/// Prints every plan's summary (those in `queue`, when given) into `document` as the store walks
/// its listing a batch at a time ([`Service::walk_list`]): the process holds a few batches, never
/// the catalog, whatever the store's size. A store that fails during the walk leaves the document
/// cut short, and its error follows.
fn stream_listing<W: std::io::Write>(
    service: &Service,
    queue: Option<&waypoint_domain::QueueName>,
    document: &mut crate::ui::JsonList<W>,
) -> Result<(), CliError> {
    print_batches(document, queue, |hand_over| block_on(service.walk_list(WALK_BATCH, hand_over)))?;
    Ok(())
}

/// How many plans a streamed listing reads from the store at once.
const WALK_BATCH: usize = 1024;

/// How many plans the listing's summarizing thread hands over at once.
const LISTING_BATCH: usize = 256;

/// Prints `listing`'s summaries (those in `queue`, when given) into `document`: two threads take
/// alternate batches, each summarizing and rendering its own, and this one prints them in order.
/// Rendering the JSON is as costly as summarizing, so both halves of the cost run side by side.
fn print_listing<W: std::io::Write>(
    service: &Service,
    listing: &Listing,
    queue: Option<&waypoint_domain::QueueName>,
    document: &mut crate::ui::JsonList<W>,
) {
    const RENDERERS: usize = 2;
    let batches = listing.views().len().div_ceil(LISTING_BATCH);
    let render = |first: usize, send: std::sync::mpsc::SyncSender<crate::ui::RenderedItems>| {
        for batch in (first..batches).step_by(RENDERERS) {
            let mut rendered = crate::ui::RenderedItems::default();
            for view in listing.range(batch * LISTING_BATCH, LISTING_BATCH) {
                match listing.summary(service, view) {
                    Some(summary) if in_queue(&summary, queue) => rendered.push(&summary),
                    _ => {}
                }
            }
            if send.send(rendered).is_err() {
                return;
            }
        }
    };
    std::thread::scope(|scope| {
        let mut rendered = Vec::new();
        for first in 0..RENDERERS {
            let (send, receive) = std::sync::mpsc::sync_channel(2);
            scope.spawn(move || render(first, send));
            rendered.push(receive);
        }
        // Batch b is rendered by thread b % RENDERERS, which sends its batches in order. A thread
        // that panicked closes its channel: printing stops, and the scope passes the panic on.
        for batch in 0..batches {
            match rendered[batch % RENDERERS].recv() {
                Ok(items) => document.push_rendered(&items),
                Err(_) => break,
            }
        }
    });
}

/// Whether `summary`'s plan is in `queue` (every plan is, when no queue is given).
fn in_queue(summary: &ResumeSummary, queue: Option<&waypoint_domain::QueueName>) -> bool {
    queue.is_none_or(|q| summary.queue.as_ref() == Some(q))
}

/// Prints into `document` the summaries that `produce`, on a second thread, hands over a batch at
/// a time (those in `queue`, when given), in that order: the next batch is made while this one is
/// printed, so the two halves of a long listing's cost run side by side. `produce`'s answer.
fn print_batches<W: std::io::Write, R: Send>(
    document: &mut crate::ui::JsonList<W>,
    queue: Option<&waypoint_domain::QueueName>,
    produce: impl FnOnce(&mut (dyn FnMut(Vec<ResumeSummary>) -> bool + Send)) -> R + Send,
) -> R {
    let (send, batches) = std::sync::mpsc::sync_channel::<Vec<ResumeSummary>>(4);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || produce(&mut |batch| send.send(batch).is_ok()));
        for batch in batches {
            for summary in batch.iter().filter(|s| in_queue(s, queue)) {
                document.push(summary);
            }
        }
        producer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
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
    ui.stdout(&render::summary_block(ui, summary, &view));
    Ok(())
}

/// A resume recorded without running anything here (a plan with no plan file): the step it
/// resumes from, `held` after it (` · held by R until T`), and the plan's summary.
fn print_resumed(ui: &Ui, outcome: &ResumeOutcome, view: &PlanView, held: &str) {
    let point = outcome.resumed.expect("a real resume returns its resume point");
    if ui.json() {
        ui.json_document(&ResumedDoc { resumed: (&point).into(), steps: None, summary: &outcome.summary });
    } else {
        let again = if point.rerun_uncertain { " (it started but did not complete, so it runs again)" } else { "" };
        ui.stdout(&format!("{} resumed from step {}{again}{held}", ui.out.green("↻"), point.from_step));
        ui.stdout(&render::summary_block(ui, &outcome.summary, view));
    }
}

fn history(location: &StoreLocation, ui: &Ui, id: &PlanId) -> Result<(), CliError> {
    let service = location.open_read_only_for(id)?;
    let events = block_on(service.history(id))?;
    if ui.json() {
        ui.json_document(&render::history_doc(&events));
    } else {
        ui.stdout(&render::timeline(ui, &events));
    }
    Ok(())
}

/// The full id of the plan `given` names, as [`resolve_plan_id`] finds it; `given` itself when
/// there is no store yet.
fn resolve_id(location: &StoreLocation, given: &PlanId) -> Result<PlanId, CliError> {
    let Some(service) = location.open_read_only()? else { return Ok(given.clone()) };
    let resolved = resolve_plan_id(&service, given)?;
    // The command's own read-only open takes this one rather than opening the store again.
    crate::store::keep_read_only(service.store().clone());
    Ok(resolved)
}

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
        // One line per output, cut to the width: `--format json` gives every value whole.
        let line = |text: String| format!("  {}\n", cut(&text, ui.width - 2));
        let mut text = String::new();
        for (step, values) in &ordered {
            text.push_str(&format!("{}\n", ui.out.bold(&cut(&escape_controls(step), ui.width))));
            match values.as_object() {
                Some(map) if map.is_empty() => text.push_str(&format!("  {}\n", ui.out.dim("(no outputs)"))),
                Some(map) => {
                    for (key, value) in map {
                        let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                        text.push_str(&line(format!("{} = {}", escape_controls(key), escape_controls(&value))));
                    }
                }
                None => text.push_str(&line(escape_controls(&values.to_string()))),
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
    let attempt = attempt.map(Attempt::new).transpose().map_err(|e| CliError::usage("invalid_value", e.to_string()))?;
    let doc = crate::logs::logs_doc(&service, id, step, attempt)?;
    if ui.json() {
        ui.json_document(&doc);
        return Ok(());
    }
    if doc.logs.is_empty() {
        ui.stdout(&format!(
            "no logs for plan {id}{}; logs are kept for steps run by `waypoint run` (the last 1 MiB of each stream)",
            step.map_or(String::new(), |s| format!(" step {s}"))
        ));
        return Ok(());
    }
    // The full view: it names every step (a compact one may hold only the last step's name).
    let view = block_on(service.load(id))?;
    let mut text = String::new();
    for entry in &doc.logs {
        let s = entry.step;
        for stream in LogStream::ALL {
            let body = match stream {
                LogStream::Stdout => &entry.stdout,
                LogStream::Stderr => &entry.stderr,
            };
            let tail = format!(" · attempt {} · {stream}", entry.attempt);
            let name = render::step_name(&view, s).map(|n| n.as_str());
            let header =
                format!("── {}{tail}", render::step_label(s, name, ui.width.saturating_sub(columns(&tail) + 3)));
            text.push_str(&format!("{}\n", ui.out.bold(&header)));
            if body.is_empty() {
                text.push_str(&format!("{}\n", ui.out.dim("(empty)")));
            } else {
                text.push_str(&escape_terminal(body));
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

/// Who a person at this terminal is, as approvals and pauses record them: the login name.
fn login_name() -> waypoint_domain::Actor {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    waypoint_domain::Actor::parse(&user)
        .unwrap_or_else(|_| waypoint_domain::Actor::parse("unknown").expect("static actor is valid"))
}
