//! Step logs on disk: private whatever the umask, never half read, never through a link,
//! damage named with its file, nothing left in `tmp/`, and nothing left of a removed plan.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::Utc;
use eventually::store::Expected;
use waypoint_application::{LogStream, StepLog, STEP_LOG_CAP};
use waypoint_domain::{Attempt, PlanId, StepNumber};

use super::format::{self, Damage, HEADER_LEN};
use crate::layout::Layout;
use crate::test_support::*;
use crate::{FileStore, FileStoreError};

fn log(step: u32, attempt: u32, stream: LogStream, bytes: &[u8], cut: u64) -> StepLog {
    StepLog {
        step: StepNumber::new(step).unwrap(),
        attempt: Attempt::new(attempt).unwrap(),
        stream,
        bytes: bytes.to_vec(),
        cut,
    }
}

/// A store in a fresh directory holding plan `id`.
fn store_with(id: &PlanId) -> (tempfile::TempDir, FileStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("store")).unwrap();
    store.append_events(id, Expected::Exact(0), vec![created()]).unwrap();
    (dir, store)
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

/// Sets the process's umask for as long as it lives. Other tests of this binary may create
/// files meanwhile; the store sets every mode outright, and nothing here relies on the umask.
struct Umask(rustix::fs::Mode);

impl Umask {
    fn set(mask: u32) -> Self {
        Self(rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask)))
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        rustix::process::umask(self.0);
    }
}

#[test]
fn logs_are_0600_in_0700_folders_under_umask_000() {
    let id = plan("private");
    let (_dir, store) = store_with(&id);
    let layout = Layout::new(store.dir());
    {
        let _open = Umask::set(0o000);
        store.write_step_log(&id, &log(1, 1, LogStream::Stdout, b"secret\n", 0)).unwrap();
        store.write_step_log(&id, &log(1, 1, LogStream::Stderr, b"also secret\n", 0)).unwrap();
        store.write_step_log(&id, &log(1, 1, LogStream::Stdout, b"replaced\n", 0)).unwrap();
    }
    assert_eq!(mode(&layout.logs_dir()), 0o700);
    assert_eq!(mode(&layout.plan_logs(&id)), 0o700);
    for stream in LogStream::ALL {
        let path = layout.step_log(&id, StepNumber::FIRST, Attempt::FIRST, stream);
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    for entry in walk(store.dir()) {
        let want = if entry.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&entry), want, "{}", entry.display());
    }
}

#[test]
fn a_reader_sees_one_whole_log_or_the_other_never_a_mix() {
    let id = plan("atomic");
    let (_dir, store) = store_with(&id);
    let long = log(1, 1, LogStream::Stdout, &vec![b'a'; STEP_LOG_CAP], 11);
    let short = log(1, 1, LogStream::Stdout, b"bbbb", 22);
    store.write_step_log(&id, &short).unwrap();
    let reader = FileStore::open_read_only(store.dir()).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let reads = std::thread::scope(|scope| {
        scope.spawn(|| {
            for round in 0..40 {
                store.write_step_log(&id, if round % 2 == 0 { &long } else { &short }).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut reads = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let logs = reader.read_step_logs(&id, None, None).unwrap();
            assert_eq!(logs.len(), 1);
            assert!(
                logs[0] == long || logs[0] == short,
                "a reader saw a log nobody wrote ({} bytes)",
                logs[0].bytes.len()
            );
            reads += 1;
        }
        reads
    });
    assert!(reads > 0);
    assert!(std::fs::read_dir(Layout::new(store.dir()).tmp_dir()).unwrap().next().is_none(), "no temporary left");
}

#[test]
fn concurrent_writes_of_two_plans_and_of_one_log_do_not_collide() {
    let (a, b) = (plan("twin-a"), plan("twin-b"));
    let (_dir, store) = store_with(&a);
    store.append_events(&b, Expected::Exact(0), vec![created()]).unwrap();
    std::thread::scope(|scope| {
        for writer in 0..4u8 {
            let store = &store;
            let id = if writer % 2 == 0 { &a } else { &b };
            scope.spawn(move || {
                for round in 0..25u8 {
                    store.write_step_log(id, &log(1, 1, LogStream::Stdout, &[writer, round], 0)).unwrap();
                }
            });
        }
    });
    for id in [&a, &b] {
        let logs = store.read_step_logs(id, None, None).unwrap();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].bytes[1], 24, "the last write of one of the writers of {id} won");
    }
}

