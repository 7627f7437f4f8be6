//! Unit tests for the file store: given a store and events, when we append/reopen/read, then
//! the log holds exactly what was acknowledged.

use std::os::unix::fs::PermissionsExt;

use eventually::store::{EventStore, Expected, Select};
use futures::executor::block_on;
use futures::TryStreamExt;
use waypoint_application::domain::{DecisionId, Message, Phase, StepNumber, TotalSteps};
use waypoint_application::{
    NewPlan, PlanResumeService, PlanStore, RecordedEvent, ResumeRequest, RunLockProbe, StepCheckpoint, StoreError,
    StoredEvent,
};
use waypoint_domain::{EventId, PlanCreated, PlanEvent, PlanId};

use crate::{FileStore, FileStoreError};

pub(crate) fn plan(id: &str) -> PlanId {
    PlanId::parse(id).expect("valid plan id")
}

pub(crate) fn created() -> RecordedEvent {
    let at = chrono::Utc::now();
    RecordedEvent {
        event_id: EventId::from_uuid(uuid::Uuid::new_v4()),
        recorded_at: at,
        event: PlanEvent::PlanCreated(PlanCreated {
            name: None,
            total_steps: None,
            fingerprint: None,
            source: None,
            created_at: at,
            steps: vec![],
        }),
    }
}

fn all_events(store: &FileStore) -> Vec<StoredEvent> {
    block_on(async { store.stream_all(Select::All).await?.try_collect::<Vec<_>>().await }).expect("stream all")
}

#[test]
fn a_plan_lives_through_interruption_and_resume_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let service = PlanResumeService::new(FileStore::open(dir.path()).unwrap());
        block_on(async {
            let plan = service
                .create_plan(NewPlan { total_steps: Some(TotalSteps::new(3).unwrap()), ..NewPlan::default() })
                .await
                .unwrap();
            let id = plan.plan_id;
            service.start_phase(&id, Phase::Strategize, None).await.unwrap();
            let step = StepNumber::new(1).unwrap();
            let decision_id = DecisionId::parse("d-1").unwrap();
            service
                .record_step_checkpoint(
                    &id,
                    StepCheckpoint {
                        step,
                        decision_id,
                        snapshot_id: None,
                        artifacts: vec![],
                        name: None,
                        output: None,
                        fingerprint: None,
                    },
                )
                .await
                .unwrap();
            service.record_shutdown(&id, Message::parse("Ctrl-C").unwrap()).await.unwrap();
            id
        })
    };
    let store = FileStore::open(dir.path()).unwrap();
    let service = PlanResumeService::new(store.clone());
    let outcome = block_on(service.resume_plan(&id, ResumeRequest::default())).unwrap();
    assert_eq!(outcome.resumed.unwrap().from_step, StepNumber::new(2).unwrap());
    let history = block_on(service.history(&id)).unwrap();
    let versions: Vec<u32> = history.iter().map(eventually::versioning::Versioned::version).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
    let reopened = FileStore::open_read_only(dir.path()).unwrap();
    assert_eq!(block_on(reopened.load_view(&id)).unwrap(), block_on(store.load_view(&id)).unwrap());
    assert_eq!(block_on(reopened.catalog()).unwrap().len(), 1);
}

#[test]
fn an_append_at_a_stale_version_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = FileStore::open(dir.path()).unwrap();
    let mut second = FileStore::open(dir.path()).unwrap();
    let id = plan("p1");
    assert_eq!(block_on(first.append(id.clone(), Expected::Exact(0), vec![created()])).unwrap(), 1);
    let error = block_on(second.append(id.clone(), Expected::Exact(0), vec![created()])).unwrap_err();
    assert!(matches!(error, StoreError::Conflict { expected: 0, actual: 1, .. }), "{error}");
    assert_eq!(all_events(&second).len(), 1);
}

