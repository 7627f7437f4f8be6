//! The derived data, each a cache checked against the log before it is trusted and rebuilt from
//! it when stale (ADR 0009): the checkpoint (head, plan indexes, compact-view snapshots and the
//! catalog's rows), a plan's version and records through its index, its full and compact views
//! from their snapshots, and listings from the rows plus the records after the checkpoint.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::TryLockError;

use serde::{Deserialize, Serialize};
use waypoint_application::{listing_order, Catalog, CatalogCursor, CatalogQuery, PlanView, StoredEvent};
use waypoint_domain::PlanId;

use crate::binding::{self, Binding, Check, StoreId};
use crate::catalog::{self, Head, NewRow};
use crate::error::FileStoreError;
use crate::index::{self, IndexEntry};
use crate::layout::{Layout, RowsKind};
use crate::log::{self, RecordReader, FIRST_RECORD};
use crate::state::{Shared, State};
use crate::{frame, fsutil, order};

use crate::format::{SUMMARY_MAGIC, VIEW_MAGIC};

/// The catalog as stored at a checkpoint: the head's position and the latest row of every plan
/// (for verification and inspection; the store itself never loads it whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCatalog {
    /// The global position of the last record the checkpoint folded in; records after it are
    /// not in this catalog.
    pub position: u32,
    /// The log offset just past that record, where the catch-up of an open starts.
    pub end: u64,
    /// The log offset where that record starts; the head is trusted only if a whole record of
    /// that position and checksum lies there.
    pub last_offset: u64,
    /// Every plan's compact view as of `position`: each plan's latest row.
    pub catalog: Catalog,
    /// Every plan's version at `position`, from its row.
    pub versions: HashMap<PlanId, u32>,
}

/// Every plan's version as a store handle saw it (`FileStore::plan_versions`), small enough for
/// a million plans: the plans of the log's tail exactly, the others by their greatest row in the
/// catalog (`catalog::RowVersions`, about 2.6 bytes a plan).
#[derive(Debug)]
pub struct PlanVersions {
    rows: catalog::RowVersions,
    tail: HashMap<PlanId, u32>,
}

impl PlanVersions {
    /// Whether `version` is certainly `plan_id`'s version: no event of the plan is later. `false`
    /// when one is, and (rarely: a plan whose id shares its hash's bits with one of a greater
    /// version) when the catalog cannot tell; the plan's index can.
    pub fn is_latest(&self, plan_id: &PlanId, version: u32) -> bool {
        match self.tail.get(plan_id) {
            Some(&tail) => tail == version,
            None => self.rows.is_latest(plan_id, version),
        }
    }
}

/// A view snapshot as stored: bound to its store and to the record of the version it is at.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bound<V> {
    store: StoreId,
    at: Binding,
    view: V,
}

/// Where one version of a plan lies in the log.
#[derive(Debug, Clone, Copy)]
struct Location {
    version: u32,
    position: u32,
    offset: u64,
    crc: u32,
}

impl Location {
    fn binding(&self) -> Binding {
        Binding { position: self.position, offset: self.offset, crc: self.crc }
    }
}

/// Which snapshot of a plan's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Snapshot {
    /// `views/<plan>.view`: the full view, written when loading it folded many events.
    Full,
    /// `views/<plan>.sum`: the compact view, kept current by checkpoints.
    Summary,
}

impl Snapshot {
    fn path(self, layout: &Layout, plan_id: &PlanId) -> std::path::PathBuf {
        match self {
            Snapshot::Full => layout.view(plan_id),
            Snapshot::Summary => layout.summary(plan_id),
        }
    }

    fn magic(self) -> [u8; 4] {
        match self {
            Snapshot::Full => VIEW_MAGIC,
            Snapshot::Summary => SUMMARY_MAGIC,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Snapshot::Full => "a view snapshot",
            Snapshot::Summary => "a summary snapshot",
        }
    }
}

