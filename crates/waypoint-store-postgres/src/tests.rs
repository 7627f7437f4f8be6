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

mod one_round_trip;

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
        // Unencoded '/', '?' and '#' in a base64 password, as the driver accepts them.
        ("postgres://u:ab/c+d==@h:5432/db", "postgres://u:***@h:5432/db"),
        ("postgres://u:a?b#c@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
        ("postgres://u:a#b/c?d@h/db", "postgres://u:***@h/db"),
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

fn count_events(url: &str, plan_id: &PlanId) -> i64 {
    raw_client(url)
        .query_one("SELECT count(*) FROM waypoint_events WHERE plan_id = $1", &[&plan_id.as_str()])
        .unwrap()
        .get(0)
}

fn removed_at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00.123456789Z").unwrap().with_timezone(&chrono::Utc)
}

/// 1,201 plans asked, so three transactions of at most `REMOVAL_BATCH`: each removes exactly the
/// plans still at the version asked, the rest of the store is untouched, and the space of the
/// removed events (written last, so at the table's end) goes back to the file system.
#[test]
fn a_removal_of_1200_plans_runs_in_batches_and_keeps_everything_else() {
    let database = TestDatabase::create("retbatches");
    let url = database.url().to_owned();
    let store = database.into_store().unwrap();
    let kept: Vec<PlanId> = (0..100).map(|i| plan(&format!("keep-{i}"))).collect();
    for id in &kept {
        store.append_events(id, Expected::Exact(0), vec![created(), created()]).unwrap();
    }
    let old: Vec<PlanId> = (0..1200).map(|i| plan(&format!("old-{i}"))).collect();
    let moved = old[700].clone();
    for id in &old {
        store.append_events(id, Expected::Exact(0), vec![created(), created(), created()]).unwrap();
        if *id == moved {
            // Not at the table's end: only empty pages there go back to the file system.
            store.append_events(&moved, Expected::Exact(3), vec![created()]).unwrap();
        }
    }
    let fingerprint = store.fingerprint().unwrap();
    let mut asked: Vec<(PlanId, u32)> = old.iter().map(|id| (id.clone(), 3)).collect();
    asked.push((plan("never-written"), 1));

    let started = Instant::now();
    let report = store.remove_plan_events(&asked, removed_at(), "archive-1").unwrap();
    eprintln!(
        "removed {} plans ({} events) in {:?}; reclaimed {} bytes",
        report.removed.len(),
        report.removed.len() * 3,
        started.elapsed(),
        report.reclaimed_bytes
    );

    let expected: Vec<PlanId> = old.iter().filter(|id| **id != moved).cloned().collect();
    assert_eq!(report.removed, expected, "removed in the order asked");
    assert_eq!(report.skipped, vec![moved.clone(), plan("never-written")]);
    assert!(report.reclaimed_bytes > 0, "the removed events' pages at the table's end are given back");
    assert_ne!(store.fingerprint().unwrap(), fingerprint);
    let transactions: i64 = raw_client(&url)
        .query_one("SELECT count(DISTINCT xmin::text) FROM waypoint_plans WHERE removed_at IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(transactions, asked.len().div_ceil(crate::REMOVAL_BATCH) as i64, "one transaction per batch");
    for id in [&old[0], &old[499], &old[500], &old[1199]] {
        assert_eq!(count_events(&url, id), 0);
        let tombstone = store.tombstone(id).unwrap().expect("a tombstone");
        assert_eq!(
            (tombstone.version, tombstone.removed_at, tombstone.archive.as_str()),
            (3, removed_at(), "archive-1")
        );
        let refused = store.append_events(id, Expected::Any, vec![created()]).unwrap_err();
        assert!(matches!(refused, PgStoreError::Removed { .. }), "{refused}");
        assert_eq!(store.plan_version(id).unwrap(), 0, "a removed plan has no events");
    }
    assert_eq!(store.read_plan(&moved, 1).unwrap().len(), 4, "the plan that moved is whole");
    assert_eq!(store.tombstone(&moved).unwrap(), None);
    let mut listed: Vec<PlanId> = store.catalog_views().unwrap().into_iter().map(|v| v.plan_id).collect();
    listed.sort();
    let mut left: Vec<PlanId> = kept.iter().chain([&moved]).cloned().collect();
    left.sort();
    assert_eq!(listed, left);
    let stats = block_on(store.stats()).unwrap();
    assert_eq!((stats.plans, stats.events), (101, 100 * 2 + 4));
    assert_eq!(all_events(&store).len(), 204);
    let verified = block_on(store.verify()).unwrap();
    assert!(verified.ok, "{verified}");
    store.append_events(&kept[0], Expected::Exact(2), vec![created()]).unwrap();
}

/// A batch that fails is rolled back whole, and the batches before it stay done: here the
/// second batch holds a plan whose catalog row counts more events than the log holds.
#[test]
fn a_failed_batch_leaves_its_plans_whole_and_earlier_batches_done() {
    let database = TestDatabase::create("retfail");
    let url = database.url().to_owned();
    let store = database.into_store().unwrap();
    let ids: Vec<PlanId> = (0..600).map(|i| plan(&format!("p{i:03}"))).collect();
    for id in &ids {
        store.append_events(id, Expected::Exact(0), vec![created()]).unwrap();
    }
    let broken = ids[550].clone();
    raw_client(&url).execute("UPDATE waypoint_plans SET version = 2 WHERE plan_id = $1", &[&broken.as_str()]).unwrap();
    let asked: Vec<(PlanId, u32)> = ids.iter().map(|id| (id.clone(), if *id == broken { 2 } else { 1 })).collect();
    let error = store.remove_plan_events(&asked, removed_at(), "archive-2").unwrap_err();
    assert!(matches!(error, PgStoreError::Corrupt { .. }), "{error}");
    for id in &ids[..crate::REMOVAL_BATCH] {
        assert!(store.tombstone(id).unwrap().is_some(), "{id}: the first batch is done");
    }
    for id in &ids[crate::REMOVAL_BATCH..] {
        assert_eq!(count_events(&url, id), 1, "{id}: the failed batch left it whole");
        assert_eq!(store.tombstone(id).unwrap(), None);
    }
    raw_client(&url).execute("UPDATE waypoint_plans SET version = 1 WHERE plan_id = $1", &[&broken.as_str()]).unwrap();
    let again: Vec<(PlanId, u32)> = ids.iter().map(|id| (id.clone(), 1)).collect();
    let report = store.remove_plan_events(&again, removed_at(), "archive-2").unwrap();
    assert_eq!(report.skipped, ids[..crate::REMOVAL_BATCH].to_vec(), "already removed");
    assert_eq!(report.removed, ids[crate::REMOVAL_BATCH..].to_vec());
    assert!(all_events(&store).is_empty());
    assert!(block_on(store.verify()).unwrap().ok);
}

/// Writers on eight connections append to their own plans while 1,000 plans are removed, and a
/// ninth appends to plans being removed: every writer's events are kept, and each racing append
/// either landed first (its plan is skipped, whole) or was refused as removed (its plan is gone).
#[test]
fn a_removal_racing_appends_from_several_connections_loses_nothing() {
    const WRITERS: usize = 8;
    const APPENDS: u32 = 40;
    let database = TestDatabase::create("retrace");
    let url = database.url().to_owned();
    let store = database.into_store().unwrap();
    let old: Vec<PlanId> = (0..1000).map(|i| plan(&format!("old-{i}"))).collect();
    for id in &old {
        store.append_events(id, Expected::Exact(0), vec![created(), created()]).unwrap();
    }
    let asked: Vec<(PlanId, u32)> = old.iter().map(|id| (id.clone(), 2)).collect();
    let barrier = Barrier::new(WRITERS + 2);
    let (report, raced) = std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let (writer, barrier) = (store.reconnect().unwrap(), &barrier);
            scope.spawn(move || {
                let id = plan(&format!("writer-{w}"));
                barrier.wait();
                for v in 0..APPENDS {
                    writer.append_events(&id, Expected::Exact(v), vec![created()]).unwrap();
                }
            });
        }
        let racer = {
            let (racer, barrier, old) = (store.reconnect().unwrap(), &barrier, &old);
            scope.spawn(move || {
                barrier.wait();
                // Every seventh old plan, from both ends, so some land before their batch and
                // some after.
                let mut outcomes = Vec::new();
                for (a, b) in (0..old.len()).step_by(7).zip((0..old.len()).rev().step_by(7)) {
                    for i in [a, b] {
                        match racer.append_events(&old[i], Expected::Exact(2), vec![created()]) {
                            Ok(_) => outcomes.push((old[i].clone(), true)),
                            Err(PgStoreError::Removed { .. }) => outcomes.push((old[i].clone(), false)),
                            Err(PgStoreError::Conflict { .. }) => {} // already appended from the other end
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                outcomes
            })
        };
        barrier.wait();
        let report = store.remove_plan_events(&asked, removed_at(), "archive-3").unwrap();
        (report, racer.join().unwrap())
    });
    let removed: HashSet<&PlanId> = report.removed.iter().collect();
    let skipped: HashSet<&PlanId> = report.skipped.iter().collect();
    assert_eq!(removed.len() + skipped.len(), old.len());
    let landed = raced.iter().filter(|(_, landed)| *landed).count();
    eprintln!("racing appends: {landed} landed before their plan's batch, {} were refused", raced.len() - landed);
    for (id, landed) in &raced {
        if *landed {
            assert!(skipped.contains(id), "{id} moved before its batch, so it is kept");
            assert_eq!(count_events(&url, id), 3);
        } else {
            assert!(removed.contains(id), "{id} was refused, so it was removed");
        }
    }
    assert_eq!(skipped.len(), landed, "only plans that moved were skipped");
    for w in 0..WRITERS {
        let events = store.read_plan(&plan(&format!("writer-{w}")), 1).unwrap();
        assert_eq!(events.iter().map(Versioned::version).collect::<Vec<_>>(), (1..=APPENDS).collect::<Vec<_>>());
    }
    let all = all_events(&store);
    assert_eq!(all.len(), WRITERS * APPENDS as usize + skipped.len() * 3);
    assert!(all.windows(2).all(|w| w[0].sequence_number() < w[1].sequence_number()));
    let verified = block_on(store.verify()).unwrap();
    assert!(verified.ok, "{verified}");
}

/// A removal while the server is down is `Unavailable` and removes nothing; once the server is
/// back, the same removal runs.
#[test]
fn a_removal_while_the_server_is_down_is_unavailable_and_removes_nothing() {
    let bin = crate::testing::find_server_binaries().expect("PostgreSQL server binaries");
    let cluster = crate::testing::TestCluster::start(&bin).expect("a throwaway cluster of this test's own");
    let store = PostgresStore::connect(&format!("{}?connect_timeout=2", cluster.url())).unwrap();
    let ids: Vec<PlanId> = (0..10).map(|i| plan(&format!("down-{i}"))).collect();
    for id in &ids {
        store.append_events(id, Expected::Exact(0), vec![created()]).unwrap();
    }
    let asked: Vec<(PlanId, u32)> = ids.iter().map(|id| (id.clone(), 1)).collect();
    cluster.stop_immediately().unwrap();
    let error = store.remove_plan_events(&asked, removed_at(), "archive-4").unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(matches!(StoreError::from(error), StoreError::Unavailable { .. }));
    cluster.start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        match store.remove_plan_events(&asked, removed_at(), "archive-4") {
            Err(e) if e.is_unavailable() && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => break other.unwrap(),
        }
    };
    assert_eq!(report.removed, ids, "nothing was removed while the server was down");
}