#[test]
fn files_and_directories_are_private_whatever_the_umask() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("missing-parent").join("store");
    let mut store = FileStore::open(&dir).unwrap();
    block_on(store.append(plan("p1"), Expected::Exact(0), vec![created()])).unwrap();
    let _guard = store.run_locks().acquire(&plan("p1")).unwrap();
    for entry in walk(&parent.path().join("missing-parent")) {
        let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
        let want = if entry.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{}", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_read_only_open_of_a_missing_store_is_not_found_and_creates_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("absent");
    assert!(matches!(FileStore::open_read_only(&dir), Err(FileStoreError::NotFound { .. })));
    assert!(!dir.exists());
}

#[test]
fn a_read_only_store_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    drop(FileStore::open(dir.path()).unwrap());
    let mut store = FileStore::open_read_only(dir.path()).unwrap();
    let error = block_on(store.append(plan("p1"), Expected::Any, vec![created()])).unwrap_err();
    assert!(matches!(error, StoreError::Unsupported(_)), "{error}");
}

#[test]
fn run_locks_are_exclusive_and_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let locks = store.run_locks();
    let id = plan("p1");
    assert!(!locks.is_held(&id));
    let guard = locks.acquire(&id).unwrap();
    // Held by this process: not "someone else".
    assert!(!locks.is_held(&id));
    assert!(matches!(locks.acquire(&id), Err(FileStoreError::RunLockBusy { .. })));
    drop(guard);
    let _again = locks.acquire(&id).unwrap();
}

#[test]
fn load_view_keeps_every_checkpoint_so_a_retry_of_an_older_step_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let service = PlanResumeService::new(FileStore::open(dir.path()).unwrap());
    block_on(async {
        let id = service.create_plan(NewPlan::default()).await.unwrap().plan_id;
        service.start_phase(&id, Phase::Strategize, None).await.unwrap();
        let checkpoint = |n: u32| StepCheckpoint {
            step: StepNumber::new(n).unwrap(),
            decision_id: DecisionId::parse(&format!("d-{n}")).unwrap(),
            snapshot_id: None,
            artifacts: vec![],
            name: None,
            output: None,
            fingerprint: None,
        };
        for n in 1..=3 {
            service.record_step_checkpoint(&id, checkpoint(n)).await.unwrap();
        }
        let retry = service.record_step_checkpoint(&id, checkpoint(1)).await.unwrap();
        assert!(!retry.appended);
        let full = service.store().load_view(&id).await.unwrap().unwrap();
        assert_eq!(full.state.resume.checkpoints.len(), 3);
        let summary = service.store().load_summary_view(&id).await.unwrap().unwrap();
        assert_eq!(summary.state.resume.checkpoints.len(), 1);
    });
}

mod support {
    //! Helpers shared by the unit tests: building stores, copying and snapshotting their bytes.

    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use super::*;

    pub fn step_completed(n: u32) -> RecordedEvent {
        RecordedEvent {
            event_id: EventId::from_uuid(uuid::Uuid::new_v4()),
            recorded_at: chrono::Utc::now(),
            event: PlanEvent::StepCompleted(waypoint_domain::StepCompleted {
                checkpoint_id: waypoint_domain::CheckpointId::from_uuid(uuid::Uuid::new_v4()),
                step: StepNumber::new(n).unwrap(),
                decision_id: DecisionId::parse(&format!("decision-{n}")).unwrap(),
                snapshot_id: None,
                artifacts: vec![],
                name: None,
                output: None,
                fingerprint: None,
            }),
        }
    }

    /// Appends `per_plan` events to each of `plans`, one append each, interleaved.
    pub fn fill(store: &FileStore, plans: &[PlanId], per_plan: u32) {
        for n in 1..=per_plan {
            for id in plans {
                let event = if n == 1 { created() } else { step_completed(n - 1) };
                store.append_events(id, Expected::Exact(n - 1), vec![event]).unwrap();
            }
        }
    }

