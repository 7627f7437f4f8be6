//! The PostgreSQL store under faults, against real servers: writer processes killed with -9
//! mid-append, the server itself stopped (`pg_ctl stop -m immediate`) and restarted during
//! appends, racing resumes, and a runner's connection cut with `pg_terminate_backend`. Every
//! acknowledged event survives exactly once; nothing is skipped, nothing is mocked.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use eventually::store::Expected;
use eventually::versioning::Versioned;
use futures::executor::block_on;
use waypoint_application::domain::{DecisionId, EventId, Message, Phase, PlanId, StepNumber, TotalSteps};
use waypoint_application::{NewPlan, PlanResumeService, ResumeRequest, StepCheckpoint, StoreError};
use waypoint_store_postgres::testing::{find_server_binaries, TestCluster, TestDatabase};
use waypoint_store_postgres::{PgStoreError, PostgresStore};

use super::store_child::{spawn, Ack, XorShift};
use waypoint_application::testkit::plan_created as created;

/// Every acknowledged event is stored exactly once at its version; each plan's versions have
/// no gap (global positions may).
fn check_acks(store: &PostgresStore, acks: &[Ack]) {
    let all: Vec<_> = store.read_all(1).unwrap().map(|e| e.expect("every event reads back")).collect();
    let mut count: HashMap<EventId, usize> = HashMap::new();
    let mut by_plan: HashMap<String, Vec<String>> = HashMap::new();
    for event in &all {
        *count.entry(event.event_id).or_default() += 1;
        by_plan.entry(event.source_id().to_string()).or_default().push(event.event_id.to_string());
    }
    assert!(count.values().all(|&n| n == 1), "no event is stored twice");
    for ack in acks {
        assert_eq!(
            by_plan.get(&ack.plan).and_then(|events| events.get(ack.version as usize - 1)),
            Some(&ack.event_id),
            "acknowledged event {} of plan {} version {} is in place",
            ack.event_id,
            ack.plan,
            ack.version
        );
    }
    for plan in by_plan.keys() {
        let versions: Vec<u32> =
            store.read_plan(&PlanId::parse(plan).unwrap(), 1).unwrap().iter().map(Versioned::version).collect();
        assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>(), "plan {plan}'s versions have no gap");
    }
}

