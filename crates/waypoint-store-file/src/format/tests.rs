//! The magic numbers are part of the on-disk format: pinned here, and never two alike.

use super::*;

#[test]
fn every_magic_is_pinned_and_distinct() {
    let magics: [(&str, [u8; 4]); 12] = [
        ("record", RECORD_MAGIC),
        ("catalog head", CATALOG_HEAD_MAGIC),
        ("catalog rows", CATALOG_ROWS_MAGIC),
        ("index", INDEX_MAGIC),
        ("view", VIEW_MAGIC),
        ("summary", SUMMARY_MAGIC),
        ("retention commit", RETENTION_COMMIT_MAGIC),
        ("retention batch", RETENTION_BATCH_MAGIC),
        ("tombstones", TOMBSTONE_MAGIC),
        ("step log", STEP_LOG_MAGIC),
        ("catalog order", CATALOG_ORDER_MAGIC),
        ("catalog order run", CATALOG_ORDER_RUN_MAGIC),
    ];
    let pinned: Vec<&[u8]> = magics.iter().map(|(_, m)| &m[..]).collect();
    assert_eq!(
        pinned,
        [
            &[0xFF, b'W', b'P', b'R'][..],
            b"WPC2",
            b"WPRS",
            b"WPIX",
            b"WPV2",
            b"WPS2",
            b"WPRC",
            b"WPRB",
            b"WPRT",
            b"WPSL",
            b"WPCO",
            b"WPCR"
        ]
    );
    let mut distinct = pinned.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), magics.len(), "no two kinds of file share a magic");
    assert_eq!(&LOG_FILE_HEADER, b"WPTLOG01");
}