    /// Every file under `dir` with its bytes: a store's complete on-disk state.
    pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        for path in walk(dir) {
            if path.is_file() {
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
        out
    }

    /// A fresh copy of a store directory's log (and nothing derived) in a new temp dir.
    pub fn copy_log(from: &Path) -> tempfile::TempDir {
        let to = tempfile::tempdir().unwrap();
        std::fs::copy(from.join("events.log"), to.path().join("events.log")).unwrap();
        to
    }

    /// (offset, length) of every record, in log order.
    pub fn records(dir: &Path) -> Vec<(u64, u64)> {
        let bytes = std::fs::read(dir.join("events.log")).unwrap();
        let mut at = crate::log::FIRST_RECORD as usize;
        let mut out = Vec::new();
        while at < bytes.len() {
            let (_, len) = crate::record::decode(&bytes[at..]).unwrap();
            out.push((at as u64, len as u64));
            at += len;
        }
        out
    }

    pub fn event_ids(store: &FileStore) -> Vec<EventId> {
        store.read_all(1).unwrap().map(|e| e.unwrap().event_id).collect()
    }
}

use support::*;

#[test]
fn a_reopened_store_serves_plans_from_the_checkpoint_index_and_view_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let options = crate::StoreOptions { checkpoint_every: 7, view_snapshot_every: 5, ..Default::default() };
    let plans: Vec<PlanId> = (0..3).map(|i| plan(&format!("plan-{i}"))).collect();
    let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
    fill(&store, &plans, 20);
    let expected: Vec<_> = plans.iter().map(|id| store.read_plan(id, 1).unwrap()).collect();
    for id in &plans {
        assert_eq!(
            store.plan_view(id).unwrap(),
            waypoint_application::PlanView::replay(&store.read_plan(id, 1).unwrap())
        );
    }
    drop(store);

    let stored = crate::inspect::stored_catalog(dir.path()).unwrap().expect("a checkpoint was written");
    assert!(stored.position >= 7 && stored.position <= 60, "{}", stored.position);
    let index = crate::inspect::plan_index(dir.path(), &plans[0]).unwrap();
    assert!(index.len() >= 2 && index.iter().all(Option::is_some));
    assert!(crate::inspect::plan_view_snapshot(dir.path(), &plans[0]).unwrap().is_some());

    let reopened = FileStore::open_with(dir.path(), options).unwrap();
    for (id, events) in plans.iter().zip(&expected) {
        assert_eq!(&reopened.read_plan(id, 1).unwrap(), events);
        assert_eq!(reopened.read_plan(id, 15).unwrap(), events[14..].to_vec());
        assert_eq!(reopened.plan_view(id).unwrap(), waypoint_application::PlanView::replay(events));
        assert_eq!(reopened.summary_view(id).unwrap().unwrap().version, 20);
    }
    assert_eq!(reopened.catalog_snapshot().unwrap().plans.len(), 3);
    let replayed: Vec<_> = crate::inspect::events(dir.path()).unwrap().map(|e| e.unwrap().event).collect();
    assert_eq!(replayed.len(), 60);
    assert_eq!(reopened.read_all(1).unwrap().map(Result::unwrap).collect::<Vec<_>>(), replayed);
    assert_eq!(reopened.read_all(59).unwrap().count(), 2);
}

#[test]
fn missing_or_damaged_derived_files_are_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let options = crate::StoreOptions { checkpoint_every: 5, view_snapshot_every: 3, ..Default::default() };
    let plans: Vec<PlanId> = (0..2).map(|i| plan(&format!("p{i}"))).collect();
    let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
    fill(&store, &plans, 12);
    let expected: Vec<_> = plans.iter().map(|id| store.read_plan(id, 1).unwrap()).collect();
    let views: Vec<_> = plans.iter().map(|id| store.plan_view(id).unwrap()).collect();
    drop(store);

    // Damage every kind of derived file: a flipped checkpoint byte, a lost index, a bad view.
    let ckpt = dir.path().join("catalog.ckpt");
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x40;
    std::fs::write(&ckpt, bytes).unwrap();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    std::fs::write(dir.path().join("views").join("p0.view"), b"garbage").unwrap();

    let before = snapshot(dir.path());
    let read_only = FileStore::open_read_only(dir.path()).unwrap();
    for ((id, events), view) in plans.iter().zip(&expected).zip(&views) {
        assert_eq!(&read_only.read_plan(id, 1).unwrap(), events);
        assert_eq!(&read_only.plan_view(id).unwrap(), view);
    }
    drop(read_only);
    assert_eq!(snapshot(dir.path()), before, "a read-only open changed the store's bytes");

    let store = FileStore::open_with(dir.path(), options).unwrap();
    for ((id, events), view) in plans.iter().zip(&expected).zip(&views) {
        assert_eq!(&store.read_plan(id, 1).unwrap(), events);
        assert_eq!(&store.plan_view(id).unwrap(), view);
    }
    assert!(crate::inspect::plan_index(dir.path(), &plans[1]).unwrap().iter().all(Option::is_some));
}