/// Reads the checkpoint head and every row it vouches for; `None` without a head of this store.
pub(crate) fn read_stored_catalog(
    layout: &Layout,
    store: Option<StoreId>,
) -> Result<Option<StoredCatalog>, FileStoreError> {
    let Some(head) = catalog::read_head(layout)? else { return Ok(None) };
    if Some(head.store) != store {
        return Ok(None);
    }
    let mut catalog = Catalog { plans: HashMap::new(), position: head.position() };
    let mut versions = HashMap::new();
    for kind in [RowsKind::Open, RowsKind::Done] {
        for (plan_id, version, view) in catalog::read_rows(layout, &head, kind)?.into_rows() {
            if let Some(view) = view {
                if versions.get(&plan_id).is_none_or(|&v| v < version) {
                    versions.insert(plan_id.clone(), version);
                    catalog.plans.insert(plan_id, view);
                }
            }
        }
    }
    Ok(Some(StoredCatalog {
        position: head.position(),
        end: head.end,
        last_offset: head.last.offset,
        catalog,
        versions,
    }))
}

/// Reads a plan's full-view snapshot as stored, without checking its binding; `None` if
/// missing or damaged.
pub(crate) fn read_view_file(layout: &Layout, plan_id: &PlanId) -> Result<Option<PlanView>, FileStoreError> {
    let path = layout.view(plan_id);
    match fsutil::read_file(&path) {
        Ok(bytes) => Ok(bytes.and_then(|b| frame::decode::<Bound<PlanView>>(VIEW_MAGIC, &b)).map(|b| b.view)),
        Err(e) => Err(FileStoreError::io("cannot read a plan view snapshot", &path, e)),
    }
}

impl Shared {
    /// The plan's version as this process sees the log: from the tail, else from the end of its
    /// index (the version at the checkpoint). An index that vouches for a record the log does
    /// not hold is damage.
    pub(crate) fn current_version(&self, state: &mut State, plan_id: &PlanId) -> Result<u32, FileStoreError> {
        // A removed plan's index is deleted, and this process forgets it once it sees the
        // removal; until the removal finishes, its leftovers are not believed.
        if self.lock_retention().hides_row(plan_id) {
            return Ok(0);
        }
        if let Some(tail) = state.tail.get(plan_id) {
            return Ok(tail.last_version());
        }
        if let Some(&version) = state.known.get(plan_id) {
            return Ok(version);
        }
        let Some(store) = state.store else { return Ok(0) };
        let upto = state.base.as_ref().map_or(0, Head::position);
        let (last, beyond) = index::last_entry(&self.layout, &store, plan_id, upto)?;
        if let (Some(beyond), Some(file)) = (beyond, &self.log) {
            let what = format!("index/{plan_id}.idx");
            let vouched = Binding { position: beyond.position, offset: beyond.offset, crc: beyond.crc };
            if binding::check(file, &self.log_path, &vouched, state.end, &what)? != Check::Newer {
                return Err(FileStoreError::corrupt(
                    self.layout.plan_index(plan_id),
                    0,
                    format!(
                        "it vouches for plan {plan_id} version {} at log position {}, which the log does not hold there; records were lost",
                        beyond.version, beyond.position
                    ),
                ));
            }
        }
        let version = last.map_or(0, |e| e.version);
        state.known.insert(plan_id.clone(), version);
        state.trim_caches();
        Ok(version)
    }

    /// Writes the tail's index entries and syncs them, the compact view of every plan in the
    /// tail, the catalog rows, and then the head that vouches for all of them. Derived data
    /// only: a failure here loses no event. One process checkpoints at a time
    /// (`checkpoint.lock`); if another is at it, this one leaves it to that one.
    pub(crate) fn checkpoint(&self, state: &mut State) -> Result<(), FileStoreError> {
        if state.store.is_none() || state.tail_len == 0 {
            return Ok(());
        }
        // The lock is held until the file closes at the end of this call.
        match self.try_checkpoint_lock()? {
            Some(_held) => self.checkpoint_locked(state),
            None => Ok(()),
        }
    }

    /// Takes `checkpoint.lock` without waiting: the file that holds it (the lock goes when it is
    /// dropped), or `None` while another process checkpoints or removes.
    pub(crate) fn try_checkpoint_lock(&self) -> Result<Option<std::fs::File>, FileStoreError> {
        let lock = fsutil::open_lock_file(&self.layout.checkpoint_lock())?;
        match lock.try_lock() {
            Ok(()) => Ok(Some(lock)),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => {
                Err(FileStoreError::io("cannot lock the checkpoint", self.layout.checkpoint_lock(), e))
            }
        }
    }