#[test]
fn postgres_keeps_every_acknowledged_event_through_kill_9_of_writers() {
    let iterations: u32 =
        std::env::var("WAYPOINT_PG_KILL_LOOP_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let seed: u64 = std::env::var("WAYPOINT_KILL_LOOP_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("postgres kill loop: {iterations} kills, WAYPOINT_KILL_LOOP_SEED={seed}");
    let mut rng = XorShift(seed);
    let database = TestDatabase::create("killloop");
    let url = database.url().to_owned();
    let mut acks: Vec<Ack> = Vec::new();
    for i in 0..iterations {
        // Two children at once on overlapping plans: kills land mid-transaction and mid-race.
        let children: Vec<_> =
            (0..2).map(|c| spawn(&["pg-append", &url, &format!("kill-{}", (i + c) % 3), "0"])).collect();
        let wanted = rng.next(6);
        let mut seen = 0;
        while seen < wanted {
            match children[0].lines.recv_timeout(Duration::from_secs(20)) {
                Ok(_) => seen += 1,
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_micros(rng.next(5000)));
        for child in children {
            acks.extend(child.kill_and_collect());
        }
    }
    assert!(!acks.is_empty(), "the children acknowledged appends");
    check_acks(&PostgresStore::connect(&url).unwrap(), &acks);
}

/// The server stops without a checkpoint while a writer appends, and starts again: appends fail
/// with `Unavailable` meanwhile, then succeed on new connections, and every acknowledged event
/// is present afterwards.
#[test]
fn postgres_keeps_acknowledged_events_when_the_server_crashes_and_restarts() {
    let bin = find_server_binaries().expect("PostgreSQL server binaries (`cargo xtask test` finds them)");
    let cluster = TestCluster::start(&bin).expect("a throwaway cluster of this test's own starts");
    let store = PostgresStore::connect(&format!("{}?connect_timeout=2", cluster.url())).unwrap();
    let plan = PlanId::parse("crash").unwrap();
    let writer = {
        let (store, plan) = (store.clone(), plan.clone());
        std::thread::spawn(move || {
            let (mut acked, mut unavailable, mut after_outage) = (Vec::new(), 0, 0);
            let deadline = Instant::now() + Duration::from_secs(60);
            while after_outage < 20 && Instant::now() < deadline {
                let version = match store.plan_version(&plan) {
                    Ok(version) => version,
                    Err(e) => {
                        assert!(e.is_unavailable(), "{e}");
                        unavailable += 1;
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                };
                let event = created();
                let event_id = event.event_id;
                match store.append_events(&plan, Expected::Exact(version), vec![event]) {
                    Ok(new_version) => {
                        acked.push(Ack {
                            plan: plan.to_string(),
                            version: new_version,
                            event_id: event_id.to_string(),
                        });
                        if unavailable > 0 {
                            after_outage += 1;
                        }
                    }
                    Err(e) if e.is_unavailable() => {
                        assert!(matches!(StoreError::from(e), StoreError::Unavailable { .. }));
                        unavailable += 1;
                    }
                    // The commit's answer was lost with the server: the event may be stored.
                    Err(PgStoreError::Conflict { .. }) => {}
                    Err(e) => panic!("unexpected error during the outage: {e}"),
                }
            }
            (acked, unavailable, after_outage)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    cluster.stop_immediately().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    cluster.start_again().unwrap();
    let (acked, unavailable, after_outage) = writer.join().unwrap();
    eprintln!("server crash: {} appends acknowledged, {unavailable} refused as unavailable", acked.len());
    assert!(unavailable > 0, "the outage was noticed");
    assert_eq!(after_outage, 20, "appends succeed again after the restart");
    check_acks(&store, &acked);
}

/// Several threads and processes resume one interrupted plan at once: exactly one resumes.
#[test]
fn racing_resumes_on_postgres_have_exactly_one_winner() {
    let database = TestDatabase::create("resumerace");
    let url = database.url().to_owned();
    let store = PostgresStore::connect(&url).unwrap();
    let service = PlanResumeService::new(store.clone());
    let plan = block_on(async {
        let plan = service
            .create_plan(NewPlan { total_steps: Some(TotalSteps::new(3).unwrap()), ..NewPlan::default() })
            .await
            .unwrap();
        service.start_phase(&plan.plan_id, Phase::Strategize, None).await.unwrap();
        let checkpoint = StepCheckpoint::new(StepNumber::new(1).unwrap(), DecisionId::parse("d-1").unwrap());
        service.record_step_checkpoint(&plan.plan_id, checkpoint).await.unwrap();
        service.record_shutdown(&plan.plan_id, Message::parse("deploy").unwrap()).await.unwrap();
        plan.plan_id
    });
    let racers = 8;
    let barrier = Arc::new(Barrier::new(racers));
    let resumed = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..racers)
            .map(|_| {
                // Each racer has a store of its own, as a separate process would.
                let (url, plan, barrier) = (url.clone(), plan.clone(), barrier.clone());
                scope.spawn(move || {
                    let service = PlanResumeService::new(PostgresStore::connect(&url).unwrap());
                    barrier.wait();
                    block_on(service.resume_plan(&plan, ResumeRequest::default()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).filter(|r| matches!(r, Ok(o) if o.resumed.is_some())).count()
    });
    assert_eq!(resumed, 1, "exactly one racer resumes the plan");
    let history = block_on(service.history(&plan)).unwrap();
    let resumes = history.iter().filter(|e| e.event.event_type().as_str() == "resumed").count();
    assert_eq!(resumes, 1, "one resume event in the log");
}

/// A runner process holds a plan's run lock; killing it with -9 releases the lock on the server.
#[test]
fn a_killed_runner_process_releases_its_postgres_run_lock() {
    let database = TestDatabase::create("killedrunner");
    let url = database.url().to_owned();
    let store = PostgresStore::connect(&url).unwrap();
    let locks = store.run_locks();
    let plan = PlanId::parse("runner").unwrap();
    let child = spawn(&["pg-hold-lock", &url, plan.as_str()]);
    child.wait_ready();
    assert!(locks.is_held_by_anyone(&plan).unwrap());
    assert!(matches!(locks.try_acquire(&plan), Err(PgStoreError::RunLockBusy { .. })));
    child.kill_and_collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while locks.is_held_by_anyone(&plan).unwrap() {
        assert!(Instant::now() < deadline, "the server releases a dead runner's lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(locks.try_acquire(&plan).unwrap());
}
