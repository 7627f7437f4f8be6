//! The append in one round trip and its ways back: a store whose cached catalog row went stale
//! (another store appended, retention removed the plan) hears the same conflict or removal as
//! ever; racing appenders, cached or not, have one winner per version; and an append whose
//! connection breaks while it is under way is stored exactly once, whether or not it had
//! committed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use eventually::store::Expected;
use eventually::versioning::Versioned;
use waypoint_application::testkit::plan_created as created;
use waypoint_application::PlanView;

use super::{count_events, plan, raw_client, removed_at};
use crate::testing::TestDatabase;
use crate::{PgStoreError, PostgresStore};

/// The catalog row's view equals the plan's events folded as the catalog projection folds them.
fn assert_catalog_matches_log(store: &PostgresStore, id: &waypoint_domain::PlanId) {
    let events = store.read_plan(id, 1).unwrap();
    let folded = events.iter().fold(None, |view, event| {
        PlanView::fold(view, event).map(|mut view| {
            view.compact();
            view
        })
    });
    assert!(folded.is_some());
    assert_eq!(store.summary_view(id).unwrap(), folded);
    assert_eq!(store.plan_version(id).unwrap(), events.last().map_or(0, Versioned::version));
}

#[test]
fn a_store_whose_cached_row_went_stale_hears_the_conflict() {
    let database = TestDatabase::create("stale");
    let url = database.url().to_owned();
    let ours = database.into_store().unwrap();
    let theirs = ours.reconnect().unwrap();
    let id = plan("stale");
    assert_eq!(ours.append_events(&id, Expected::Exact(0), vec![created()]).unwrap(), 1);
    // Another process appends: our cached row (version 1) is now stale.
    assert_eq!(theirs.append_events(&id, Expected::Exact(1), vec![created()]).unwrap(), 2);
    let error = ours.append_events(&id, Expected::Exact(1), vec![created()]).unwrap_err();
    assert!(matches!(error, PgStoreError::Conflict { expected: 1, actual: 2, .. }), "{error}");
    // Nothing was written, and the next append at the right version goes through.
    assert_eq!(count_events(&url, &id), 2);
    assert_eq!(ours.append_events(&id, Expected::Exact(2), vec![created()]).unwrap(), 3);
    // Their cache is stale now in turn, and `Any` appends on top of whatever is there.
    assert_eq!(theirs.append_events(&id, Expected::Any, vec![created(), created()]).unwrap(), 5);
    assert_eq!(ours.append_events(&id, Expected::Exact(5), vec![created()]).unwrap(), 6);
    let versions: Vec<u32> = ours.read_plan(&id, 1).unwrap().iter().map(Versioned::version).collect();
    assert_eq!(versions, (1..=6).collect::<Vec<_>>());
    assert_catalog_matches_log(&ours, &id);
    assert_catalog_matches_log(&theirs, &id);
}

#[test]
fn a_plan_removed_after_its_row_was_cached_refuses_the_append() {
    let database = TestDatabase::create("removed_cached");
    let url = database.url().to_owned();
    let ours = database.into_store().unwrap();
    let retention = ours.reconnect().unwrap();
    let id = plan("removed");
    assert_eq!(ours.append_events(&id, Expected::Exact(0), vec![created()]).unwrap(), 1);
    let report = retention.remove_plan_events(&[(id.clone(), 1)], removed_at(), "archive-cached").unwrap();
    assert_eq!(report.removed, vec![id.clone()]);
    for expected in [Expected::Exact(1), Expected::Any, Expected::Exact(0)] {
        let error = ours.append_events(&id, expected, vec![created()]).unwrap_err();
        assert!(matches!(error, PgStoreError::Removed { .. }), "{expected:?}: {error}");
    }
    assert_eq!(count_events(&url, &id), 0);
}