#[test]
fn a_symbolic_link_in_the_logs_is_refused_and_never_followed() {
    let id = plan("linked");
    let (dir, store) = store_with(&id);
    let layout = Layout::new(store.dir());
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::create_dir_all(layout.logs_dir()).unwrap();
    std::os::unix::fs::symlink(&outside, layout.plan_logs(&id)).unwrap();
    let put = store.write_step_log(&id, &log(1, 1, LogStream::Stdout, b"x", 0));
    assert!(matches!(put, Err(FileStoreError::Symlink { .. })), "{put:?}");
    assert!(matches!(store.read_step_logs(&id, None, None), Err(FileStoreError::Symlink { .. })));
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "nothing was written through the link");

    std::fs::remove_file(layout.plan_logs(&id)).unwrap();
    store.write_step_log(&id, &log(1, 1, LogStream::Stderr, b"real", 0)).unwrap();
    let secret = outside.join("secret");
    std::fs::write(&secret, b"not a log").unwrap();
    let planted = layout.step_log(&id, StepNumber::FIRST, Attempt::FIRST, LogStream::Stdout);
    std::os::unix::fs::symlink(&secret, &planted).unwrap();
    let read = store.read_step_logs(&id, None, None);
    assert!(matches!(read, Err(FileStoreError::Symlink { .. })), "a planted log link is not read through: {read:?}");
    store.write_step_log(&id, &log(1, 1, LogStream::Stdout, b"mine", 0)).unwrap();
    assert_eq!(std::fs::read(&secret).unwrap(), b"not a log", "a put replaces the link, never writes through it");
    assert_eq!(store.read_step_logs(&id, None, None).unwrap().len(), 2);
}

