//! Step logs on a real PostgreSQL: removed with their plans in the batch's own transaction (a
//! batch that fails keeps them), never left behind by a put racing a removal from another
//! connection, and refused by the table itself past the port's limits.

use std::collections::HashSet;
use std::sync::Barrier;

use eventually::store::Expected;
use waypoint_application::testkit::plan_created as created;
use waypoint_application::{LogStream, StepLog};
use waypoint_domain::{Attempt, PlanId, StepNumber};

use crate::testing::TestDatabase;
use crate::PgStoreError;

fn plan(id: &str) -> PlanId {
    PlanId::parse(id).expect("valid plan id")
}

fn log(attempt: u32, bytes: &[u8]) -> StepLog {
    StepLog {
        step: StepNumber::FIRST,
        attempt: Attempt::new(attempt).unwrap(),
        stream: LogStream::Stderr,
        bytes: bytes.to_vec(),
        cut: 0,
    }
}

fn raw_client(url: &str) -> postgres::Client {
    use std::str::FromStr;
    postgres::Config::from_str(url).unwrap().connect(postgres::NoTls).unwrap()
}

fn count_logs(url: &str, plan_id: &PlanId) -> i64 {
    raw_client(url)
        .query_one("SELECT count(*) FROM waypoint_step_logs WHERE plan_id = $1", &[&plan_id.as_str()])
        .unwrap()
        .get(0)
}

fn removed_at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap().with_timezone(&chrono::Utc)
}

/// The second of two batches holds a plan whose catalog row counts more events than the log
/// holds, so it fails: the first batch's plans lose their logs with their events, the second's
/// keep both.
#[test]
fn a_batch_deletes_its_plans_logs_in_its_transaction_and_a_failed_batch_keeps_them() {
    let database = TestDatabase::create("logbatch");
    let url = database.url().to_owned();
    let store = database.into_store().unwrap();
    let ids: Vec<PlanId> = (0..crate::REMOVAL_BATCH + 10).map(|i| plan(&format!("p{i:03}"))).collect();
    for id in &ids {
        store.append_events(id, Expected::Exact(0), vec![created()]).unwrap();
    }
    let (first, second) = (&ids[3], &ids[crate::REMOVAL_BATCH + 3]);
    for id in [first, second] {
        store.write_step_log(id, &log(1, b"one")).unwrap();
        store.write_step_log(id, &log(2, b"two")).unwrap();
    }
    let broken = &ids[crate::REMOVAL_BATCH + 5];
    raw_client(&url).execute("UPDATE waypoint_plans SET version = 2 WHERE plan_id = $1", &[&broken.as_str()]).unwrap();
    let asked: Vec<(PlanId, u32)> = ids.iter().map(|id| (id.clone(), if id == broken { 2 } else { 1 })).collect();
    let error = store.remove_plan_events(&asked, removed_at(), "archive").unwrap_err();
    assert!(matches!(error, PgStoreError::Corrupt { .. }), "{error}");
    assert_eq!(count_logs(&url, first), 0, "the batch that committed took its plans' logs");
    assert!(store.read_step_logs(first, None, None).unwrap().is_empty());
    assert_eq!(count_logs(&url, second), 2, "the batch that failed kept them");
    assert_eq!(store.read_step_logs(second, None, None).unwrap(), vec![log(1, b"one"), log(2, b"two")]);
}

