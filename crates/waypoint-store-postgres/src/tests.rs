//! Tests against a real PostgreSQL (`cargo xtask test` starts one): each test opens a fresh
//! database, so they run in parallel. Given a store and events, when we append, race, follow or
//! lose a connection, then the log and the catalog hold exactly what was acknowledged.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use eventually::store::{EventStore, Expected, Select};
use eventually::versioning::Versioned;
use futures::executor::block_on;
use futures::TryStreamExt;
use waypoint_application::domain::{DecisionId, Message, Phase, StepNumber, TotalSteps};
use waypoint_application::{
    Catalog, NewPlan, PlanResumeService, PlanStore, RecordedEvent, ResumeRequest, StepCheckpoint, StoreError,
    StoredEvent,
};
use waypoint_domain::{EventId, PlanId};

use crate::testing::{fresh_store, TestDatabase};
use crate::{redact, PgStoreError, PostgresStore, SCHEMA_VERSION};
use waypoint_application::testkit::{all_events, plan_created as created};

fn plan(id: &str) -> PlanId {
    PlanId::parse(id).expect("valid plan id")
}

fn raw_client(store_url: &str) -> postgres::Client {
    use std::str::FromStr;
    postgres::Config::from_str(store_url).unwrap().connect(postgres::NoTls).unwrap()
}

#[test]
fn a_plan_lives_through_interruption_and_resume_and_reads_back_identically() {
    let database = TestDatabase::create("lifecycle");
    let url = database.url().to_owned();
    let store = database.into_store().unwrap();
    let service = PlanResumeService::new(store.clone());
    let id = block_on(async {
        let plan = service
            .create_plan(NewPlan { total_steps: Some(TotalSteps::new(3).unwrap()), ..NewPlan::default() })
            .await
            .unwrap();
        let id = plan.plan_id;
        service.start_phase(&id, Phase::Strategize, None).await.unwrap();
        let step = StepNumber::new(1).unwrap();
        let decision_id = DecisionId::parse("d-1").unwrap();
        service.record_step_checkpoint(&id, StepCheckpoint::new(step, decision_id)).await.unwrap();
        service.record_shutdown(&id, Message::parse("Ctrl-C").unwrap()).await.unwrap();
        id
    });
    // A second process's view of the same database.
    let other = PostgresStore::connect(&url).unwrap();
    let outcome = block_on(PlanResumeService::new(other.clone()).resume_plan(&id, ResumeRequest::default())).unwrap();
    assert_eq!(outcome.resumed.unwrap().from_step, StepNumber::new(2).unwrap());
    let history = block_on(service.history(&id)).unwrap();
    let versions: Vec<u32> = history.iter().map(Versioned::version).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
    // Every read path agrees with a replay of the log.
    let replayed = waypoint_application::PlanView::replay(&history);
    assert_eq!(block_on(store.load_view(&id)).unwrap(), replayed);
    let mut catalog = Catalog::default();
    for event in all_events(&store) {
        catalog.apply(&event);
    }
    let mut listed = block_on(other.catalog()).unwrap();
    listed.sort_by(|a, b| a.plan_id.as_str().cmp(b.plan_id.as_str()));
    let mut folded: Vec<_> = catalog.plans.into_values().collect();
    folded.sort_by(|a, b| a.plan_id.as_str().cmp(b.plan_id.as_str()));
    assert_eq!(listed, folded);
    assert_eq!(block_on(store.load_summary_view(&id)).unwrap().as_ref(), folded.first());
}

#[test]
fn events_read_back_exactly_as_appended_with_nanosecond_times() {
    let mut store = fresh_store("roundtrip");
    let id = plan("p1");
    let mut event = created();
    event.recorded_at = chrono::DateTime::from_timestamp(1_767_225_600, 123_456_789).unwrap();
    block_on(store.append(id.clone(), Expected::Exact(0), vec![event.clone()])).unwrap();
    let read = store.read_plan(&id, 1).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(*read[0], event);
    assert_eq!(read[0].version(), 1);
}

