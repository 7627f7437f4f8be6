//! The rows' view encodings: what the binary one carries, what falls back to JSON, and the pin
//! that says when `PlanView` changed shape (and with it the meaning of binary rows on disk).

use super::*;

/// A compact view with every field set (every `Option` `Some`, every list non-empty), as JSON.
const FULL_VIEW: &str = r#"{"plan_id":"plan-1","version":12,"last_activity_at":"2026-12-07T10:00:00Z","state":{"name":"nightly build","fingerprint":"ab12","source":"plans/build.toml","created_at":"2026-12-07T09:00:00Z","definition":[{"name":"fetch","fingerprint":"cd34"}],"phase":"execute","state":"processing","runner":"waypoint-42","resume":{"last_completed_step":2,"last_checkpoint_id":"d5c3e7d5-8e1c-4fe1-ac3b-c85636dcff20","checkpoints":[{"checkpoint_id":"d5c3e7d5-8e1c-4fe1-ac3b-c85636dcff20","step":2,"decision_id":"decision-2","snapshot_id":"sha256:ef56","artifacts":["out/a.txt"],"name":"build","output":null,"fingerprint":"ef56"}],"completed_steps":[{"name":"build","fingerprint":"ef56"}],"completed_steps_from":1,"total_steps":5,"interrupted":true,"interruption":{"reason":"deploy","at":"2026-12-07T09:30:00Z"},"resume_count":3,"uncertain_step":3,"uncertain_name":"test","uncertain_attempt":2},"last_error":"tests failed","forked_from":{"plan_id":"plan-0","step":2},"approval":{"step":4,"name":"ship","question":"Ship it?","requested_at":"2026-12-07T09:40:00Z","decision":{"approved":true,"by":"cli:ana@host:1","at":"2026-12-07T09:45:00Z","note":"go"}},"pause":{"by":"cli:ana@host:1","reason":"lunch","at":"2026-12-07T09:50:00Z"},"lease":{"runner":"worker-7","expires_at":"2026-12-07T10:05:00Z"},"submission":{"queue":"builds","at":"2026-12-07T08:55:00Z"}}}"#;

fn full_view() -> PlanView {
    serde_json::from_str(FULL_VIEW).expect("the full view parses")
}

#[test]
fn a_view_with_every_field_set_has_a_pinned_binary_encoding() {
    let view = full_view();
    // A field added, removed or renamed shows here first.
    assert_eq!(
        serde_json::to_string(&view).expect("serializes"),
        FULL_VIEW,
        "PlanView changed shape: binary rows written before now no longer mean the same; \
         change FORMAT in catalog.rs, then FULL_VIEW and the pin below"
    );
    let bytes = postcard::to_allocvec(&view).expect("encodes");
    // A field moved or retyped shows here. Pinned for FORMAT 4 (times as integers).
    assert_eq!(
        (FORMAT, bytes.len(), crc::checksum(&bytes)),
        (4, 350, 1_976_842_056),
        "PlanView's binary encoding changed: change FORMAT in catalog.rs, then this pin"
    );
}

#[test]
fn a_view_reads_back_equal_from_its_row_in_either_encoding() {
    let view = full_view();
    let mut binary = Vec::new();
    assert_eq!(encode_view(&mut binary, &view), BINARY_VIEW);
    assert_eq!(decode_view(BINARY_VIEW, &binary).expect("binary decodes"), view);
    let json = serde_json::to_vec(&view).expect("serializes");
    assert_eq!(decode_view(JSON_VIEW, &json).expect("JSON decodes"), view);
    assert!(binary.len() * 2 < json.len(), "binary {} bytes vs JSON {}", binary.len(), json.len());
}