#[test]
fn read_only_commands_leave_the_store_bytes_identical() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let plans = [plan("a"), plan("b")];
    fill(&store, &plans, 5);
    let _runner = store.run_locks().acquire(&plans[0]).unwrap();
    let before = snapshot(dir.path());
    let read_only = FileStore::open_read_only(dir.path()).unwrap();
    let service = PlanResumeService::new(read_only.clone()).with_run_locks(read_only.run_locks());
    block_on(async {
        service.list_plans().await.unwrap();
        service.history(&plans[1]).await.unwrap();
        service.resume_plan(&plans[1], ResumeRequest { dry_run: true, ..ResumeRequest::default() }).await.unwrap();
    });
    assert!(!read_only.run_locks().is_held(&plans[0]), "held by this very process");
    assert!(read_only.run_locks().acquire(&plans[1]).is_err());
    drop(read_only);
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_torn_tail_is_cut_back_to_the_last_whole_record_at_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    fill(&store, &[plan("torn")], 6);
    let ids = event_ids(&store);
    drop(store);
    let records = records(dir.path());
    let len = std::fs::metadata(dir.path().join("events.log")).unwrap().len();
    let (second_last, _) = records[records.len() - 2];
    for cut in second_last..len {
        let whole = records.iter().filter(|(offset, rec_len)| offset + rec_len <= cut).count();
        for zero_fill in [false, true] {
            let copy = copy_log(dir.path());
            let log = copy.path().join("events.log");
            let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
            file.set_len(cut).unwrap();
            if zero_fill {
                // A crash on some file systems leaves the tail allocated but zeroed.
                file.set_len(len + 64).unwrap();
            }
            drop(file);
            let before = std::fs::read(&log).unwrap();
            let read_only = FileStore::open_read_only(copy.path()).unwrap();
            assert_eq!(event_ids(&read_only), ids[..whole], "read-only, cut at {cut}, zeros {zero_fill}");
            drop(read_only);
            assert_eq!(std::fs::read(&log).unwrap(), before, "a read-only open cut the log");

            let store = FileStore::open(copy.path()).unwrap();
            assert_eq!(event_ids(&store), ids[..whole], "cut at {cut}, zeros {zero_fill}");
            let kept = records.get(whole).map_or(len, |(offset, _)| *offset);
            assert_eq!(std::fs::metadata(&log).unwrap().len(), kept);
            let torn: Vec<_> = std::fs::read_dir(copy.path().join("torn")).map(|d| d.count()).into_iter().collect();
            assert!(torn == [1] || (cut == kept && !zero_fill), "the cut bytes are kept aside");
            // The recovered log takes appends again.
            let version = whole as u32;
            store.append_events(&plan("torn"), Expected::Exact(version), vec![step_completed(version)]).unwrap();
        }
    }
}

