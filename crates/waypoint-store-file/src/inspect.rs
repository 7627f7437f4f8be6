//! Read-only access to the store's files as they are on disk, for replay and verification
//! tooling (`cargo xtask replay --verify`): rebuild projections from the log and compare them
//! with the stored ones. Nothing here writes a byte.
//!
//! - [`events`]: every stored event in log order with its file and byte offset, streamed in flat
//!   memory (one read buffer, whatever the log's size).
//! - [`stored_catalog`]: the checkpointed catalog as stored (it may lag the log: compare it with
//!   a replay of the events up to its `position`).
//! - [`plan_index`]: a plan's stored offset index, entry per version.
//! - [`plan_view_snapshot`]: a plan's stored full-view snapshot, if one was written.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use waypoint_application::{PlanView, StoredEvent};
use waypoint_domain::PlanId;

use crate::binding::{StoreId, FILE_HEADER_LEN};
use crate::error::FileStoreError;
pub use crate::index::IndexEntry;
use crate::index::{self as plan_index_file, ENTRY_LEN};

const INDEX_HEADER_LEN: u64 = FILE_HEADER_LEN as u64;
use crate::layout::Layout;
use crate::log::{self, RecordReader, FIRST_RECORD};
pub use crate::projections::StoredCatalog;
use crate::{fsutil, projections};

/// One stored event and where it lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedEvent {
    /// The log the event was read from (shared by every event of the stream, not copied).
    pub file: Arc<Path>,
    /// Where its record starts in that file.
    pub offset: u64,
    /// The schema version as stored, before upcasting: replay statistics count old versions.
    pub schema_version: u16,
    /// The event, upcast to the current schema, as the store hands it to readers.
    pub event: StoredEvent,
}

/// Streams the events of a store in log order. Holds the store lock shared, so `repair` cannot
/// change the log underneath; reads up to the log's end as it was when created.
#[derive(Debug)]
pub struct Events {
    path: Arc<Path>,
    reader: Option<RecordReader>,
    _store_lock: Option<File>,
}

impl Iterator for Events {
    /// A damaged record (or a torn last record) is reported once, as an error, and ends the
    /// iteration; so is an event whose type or schema version this build cannot decode.
    type Item = Result<LocatedEvent, FileStoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let path = &self.path;
        // Decoded straight from the read buffer: no copy of the record's data or texts.
        let item = self.reader.as_mut()?.next_with(|offset, raw| {
            let schema_version = raw.schema_version;
            log::to_stored_ref(path, offset, raw).map(|event| LocatedEvent {
                file: path.clone(),
                offset,
                schema_version,
                event,
            })
        })?;
        let result = match item {
            Err(e) => Err(e),
            Ok(Err(bad)) => Err(FileStoreError::corrupt(&*self.path, bad.offset, bad.error.to_string())),
            Ok(Ok(located)) => located,
        };
        if result.is_err() {
            self.reader = None;
        }
        Some(result)
    }
}

/// Every event in the store at `dir`, in log order, with its location.
pub fn events(dir: impl AsRef<Path>) -> Result<Events, FileStoreError> {
    let layout = Layout::new(dir.as_ref());
    let dir = layout.dir();
    if !dir.is_dir() {
        return Err(FileStoreError::NotFound { path: dir.to_path_buf() });
    }
    let store_lock = fsutil::open_existing_read_only(&layout.store_lock())?;
    if let Some(lock) = &store_lock {
        lock.try_lock_shared().map_err(|_| FileStoreError::Locked {
            path: dir.to_path_buf(),
            detail: "being repaired by another process",
        })?;
    }
    let path = layout.log();
    // Writers hold write.lock from write to fdatasync: under it shared, the log ends on a whole,
    // durable record (unless a crash left a torn tail, which is then reported).
    let write_lock = fsutil::open_existing_read_only(&layout.write_lock())?;
    if let Some(lock) = &write_lock {
        fsutil::lock_bounded(lock, &layout.write_lock(), false, crate::StoreOptions::default().lock_timeout)?;
    }
    let len = fsutil::open_existing_read_only(&path)?
        .map(|file| file.metadata().map(|m| (file, m.len())))
        .transpose()
        .map_err(|e| FileStoreError::io("cannot read the log's size", &path, e));
    if let Some(lock) = &write_lock {
        let _ = lock.unlock();
    }
    let reader = match len? {
        Some((file, len)) => {
            log::check_file_header(&file, &path, len)?;
            let holes = crate::retention::all_holes(dir)?;
            Some(RecordReader::new(Arc::new(file), path.clone(), FIRST_RECORD, len).skipping(holes))
        }
        None => None,
    };
    Ok(Events { path: path.into(), reader, _store_lock: store_lock })
}

/// Where the log lives, whether or not it exists.
pub fn log_file(dir: impl AsRef<Path>) -> PathBuf {
    Layout::new(dir.as_ref()).log()
}

/// Where the catalog checkpoint lives, whether or not it exists.
pub fn catalog_file(dir: impl AsRef<Path>) -> PathBuf {
    Layout::new(dir.as_ref()).checkpoint()
}

