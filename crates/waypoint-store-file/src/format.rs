//! Every magic number of the store's files, in one place, as `layout.rs` is for their names:
//! the first bytes that say what a file (or a record) is, so a stray or misplaced file is never
//! mistaken for another. Part of the on-disk format: `format/tests.rs` pins every value.

/// Opens every log file (`events.log`), so a stray file is not mistaken for a store.
pub const LOG_FILE_HEADER: [u8; 8] = *b"WPTLOG01";
/// Starts every record of the log. `0xFF` never occurs in UTF-8, so JSON data cannot imitate it.
pub const RECORD_MAGIC: [u8; 4] = [0xFF, b'W', b'P', b'R'];
/// The checkpoint head (`catalog.ckpt`).
pub(crate) const CATALOG_HEAD_MAGIC: [u8; 4] = *b"WPC2";
/// A catalog rows file (`catalog/…`).
pub(crate) const CATALOG_ROWS_MAGIC: [u8; 4] = *b"WPRS";
/// A catalog order file (`catalog/….order`): a rows file's order by last activity.
pub(crate) const CATALOG_ORDER_MAGIC: [u8; 4] = *b"WPCO";
/// Ends each sorted run of a catalog order file.
pub(crate) const CATALOG_ORDER_RUN_MAGIC: [u8; 4] = *b"WPCR";
/// A plan's index of offsets (`index/…`).
pub(crate) const INDEX_MAGIC: [u8; 4] = *b"WPIX";
/// A plan's full-view snapshot (`views/….view`).
pub(crate) const VIEW_MAGIC: [u8; 4] = *b"WPV2";
/// A plan's compact-view snapshot (`views/….sum`).
pub(crate) const SUMMARY_MAGIC: [u8; 4] = *b"WPS2";
/// Retention's commit log.
pub(crate) const RETENTION_COMMIT_MAGIC: [u8; 4] = *b"WPRC";
/// A retention batch file.
pub(crate) const RETENTION_BATCH_MAGIC: [u8; 4] = *b"WPRB";
/// A tombstone bucket (`removed/…`).
pub(crate) const TOMBSTONE_MAGIC: [u8; 4] = *b"WPRT";
/// A step log (`logs/<plan>/…`).
pub(crate) const STEP_LOG_MAGIC: [u8; 4] = *b"WPSL";

#[cfg(test)]
mod tests;