#[test]
fn appenders_racing_on_one_plan_cached_or_not_have_one_winner_per_version() {
    let database = TestDatabase::create("race_cached");
    let first = database.into_store().unwrap();
    // Stores of their own, as processes: each round's winner appends from its cache next
    // round, the others from the row they read.
    let stores: Vec<PostgresStore> =
        std::iter::once(first.clone()).chain((1..6).map(|_| first.reconnect().unwrap())).collect();
    let id = plan("raced");
    let rounds = 12;
    let mut winners = Vec::new();
    for round in 0..rounds {
        let barrier = Barrier::new(stores.len());
        let results: Vec<Result<u32, PgStoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = stores
                .iter()
                .map(|store| {
                    let (id, barrier) = (&id, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        store.append_events(id, Expected::Exact(round), vec![created()])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        assert_eq!(results[won[0]].as_ref().unwrap(), &(round + 1));
        for result in results.iter().filter(|r| r.is_err()) {
            let expected = round;
            let actual = round + 1;
            assert!(
                matches!(result, Err(PgStoreError::Conflict { expected: e, actual: a, .. }) if *e == expected && *a == actual),
                "round {round}: {result:?}"
            );
        }
        winners.push(won[0]);
    }
    let versions: Vec<u32> = first.read_plan(&id, 1).unwrap().iter().map(Versioned::version).collect();
    assert_eq!(versions, (1..=rounds).collect::<Vec<_>>());
    assert_catalog_matches_log(&first, &id);
}

/// A TCP relay between a store and the server that can swallow the server's replies on the
/// connections open now and cut them: an append whose answer is lost.
struct Relay {
    port: u16,
    links: Arc<Mutex<Vec<Link>>>,
}

struct Link {
    client: TcpStream,
    swallow: Arc<AtomicBool>,
}

impl Relay {
    fn start(server: (String, u16)) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let links = Arc::new(Mutex::new(Vec::new()));
        let registry = links.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let (Ok(client), Ok(upstream)) = (client, TcpStream::connect((server.0.as_str(), server.1))) else {
                    continue;
                };
                let swallow = Arc::new(AtomicBool::new(false));
                let link = Link { client: client.try_clone().unwrap(), swallow: swallow.clone() };
                registry.lock().unwrap().push(link);
                let (mut from_client, mut to_server) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_client, &mut to_server);
                    let _ = to_server.shutdown(Shutdown::Both);
                });
                let (mut from_server, mut to_client) = (upstream, client);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 8192];
                    while let Ok(n @ 1..) = from_server.read(&mut buffer) {
                        if !swallow.load(Ordering::SeqCst) && to_client.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_client.shutdown(Shutdown::Both);
                });
            }
        });
        Relay { port, links }
    }

    /// From now on the server's replies on the open connections are dropped.
    fn swallow_replies(&self) {
        for link in self.links.lock().unwrap().iter() {
            link.swallow.store(true, Ordering::SeqCst);
        }
    }

    /// Cuts every open connection; later ones are relayed as usual.
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            let _ = link.client.shutdown(Shutdown::Both);
        }
    }
}

/// Waits until `count` sessions of the database wait for a lock.
fn await_lock_waiters(url: &str, count: i64) {
    let mut client = raw_client(url);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
                &[],
            )
            .unwrap()
            .get(0);
        if waiting == count {
            return;
        }
        assert!(Instant::now() < deadline, "{waiting} sessions wait for a lock, not {count}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_append_whose_connection_breaks_midway_is_stored_exactly_once() {
    let database = TestDatabase::create("broken_append");
    let url = database.url().to_owned();
    let config: postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("the test server is reached over TCP, not {other:?}"),
    };
    let relay = Relay::start((host, config.get_ports()[0]));
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap();
    let relayed = format!("host=127.0.0.1 port={} user={user} dbname={dbname} connect_timeout=5", relay.port);
    let store = PostgresStore::connect(&relayed).unwrap();
    let id = plan("broken");
    assert_eq!(store.append_events(&id, Expected::Exact(0), vec![created()]).unwrap(), 1);
    let mut locker = raw_client(&url);

    // 1. The server process running the append ends before it commits: the append sees its
    // connection break, finds nothing stored, and appends again on a fresh connection.
    let mut hold = locker.transaction().unwrap();
    hold.execute("SELECT 1 FROM waypoint_plans WHERE plan_id = $1 FOR UPDATE", &[&id.as_str()]).unwrap();
    std::thread::scope(|scope| {
        let append = scope.spawn(|| store.append_events(&id, Expected::Exact(1), vec![created()]));
        await_lock_waiters(&url, 1);
        let ended: bool = raw_client(&url)
            .query_one(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND datname = current_database()",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(ended);
        // The append, sent again, waits for the same lock.
        await_lock_waiters(&url, 1);
        hold.rollback().unwrap();
        assert_eq!(append.join().unwrap().unwrap(), 2);
    });
    assert_eq!(count_events(&url, &id), 2);

    // 2. The append commits and its answer is lost with the connection: it is found stored,
    // reported as done, and not written twice.
    let mut hold = locker.transaction().unwrap();
    hold.execute("SELECT 1 FROM waypoint_plans WHERE plan_id = $1 FOR UPDATE", &[&id.as_str()]).unwrap();
    std::thread::scope(|scope| {
        let append = scope.spawn(|| store.append_events(&id, Expected::Exact(2), vec![created(), created()]));
        await_lock_waiters(&url, 1);
        relay.swallow_replies();
        hold.rollback().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while count_events(&url, &id) < 4 {
            assert!(Instant::now() < deadline, "the append never committed");
            std::thread::sleep(Duration::from_millis(10));
        }
        relay.cut();
        assert_eq!(append.join().unwrap().unwrap(), 4);
    });
    assert_eq!(count_events(&url, &id), 4);
    let versions: Vec<u32> = store.read_plan(&id, 1).unwrap().iter().map(Versioned::version).collect();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    assert_catalog_matches_log(&store, &id);
    assert_eq!(store.append_events(&id, Expected::Exact(4), vec![created()]).unwrap(), 5);
}