/// Puts from eight connections to plans a removal is taking: each put either landed before its
/// plan's batch (and was deleted with it) or was refused as removed; no log of a removed plan
/// is left, and the plans' rows answer as tombstones.
#[test]
fn puts_racing_a_removal_from_other_connections_leave_no_log_behind() {
    const PUTTERS: usize = 8;
    let database = TestDatabase::create("lograce");
    let url = database.url().to_owned();
    let store = database.into_store().unwrap();
    let old: Vec<PlanId> = (0..800).map(|i| plan(&format!("old-{i}"))).collect();
    for id in &old {
        store.append_events(id, Expected::Exact(0), vec![created()]).unwrap();
    }
    let asked: Vec<(PlanId, u32)> = old.iter().map(|id| (id.clone(), 1)).collect();
    let barrier = Barrier::new(PUTTERS + 1);
    let (report, refused) = std::thread::scope(|scope| {
        let putters: Vec<_> = (0..PUTTERS)
            .map(|p| {
                let (putter, barrier, old) = (store.reconnect().unwrap(), &barrier, &old);
                scope.spawn(move || {
                    barrier.wait();
                    let mut refused = 0;
                    for (i, id) in old.iter().enumerate().skip(p).step_by(PUTTERS) {
                        match putter.write_step_log(id, &log(i as u32 + 1, b"racing")) {
                            Ok(()) => {}
                            Err(PgStoreError::Removed { .. }) => refused += 1,
                            Err(e) => panic!("a put racing a removal is stored or refused as removed: {e}"),
                        }
                    }
                    refused
                })
            })
            .collect();
        barrier.wait();
        let report = store.remove_plan_events(&asked, removed_at(), "archive").unwrap();
        (report, putters.into_iter().map(|p| p.join().unwrap()).sum::<usize>())
    });
    eprintln!("racing puts: {refused} of {} refused as removed", old.len());
    assert_eq!(report.removed.len(), old.len(), "a log is no event: no plan moved");
    let left: i64 = raw_client(&url).query_one("SELECT count(*) FROM waypoint_step_logs", &[]).unwrap().get(0);
    assert_eq!(left, 0, "no log of a removed plan is left");
    let removed: HashSet<&PlanId> = report.removed.iter().collect();
    assert!(old.iter().all(|id| removed.contains(id)));
}

/// The table holds the port's limits too, so a row written by hand past them is refused by the
/// server, and what the port writes at the limits is taken.
#[test]
fn the_table_refuses_rows_past_the_limits_and_takes_rows_at_them() {
    let database = TestDatabase::create("loglimits");
    let url = database.url().to_owned();
    let store = database.into_store().unwrap();
    let id = plan("limits");
    store.append_events(&id, Expected::Exact(0), vec![created()]).unwrap();
    let mut at_limits = log(u32::MAX, &vec![7u8; waypoint_application::STEP_LOG_CAP]);
    at_limits.step = StepNumber::new(u32::MAX).unwrap();
    at_limits.cut = StepLog::MAX_CUT;
    store.write_step_log(&id, &at_limits).unwrap();
    assert_eq!(store.read_step_logs(&id, None, None).unwrap(), vec![at_limits]);
    let mut client = raw_client(&url);
    for (column, value) in [("step", "0"), ("attempt", "4294967296"), ("stream", "'stdin'"), ("cut", "-1")] {
        let mut values = [("step", "1"), ("attempt", "1"), ("stream", "'stdout'"), ("cut", "0")];
        values.iter_mut().filter(|(c, _)| *c == column).for_each(|(_, v)| *v = value);
        let row = values.iter().map(|(_, v)| *v).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "INSERT INTO waypoint_step_logs (plan_id, step, attempt, stream, cut, bytes) VALUES ('limits', {row}, '')"
        );
        assert!(client.batch_execute(&sql).is_err(), "{column} = {value} is refused");
    }
    let too_long = "INSERT INTO waypoint_step_logs (plan_id, step, attempt, stream, cut, bytes) \
                    VALUES ('limits', 1, 1, 'stdout', 0, decode(repeat('00', 1048577), 'hex'))";
    assert!(client.batch_execute(too_long).is_err(), "more than the cap is refused");
    let orphan = "INSERT INTO waypoint_step_logs (plan_id, step, attempt, stream, cut, bytes) \
                  VALUES ('nobody', 1, 1, 'stdout', 0, '')";
    assert!(client.batch_execute(orphan).is_err(), "a log of no plan's row is refused");
}
