//! Opening a damaged log: a torn last write is cut back (its bytes kept aside), damage anywhere
//! else is a typed error naming the offset, and neither a failed nor a read-only open changes a
//! byte.

use eventually::store::Expected;

use crate::layout::Layout;
use crate::test_support::*;
use crate::{AppendRequest, FileStore, FileStoreError};

#[test]
fn a_torn_tail_is_cut_back_to_the_last_whole_record_at_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    fill(&store, &[plan("torn")], 6);
    let ids = event_ids(&store);
    drop(store);
    let records = records(dir.path());
    let len = std::fs::metadata(log_of(dir.path())).unwrap().len();
    let (second_last, _) = records[records.len() - 2];
    for cut in second_last..len {
        let whole = records.iter().filter(|(offset, rec_len)| offset + rec_len <= cut).count();
        for zero_fill in [false, true] {
            let copy = copy_log(dir.path());
            let log = log_of(copy.path());
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
            let torn: Vec<_> =
                std::fs::read_dir(Layout::new(copy.path()).torn_dir()).map(|d| d.count()).into_iter().collect();
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
            let log = log_of(copy.path());
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

/// What opening a damaged log must do.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A torn last write: cut the log back to where record `n` starts (or to its old end if
    /// there is no record `n`), keeping every record before it.
    CutBackTo(usize),
    /// Damage: a typed error naming where record `n` starts, and the log left as it was.
    CorruptAt(usize),
}

/// One kind of damage to a log's bytes, given where each record lies.
type Damage = fn(Vec<u8>, &[(u64, u64)]) -> Vec<u8>;

/// A power cut during an unsynced multi-record write can persist its later pages and lose an
/// earlier one: the write was never acknowledged, so it is a torn tail, cut as a whole.
fn lose_the_first_page_of_the_last_write(mut log: Vec<u8>, records: &[(u64, u64)]) -> Vec<u8> {
    let (first_of_batch, len) = records[3];
    log[first_of_batch as usize..(first_of_batch + len) as usize].fill(0);
    log
}

/// The same damage one write earlier has a later write after it: that is damage.
fn flip_a_byte_in_the_write_before_the_last(mut log: Vec<u8>, records: &[(u64, u64)]) -> Vec<u8> {
    log[records[2].0 as usize + 20] ^= 0x01;
    log
}

fn flip_a_byte_in_the_first_record(mut log: Vec<u8>, records: &[(u64, u64)]) -> Vec<u8> {
    log[records[0].0 as usize + 5] ^= 0x5A;
    log
}

fn cut_the_last_record_short(mut log: Vec<u8>, records: &[(u64, u64)]) -> Vec<u8> {
    let (last, len) = records[records.len() - 1];
    log.truncate((last + len / 2) as usize);
    log
}

/// Some file systems leave the tail of an interrupted write allocated but zeroed.
fn append_zeros(mut log: Vec<u8>, _: &[(u64, u64)]) -> Vec<u8> {
    log.extend_from_slice(&[0; 64]);
    log
}

#[test]
fn each_kind_of_log_damage_is_cut_back_or_reported_as_the_table_says() {
    // Records 0..=2 are three acknowledged writes; records 3..=8 are one last write of six.
    let table: [(&str, Damage, Expect); 5] = [
        ("a lost first page of the last write", lose_the_first_page_of_the_last_write, Expect::CutBackTo(3)),
        ("a flipped byte in the write before the last", flip_a_byte_in_the_write_before_the_last, Expect::CorruptAt(2)),
        ("a flipped byte in the first record", flip_a_byte_in_the_first_record, Expect::CorruptAt(0)),
        ("the last record cut short", cut_the_last_record_short, Expect::CutBackTo(8)),
        ("zeros after the last record", append_zeros, Expect::CutBackTo(9)),
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    fill(&store, &[plan("before")], 3);
    let batch = (0..3)
        .map(|i| AppendRequest {
            plan_id: plan(&format!("batch-{i}")),
            expected: Expected::Exact(0),
            events: vec![created(), step_completed(1)],
        })
        .collect();
    assert!(store.append_many(batch).iter().all(Result::is_ok));
    let ids = event_ids(&store);
    drop(store);
    let records = records(dir.path());
    let original = std::fs::read(log_of(dir.path())).unwrap();
    for (name, damage, expect) in table {
        let bytes = damage(original.clone(), &records);
        open_damaged(name, &bytes, expect, &records, &ids, original.len() as u64);
    }
}

/// The driver: writes `bytes` as a store's log and checks a read-only and a writable open.
fn open_damaged(
    name: &str,
    bytes: &[u8],
    expect: Expect,
    records: &[(u64, u64)],
    ids: &[waypoint_domain::EventId],
    old_end: u64,
) {
    let copy = tempfile::tempdir().unwrap();
    let log = log_of(copy.path());
    std::fs::write(&log, bytes).unwrap();
    match expect {
        Expect::CorruptAt(n) => {
            for open in [FileStore::open, FileStore::open_read_only] {
                match open(copy.path()) {
                    Err(FileStoreError::Corrupt { offset, .. }) => assert_eq!(offset, records[n].0, "{name}"),
                    other => panic!("{name}: expected Corrupt, got {other:?}"),
                }
            }
            assert_eq!(std::fs::read(&log).unwrap(), bytes, "{name}: a failed open changed the log");
        }
        Expect::CutBackTo(n) => {
            let read_only = FileStore::open_read_only(copy.path()).unwrap();
            assert_eq!(event_ids(&read_only), ids[..n], "{name}: read-only");
            drop(read_only);
            assert_eq!(std::fs::read(&log).unwrap(), bytes, "{name}: a read-only open cut the log");
            let store = FileStore::open(copy.path()).unwrap();
            assert_eq!(event_ids(&store), ids[..n], "{name}");
            let kept = records.get(n).map_or(old_end, |(offset, _)| *offset);
            assert_eq!(std::fs::metadata(&log).unwrap().len(), kept, "{name}");
        }
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
    let log = log_of(dir.path());
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
fn a_long_lived_read_only_store_keeps_no_memory_per_event_it_catches_up_on() {
    let dir = tempfile::tempdir().unwrap();
    let options = crate::StoreOptions { checkpoint_every: 8, ..Default::default() };
    let writer = FileStore::open_with(dir.path(), options.clone()).unwrap();
    fill(&writer, &[plan("first")], 2);
    let reader = FileStore::open_read_only_with(dir.path(), options).unwrap();
    let plans: Vec<_> = (0..5).map(|i| plan(&format!("p{i}"))).collect();
    let mut most = 0;
    for round in 1..=40 {
        for id in &plans {
            writer
                .append_events(
                    id,
                    Expected::Exact(round - 1),
                    vec![if round == 1 { created() } else { step_completed(round - 1) }],
                )
                .unwrap();
        }
        assert_eq!(reader.catalog_snapshot().unwrap().plans.len(), 6);
        most = most.max(reader.shared.lock_state().tail_len);
    }
    // 200 events caught up on; the tail never holds more than a few checkpoint intervals.
    assert!(most <= 4 * 8 + 8, "the reader's tail grew to {most} records");
    assert_eq!(reader.summary_view(&plans[0]).unwrap().unwrap().version, 40);
}

#[test]
fn a_reader_never_waits_for_a_writer_stopped_in_the_middle_of_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let writer = FileStore::open(dir.path()).unwrap();
    fill(&writer, &[plan("before")], 2);
    // A writer stopped (SIGSTOP) while it holds the write lock, with half a record written.
    let held = std::fs::File::options().read(true).write(true).open(dir.path().join("write.lock")).unwrap();
    held.lock().unwrap();
    let bytes = crate::test_support::raw(3, "after", "plan_created", 2, b"{}").encode().unwrap();
    {
        use std::io::Write;
        let mut log = std::fs::File::options().append(true).open(log_of(dir.path())).unwrap();
        log.write_all(&bytes[..bytes.len() / 2]).unwrap();
    }
    let options = crate::StoreOptions { lock_timeout: std::time::Duration::from_secs(30), ..Default::default() };
    let started = std::time::Instant::now();
    let reader = FileStore::open_read_only_with(dir.path(), options).unwrap();
    let listed: Vec<String> =
        reader.catalog_snapshot().unwrap().plans.keys().map(|id| id.as_str().to_owned()).collect();
    assert_eq!(listed, ["before"], "the whole records are read; the half-written one is not");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "no wait for the stopped writer");
    drop(held);
}

#[test]
fn a_read_only_open_decodes_no_record_of_a_plan_it_is_not_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let options = crate::StoreOptions { checkpoint_every: 1_000, ..Default::default() };
    let writer = FileStore::open_with(dir.path(), options.clone()).unwrap();
    fill(&writer, &[plan("asked")], 3);
    writer.checkpoint().unwrap();
    // New plans after the checkpoint: their first records are the tail.
    let others: Vec<_> = (0..50).map(|i| plan(&format!("other-{i}"))).collect();
    fill(&writer, &others, 2);
    drop(writer);

    // A writer starts the views of the tail's new plans, for the checkpoint it will write.
    let writable = FileStore::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(writable.shared.lock_state().summaries.len(), others.len());
    drop(writable);

    // A reader writes no checkpoint: it decodes none of them, and still answers for any plan.
    let reader = FileStore::open_read_only_with(dir.path(), options).unwrap();
    assert_eq!(reader.shared.lock_state().tail_len, 100);
    assert!(reader.shared.lock_state().summaries.is_empty(), "a read-only open decoded other plans' records");
    assert_eq!(reader.summary_view(&plan("asked")).unwrap().unwrap().version, 3);
    assert_eq!(reader.summary_view(&others[7]).unwrap().unwrap().version, 2);
    assert_eq!(reader.catalog_snapshot().unwrap().plans.len(), 51);
}
