//! Appends: I/O failures reach the caller and lose nothing acknowledged (a failed fsync
//! poisons), concurrent appends share commits with one winner per version, and a refused
//! request in a batch does not stop the others.

use eventually::store::Expected;
use waypoint_domain::PlanEvent;

use crate::test_support::*;
use crate::{AppendRequest, FileStore, FileStoreError, StoreOptions};

/// Storage that fails on command: ENOSPC on write, a short write, or a failing fsync.
#[derive(Debug, Default)]
struct FaultyStorage {
    fault: std::sync::Mutex<Option<Fault>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    NoSpace,
    ShortWrite,
    SyncFails,
    SyncAndTruncateFail,
}

impl FaultyStorage {
    fn set(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap() = fault;
    }

    fn get(&self) -> Option<Fault> {
        *self.fault.lock().unwrap()
    }
}

const ENOSPC: i32 = 28;

const EIO: i32 = 5;

impl crate::storage::Storage for FaultyStorage {
    fn write_all_at(&self, file: &std::fs::File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        match self.get() {
            Some(Fault::NoSpace) => Err(std::io::Error::from_raw_os_error(ENOSPC)),
            Some(Fault::ShortWrite) => {
                crate::storage::OsStorage.write_all_at(file, &bytes[..bytes.len() / 2], offset)?;
                Err(std::io::Error::from(std::io::ErrorKind::WriteZero))
            }
            _ => crate::storage::OsStorage.write_all_at(file, bytes, offset),
        }
    }

    fn sync_data(&self, file: &std::fs::File) -> std::io::Result<()> {
        match self.get() {
            Some(Fault::SyncFails | Fault::SyncAndTruncateFail) => Err(std::io::Error::from_raw_os_error(EIO)),
            _ => crate::storage::OsStorage.sync_data(file),
        }
    }

    fn truncate(&self, file: &std::fs::File, len: u64) -> std::io::Result<()> {
        match self.get() {
            Some(Fault::SyncAndTruncateFail) => Err(std::io::Error::from_raw_os_error(EIO)),
            _ => crate::storage::OsStorage.truncate(file, len),
        }
    }
}

#[test]
fn injected_io_errors_reach_the_caller_and_lose_no_acknowledged_event() {
    for fault in [Fault::NoSpace, Fault::ShortWrite, Fault::SyncFails, Fault::SyncAndTruncateFail] {
        let dir = tempfile::tempdir().unwrap();
        let storage = std::sync::Arc::new(FaultyStorage::default());
        let options = StoreOptions { storage: storage.clone(), ..Default::default() };
        let store = FileStore::open_with(dir.path(), options).unwrap();
        let id = plan("faulty");
        fill(&store, std::slice::from_ref(&id), 3);
        let acknowledged = event_ids(&store);

        storage.set(Some(fault));
        let error = store.append_events(&id, Expected::Exact(3), vec![step_completed(3)]).unwrap_err();
        if fault == Fault::NoSpace {
            // A full disk says what it means for the user's data, not just the errno.
            assert!(matches!(error, FileStoreError::NoSpace { .. }), "{fault:?}: {error}");
            assert!(error.to_string().contains("nothing acknowledged was lost"), "{error}");
            let port = waypoint_application::StoreError::from(error.duplicate());
            assert!(port.to_string().contains("nothing acknowledged was lost"), "{port}");
        } else {
            assert!(matches!(error, FileStoreError::Io { .. }), "{fault:?}: {error}");
        }
        storage.set(None);
        let next = store.append_events(&id, Expected::Exact(3), vec![step_completed(3)]);
        let poisoned = matches!(fault, Fault::SyncFails | Fault::SyncAndTruncateFail);
        match (&next, poisoned) {
            (Err(FileStoreError::Poisoned { .. }), true) | (Ok(4), false) => {}
            _ => panic!("{fault:?}: unexpected {next:?}"),
        }
        let mut expected = acknowledged.clone();
        if next.is_ok() {
            expected = event_ids(&store);
        }
        drop(store);

        // Reopening clears the poison; every acknowledged event is there exactly once.
        let store = FileStore::open(dir.path()).unwrap();
        let ids = event_ids(&store);
        for id in &expected {
            assert_eq!(ids.iter().filter(|x| *x == id).count(), 1, "{fault:?}");
        }
        let version = store.summary_view(&id).unwrap().unwrap().version;
        store.append_events(&id, Expected::Exact(version), vec![step_completed(version)]).unwrap();
    }
}