    /// [`Self::checkpoint`], for a caller that holds `checkpoint.lock`.
    pub(crate) fn checkpoint_locked(&self, state: &mut State) -> Result<(), FileStoreError> {
        let Some(store) = state.store else { return Ok(()) };
        if state.tail_len == 0 {
            return Ok(());
        }
        if self.lock_retention().any() {
            // Records this process folded before retention removed their plan must not come
            // back through its index or its catalog rows.
            let plans: Vec<PlanId> = state.tail.keys().cloned().collect();
            for plan_id in plans {
                if self.removal(&plan_id)?.is_some() {
                    state.tail.remove(&plan_id);
                }
            }
            state.tail_len = state.tail.values().map(|t| t.records.len() as u32).sum();
        }
        let disk = catalog::read_head(&self.layout)?.filter(|h| h.store == store);
        if let Some(disk) = disk.as_ref().filter(|d| d.position() >= state.position) {
            // Another process vouched for everything this one holds: start from its head.
            return self.rebase(state, disk.clone());
        }
        let mut head = disk.or_else(|| state.base.clone()).unwrap_or_else(|| catalog::empty_head(store));

        let plans: Vec<PlanId> = state.tail.keys().cloned().collect();
        let mut views = Vec::with_capacity(plans.len());
        for plan_id in &plans {
            views.push(self.summary(state, plan_id)?);
        }
        for (plan_id, tail) in &state.tail {
            let entries: Vec<IndexEntry> = tail
                .records
                .iter()
                .enumerate()
                .map(|(i, r)| IndexEntry {
                    version: tail.first_version + i as u32,
                    position: r.position,
                    offset: r.offset,
                    crc: r.crc,
                })
                .collect();
            state.index.write_run(&self.layout, &store, plan_id, &entries)?;
        }
        state.index.sync(&self.layout)?;

        let mut open_rows = Vec::new();
        let mut done_rows = Vec::new();
        for (plan_id, view) in plans.iter().zip(&views) {
            let (Some(view), Some(tail)) = (view, state.tail.get(plan_id)) else { continue };
            let last = tail.records[tail.records.len() - 1];
            let at = Binding { position: last.position, offset: last.offset, crc: last.crc };
            // Not synced: bound to its record, so a stale or torn one is detected and refolded.
            let _ = self.write_snapshot(Snapshot::Summary, &store, at, view, false);
            let row = NewRow { plan_id, version: view.version, view: Some(view) };
            match catalog::kind_of(view) {
                RowsKind::Open => open_rows.push(row),
                RowsKind::Done => {
                    done_rows.push(row);
                    if tail.first_version > 1 {
                        open_rows.push(NewRow { plan_id, version: view.version, view: None });
                    }
                }
            }
        }
        let stale_open = catalog::append_rows(&self.layout, &mut head, RowsKind::Open, &open_rows)?;
        let stale_done = catalog::append_rows(&self.layout, &mut head, RowsKind::Done, &done_rows)?;
        head.last = Binding { position: state.position, offset: state.last_offset, crc: state.last_crc };
        head.end = state.end;
        catalog::write_head(&self.layout, &head)?;
        if stale_open.is_some() || stale_done.is_some() {
            catalog::remove_stale(&self.layout, &head);
        }
        for (plan_id, tail) in state.tail.drain() {
            state.known.insert(plan_id, tail.last_version());
        }
        state.tail_len = 0;
        state.base = Some(head);
        state.trim_caches();
        Ok(())
    }

    /// Starts this process's state over from `head`, a newer checkpoint than its own base:
    /// the tail keeps only the records after it.
    pub(crate) fn rebase(&self, state: &mut State, head: Head) -> Result<(), FileStoreError> {
        let upto = head.position();
        let mut len = 0;
        state.tail.retain(|plan_id, tail| {
            let keep = tail.records.iter().position(|r| r.position > upto).unwrap_or(tail.records.len());
            if keep > 0 {
                state.known.insert(plan_id.clone(), tail.first_version + keep as u32 - 1);
            }
            tail.records.drain(..keep);
            tail.first_version += keep as u32;
            len += tail.records.len() as u32;
            !tail.records.is_empty()
        });
        state.tail_len = len;
        state.base = Some(head);
        state.trim_caches();
        Ok(())
    }

