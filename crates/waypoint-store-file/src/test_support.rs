//! Helpers shared by the unit tests: events, filled stores, and a store's bytes (copied,
//! snapshotted, split into records, or extended with hand-made records).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use eventually::store::Expected;
use waypoint_application::domain::{DecisionId, StepNumber};
use waypoint_application::RecordedEvent;
use waypoint_domain::{EventId, PlanEvent, PlanId};

use crate::layout::Layout;
use crate::record::RawRecord;
use crate::FileStore;
pub(crate) use waypoint_application::testkit::{all_events, plan_created as created};

pub(crate) fn plan(id: &str) -> PlanId {
    PlanId::parse(id).expect("valid plan id")
}

pub(crate) fn runner() -> waypoint_domain::RunnerId {
    waypoint_domain::RunnerId::parse("test-runner").expect("valid runner id")
}

/// The log of the store in `dir`.
pub(crate) fn log_of(dir: &Path) -> PathBuf {
    Layout::new(dir).log()
}

/// Every directory and file under `dir`, `dir` included.
pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
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

pub(crate) fn step_completed(n: u32) -> RecordedEvent {
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
pub(crate) fn fill(store: &FileStore, plans: &[PlanId], per_plan: u32) {
    for n in 1..=per_plan {
        for id in plans {
            let event = if n == 1 { created() } else { step_completed(n - 1) };
            store.append_events(id, Expected::Exact(n - 1), vec![event]).unwrap();
        }
    }
}

/// Every file under `dir` with its bytes: a store's complete on-disk state.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for path in walk(dir) {
        if path.is_file() {
            out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
        }
    }
    out
}

/// A fresh copy of a store directory's log (and nothing derived) in a new temp dir.
pub(crate) fn copy_log(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    std::fs::copy(log_of(from), log_of(to.path())).unwrap();
    to
}

/// (offset, length) of every record, in log order.
pub(crate) fn records(dir: &Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(log_of(dir)).unwrap();
    let mut at = crate::log::FIRST_RECORD as usize;
    let mut out = Vec::new();
    while at < bytes.len() {
        let (_, len) = crate::record::decode(&bytes[at..]).unwrap();
        out.push((at as u64, len as u64));
        at += len;
    }
    out
}

pub(crate) fn event_ids(store: &FileStore) -> Vec<EventId> {
    store.read_all(1).unwrap().map(|e| e.unwrap().event_id).collect()
}

/// Appends a hand-made record to the end of a store's log.
pub(crate) fn append_raw(dir: &Path, raw: RawRecord) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(log_of(dir)).unwrap();
    file.write_all(&raw.encode().unwrap()).unwrap();
}

/// A hand-made record: version 1 of `plan_id`, at global `position`.
pub(crate) fn raw(position: u32, plan_id: &str, event_type: &str, schema_version: u16, data: &[u8]) -> RawRecord {
    RawRecord {
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
