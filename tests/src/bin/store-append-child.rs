//! A child process for the process-level store tests: appends to a plan and reports every
//! acknowledged event on stdout, or holds a run lock or the store open until killed.
//!
//! `store-append-child append <dir> <plan> <count>` (count 0: until killed) prints
//! `ack <plan> <version> <event id>` after each append returns, retrying conflicts.
//! `store-append-child hold-lock <dir> <plan>` and `hold-open <dir>` print `ready` and wait.
//! `pg-append <url> <plan> <count>` and `pg-hold-lock <url> <plan>` do the same on PostgreSQL.
//! `store-append-child many-plans <dir> <count>` creates `count` plans, one append each, then
//! writes a checkpoint, and prints `ok` (run under a low open-file limit).
//! `store-append-child compact <dir> <archive>` runs retention (every finished plan, archived
//! into the file store at `archive`), prints `started` first and `done <n>` after;
//! `pg-compact <url> <archive>` does the same on PostgreSQL.

use std::io::Write;
use std::process::ExitCode;

use eventually::store::Expected;
use waypoint_application::domain::{
    CheckpointId, DecisionId, EventId, PlanCreated, PlanEvent, PlanId, StepCompleted, StepNumber,
};
use waypoint_application::RecordedEvent;
use waypoint_store_file::{FileStore, FileStoreError};
use waypoint_store_postgres::{PgStoreError, PostgresStore};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["append", dir, plan, count] => append(dir, plan, count.parse().unwrap_or(0)),
        ["hold-lock", dir, plan] => hold_lock(dir, plan),
        ["hold-open", dir] => hold_open(dir),
        ["pg-append", url, plan, count] => pg_append(url, plan, count.parse().unwrap_or(0)),
        ["pg-hold-lock", url, plan] => pg_hold_lock(url, plan),
        ["many-plans", dir, count] => many_plans(dir, count.parse().unwrap_or(0)),
        ["compact", dir, archive] => FileStore::open(dir).map_err(Box::from).and_then(|s| compact(s, archive)),
        ["pg-compact", url, archive] => {
            PostgresStore::connect(url).map_err(Box::from).and_then(|s| compact(s, archive))
        }
        _ => {
            Err("usage: store-append-child append <dir> <plan> <count> | hold-lock <dir> <plan> | hold-open <dir>"
                .into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store-append-child: {e}");
            ExitCode::FAILURE
        }
    }
}

fn event_for(version: u32) -> RecordedEvent {
    let now = chrono::Utc::now();
    let event = match version {
        1 => PlanEvent::PlanCreated(PlanCreated {
            name: None,
            total_steps: None,
            fingerprint: None,
            source: None,
            created_at: now,
            steps: vec![],
        }),
        n => PlanEvent::StepCompleted(StepCompleted {
            checkpoint_id: CheckpointId::from_uuid(uuid::Uuid::new_v4()),
            step: StepNumber::new(n - 1).expect("n >= 2"),
            decision_id: DecisionId::parse(&format!("decision-{}", n - 1)).expect("valid decision id"),
            snapshot_id: None,
            artifacts: vec![],
            name: None,
            output: None,
            fingerprint: None,
        }),
    };
    RecordedEvent { event_id: EventId::from_uuid(uuid::Uuid::new_v4()), recorded_at: now, event }
}

fn compact(store: impl waypoint_application::PlanStore, archive: &str) -> Result<(), Box<dyn std::error::Error>> {
    let service = waypoint_application::PlanResumeService::new(store);
    let archive_store = FileStore::open(archive)?;
    println!("started");
    let request = waypoint_application::CompactRequest { older_than: chrono::Duration::zero(), dry_run: false };
    let done = futures::executor::block_on(service.compact(request, &archive_store, archive))?;
    println!("done {}", done.removed.len());
    Ok(())
}

fn many_plans(dir: &str, count: u32) -> Result<(), Box<dyn std::error::Error>> {
    let store = FileStore::open(dir)?;
    for i in 0..count {
        store.append_events(&PlanId::parse(&format!("plan-{i}"))?, Expected::Exact(0), vec![event_for(1)])?;
    }
    store.checkpoint()?;
    println!("ok");
    Ok(())
}

fn append(dir: &str, plan: &str, count: u32) -> Result<(), Box<dyn std::error::Error>> {
    let store = FileStore::open(dir)?;
    let plan_id = PlanId::parse(plan)?;
    let mut out = std::io::stdout().lock();
    let mut appended = 0;
    while count == 0 || appended < count {
        let version = store.summary_view(&plan_id)?.map_or(0, |v| v.version);
        let event = event_for(version + 1);
        let event_id = event.event_id;
        match store.append_events(&plan_id, Expected::Exact(version), vec![event]) {
            Ok(new_version) => {
                writeln!(out, "ack {plan} {new_version} {event_id}")?;
                out.flush()?;
                appended += 1;
            }
            Err(FileStoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn pg_append(url: &str, plan: &str, count: u32) -> Result<(), Box<dyn std::error::Error>> {
    let store = PostgresStore::connect(url)?;
    let plan_id = PlanId::parse(plan)?;
    let mut out = std::io::stdout().lock();
    let mut appended = 0;
    while count == 0 || appended < count {
        let version = store.plan_version(&plan_id)?;
        let event = event_for(version + 1);
        let event_id = event.event_id;
        match store.append_events(&plan_id, Expected::Exact(version), vec![event]) {
            Ok(new_version) => {
                writeln!(out, "ack {plan} {new_version} {event_id}")?;
                out.flush()?;
                appended += 1;
            }
            Err(PgStoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn pg_hold_lock(url: &str, plan: &str) -> Result<(), Box<dyn std::error::Error>> {
    let store = PostgresStore::connect(url)?;
    let _guard = store.run_locks().try_acquire(&PlanId::parse(plan)?)?;
    println!("ready");
    std::io::stdout().flush()?;
    wait_forever()
}

fn wait_forever() -> ! {
    loop {
        std::thread::park();
    }
}

fn hold_lock(dir: &str, plan: &str) -> Result<(), Box<dyn std::error::Error>> {
    let store = FileStore::open(dir)?;
    let runner = waypoint_application::domain::RunnerId::parse("child-runner")?;
    let _guard = store.run_locks().try_acquire(&PlanId::parse(plan)?, &runner)?;
    println!("ready");
    std::io::stdout().flush()?;
    wait_forever()
}

fn hold_open(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let _store = FileStore::open(dir)?;
    println!("ready");
    std::io::stdout().flush()?;
    wait_forever()
}