    /// Where versions `from..=to` of `plan_id` lie: the tail in memory, older ones from the
    /// index file. `None` if an index entry is missing.
    fn locate(
        &self,
        state: &State,
        plan_id: &PlanId,
        from: u32,
        to: u32,
    ) -> Result<Option<Vec<Location>>, FileStoreError> {
        if from > to {
            return Ok(Some(Vec::new()));
        }
        let tail = state.tail.get(plan_id);
        let tail_first = tail.map_or(to + 1, |t| t.first_version.clamp(from, to + 1));
        let mut out = Vec::with_capacity((to - from + 1) as usize);
        if from < tail_first {
            let Some(store) = state.store else { return Ok(None) };
            let entries = index::read_entries(&self.layout, &store, plan_id, from, tail_first - 1)?;
            for (i, entry) in entries.into_iter().enumerate() {
                match entry {
                    Some(e) => out.push(Location {
                        version: from + i as u32,
                        position: e.position,
                        offset: e.offset,
                        crc: e.crc,
                    }),
                    None => return Ok(None),
                }
            }
        }
        if let Some(tail) = tail {
            for version in tail_first..=to {
                let r = tail.records[(version - tail.first_version) as usize];
                out.push(Location { version, position: r.position, offset: r.offset, crc: r.crc });
            }
        }
        Ok(Some(out))
    }

    /// Reads the records at `locations`; `None` if one is not the record the index promised.
    fn read_located(
        &self,
        plan_id: &PlanId,
        locations: &[Location],
        end: u64,
    ) -> Result<Option<Vec<StoredEvent>>, FileStoreError> {
        let Some(file) = &self.log else { return Ok(Some(Vec::new())) };
        let mut out = Vec::with_capacity(locations.len());
        for location in locations {
            let Ok((raw, _, crc)) = log::read_record_with_crc(file, &self.log_path, location.offset, end) else {
                return Ok(None);
            };
            if raw.plan_id != plan_id.as_str()
                || raw.version != location.version
                || raw.position != location.position
                || crc != location.crc
            {
                return Ok(None);
            }
            out.push(log::to_stored(&self.log_path, location.offset, raw)?);
        }
        Ok(Some(out))
    }

    /// Versions `from..=to` of `plan_id`, through the index; a stale index is rebuilt from the log.
    pub(crate) fn read_range(
        &self,
        state: &mut State,
        plan_id: &PlanId,
        from: u32,
        to: u32,
    ) -> Result<Vec<StoredEvent>, FileStoreError> {
        Ok(self.read_range_located(state, plan_id, from, to)?.0)
    }

    fn read_range_located(
        &self,
        state: &mut State,
        plan_id: &PlanId,
        from: u32,
        to: u32,
    ) -> Result<(Vec<StoredEvent>, Option<Location>), FileStoreError> {
        if let Some(locations) = self.locate(state, plan_id, from, to)? {
            if let Some(events) = self.read_located(plan_id, &locations, state.end)? {
                return Ok((events, locations.last().copied()));
            }
        }
        let locations = self.rescan(state, plan_id, from, to)?;
        if locations.len() != (to + 1).saturating_sub(from) as usize {
            return Err(FileStoreError::corrupt(
                &self.log_path,
                0,
                format!(
                    "plan {plan_id} should have versions {from} to {to}, and the log holds {} of them",
                    locations.len()
                ),
            ));
        }
        match self.read_located(plan_id, &locations, state.end)? {
            Some(events) => Ok((events, locations.last().copied())),
            None => Err(FileStoreError::corrupt(
                &self.log_path,
                0,
                format!("plan {plan_id}'s records changed while being read; try again"),
            )),
        }
    }

    /// Scans the log for `plan_id`'s records, rewriting every plan's index entries on the way
    /// (unless read-only). Reports damage anywhere before `state.end` with its offset.
    fn rescan(&self, state: &mut State, plan_id: &PlanId, from: u32, to: u32) -> Result<Vec<Location>, FileStoreError> {
        let Some(file) = &self.log else { return Ok(Vec::new()) };
        let store = state.store;
        let mut found = Vec::new();
        let holes = self.holes_from_start()?;
        let mut reader =
            RecordReader::new(file.clone(), self.log_path.clone(), FIRST_RECORD, state.end).skipping(holes);
        while let Some(item) = reader.next() {
            let (offset, raw) = match item? {
                Ok(record) => record,
                Err(bad) => return Err(FileStoreError::corrupt(&self.log_path, bad.offset, bad.error.to_string())),
            };
            let crc = reader.crc();
            if let (false, Some(store)) = (self.read_only, &store) {
                if let Ok(id) = PlanId::parse(&raw.plan_id) {
                    let entry = IndexEntry { version: raw.version, position: raw.position, offset, crc };
                    state.index.write_run(&self.layout, store, &id, &[entry])?;
                }
            }
            if raw.plan_id == plan_id.as_str() && (from..=to).contains(&raw.version) {
                found.push(Location { version: raw.version, position: raw.position, offset, crc });
            }
        }
        Ok(found)
    }