#[test]
fn an_append_at_a_stale_version_is_a_typed_conflict() {
    let mut store = fresh_store("conflict");
    let id = plan("p1");
    assert_eq!(block_on(store.append(id.clone(), Expected::Exact(0), vec![created()])).unwrap(), 1);
    let error = block_on(store.append(id.clone(), Expected::Exact(0), vec![created()])).unwrap_err();
    assert!(matches!(error, StoreError::Conflict { expected: 0, actual: 1, .. }), "{error}");
    assert!(eventually::store::AppendError::is_conflict_error(&error));
    assert_eq!(block_on(store.append(id.clone(), Expected::Any, vec![created(), created()])).unwrap(), 3);
    // An empty append checks the version and writes nothing.
    assert_eq!(block_on(store.append(id.clone(), Expected::Exact(3), vec![])).unwrap(), 3);
    assert_eq!(block_on(store.append(plan("none"), Expected::Exact(0), vec![])).unwrap(), 0);
    assert_eq!(store.plan_version(&plan("none")).unwrap(), 0);
    assert_eq!(all_events(&store).len(), 3);
}

#[test]
fn racing_appends_to_one_plan_have_exactly_one_winner_per_version() {
    let store = fresh_store("race");
    let id = plan("raced");
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let results: Vec<Result<u32, PgStoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
                scope.spawn(move || {
                    barrier.wait();
                    store.append_events(&id, Expected::Exact(0), vec![created()])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    for result in results.iter().filter(|r| r.is_err()) {
        assert!(matches!(result, Err(PgStoreError::Conflict { .. })), "{result:?}");
    }
    assert_eq!(store.read_plan(&id, 1).unwrap().len(), 1);
}

#[test]
fn sixteen_writers_on_sixteen_plans_lose_nothing_and_keep_versions_gapless() {
    let store = fresh_store("writers");
    let per_writer = 40;
    std::thread::scope(|scope| {
        for w in 0..16 {
            let store = store.clone();
            scope.spawn(move || {
                let id = plan(&format!("w{w}"));
                for i in 0..per_writer {
                    store.append_events(&id, Expected::Exact(i), vec![created()]).unwrap();
                }
            });
        }
    });
    let events = all_events(&store);
    assert_eq!(events.len(), 16 * per_writer as usize);
    let positions: Vec<u32> = events.iter().map(|e| e.sequence_number()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions rise");
    let mut versions: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for event in &events {
        versions.entry(event.source_id().to_string()).or_default().push(event.version());
    }
    for (plan, versions) in versions {
        assert_eq!(versions, (1..=per_writer).collect::<Vec<_>>(), "plan {plan}");
    }
    assert_eq!(store.catalog_views().unwrap().len(), 16);
}

#[test]
fn stream_all_from_a_position_starts_there() {
    let mut store = fresh_store("from");
    for i in 0..5 {
        block_on(store.append(plan(&format!("p{i}")), Expected::Exact(0), vec![created()])).unwrap();
    }
    let all = all_events(&store);
    let third = all[2].sequence_number();
    let from: Vec<StoredEvent> =
        block_on(async { store.stream_all(Select::From(third)).await?.try_collect::<Vec<_>>().await }).unwrap();
    assert_eq!(from, all[2..].to_vec());
    let one: Vec<StoredEvent> =
        block_on(async { store.stream(plan("p4"), Select::From(2)).await?.try_collect::<Vec<_>>().await }).unwrap();
    assert!(one.is_empty());
}

#[test]
fn reading_the_whole_log_pages_through_one_snapshot() {
    let store = fresh_store("pages");
    let id = plan("long");
    let events: Vec<RecordedEvent> = (0..1200).map(|_| created()).collect();
    store.append_events(&id, Expected::Exact(0), events).unwrap();
    let mut reader = store.read_all(1).unwrap();
    let first: Vec<StoredEvent> = reader.by_ref().take(10).map(Result::unwrap).collect();
    // Written after the read began: not part of its snapshot.
    store.append_events(&plan("later"), Expected::Exact(0), vec![created()]).unwrap();
    let rest: Vec<StoredEvent> = reader.map(Result::unwrap).collect();
    assert_eq!(first.len() + rest.len(), 1200);
    let versions: Vec<u32> = first.iter().chain(&rest).map(Versioned::version).collect();
    assert_eq!(versions, (1..=1200).collect::<Vec<_>>());
    assert_eq!(all_events(&store).len(), 1201);
}

#[test]
fn a_long_plan_loads_from_its_view_snapshot_and_matches_a_replay() {
    let store = fresh_store("snapshot");
    let service = PlanResumeService::new(store.clone());
    let id = block_on(async {
        let plan = service.create_plan(NewPlan::default()).await.unwrap();
        service.start_phase(&plan.plan_id, Phase::Strategize, None).await.unwrap();
        for step in 1..=100 {
            let checkpoint =
                StepCheckpoint::new(StepNumber::new(step).unwrap(), DecisionId::parse(&format!("d-{step}")).unwrap());
            service.record_step_checkpoint(&plan.plan_id, checkpoint).await.unwrap();
        }
        plan.plan_id
    });
    let replayed = waypoint_application::PlanView::replay(&store.read_plan(&id, 1).unwrap());
    assert_eq!(store.plan_view(&id).unwrap(), replayed);
    let snapshots: i64 =
        raw_client(&crate::testing::with_database(&crate::testing::server_url(), &current_database(&store)))
            .query_one("SELECT count(*) FROM waypoint_view_snapshots", &[])
            .unwrap()
            .get(0);
    assert_eq!(snapshots, 1, "a long plan's view is snapshotted");
    block_on(service.record_shutdown(&id, Message::parse("stop").unwrap())).unwrap();
    let replayed = waypoint_application::PlanView::replay(&store.read_plan(&id, 1).unwrap());
    assert_eq!(store.plan_view(&id).unwrap(), replayed, "snapshot plus the events after it");
}

fn current_database(store: &PostgresStore) -> String {
    let target = store.target();
    target.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned()
}

/// A writer that commits out of order: an append in flight has drawn a lower position than one
/// that commits first. A whole-log read waits for it (the settle lock), so a follower resuming
/// from "last position seen + 1" never skips it.
#[test]
fn a_follower_never_skips_an_event_committed_out_of_order() {
    let database = TestDatabase::create("follow");
    let url = database.url().to_owned();
    let store = database.into_store().unwrap();
    store.append_events(&plan("first"), Expected::Exact(0), vec![created()]).unwrap();
    let seen: Vec<StoredEvent> = store.read_all(1).unwrap().map(Result::unwrap).collect();
    assert_eq!(seen.len(), 1);
    let cursor = seen[0].sequence_number() + 1;

    // A slow append: holds the settle lock shared as every append does, draws its position,
    // then waits before committing.
    let mut slow = raw_client(&url);
    let mut slow_tx = slow.transaction().unwrap();
    slow_tx.execute("SELECT pg_advisory_xact_lock_shared(1465011527, 2)", &[]).unwrap();
    let slow_position: i64 = slow_tx
        .query_one(
            "INSERT INTO waypoint_events (plan_id, version, event_id, recorded_at, event_type, schema_version, data) \
             VALUES ($1, 1, $2, $3, $4, $5, $6) RETURNING position",
            &[
                &"slow",
                &uuid::Uuid::new_v4(),
                &"2026-01-01T00:00:00.000000000Z",
                &"plan_created",
                &1i32,
                &created().event.encode_data(),
            ],
        )
        .unwrap()
        .get(0);
    // A fast append draws a higher position and commits first.
    store.append_events(&plan("fast"), Expected::Exact(0), vec![created()]).unwrap();
    let fast_position = store.read_plan(&plan("fast"), 1).unwrap()[0].sequence_number();
    assert!(i64::from(fast_position) > slow_position);

    let follower = {
        let store = store.clone();
        std::thread::spawn(move || store.read_all(cursor).unwrap().map(Result::unwrap).collect::<Vec<_>>())
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(!follower.is_finished(), "the read waits for the append in flight");
    slow_tx.commit().unwrap();
    let read: Vec<(String, u32)> =
        follower.join().unwrap().iter().map(|e| (e.source_id().to_string(), e.sequence_number())).collect();
    assert_eq!(read, vec![("slow".to_owned(), slow_position as u32), ("fast".to_owned(), fast_position)]);
}

/// Many writers racing on shared plans and a follower polling by position all along: it reads
/// every event exactly once, each plan's versions in order.
#[test]
fn a_follower_reading_while_writers_race_sees_every_event_once_in_plan_order() {
    let store = fresh_store("followrace");
    let writers = 8;
    let per_writer = 60u32;
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut followed: Vec<StoredEvent> = Vec::new();
    std::thread::scope(|scope| {
        for w in 0..writers {
            let (store, done) = (store.clone(), &done);
            scope.spawn(move || {
                // Two writers per plan, so appends also race on versions.
                let id = plan(&format!("f{}", w / 2));
                let mut written = 0;
                while written < per_writer {
                    let version = store.plan_version(&id).unwrap();
                    match store.append_events(&id, Expected::Exact(version), vec![created()]) {
                        Ok(_) => written += 1,
                        Err(PgStoreError::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                let _ = done;
            });
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while followed.len() < (writers * per_writer) as usize {
            assert!(Instant::now() < deadline, "only {} events arrived", followed.len());
            let from = followed.last().map_or(1, |e| e.sequence_number() + 1);
            followed.extend(store.read_all(from).unwrap().map(Result::unwrap));
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let all = all_events(&store);
    assert_eq!(all.len(), (writers * per_writer) as usize);
    let ids: HashSet<EventId> = followed.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), followed.len(), "no event twice");
    assert_eq!(ids, all.iter().map(|e| e.event_id).collect::<HashSet<_>>(), "no event skipped");
    let mut last: BTreeMap<String, u32> = BTreeMap::new();
    for event in &followed {
        let previous = last.insert(event.source_id().to_string(), event.version()).unwrap_or(0);
        assert_eq!(event.version(), previous + 1, "plan {} in version order", event.source_id());
    }
}

#[test]
fn processes_starting_at_once_migrate_the_schema_exactly_once() {
    let database = TestDatabase::create("migrate");
    let url = database.url().to_owned();
    let barrier = Arc::new(Barrier::new(8));
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let (url, barrier) = (url.clone(), barrier.clone());
            scope.spawn(move || {
                barrier.wait();
                PostgresStore::connect(&url).unwrap();
            });
        }
    });
    let rows: Vec<i32> = raw_client(&url)
        .query("SELECT version FROM waypoint_schema ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let database = TestDatabase::create("newer");
    let url = database.url().to_owned();
    drop(PostgresStore::connect(&url).unwrap());
    raw_client(&url).execute("INSERT INTO waypoint_schema (version) VALUES ($1)", &[&(SCHEMA_VERSION + 1)]).unwrap();
    let error = PostgresStore::connect(&url).unwrap_err();
    assert!(matches!(error, PgStoreError::SchemaTooNew { .. }), "{error}");
}

#[test]
fn global_positions_stop_at_u32_max_with_a_typed_error() {
    let database = TestDatabase::create("limit");
    let url = database.url().to_owned();
    let store = database.into_store().unwrap();
    raw_client(&url)
        .batch_execute("ALTER TABLE waypoint_events ALTER COLUMN position RESTART WITH 4294967295")
        .unwrap();
    store.append_events(&plan("edge"), Expected::Exact(0), vec![created()]).unwrap();
    assert_eq!(store.read_plan(&plan("edge"), 1).unwrap()[0].sequence_number(), u32::MAX);
    let error = store.append_events(&plan("edge"), Expected::Exact(1), vec![created()]).unwrap_err();
    assert!(matches!(error, PgStoreError::TooLarge(_)), "{error}");
    assert!(matches!(StoreError::from(error), StoreError::TooLarge(_)));
    assert_eq!(store.plan_version(&plan("edge")).unwrap(), 1, "nothing half-written");
}

#[test]
fn an_unreachable_server_is_unavailable_and_the_password_is_never_shown() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://waypoint:s3cret-pw@127.0.0.1:{port}/nowhere?connect_timeout=2");
    let error = PostgresStore::connect(&url).unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    assert!(shown.contains("waypoint:***@127.0.0.1"), "{shown}");
    let port_error = StoreError::from(error);
    assert!(matches!(&port_error, StoreError::Unavailable { location, .. } if location.contains("***")));
    assert!(!port_error.to_string().contains("s3cret-pw"));
}

#[test]
fn a_missing_database_is_reported_with_the_password_masked() {
    let url = crate::testing::with_database(&crate::testing::server_url(), "wp_no_such_database");
    let with_password = url.replacen("postgres@", "postgres:pa55word@", 1);
    assert_ne!(url, with_password, "the test server URL names the postgres user");
    let error = PostgresStore::connect(&with_password).unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("pa55word"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
    let store = fresh_store("debug");
    assert!(!format!("{store:?}").contains("pa55word"));
}

#[test]
fn redact_masks_passwords_in_every_connection_string_form() {
    let cases = [
        ("postgres://u:secret@h:5432/db", "postgres://u:***@h:5432/db"),
        ("postgresql://u:se%40cret@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("postgres://u@h/db?password=secret&sslmode=disable", "postgres://u@h/db?password=***&sslmode=disable"),
        ("postgres://u:p@ss:w@h/db", "postgres://u:***@h/db"),
        ("postgres://h/db", "postgres://h/db"),
        ("host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password = 'sec ret\\' x' dbname=d", "host=h password = *** dbname=d"),
        ("PASSWORD=secret host=h", "PASSWORD=*** host=h"),
        ("host=h dbname=d", "host=h dbname=d"),
    ];
    for (input, expected) in cases {
        assert_eq!(redact(input), expected, "{input}");
    }
}

#[test]
fn an_invalid_url_is_refused_without_echoing_it() {
    let error = PostgresStore::connect("postgres://u:hunter2@h:notaport/db").unwrap_err();
    assert!(matches!(error, PgStoreError::InvalidUrl { .. }), "{error}");
    assert!(!format!("{error} {error:?}").contains("hunter2"), "{error}");
}

#[test]
fn run_locks_are_exclusive_probed_without_taking_them_and_released_on_drop() {
    let database = TestDatabase::create("locks");
    let url = database.url().to_owned();
    let store = database.into_store().unwrap();
    let ours = store.run_locks();
    let theirs = PostgresStore::connect(&url).unwrap().run_locks();
    let id = plan("locked");
    let guard = ours.try_acquire(&id).unwrap();
    assert!(ours.is_held_by_anyone(&id).unwrap(), "the holder's own probe sees it held");
    assert!(theirs.is_held_by_anyone(&id).unwrap(), "another process sees it held");
    assert!(matches!(theirs.try_acquire(&id), Err(PgStoreError::RunLockBusy { .. })));
    assert!(matches!(ours.try_acquire(&id), Err(PgStoreError::RunLockBusy { .. })), "a second runner here too");
    assert!(!theirs.is_held_by_anyone(&plan("other")).unwrap());
    guard.check().unwrap();
    drop(guard);
    assert!(!theirs.is_held_by_anyone(&id).unwrap());
    drop(theirs.try_acquire(&id).unwrap());
}

/// A runner whose connection is cut mid-run loses its lock: its guard says so, another runner
/// takes over, and the first runner's late append is refused because the version moved.
#[test]
fn a_runner_whose_connection_is_cut_loses_its_lock_and_is_fenced() {
    let database = TestDatabase::create("fencing");
    let url = database.url().to_owned();
    let store = database.into_store().unwrap();
    let id = plan("fenced");
    store.append_events(&id, Expected::Exact(0), vec![created()]).unwrap();
    let first = store.run_locks();
    let guard = first.try_acquire(&id).unwrap();
    let seen_version = store.plan_version(&id).unwrap();
    guard.check().unwrap();

    let other_process = PostgresStore::connect(&url).unwrap();
    let other_locks = other_process.run_locks();
    assert!(other_locks.is_held_by_anyone(&id).unwrap());
    let terminated: bool = raw_client(&url)
        .query_one(
            "SELECT pg_terminate_backend(pid) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(terminated);
    let deadline = Instant::now() + Duration::from_secs(10);
    while other_locks.is_held_by_anyone(&id).unwrap() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let error = guard.check().unwrap_err();
    assert!(matches!(error, PgStoreError::RunLockLost { .. }), "{error}");

    let takeover = other_locks.try_acquire(&id).unwrap();
    other_process.append_events(&id, Expected::Exact(seen_version), vec![created()]).unwrap();
    let late = store.append_events(&id, Expected::Exact(seen_version), vec![created()]).unwrap_err();
    assert!(matches!(late, PgStoreError::Conflict { .. }), "{late}");
    drop(guard);
    assert!(first.is_held_by_anyone(&id).unwrap(), "dropping the lost guard does not release the new holder's lock");
    drop(takeover);
}