#[test]
fn concurrent_appends_in_one_process_share_commits_and_keep_one_winner_per_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let contested = plan("contested");
    store.append_events(&contested, Expected::Exact(0), vec![created()]).unwrap();
    let wins = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let store = store.clone();
            let contested = contested.clone();
            let wins = &wins;
            scope.spawn(move || {
                let own = plan(&format!("own-{t}"));
                store.append_events(&own, Expected::Exact(0), vec![created()]).unwrap();
                for n in 1..=25 {
                    store.append_events(&own, Expected::Exact(n), vec![step_completed(n)]).unwrap();
                    // Everyone races for the contested plan's next version: one wins each.
                    let version = store.summary_view(&contested).unwrap().unwrap().version;
                    match store.append_events(&contested, Expected::Exact(version), vec![step_completed(version)]) {
                        Ok(_) => {
                            wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(FileStoreError::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let reopened = FileStore::open(dir.path()).unwrap();
    let events = reopened.read_plan(&contested, 1).unwrap();
    assert_eq!(events.len() as u32, 1 + wins.load(std::sync::atomic::Ordering::SeqCst));
    for t in 0..8 {
        assert_eq!(reopened.read_plan(&plan(&format!("own-{t}")), 1).unwrap().len(), 26);
    }
    let positions: Vec<u32> = reopened.read_all(1).unwrap().map(|e| e.unwrap().sequence_number()).collect();
    assert_eq!(positions, (1..=positions.len() as u32).collect::<Vec<_>>());
}

#[test]
fn a_batch_with_a_conflict_still_commits_its_other_requests() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let request = |id: &str, expected| AppendRequest {
        plan_id: plan(id),
        expected: Expected::Exact(expected),
        events: vec![created()],
    };
    let results = store.append_many(vec![request("a", 0), request("a", 0), request("b", 0)]);
    assert!(matches!(results[..], [Ok(1), Err(FileStoreError::Conflict { expected: 0, actual: 1, .. }), Ok(1)]));
    assert_eq!(event_ids(&FileStore::open(dir.path()).unwrap()).len(), 2);
}

/// Counts fdatasync calls, to see group commit at work.
#[derive(Debug, Default)]
struct CountingStorage(std::sync::atomic::AtomicU64);

impl crate::storage::Storage for CountingStorage {
    fn write_all_at(&self, file: &std::fs::File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        crate::storage::OsStorage.write_all_at(file, bytes, offset)
    }

    fn sync_data(&self, file: &std::fs::File) -> std::io::Result<()> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        crate::storage::OsStorage.sync_data(file)
    }

    fn truncate(&self, file: &std::fs::File, len: u64) -> std::io::Result<()> {
        crate::storage::OsStorage.truncate(file, len)
    }
}

#[test]
fn sixteen_concurrent_appenders_share_fdatasyncs() {
    let dir = tempfile::tempdir().unwrap();
    let counting = std::sync::Arc::new(CountingStorage::default());
    let options = StoreOptions { storage: counting.clone(), ..Default::default() };
    let store = FileStore::open_with(dir.path(), options).unwrap();
    std::thread::scope(|scope| {
        for t in 0..16 {
            let store = store.clone();
            scope.spawn(move || {
                let id = plan(&format!("w{t}"));
                for v in 0..100u32 {
                    let event = if v == 0 { created() } else { step_completed(v) };
                    assert_eq!(store.append_events(&id, Expected::Exact(v), vec![event]).unwrap(), v + 1);
                }
            });
        }
    });
    let syncs = counting.0.load(std::sync::atomic::Ordering::SeqCst);
    assert!(syncs < 1600, "1,600 appends took {syncs} fdatasyncs: no two were ever committed together");
    let reopened = FileStore::open(dir.path()).unwrap();
    assert_eq!(reopened.read_all(1).unwrap().count(), 1600);
}

#[test]
fn an_oversized_event_is_refused_and_the_store_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let id = plan("big");
    store.append_events(&id, Expected::Exact(0), vec![created()]).unwrap();
    let mut event = step_completed(1);
    if let PlanEvent::StepCompleted(step) = &mut event.event {
        let artifact = waypoint_domain::Artifact::parse(&"a".repeat(4000)).unwrap();
        step.artifacts = vec![artifact; 4500];
    }
    let error = store.append_events(&id, Expected::Exact(1), vec![event]).unwrap_err();
    assert!(matches!(error, FileStoreError::TooLarge(_)), "{error}");
    assert_eq!(store.append_events(&id, Expected::Exact(1), vec![step_completed(1)]).unwrap(), 2);
    assert_eq!(event_ids(&FileStore::open(dir.path()).unwrap()).len(), 2);
}