    /// Reads a snapshot of `plan_id` and checks it belongs to this log, at a version no later
    /// than `version`.
    fn read_snapshot(
        &self,
        state: &State,
        kind: Snapshot,
        plan_id: &PlanId,
        version: u32,
    ) -> Result<Option<PlanView>, FileStoreError> {
        let (Some(store), Some(file)) = (state.store, &self.log) else { return Ok(None) };
        let path = kind.path(&self.layout, plan_id);
        let bytes = match fsutil::read_file(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(e) => return Err(FileStoreError::io("cannot read a plan view snapshot", &path, e)),
        };
        let Some(bound) = frame::decode::<Bound<PlanView>>(kind.magic(), &bytes) else { return Ok(None) };
        if bound.store != store || bound.view.plan_id != *plan_id {
            return Ok(None);
        }
        let what = format!("{} of plan {plan_id}", kind.what());
        let usable = binding::check(file, &self.log_path, &bound.at, state.end, &what)? == Check::Holds;
        Ok((usable && bound.view.version <= version).then_some(bound.view))
    }

    fn write_snapshot(
        &self,
        kind: Snapshot,
        store: &StoreId,
        at: Binding,
        view: &PlanView,
        sync: bool,
    ) -> Result<(), FileStoreError> {
        let views = self.layout.views_dir();
        fsutil::ensure_dir(&views)?;
        let bound = Bound { store: *store, at, view };
        let bytes = frame::encode(kind.magic(), &bound);
        let path = kind.path(&self.layout, &view.plan_id);
        if sync {
            fsutil::write_atomically(&self.layout.tmp_dir(), &views, &path, &bytes)
        } else {
            fsutil::write_replacing(&self.layout.tmp_dir(), &path, &bytes)
        }
    }

    /// The full view: the cached one, or the plan's view snapshot plus only the events after it.
    pub(crate) fn full_view(&self, state: &mut State, plan_id: &PlanId) -> Result<Option<PlanView>, FileStoreError> {
        let version = self.current_version(state, plan_id)?;
        if version == 0 {
            return Ok(None);
        }
        if let Some(view) = state.views.get(plan_id).filter(|v| v.version == version) {
            return Ok(Some(view.clone()));
        }
        let base = match state.views.remove(plan_id).filter(|v| v.version < version) {
            Some(view) => Some(view),
            None => self.read_snapshot(state, Snapshot::Full, plan_id, version)?,
        };
        let from = base.as_ref().map_or(1, |v| v.version + 1);
        let (events, last) = self.read_range_located(state, plan_id, from, version)?;
        let folded = events.len();
        let view = events.iter().fold(base, PlanView::fold);
        if let (Some(view), Some(store)) = (&view, state.store) {
            if let (false, Some(last), true) = (self.read_only, last, folded as u32 >= self.options.view_snapshot_every)
            {
                // A snapshot only saves work later; failing to write one loses nothing.
                let _ = self.write_snapshot(Snapshot::Full, &store, last.binding(), view, true);
            }
            state.views.insert(plan_id.clone(), view.clone());
            state.trim_caches();
        }
        Ok(view)
    }

    /// The compact view (see `PlanView::compact`): the cached one, or the plan's summary
    /// snapshot plus only the events after it.
    pub(crate) fn summary(&self, state: &mut State, plan_id: &PlanId) -> Result<Option<PlanView>, FileStoreError> {
        let version = self.current_version(state, plan_id)?;
        if version == 0 {
            return Ok(None);
        }
        if let Some(view) = state.summaries.get(plan_id).filter(|v| v.version == version) {
            return Ok(Some(view.clone()));
        }
        let mut base = state.summaries.remove(plan_id).filter(|v| v.version < version);
        // A plan whose first event is past the checkpoint is folded from the tail alone: a
        // listing just before a checkpoint meets a thousand of them, and looking each one's
        // snapshot up on disk (there is seldom one) cost more than folding its few events.
        let born_in_tail = state.tail.get(plan_id).is_some_and(|tail| tail.first_version == 1);
        if base.is_none() && !born_in_tail {
            base = self.read_snapshot(state, Snapshot::Summary, plan_id, version)?;
        }
        if base.is_none() {
            base = state.views.get(plan_id).filter(|v| v.version <= version).cloned().map(|mut v| {
                v.compact();
                v
            });
        }
        self.fold_summary(state, plan_id, base, version)
    }