#[test]
fn damage_before_the_last_record_is_a_typed_error_naming_the_offset_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    fill(&store, &[plan("c1"), plan("c2")], 3);
    drop(store);
    let records = records(dir.path());
    for &(offset, len) in &records[..records.len() - 1] {
        for at in [0, 3, 5, 9, 12, 20, len / 2, len - 1] {
            let copy = copy_log(dir.path());
            let log = copy.path().join("events.log");
            let mut bytes = std::fs::read(&log).unwrap();
            bytes[(offset + at) as usize] ^= 0x5A;
            std::fs::write(&log, &bytes).unwrap();
            match FileStore::open(copy.path()) {
                Err(FileStoreError::Corrupt { offset: reported, path, .. }) => {
                    assert_eq!(reported, offset, "byte {at} of the record at {offset}");
                    assert_eq!(path, log);
                }
                other => panic!("byte {at} of the record at {offset}: expected Corrupt, got {other:?}"),
            }
            assert!(matches!(FileStore::open_read_only(copy.path()), Err(FileStoreError::Corrupt { .. })));
            assert_eq!(std::fs::read(&log).unwrap(), bytes, "a failed open changed the log");
        }
    }
}

#[test]
fn damage_behind_a_checkpoint_is_reported_when_read_and_repair_cuts_it_with_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let options = crate::StoreOptions { checkpoint_every: 2, ..Default::default() };
    let store = FileStore::open_with(dir.path(), options).unwrap();
    fill(&store, &[plan("r1")], 6);
    drop(store);
    let records = records(dir.path());
    let (offset, _) = records[2];
    let log = dir.path().join("events.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[offset as usize + 30] ^= 0xFF;
    std::fs::write(&log, &bytes).unwrap();

    let store = FileStore::open(dir.path()).unwrap();
    let error = store.read_all(1).unwrap().find_map(Result::err).expect("the damage is reported");
    assert!(matches!(error, FileStoreError::Corrupt { offset: o, .. } if o == offset), "{error}");
    let error = store.read_plan(&plan("r1"), 1).unwrap_err();
    assert!(matches!(error, FileStoreError::Corrupt { offset: o, .. } if o == offset), "{error}");
    assert!(matches!(crate::repair(dir.path()), Err(FileStoreError::Locked { .. })), "repair needs the store closed");
    drop(store);

    let report = crate::repair(dir.path()).unwrap();
    assert_eq!(report.damage_at, Some(offset));
    assert_eq!(report.records_kept, 2);
    assert_eq!(report.intact_records_removed, 3);
    assert_eq!(std::fs::read(report.backup.unwrap()).unwrap(), bytes, "the backup is the log as it was");
    assert_eq!(std::fs::read(report.quarantined.unwrap()).unwrap(), bytes[offset as usize..]);
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.read_plan(&plan("r1"), 1).unwrap().len(), 2);
    assert_eq!(store.summary_view(&plan("r1")).unwrap().unwrap().version, 2);

    let clean = crate::repair(tempfile::tempdir().unwrap().path()).unwrap();
    assert_eq!(clean.damage_at, None);
}

/// Appends a hand-made record to the end of a store's log.
fn append_raw(dir: &std::path::Path, raw: crate::record::RawRecord) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(dir.join("events.log")).unwrap();
    file.write_all(&raw.encode().unwrap()).unwrap();
}

fn raw(position: u32, plan_id: &str, event_type: &str, schema_version: u16, data: &[u8]) -> crate::record::RawRecord {
    crate::record::RawRecord {
        position,
        version: 1,
        batch_start: position,
        event_id: uuid::Uuid::new_v4(),
        recorded_at: chrono::Utc::now(),
        plan_id: plan_id.into(),
        event_type: event_type.into(),
        schema_version,
        data: data.to_vec(),
    }
}