#[test]
fn a_view_s_times_read_back_to_the_nanosecond_in_the_binary_encoding() {
    // Times are integers there (seconds and nanoseconds): before the epoch, with nanoseconds, and
    // far ahead all come back equal, and the view stays binary.
    for at in ["1969-07-20T20:17:40.123456789Z", "2026-12-07T10:00:00.000000001Z", "9999-12-31T23:59:59.999999999Z"] {
        let at: chrono::DateTime<chrono::Utc> = at.parse().expect("a time");
        let mut view = full_view();
        view.last_activity_at = at;
        view.state.created_at = at;
        view.state.lease.as_mut().expect("a lease").expires_at = at;
        let mut binary = Vec::new();
        assert_eq!(encode_view(&mut binary, &view), BINARY_VIEW, "{at}");
        assert_eq!(decode_view(BINARY_VIEW, &binary).expect("decodes"), view, "{at}");
    }
    // JSON keeps RFC 3339 text.
    assert!(serde_json::to_string(&full_view())
        .expect("serializes")
        .contains(r#""created_at":"2026-12-07T09:00:00Z""#));
}

#[test]
fn a_view_the_binary_encoding_cannot_carry_is_kept_in_json() {
    // A step output is any JSON: it has no binary decoding, so the row keeps the view in JSON.
    let mut view = full_view();
    let output = waypoint_domain::StepOutput::new(serde_json::json!({ "rows": [1, 2.5, "x", null] })).expect("small");
    view.state.resume.checkpoints[0].output = Some(output);
    let mut body = Vec::new();
    assert_eq!(encode_view(&mut body, &view), JSON_VIEW);
    assert_eq!(decode_view(JSON_VIEW, &body).expect("decodes"), view);
}

#[test]
fn a_row_of_an_unknown_kind_is_an_error_not_a_view() {
    let error = decode_view(7, b"{}").expect_err("kind 7 is unknown");
    assert!(error.contains("unknown row kind 7"), "{error}");
    assert!(decode_view(BINARY_VIEW, &[0xFF; 3]).is_err());
    assert!(!is_view_row(TOMBSTONE));
}

#[test]
fn a_catalog_of_the_previous_format_is_folded_again_and_replaced_losing_nothing() {
    use crate::test_support::{fill, plan};
    use crate::FileStore;

    let dir = tempfile::tempdir().unwrap();
    let plans: Vec<_> = (0..20).map(|i| plan(&format!("plan-{i}"))).collect();
    let store = FileStore::open(dir.path()).unwrap();
    fill(&store, &plans, 3);
    store.checkpoint().unwrap();
    drop(store);
    // The head as the build before binary rows wrote it: format 2.
    let layout = Layout::new(dir.path());
    let mut head = read_head(&layout).unwrap().expect("a head");
    head.format = FORMAT - 1;
    write_head(&layout, &head).unwrap();
    assert!(read_head(&layout).unwrap().is_none(), "a head of another format is not taken");

    // A reader folds the log instead, and lists every plan.
    let reader = FileStore::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.catalog_snapshot().unwrap().plans.len(), plans.len());
    drop(reader);
    // A writer writes the head anew, in this format, and the rows read back the same plans.
    let writer = FileStore::open(dir.path()).unwrap();
    let listed = writer.catalog_snapshot().unwrap();
    assert_eq!(listed.plans.len(), plans.len());
    assert!(plans.iter().all(|id| listed.plans[id].version == 3));
    drop(writer);
    assert_eq!(read_head(&layout).unwrap().expect("a new head").format, FORMAT);
    let reopened = FileStore::open_read_only(dir.path()).unwrap();
    assert_eq!(reopened.catalog_snapshot().unwrap(), listed);
}

/// A store of two plans of two events each, checkpointed: its catalog rows are on disk.
fn two_plans_checkpointed() -> (tempfile::TempDir, Layout) {
    use crate::test_support::{fill, plan};
    use crate::FileStore;

    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    fill(&store, &[plan("plan-a"), plan("plan-b")], 2);
    store.checkpoint().unwrap();
    drop(store);
    let layout = Layout::new(dir.path());
    (dir, layout)
}

#[test]
fn a_winning_row_whose_plan_id_is_invalid_is_a_typed_error_naming_where() {
    let (_dir, layout) = two_plans_checkpointed();
    let head = read_head(&layout).unwrap().expect("a head");
    let file = head.rows(RowsKind::Open);
    let path = layout.rows(RowsKind::Open, file.generation);
    let mut bytes = std::fs::read(&path).unwrap();
    // The first row: its plan id made invalid (a space), its checksum made to match again.
    let at = FILE_HEADER_LEN;
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    bytes[at + 8 + 6] = b' ';
    let crc = crc::checksum(&bytes[at + 8..at + 8 + len]);
    bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let error = read_rows(&layout, &head, RowsKind::Open).expect_err("an invalid plan id");
    let text = error.to_string();
    assert!(text.contains("a row's plan id is invalid"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[test]
fn versions_read_a_chunk_at_a_time_are_those_of_the_whole_file() {
    use crate::test_support::{fill, plan};
    use crate::FileStore;

    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let plans: Vec<_> = (0..12).map(|i| plan(&format!("plan-{i}"))).collect();
    // Two checkpoints: the later rows of the first plans replace their earlier ones.
    fill(&store, &plans, 2);
    store.checkpoint().unwrap();
    for id in &plans[..5] {
        store
            .append_events(id, eventually::store::Expected::Exact(2), vec![crate::test_support::step_completed(2)])
            .unwrap();
    }
    drop(store);
    let store = FileStore::open(dir.path()).unwrap();
    store.checkpoint().unwrap();
    drop(store);
    let layout = Layout::new(dir.path());
    let head = read_head(&layout).unwrap().expect("a head");
    let whole: HashMap<PlanId, u32> = read_rows(&layout, &head, RowsKind::Open)
        .unwrap()
        .plans
        .into_iter()
        .map(|(id, version, _)| (id, version))
        .collect();
    assert_eq!(whole.len(), 12);
    assert!(whole.values().any(|&v| v > 2), "{whole:?}");
    // Chunks that cut rows anywhere, the file header too: each plan's latest version is known
    // to be its latest, and an older one is not.
    for chunk in [1, 7, 64, 1000, VERSIONS_CHUNK] {
        let versions =
            RowVersions::build(head.open.rows, |visit| each_row_version(&layout, &head, RowsKind::Open, chunk, visit))
                .unwrap();
        for (plan_id, &version) in &whole {
            assert!(versions.is_latest(plan_id, version), "chunk {chunk}: {plan_id} at {version}");
            assert!(!versions.is_latest(plan_id, version - 1), "chunk {chunk}: {plan_id} before {version}");
        }
        assert!(!versions.is_latest(&plan("plan-none"), 1), "chunk {chunk}: a plan without rows");
    }
    // Both files through the head, as a walk reads them.
    let versions = row_versions(&layout, &head).unwrap();
    assert!(whole.iter().all(|(plan_id, &version)| versions.is_latest(plan_id, version)));
}

#[test]
fn row_versions_keep_the_greatest_version_of_a_plan_and_answer_exactly_when_they_say_latest() {
    let ids: Vec<PlanId> = (0..1000).map(|i| PlanId::parse(&format!("plan-{i}")).unwrap()).collect();
    let huge = PlanId::parse("plan-huge").unwrap();
    // Rows in any order, older ones included; a version far past the others' is kept whole.
    let rows = |visit: &mut dyn FnMut(&[u8], u32)| -> Result<(), ()> {
        for (i, id) in ids.iter().enumerate() {
            visit(id.as_str().as_bytes(), 3 + i as u32);
            visit(id.as_str().as_bytes(), 1);
        }
        visit(huge.as_str().as_bytes(), 70_000);
        Ok(())
    };
    // With few buckets (sized for few rows, or for the rows there are: about eight a bucket),
    // some plans share an entry and their answers are "perhaps not"; with many, every answer is
    // exact here. Never a wrong "latest".
    for hint in [0, 10, 2001, 1 << 20] {
        let versions = RowVersions::build(hint, rows).unwrap();
        let exact = ids.iter().enumerate().filter(|(i, id)| versions.is_latest(id, 3 + *i as u32)).count();
        if hint == 1 << 20 {
            assert_eq!(exact, ids.len(), "{hint}");
        } else {
            assert!(exact > ids.len() * 9 / 10, "{hint}: {exact}");
        }
        for (i, id) in ids.iter().enumerate() {
            assert!(!versions.is_latest(id, 1), "{hint}: {id}: an older row");
            assert!(!versions.is_latest(id, 4 + i as u32), "{hint}: {id}: a version past its rows");
        }
        assert!(versions.is_latest(&huge, 70_000), "{hint}");
        assert!(!versions.is_latest(&huge, 70_000 & 0xFFFF), "{hint}: not its version's low bits");
        assert!(!versions.is_latest(&huge, 70_000 & 0x3FF), "{hint}: nor the entries' width of them");
    }
    assert!(!RowVersions::default().is_latest(&ids[0], 1), "empty");
    let none = RowVersions::build(0, |_| Ok::<(), ()>(())).unwrap();
    assert!(!none.is_latest(&ids[0], 1), "built of no rows");

    // Two plans whose hashes share their bucket's and the entry's 16 bits share an entry: the
    // greater version is exact for its plan, and the lesser is "perhaps not", never a wrong "yes".
    let (a, b, other) = (0xABCD_1234_0000_0001u64, 0xABCD_1234_FFFF_FFFFu64, 0x1234_5678_0000_0000u64);
    let shared = RowVersions::build_hashed(3, |visit| -> Result<(), ()> {
        visit(a, 5);
        visit(b, 9);
        visit(other, 2);
        Ok(())
    })
    .unwrap();
    assert!(shared.is_latest_hashed(b, 9) && shared.is_latest_hashed(a, 9), "one entry: 9 is its greatest");
    assert!(!shared.is_latest_hashed(a, 5), "the plan of version 5 shares its entry with one of 9");
    assert!(shared.is_latest_hashed(other, 2), "another entry");
    // A second pass that hands over more rows than the first counted leaves out those its
    // buckets have no room for (here versions of 1 bit: a row of 4 is kept whole, counted or not).
    let mut passes = 0;
    let uneven = RowVersions::build_hashed(2, |visit| -> Result<(), ()> {
        passes += 1;
        visit(a, 1);
        if passes == 2 {
            visit(other, 1);
            visit(b, 4);
        }
        Ok(())
    })
    .unwrap();
    assert!(uneven.is_latest_hashed(a, 1));
    assert!(!uneven.is_latest_hashed(other, 1), "a row not counted is never said to be latest");
    assert!(uneven.is_latest_hashed(b, 4), "a wide row needs no room");
}

#[test]
fn row_versions_pack_entries_as_narrow_as_the_versions_allow() {
    let hashes: Vec<u64> = (0..100_000u64).map(|i| RowVersions::hash(&i.to_le_bytes())).collect();
    let build = |greatest: u32| {
        RowVersions::build_hashed(hashes.len() as u64, |visit| -> Result<(), ()> {
            for (i, &hash) in hashes.iter().enumerate() {
                visit(hash, 1 + i as u32 % greatest);
            }
            Ok(())
        })
        .unwrap()
    };
    // The version field fits all but one row in 64; past 16 bits, the rest are kept whole.
    for (greatest, bits) in [(1, 1), (15, 4), (16, 5), (1023, 10), (1024, 10), (2047, 11), (70_000, 16)] {
        let versions = build(greatest);
        assert_eq!(versions.version_bits, bits, "greatest {greatest}");
        let per_plan = (versions.entries.capacity() + versions.starts.capacity() * 4) as f64 / hashes.len() as f64;
        let packed = f64::from(16 + bits) / 8.0;
        assert!(per_plan < packed + 0.25, "greatest {greatest}: {per_plan} bytes a plan, {packed} packed");
        let wide = hashes.len() / 64;
        let wide = if greatest > 65_535 {
            wide + hashes.len() * (greatest as usize - 65_535) / greatest as usize
        } else {
            wide
        };
        assert!(versions.wide.len() <= wide, "greatest {greatest}: {} kept whole", versions.wide.len());
        let exact = hashes
            .iter()
            .enumerate()
            .filter(|&(i, &hash)| versions.is_latest_hashed(hash, 1 + i as u32 % greatest))
            .count();
        // Hashes shared within a bucket (16 bits of them) make a few answers "perhaps not".
        assert!(exact >= hashes.len() * 998 / 1000, "greatest {greatest}: {exact} exact");
        for (i, &hash) in hashes.iter().enumerate().step_by(97) {
            let version = 1 + i as u32 % greatest;
            assert!(!versions.is_latest_hashed(hash, version + 1), "greatest {greatest}: past its row");
            assert!(
                !versions.is_latest_hashed(hash, version + (1 << bits)),
                "greatest {greatest}: the field's low bits"
            );
        }
    }
}

#[test]
fn row_versions_keep_the_few_wide_versions_whole_and_never_say_an_older_row_is_latest() {
    // 1,000 plans of under 16 events make 4-bit versions; a few plans of thousands of events
    // do not fit them and are kept whole, each by its full hash.
    let hashes: Vec<u64> = (0..1000u64).map(|i| RowVersions::hash(&i.to_le_bytes())).collect();
    let (long, longer, mixed) = (hashes[0], hashes[1], hashes[2]);
    let versions = RowVersions::build_hashed(1000, |visit| -> Result<(), ()> {
        for (i, &hash) in hashes.iter().enumerate().skip(3) {
            visit(hash, 1 + i as u32 % 14);
        }
        visit(long, 5_000);
        visit(longer, 3_000_000);
        // One plan's older row fits an entry, its latest does not.
        visit(mixed, 7);
        visit(mixed, 40);
        Ok(())
    })
    .unwrap();
    assert_eq!(versions.version_bits, 4);
    assert_eq!(versions.wide, {
        let mut wide = vec![(long, 5_000), (longer, 3_000_000), (mixed, 40)];
        wide.sort_unstable();
        wide
    });
    assert!(versions.is_latest_hashed(long, 5_000) && versions.is_latest_hashed(longer, 3_000_000));
    assert!(versions.is_latest_hashed(mixed, 40));
    assert!(!versions.is_latest_hashed(mixed, 7), "an older row in an entry, a later one kept whole");
    assert!(!versions.is_latest_hashed(long, 5_000 & 0xF), "not a wide version's low bits");
    assert!(!versions.is_latest_hashed(long, 4_999) && !versions.is_latest_hashed(long, 5_001));
    assert!(hashes.iter().enumerate().skip(3).all(|(i, &hash)| versions.is_latest_hashed(hash, 1 + i as u32 % 14)));
}

#[test]
fn a_rows_file_cut_inside_its_last_row_is_an_error_read_a_chunk_at_a_time() {
    let (_dir, layout) = two_plans_checkpointed();
    let mut head = read_head(&layout).unwrap().expect("a head");
    // A head that vouches for three bytes fewer than the rows hold.
    head.open.len -= 3;
    for chunk in [5, VERSIONS_CHUNK] {
        let error = each_row_version(&layout, &head, RowsKind::Open, chunk, &mut |_, _| {}).expect_err("cut short");
        assert!(error.to_string().contains("a row is cut short"), "{error}");
    }
}