    /// Folds `plan_id`'s events after `base` up to `version` into a compact view, caching it
    /// and, after a long fold, writing it as the plan's summary snapshot.
    fn fold_summary(
        &self,
        state: &mut State,
        plan_id: &PlanId,
        base: Option<PlanView>,
        version: u32,
    ) -> Result<Option<PlanView>, FileStoreError> {
        if let Some(base) = base.as_ref().filter(|b| b.version == version) {
            state.summaries.insert(plan_id.clone(), base.clone());
            return Ok(Some(base.clone()));
        }
        let from = base.as_ref().map_or(1, |v| v.version + 1);
        let (events, last) = self.read_range_located(state, plan_id, from, version)?;
        let folded = events.len();
        let mut view = base;
        for event in &events {
            view = PlanView::fold(view, event);
            if let Some(view) = view.as_mut() {
                view.compact();
            }
        }
        if let (Some(view), Some(store)) = (&view, state.store) {
            if let (false, Some(last), true) = (self.read_only, last, folded as u32 >= self.options.view_snapshot_every)
            {
                let _ = self.write_snapshot(Snapshot::Summary, &store, last.binding(), view, false);
            }
            state.summaries.insert(plan_id.clone(), view.clone());
            state.trim_caches();
        }
        Ok(view)
    }

    /// Every plan's compact view, or only those that may still move (`open_only`: the finished
    /// ones' rows are not read at all): the checkpoint's rows, with the plans of the tail folded
    /// forward.
    pub(crate) fn list(&self, state: &mut State, open_only: bool) -> Result<Vec<PlanView>, FileStoreError> {
        Ok(self.list_parts(state, open_only)?.into_iter().flatten().collect())
    }

    /// [`Self::list`] in parts, in no particular order: the views as the threads that decoded
    /// them left them (a view is large, and ten thousand cost more to move than to find).
    pub(crate) fn list_parts(&self, state: &mut State, open_only: bool) -> Result<Vec<Vec<PlanView>>, FileStoreError> {
        let mut parts = match state.base.clone() {
            None => Vec::new(),
            // One file names each plan once: its views are the listing as decoded.
            Some(head) if open_only => catalog::read_views(&self.layout, &head, RowsKind::Open)?,
            Some(head) => vec![self.latest_rows_of_both(&head)?],
        };
        if self.lock_retention().any() {
            // A removal that has not finished may not have rewritten the rows yet.
            let hidden = self.lock_retention();
            parts.iter_mut().for_each(|part| part.retain(|view| !hidden.hides_row(&view.plan_id)));
        }
        // The plans the tail moves on are taken out, each part's last first (so that each
        // `swap_remove` moves a view that stays), and put back as the tail leaves them.
        let mut bases: HashMap<PlanId, PlanView> = HashMap::new();
        for part in &mut parts {
            let moved: Vec<usize> = (0..part.len()).filter(|&i| state.tail.contains_key(&part[i].plan_id)).collect();
            for i in moved.into_iter().rev() {
                let base = part.swap_remove(i);
                bases.insert(base.plan_id.clone(), base);
            }
        }
        let tail: Vec<(PlanId, u32)> = state.tail.iter().map(|(id, t)| (id.clone(), t.last_version())).collect();
        let mut folded = Vec::with_capacity(tail.len());
        for (plan_id, version) in tail {
            let cached = state.summaries.get(&plan_id).filter(|v| v.version == version).cloned();
            let view = match (cached, bases.remove(&plan_id)) {
                (Some(view), _) => Some(view),
                (None, Some(base)) if base.version < version => {
                    self.fold_summary(state, &plan_id, Some(base), version)?
                }
                (None, _) => self.summary(state, &plan_id)?,
            };
            folded.extend(view.filter(|v| !open_only || catalog::kind_of(v) == RowsKind::Open));
        }
        parts.push(folded);
        Ok(parts)
    }