#[test]
fn an_unknown_event_type_is_a_typed_error_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    drop(FileStore::open(dir.path()).unwrap());
    append_raw(dir.path(), raw(1, "future", "plan_teleported", 1, b"{}"));
    match FileStore::open(dir.path()) {
        Err(FileStoreError::Decode { offset, plan_id, version, source, .. }) => {
            assert_eq!((offset, plan_id.as_str(), version), (crate::log::FIRST_RECORD, "future", 1));
            assert!(matches!(source, waypoint_domain::DecodeError::UnknownType(t) if t == "plan_teleported"));
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn an_old_schema_version_is_upcast_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    store.append_events(&plan("old"), Expected::Exact(0), vec![created()]).unwrap();
    drop(store);
    let v1 =
        br#"{"checkpoint_id":"6f1c1d4e-8f7a-4a55-9b43-2d1f0f4c8a11","step":1,"decision_id":"d-1","snapshot_id":null}"#;
    append_raw(dir.path(), crate::record::RawRecord { version: 2, ..raw(2, "old", "step_completed", 1, v1) });
    let store = FileStore::open(dir.path()).unwrap();
    let events = store.read_plan(&plan("old"), 1).unwrap();
    match &events[1].event {
        PlanEvent::StepCompleted(step) => assert!(step.artifacts.is_empty()),
        other => panic!("expected a step_completed, got {other:?}"),
    }
}

#[test]
fn ids_that_would_escape_the_directory_are_refused_before_any_path_is_built() {
    for bad in ["../x", "/etc/passwd", "a/b", "nul\0byte", "..", ".", "", &"x".repeat(65), "tab\t"] {
        assert!(PlanId::parse(bad).is_err(), "{bad:?} must not be a plan id");
    }
    // A record whose plan id would escape (written by hand, checksum intact) is damage: it never
    // becomes a PlanId, so no index, view or lock path is ever built from it.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    drop(FileStore::open(&dir).unwrap());
    append_raw(&dir, raw(1, "../escaped", "plan_created", 1, b"{}"));
    let before: Vec<_> = std::fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(matches!(FileStore::open(&dir), Err(FileStoreError::Corrupt { .. })));
    assert!(matches!(FileStore::open_read_only(&dir), Err(FileStoreError::Corrupt { .. })));
    let after: Vec<_> = std::fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after);
}

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
        let options = crate::StoreOptions { storage: storage.clone(), ..Default::default() };
        let store = FileStore::open_with(dir.path(), options).unwrap();
        let id = plan("faulty");
        fill(&store, std::slice::from_ref(&id), 3);
        let acknowledged = event_ids(&store);

        storage.set(Some(fault));
        let error = store.append_events(&id, Expected::Exact(3), vec![step_completed(3)]).unwrap_err();
        assert!(matches!(error, FileStoreError::Io { .. }), "{fault:?}: {error}");
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
    let request = |id: &str, expected| crate::AppendRequest {
        plan_id: plan(id),
        expected: Expected::Exact(expected),
        events: vec![created()],
    };
    let results = store.append_many(vec![request("a", 0), request("a", 0), request("b", 0)]);
    assert!(matches!(results[..], [Ok(1), Err(FileStoreError::Conflict { expected: 0, actual: 1, .. }), Ok(1)]));
    assert_eq!(event_ids(&FileStore::open(dir.path()).unwrap()).len(), 2);
}

mod properties {
    //! decode(encode(x)) == x for every record, and decoding arbitrary bytes never panics.

    use proptest::prelude::*;

    use crate::record::{self, RawRecord};