/// One kind of damage to a stored log, and the offset its report must name.
type Damaging = (&'static str, fn(&mut Vec<u8>), u64);

#[test]
fn a_damaged_log_is_reported_with_its_file_and_offset() {
    // A file without the magic is a log from before the port (see the legacy test below).
    let cases: [Damaging; 3] = [
        ("shorter than its header", |file| file.truncate(HEADER_LEN - 1), 0),
        (
            "cut short",
            |file| {
                file.pop();
            },
            12,
        ),
        ("a flipped byte", |file| *file.last_mut().unwrap() ^= 1, 20),
    ];
    for (name, damage, offset) in cases {
        let id = plan("damaged");
        let (_dir, store) = store_with(&id);
        store.write_step_log(&id, &log(2, 1, LogStream::Stdout, b"fine", 0)).unwrap();
        store.write_step_log(&id, &log(1, 1, LogStream::Stderr, b"hello\n", 3)).unwrap();
        let path = Layout::new(store.dir()).step_log(&id, StepNumber::FIRST, Attempt::FIRST, LogStream::Stderr);
        let mut file = std::fs::read(&path).unwrap();
        damage(&mut file);
        std::fs::write(&path, &file).unwrap();
        match store.read_step_logs(&id, None, None) {
            Err(FileStoreError::Corrupt { path: reported, offset: at, .. }) => {
                assert_eq!((reported, at), (path.clone(), offset), "{name}")
            }
            other => panic!("{name}: a damaged log is corrupt, got {other:?}"),
        }
        let step_two = store.read_step_logs(&id, StepNumber::new(2).ok(), None).unwrap();
        assert_eq!(step_two.len(), 1, "{name}: other logs still read");
    }
}

#[test]
fn the_header_round_trips_and_checks_itself() {
    for (cut, bytes) in [(0, &b""[..]), (u64::MAX, &b"\0\xff\n"[..]), (7, &vec![9u8; 4096][..])] {
        let file = format::encode(cut, bytes);
        assert_eq!(file.len(), HEADER_LEN + bytes.len());
        assert_eq!(format::decode(&file), Ok((cut, bytes.to_vec())));
    }
    let mut file = format::encode(5, b"abc");
    file[4] ^= 1;
    assert_eq!(format::decode(&file).map_err(|d: Damage| d.offset), Err(20), "the cut is under the checksum");
}

#[test]
fn a_read_only_store_reads_logs_and_writes_none() {
    let id = plan("read-only");
    let (_dir, store) = store_with(&id);
    let written = log(1, 1, LogStream::Stdout, b"out\n", 0);
    store.write_step_log(&id, &written).unwrap();
    let reader = FileStore::open_read_only(store.dir()).unwrap();
    assert_eq!(reader.read_step_logs(&id, None, None).unwrap(), vec![written]);
    let put = reader.write_step_log(&id, &log(1, 2, LogStream::Stdout, b"no\n", 0));
    assert!(matches!(put, Err(FileStoreError::ReadOnly { .. })), "{put:?}");
    assert_eq!(reader.read_step_logs(&id, None, None).unwrap().len(), 1);
}

#[test]
fn files_that_are_not_logs_are_not_read_as_logs() {
    let id = plan("strays");
    let (_dir, store) = store_with(&id);
    store.write_step_log(&id, &log(1, 1, LogStream::Stdout, b"real", 0)).unwrap();
    let folder = Layout::new(store.dir()).plan_logs(&id);
    for stray in ["notes.txt", "01-1.out", "1-1.log"] {
        std::fs::write(folder.join(stray), b"stray").unwrap();
    }
    let logs = store.read_step_logs(&id, None, None).unwrap();
    assert_eq!(logs.iter().map(|l| l.bytes.clone()).collect::<Vec<_>>(), vec![b"real".to_vec()]);
}

/// A writer that keeps putting logs while the plan is removed: every put before the removal
/// lands, every put after it is refused as removed, and nothing of the plan's logs is left.
#[test]
fn logs_written_while_their_plan_is_removed_are_not_left_behind() {
    for round in 0..5 {
        let id = plan(&format!("racing-{round}"));
        let (_dir, store) = store_with(&id);
        store.write_step_log(&id, &log(1, 1, LogStream::Stdout, b"first", 0)).unwrap();
        let writer = FileStore::open(store.dir()).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let written = std::sync::atomic::AtomicUsize::new(0);
        let (removal, refused) = std::thread::scope(|scope| {
            let writes = scope.spawn(|| {
                let mut attempt = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    attempt = attempt % 50 + 1;
                    match writer.write_step_log(&id, &log(1, attempt, LogStream::Stderr, b"racing", 0)) {
                        Ok(()) => {
                            written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(FileStoreError::Removed { .. }) => return Ok(true),
                        Err(other) => return Err(other),
                    }
                }
                Ok(false)
            });
            // The writer is well under way when the removal starts.
            while written.load(std::sync::atomic::Ordering::SeqCst) < 5 && !writes.is_finished() {
                std::thread::yield_now();
            }
            let removal = store.remove_plan_events(&[(id.clone(), 1)], Utc::now(), "archive");
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            (removal, writes.join().unwrap())
        });
        assert_eq!(removal.unwrap().removed, vec![id.clone()]);
        refused.expect("a put racing a removal is stored or refused as removed");
        assert!(!Layout::new(store.dir()).plan_logs(&id).exists(), "round {round}: the removed plan's logs are gone");
        assert!(store.read_step_logs(&id, None, None).unwrap().is_empty());
        let late = writer.write_step_log(&id, &log(2, 1, LogStream::Stdout, b"late", 0));
        assert!(matches!(late, Err(FileStoreError::Removed { .. })), "{late:?}");
    }
}

#[test]
fn a_log_written_beside_the_store_before_the_port_reads_as_raw_bytes_within_the_cap() {
    assert_eq!(format::decode(b""), Ok((0, Vec::new())), "an empty stream");
    assert_eq!(format::decode(b"hello\n"), Ok((0, b"hello\n".to_vec())));
    let marked = b"[waypoint: 4096 earlier bytes cut; only the last 1 MiB is kept]\ntail\n";
    assert_eq!(format::decode(marked), Ok((4096, b"tail\n".to_vec())), "the old cut marker becomes the cut");
    let long = vec![b'x'; STEP_LOG_CAP + 10];
    let (cut, kept) = format::decode(&long).unwrap();
    assert_eq!((cut, kept.len()), (10, STEP_LOG_CAP), "an old log of up to 2 MiB is kept within the cap");
}