    /// The latest view of every plan in the open and the finished rows files: a plan in both
    /// (it moved, or a crash left an older row) is listed once, at its later version; at equal
    /// versions a view beats the open file's "moved to done" row.
    fn latest_rows_of_both(&self, head: &Head) -> Result<Vec<PlanView>, FileStoreError> {
        let mut views: Vec<Option<PlanView>> = Vec::new();
        let mut at: HashMap<PlanId, (u32, usize)> = HashMap::new();
        for kind in [RowsKind::Open, RowsKind::Done] {
            let rows = catalog::read_rows(&self.layout, head, kind)?;
            views.reserve(rows.plans.len());
            at.reserve(rows.plans.len());
            for (plan_id, version, view) in rows.into_rows() {
                match at.entry(plan_id) {
                    Entry::Occupied(mut found) => {
                        let (v, i) = *found.get();
                        if v > version || (v == version && view.is_none()) {
                            continue;
                        }
                        views[i] = view;
                        found.insert((version, i));
                    }
                    Entry::Vacant(slot) => {
                        slot.insert((version, views.len()));
                        views.push(view);
                    }
                }
            }
        }
        Ok(views.into_iter().flatten().collect())
    }
}

impl Shared {
    /// Every plan's version as this state knows it (`FileStore::plan_versions`): the greatest
    /// row version of each plan in the checkpoint's rows files, views left undecoded, in about
    /// 2.6 bytes a plan, and the tail's versions over them.
    pub(crate) fn plan_versions(&self, state: &State) -> Result<PlanVersions, FileStoreError> {
        let rows = match &state.base {
            Some(head) => catalog::row_versions(&self.layout, head)?,
            None => catalog::RowVersions::default(),
        };
        let tail = state.tail.iter().map(|(id, t)| (id.clone(), t.last_version())).collect();
        Ok(PlanVersions { rows, tail })
    }

    /// A page of the listing (`PlanStore::catalog_page`): the checkpoint's rows in their order
    /// (`order.rs`), merged with the plans of the tail, which are newer than their rows. Reads
    /// the rows it returns and the ones it skips on the way (older rows of plans that moved since,
    /// rows the text filter refuses), never the whole catalog. Without a usable order it sorts
    /// the listing instead.
    pub(crate) fn page(&self, state: &mut State, query: &CatalogQuery) -> Result<Vec<PlanView>, FileStoreError> {
        match self.ordered_page(state, query)? {
            Ok(page) => Ok(page),
            Err(order::Unusable(_)) => Ok(query.select(self.list(state, query.is_open_only())?)),
        }
    }

    /// The whole listing `query` admits, `query.limit()` views at a time, in the listing's order,
    /// while `visit` answers `true` (`PlanStore::walk_catalog`). The caller holds the state for
    /// the whole walk, so every plan of that state is listed once; each batch is read through the
    /// catalog's order like a page. Without a usable order the listing is sorted once, as a page
    /// would be, and handed out in batches.
    pub(crate) fn walk(
        &self,
        state: &mut State,
        query: CatalogQuery,
        visit: &mut dyn FnMut(Vec<PlanView>) -> bool,
    ) -> Result<(), FileStoreError> {
        // Each plan's greatest row version, read once from the rows' headers: whether an entry of
        // the order names its plan's latest row is a lookup, not an index file's read (but for
        // the rows that are not, and those whose plan shares its hash with a greater one).
        let versions = self.plan_versions(state)?;
        let mut ask = query;
        loop {
            let page = match self.ordered_page_with(state, &ask, Some(&versions))? {
                Ok(page) => page,
                Err(order::Unusable(_)) => {
                    let listed = ask.clone().with_limit(usize::MAX).select(self.list(state, ask.is_open_only())?);
                    let mut listed = listed.into_iter();
                    loop {
                        let batch: Vec<PlanView> = listed.by_ref().take(ask.limit()).collect();
                        if batch.is_empty() || !visit(batch) {
                            return Ok(());
                        }
                    }
                }
            };
            let end = page.len() < ask.limit();
            ask = ask.after(page.last().map(CatalogCursor::after));
            if !visit(page) || end {
                return Ok(());
            }
        }
    }

    fn ordered_page(
        &self,
        state: &mut State,
        query: &CatalogQuery,
    ) -> Result<Result<Vec<PlanView>, order::Unusable>, FileStoreError> {
        self.ordered_page_with(state, query, None)
    }