    fn any_record() -> impl Strategy<Value = RawRecord> {
        (
            (1u32.., 1u32.., any::<[u8; 16]>(), any::<prop::sample::Index>()),
            (-62_135_596_800i64..253_402_300_799i64, 0u32..1_000_000_000),
            ("[A-Za-z0-9_-]{1,64}", "[a-z_]{1,40}", any::<u16>()),
            proptest::collection::vec(any::<u8>(), 0..512),
        )
            .prop_map(
                |((position, version, id, batch), (secs, nanos), (plan_id, event_type, schema_version), data)| {
                    RawRecord {
                        position,
                        version,
                        batch_start: 1 + batch.index(position as usize) as u32,
                        event_id: uuid::Uuid::from_bytes(id),
                        recorded_at: chrono::DateTime::from_timestamp(secs, nanos).unwrap(),
                        plan_id,
                        event_type,
                        schema_version,
                        data,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(record in any_record()) {
            let bytes = record.encode().unwrap();
            let (decoded, len) = record::decode(&bytes).unwrap();
            prop_assert_eq!(len, bytes.len());
            prop_assert_eq!(decoded, record);
        }

        #[test]
        fn a_sealed_frame_decodes_to_its_numbers(record in any_record()) {
            let mut bytes = RawRecord { position: 0, version: 0, batch_start: 0, ..record.clone() }.encode().unwrap();
            record::seal(&mut bytes, record.position, record.version, record.batch_start);
            prop_assert_eq!(record::decode(&bytes).unwrap().0, record);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            crate::fuzz_decode(&bytes);
        }

        #[test]
        fn any_single_flipped_bit_is_detected(record in any_record(), bit in any::<prop::sample::Index>()) {
            let mut bytes = record.encode().unwrap();
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(record::decode(&bytes).is_err());
        }
    }
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
    let options = crate::StoreOptions { storage: counting.clone(), ..Default::default() };
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

#[test]
fn a_last_write_torn_out_of_order_is_cut_back_whole_but_damage_before_it_is_not() {
    // A power cut during an unsynced multi-record write can persist its later pages and lose
    // an earlier one: the write was never acknowledged, so it is a torn tail, cut as a whole.
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    fill(&store, &[plan("before")], 3);
    let acknowledged = event_ids(&store);
    let batch = (0..3)
        .map(|i| crate::AppendRequest {
            plan_id: plan(&format!("batch-{i}")),
            expected: Expected::Exact(0),
            events: vec![created(), step_completed(1)],
        })
        .collect();
    assert!(store.append_many(batch).iter().all(Result::is_ok));
    drop(store);
    let records = records(dir.path());
    let (first_of_batch, len) = records[3];
    let (last_of_acknowledged, _) = records[2];
    let log = dir.path().join("events.log");
    let original = std::fs::read(&log).unwrap();

    let mut lost_page = original.clone();
    lost_page[first_of_batch as usize..(first_of_batch + len) as usize].fill(0);
    let copy = tempfile::tempdir().unwrap();
    std::fs::write(copy.path().join("events.log"), &lost_page).unwrap();
    let store = FileStore::open(copy.path()).unwrap();
    assert_eq!(event_ids(&store), acknowledged);
    assert_eq!(std::fs::metadata(copy.path().join("events.log")).unwrap().len(), first_of_batch);

    // The same damage one write earlier has a later write after it: that is damage.
    let mut damaged = original.clone();
    damaged[last_of_acknowledged as usize + 20] ^= 0x01;
    let copy = tempfile::tempdir().unwrap();
    std::fs::write(copy.path().join("events.log"), &damaged).unwrap();
    match FileStore::open(copy.path()) {
        Err(FileStoreError::Corrupt { offset, .. }) => assert_eq!(offset, last_of_acknowledged),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_whole_record_this_build_cannot_read_is_reported_never_cut() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    fill(&store, &[plan("old")], 2);
    drop(store);
    // A record from a newer writer: whole and checksummed, in a payload format we do not know.
    let mut frame = raw(3, "newer", "plan_created", 1, b"{}").encode().unwrap();
    frame[crate::record::HEADER_LEN] = 9;
    let crc = crate::crc::extend(crate::crc::checksum(&frame[4..8]), &frame[crate::record::HEADER_LEN..]);
    frame[8..12].copy_from_slice(&crc.to_le_bytes());
    let log = dir.path().join("events.log");
    let offset = std::fs::metadata(&log).unwrap().len();
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&frame);
    std::fs::write(&log, &bytes).unwrap();
    match FileStore::open(dir.path()) {
        Err(FileStoreError::Corrupt { offset: at, detail, .. }) => {
            assert_eq!(at, offset);
            assert!(detail.contains("upgrade Waypoint"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "the record was not cut");
    assert!(matches!(crate::repair(dir.path()), Err(FileStoreError::Repair { .. })));
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "repair did not cut it either");
}