/// Where `plan_id`'s index lives, whether or not it exists.
pub fn index_file(dir: impl AsRef<Path>, plan_id: &PlanId) -> PathBuf {
    Layout::new(dir.as_ref()).plan_index(plan_id)
}

/// Where `plan_id`'s view snapshot lives, whether or not it exists.
pub fn view_file(dir: impl AsRef<Path>, plan_id: &PlanId) -> PathBuf {
    Layout::new(dir.as_ref()).view(plan_id)
}

/// The store's id, from the first record of its log; `None` while it has none.
fn store_id(layout: &Layout) -> Result<Option<StoreId>, FileStoreError> {
    let path = layout.log();
    let Some(file) = fsutil::open_existing_read_only(&path)? else { return Ok(None) };
    let len = file.metadata().map_err(|e| FileStoreError::io("cannot read the log's size", &path, e))?.len();
    if len <= FIRST_RECORD {
        return Ok(None);
    }
    Ok(log::read_record_with_crc(&file, &path, FIRST_RECORD, len)
        .ok()
        .map(|(raw, _, crc)| StoreId::new(*raw.event_id.as_bytes(), crc)))
}

/// What lies in `catalog.ckpt`, as verification sees it.
#[derive(Debug)]
pub enum CatalogFile {
    /// No checkpoint was written yet (or `repair` removed it): opens fold the whole log.
    Missing,
    /// A one-document catalog of the layout before ADR 0009: ignored, replaced on the next write.
    OlderLayout,
    /// A checkpoint head of another store: ignored, never trusted.
    Foreign,
    /// Not a whole checkpoint (bad frame or checksum).
    Damaged,
    /// A whole checkpoint head of this store, with the rows it vouches for.
    Ours(Box<StoredCatalog>),
}

/// Reads `catalog.ckpt` and says what it is.
pub fn catalog_file_state(dir: impl AsRef<Path>) -> Result<CatalogFile, FileStoreError> {
    let layout = Layout::new(dir.as_ref());
    let path = layout.checkpoint();
    let bytes = match fsutil::read_file(&path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(CatalogFile::Missing),
        Err(e) => return Err(FileStoreError::io("cannot read the catalog checkpoint", &path, e)),
    };
    if bytes.starts_with(b"WPCK") {
        return Ok(CatalogFile::OlderLayout);
    }
    let store = store_id(&layout)?;
    match crate::catalog::read_head(&layout)? {
        None => Ok(CatalogFile::Damaged),
        Some(head) if Some(head.store) != store => Ok(CatalogFile::Foreign),
        Some(_) => match projections::read_stored_catalog(&layout, store)? {
            Some(catalog) => Ok(CatalogFile::Ours(Box::new(catalog))),
            None => Ok(CatalogFile::Damaged),
        },
    }
}

/// Whether a derived file is of the layout before ADR 0009 (an index without its header, a
/// view snapshot without its binding): the store ignores it and replaces it on the next write.
pub fn is_older_layout(path: &Path) -> bool {
    let Ok(Some(bytes)) = fsutil::read_file(path) else { return false };
    match path.extension().and_then(|e| e.to_str()) {
        Some("idx") => !bytes.starts_with(b"WPIX") && bytes.len() % 16 == 0,
        Some("view") => bytes.starts_with(b"WPVW"),
        _ => false,
    }
}

/// The catalog as stored at the checkpoint (head and rows), or `None` if there is none of this
/// store (the store ignores a damaged or foreign one and folds the log instead).
pub fn stored_catalog(dir: impl AsRef<Path>) -> Result<Option<StoredCatalog>, FileStoreError> {
    let layout = Layout::new(dir.as_ref());
    projections::read_stored_catalog(&layout, store_id(&layout)?)
}

/// `plan_id`'s stored index: element `v - 1` is the entry for version `v`, `None` where the
/// entry is missing. The store checks every entry against the log before trusting it.
pub fn plan_index(dir: impl AsRef<Path>, plan_id: &PlanId) -> Result<Vec<Option<IndexEntry>>, FileStoreError> {
    let layout = Layout::new(dir.as_ref());
    let Some(store) = store_id(&layout)? else { return Ok(Vec::new()) };
    let path = layout.plan_index(plan_id);
    let len = match std::fs::metadata(&path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FileStoreError::io("cannot read a plan index", &path, e)),
    };
    let count = (len.saturating_sub(INDEX_HEADER_LEN) / ENTRY_LEN) as u32;
    if count == 0 {
        return Ok(Vec::new());
    }
    plan_index_file::read_entries(&layout, &store, plan_id, 1, count)
}

/// `plan_id`'s stored full-view snapshot, if one was written and is intact.
pub fn plan_view_snapshot(dir: impl AsRef<Path>, plan_id: &PlanId) -> Result<Option<PlanView>, FileStoreError> {
    projections::read_view_file(&Layout::new(dir.as_ref()), plan_id)
}