    /// [`Self::ordered_page`], taking a row that `versions` (when given: a walk of the whole
    /// listing reads them once) says is its plan's latest as such, and asking the plan's index
    /// for any other row.
    fn ordered_page_with(
        &self,
        state: &mut State,
        query: &CatalogQuery,
        versions: Option<&PlanVersions>,
    ) -> Result<Result<Vec<PlanView>, order::Unusable>, FileStoreError> {
        // The tail's plans, folded forward: as many as the checkpoint interval allows at most.
        let tail: Vec<(PlanId, u32)> = state.tail.iter().map(|(id, t)| (id.clone(), t.last_version())).collect();
        let mut newer = Vec::new();
        for (plan_id, version) in tail {
            let cached = state.summaries.get(&plan_id).filter(|v| v.version == version).cloned();
            let view = match cached {
                Some(view) => Some(view),
                None => self.summary(state, &plan_id)?,
            };
            newer.extend(view.filter(|v| query.admits(v)));
        }
        newer.sort_unstable_by(listing_order);
        let mut newer = newer.into_iter().peekable();

        let kinds: &[RowsKind] =
            if query.is_open_only() { &[RowsKind::Open] } else { &[RowsKind::Open, RowsKind::Done] };
        let mut files = Vec::new();
        if let Some(head) = &state.base {
            // An empty rows file has nothing to order.
            for &kind in kinds.iter().filter(|&&kind| head.rows(kind).len > 0) {
                match order::Ordered::open(&self.layout, head, kind, &mut state.checked_runs) {
                    Ok(ordered) => files.push(ordered),
                    Err(unusable) => return Ok(Err(unusable)),
                }
            }
        }
        let mut merged = Vec::with_capacity(files.len());
        for ordered in &files {
            match ordered.rows_after(query) {
                Ok(rows) => merged.push(rows),
                Err(unusable) => return Ok(Err(unusable)),
            }
        }
        let mut page = Vec::with_capacity(query.limit());
        // The row last taken. A plan at one version can have several rows with their entries
        // (two processes each checkpointed the tail they had folded): they come one after the
        // other in the order, and only the first is listed.
        let mut taken: Option<(i64, PlanId)> = None;
        while page.len() < query.limit() {
            // The next row of any file: the greatest in the listing's order.
            let next = merged
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.peek().map(|row| (i, row.activity, row.plan_id.clone())))
                .min_by(|a, b| b.1.cmp(&a.1).then_with(|| a.2.cmp(&b.2)));
            let tail_first = match (&next, newer.peek()) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some((_, activity, plan_id)), Some(view)) => {
                    let key = order::activity_key(view.last_activity_at);
                    key > *activity || (key == *activity && view.plan_id < *plan_id)
                }
            };
            if tail_first {
                page.extend(newer.next());
                continue;
            }
            let Some((i, _, _)) = next else { break };
            let row = match merged[i].next_row() {
                Ok(Some(row)) => row,
                Ok(None) => continue,
                Err(unusable) => return Ok(Err(unusable)),
            };
            // The tail's view of the plan is newer than any row; an older row of a plan that
            // moved, or of one retention removed, is not the plan's version at the checkpoint.
            if state.tail.contains_key(&row.plan_id)
                || taken
                    .as_ref()
                    .is_some_and(|(activity, plan_id)| *activity == row.activity && *plan_id == row.plan_id)
            {
                continue;
            }
            let current = match versions {
                // A plan a removal hides is not listed, whatever its rows say.
                Some(_) if self.lock_retention().hides_row(&row.plan_id) => continue,
                Some(versions) if versions.is_latest(&row.plan_id, row.version) => row.version,
                _ => self.current_version(state, &row.plan_id)?,
            };
            match current {
                version if version == row.version => {}
                0 if !self.lock_retention().hides_row(&row.plan_id) && self.removal(&row.plan_id)?.is_none() => {
                    // No index says where the plan is, and retention did not remove it: the
                    // index is lost, and only the rows can tell whether this one is the latest.
                    return Ok(Err(order::Unusable(format!("plan {} has a row and no index", row.plan_id))));
                }
                _ => continue,
            }
            let view = match row.view(merged[i].ordered()) {
                Ok(view) => view,
                Err(unusable) => return Ok(Err(unusable)),
            };
            taken = Some((row.activity, row.plan_id.clone()));
            if query.admits(&view) {
                page.push(view);
            }
        }
        Ok(Ok(page))
    }
}

#[cfg(test)]
mod tests;