/// A database written by schema 1 (before retention) upgrades on open: its plans read back,
/// verify passes, and retention works on them.
#[test]
fn a_database_of_schema_1_upgrades_and_keeps_its_plans() {
    let database = TestDatabase::create("upgrade");
    let url = database.url().to_owned();
    let mut client = raw_client(&url);
    assert_eq!(crate::schema::migrate_to(&mut client, &url, 1).unwrap(), 1);
    let (a, b) = (plan("old-a"), plan("old-b"));
    for (id, count) in [(&a, 2u32), (&b, 3)] {
        // What schema 1's append wrote: the events, and the catalog row with the compact view.
        let events: Vec<StoredEvent> = (1..=count)
            .map(|version| {
                waypoint_application::StoredEvent::from(id.clone(), created()).version(version).sequence_number(0)
            })
            .collect();
        let mut tx = client.transaction().unwrap();
        for stored in &events {
            tx.execute(
                "INSERT INTO waypoint_events \
                   (plan_id, version, event_id, recorded_at, event_type, schema_version, data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &id.as_str(),
                    &i64::from(stored.version()),
                    &stored.event_id.as_uuid(),
                    &crate::store::timestamp(stored.recorded_at),
                    &stored.event.event_type().as_str(),
                    &i32::from(stored.event.schema_version()),
                    &stored.event.encode_data(),
                ],
            )
            .unwrap();
        }
        let mut view = waypoint_application::PlanView::replay(&events).unwrap();
        view.compact();
        tx.execute(
            "INSERT INTO waypoint_plans (plan_id, version, last_transaction_id, view, phase, state, last_activity_at) \
             VALUES ($1, $2, pg_current_xact_id(), $3, $4, $5, $6::text::timestamptz)",
            &[
                &id.as_str(),
                &i64::from(count),
                &crate::store::encode_view(&view),
                &view.state.phase.as_str(),
                &view.state.state.as_str(),
                &crate::store::timestamp(view.last_activity_at),
            ],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let store = database.into_store().unwrap();
    let versions: Vec<i32> = client
        .query("SELECT version FROM waypoint_schema ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    assert_eq!(SCHEMA_VERSION, 6);
    let verified = block_on(store.verify()).unwrap();
    assert!(verified.ok, "{verified}");
    assert_eq!(store.catalog_views().unwrap().len(), 2);
    // Rows written before the listing's key have it filled in from their views, to the
    // nanosecond: the listing a page at a time is the catalog sorted.
    let mut sorted = store.catalog_views().unwrap();
    sorted.sort_by(waypoint_application::listing_order);
    let first = store.catalog_page_views(&waypoint_application::CatalogQuery::first(1)).unwrap();
    assert_eq!(first, sorted[..1]);
    let cursor = waypoint_application::CatalogCursor::after(&first[0]);
    let second = store.catalog_page_views(&waypoint_application::CatalogQuery::first(5).after(Some(cursor))).unwrap();
    assert_eq!(second, sorted[1..]);
    // Plans written before step logs existed take logs, and retention removes them.
    let log = |bytes: &[u8]| waypoint_application::StepLog {
        step: StepNumber::FIRST,
        attempt: waypoint_application::domain::Attempt::FIRST,
        stream: waypoint_application::LogStream::Stdout,
        bytes: bytes.to_vec(),
        cut: 0,
    };
    store.write_step_log(&a, &log(b"a")).unwrap();
    store.write_step_log(&b, &log(b"b")).unwrap();
    let report = store.remove_plan_events(&[(a.clone(), 2)], removed_at(), "archive-5").unwrap();
    assert_eq!(report.removed, vec![a.clone()]);
    assert!(matches!(store.append_events(&a, Expected::Exact(0), vec![created()]), Err(PgStoreError::Removed { .. })));
    assert!(store.read_step_logs(&a, None, None).unwrap().is_empty());
    assert!(matches!(store.write_step_log(&a, &log(b"late")), Err(PgStoreError::Removed { .. })));
    assert_eq!(store.append_events(&b, Expected::Exact(3), vec![created()]).unwrap(), 4);
    assert_eq!(store.read_step_logs(&b, None, None).unwrap(), vec![log(b"b")]);
    assert!(block_on(store.verify()).unwrap().ok);
}
