//! The derived data, each a cache checked against the log before it is trusted and rebuilt from
//! it when stale: the catalog checkpoint (`catalog.ckpt` and the per-plan offset indexes it
//! vouches for), reading a plan's records through its index, and per-plan full-view snapshots.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use waypoint_application::{Catalog, PlanView, StoredEvent};
use waypoint_domain::PlanId;

use crate::error::FileStoreError;
use crate::index::{self, IndexEntry};
use crate::layout::Layout;
use crate::log::{self, RecordReader, FIRST_RECORD};
use crate::state::{Shared, State};
use crate::{frame, fsutil};

const CHECKPOINT_MAGIC: [u8; 4] = *b"WPCK";
const VIEW_MAGIC: [u8; 4] = *b"WPVW";
/// Full views kept in memory at once; past this the cache starts over.
const MAX_CACHED_VIEWS: usize = 1024;

/// The catalog checkpoint as stored in `catalog.ckpt`: the catalog folded up to `position`,
/// whose record starts at `last_offset` and ends at `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCatalog {
    pub format: u32,
    pub position: u32,
    pub end: u64,
    pub last_offset: u64,
    pub catalog: Catalog,
    /// Every plan's version at `position` (a plan without `PlanCreated` has no catalog view).
    pub versions: HashMap<PlanId, u32>,
}

/// Where one version of a plan lies in the log.
#[derive(Debug, Clone, Copy)]
struct Location {
    version: u32,
    position: u32,
    offset: u64,
}

/// Reads and checks a catalog checkpoint file; `None` if missing or damaged.
pub(crate) fn read_checkpoint(layout: &Layout) -> Result<Option<StoredCatalog>, FileStoreError> {
    let path = layout.checkpoint();
    match std::fs::read(&path) {
        Ok(bytes) => Ok(frame::decode(CHECKPOINT_MAGIC, &bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileStoreError::io("cannot read the catalog checkpoint", &path, e)),
    }
}

/// Reads and checks `plan_id`'s view snapshot; `None` if missing or damaged.
pub(crate) fn read_view_file(layout: &Layout, plan_id: &PlanId) -> Result<Option<PlanView>, FileStoreError> {
    let path = layout.view(plan_id);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(frame::decode(VIEW_MAGIC, &bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileStoreError::io("cannot read a plan view snapshot", &path, e)),
    }
}

impl Shared {
    /// Writes the tail's index entries, syncs them, then the catalog checkpoint that vouches
    /// for them. Derived data only: a failure here loses no event.
    pub(crate) fn checkpoint(&self, state: &mut State) -> Result<(), FileStoreError> {
        let State { tail, index, .. } = state;
        for (plan_id, plan_tail) in tail.iter() {
            for (i, &(position, offset)) in plan_tail.records.iter().enumerate() {
                let entry = IndexEntry { version: plan_tail.first_version + i as u32, position, offset };
                index.write(&self.layout, plan_id, entry)?;
            }
        }
        index.sync()?;
        let stored = StoredCatalog {
            format: 1,
            position: state.position,
            end: state.end,
            last_offset: state.last_offset,
            catalog: state.catalog.clone(),
            versions: state.versions.clone(),
        };
        let path = self.layout.checkpoint();
        fsutil::write_atomically(self.layout.dir(), &path, &frame::encode(CHECKPOINT_MAGIC, &stored))?;
        state.tail.clear();
        state.tail_len = 0;
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
            for (i, entry) in index::read_entries(&self.layout, plan_id, from, tail_first - 1)?.into_iter().enumerate()
            {
                match entry {
                    Some(entry) => {
                        out.push(Location { version: from + i as u32, position: entry.position, offset: entry.offset })
                    }
                    None => return Ok(None),
                }
            }
        }
        if let Some(tail) = tail {
            for version in tail_first..=to {
                let (position, offset) = tail.records[(version - tail.first_version) as usize];
                out.push(Location { version, position, offset });
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
            let Ok((raw, _)) = log::read_record_at(file, &self.log_path, location.offset, end) else { return Ok(None) };
            if raw.plan_id != plan_id.as_str() || raw.version != location.version || raw.position != location.position {
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
        if let Some(locations) = self.locate(state, plan_id, from, to)? {
            if let Some(events) = self.read_located(plan_id, &locations, state.end)? {
                return Ok(events);
            }
        }
        let locations = self.rescan(state, plan_id, from, to)?;
        match self.read_located(plan_id, &locations, state.end)? {
            Some(events) => Ok(events),
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
        let mut found = Vec::new();
        for item in RecordReader::new(file.clone(), self.log_path.clone(), FIRST_RECORD, state.end) {
            let (offset, raw) = match item? {
                Ok(record) => record,
                Err(bad) => return Err(FileStoreError::corrupt(&self.log_path, bad.offset, bad.error.to_string())),
            };
            if !self.read_only {
                if let Ok(id) = PlanId::parse(&raw.plan_id) {
                    let entry = IndexEntry { version: raw.version, position: raw.position, offset };
                    state.index.write(&self.layout, &id, entry)?;
                }
            }
            if raw.plan_id == plan_id.as_str() && (from..=to).contains(&raw.version) {
                found.push(Location { version: raw.version, position: raw.position, offset });
            }
        }
        Ok(found)
    }

    /// The full view: the cached one, or the plan's view snapshot plus only the events after it.
    pub(crate) fn full_view(&self, state: &mut State, plan_id: &PlanId) -> Result<Option<PlanView>, FileStoreError> {
        let Some(&version) = state.versions.get(plan_id) else { return Ok(None) };
        if let Some(view) = state.views.get(plan_id).filter(|v| v.version == version) {
            return Ok(Some(view.clone()));
        }
        let base = state.views.remove(plan_id).or_else(|| self.read_view_snapshot(plan_id, version));
        let from = base.as_ref().map_or(1, |v| v.version + 1);
        let events = self.read_range(state, plan_id, from, version)?;
        let folded = events.len();
        let view = events.iter().fold(base, PlanView::fold);
        if let Some(view) = &view {
            if !self.read_only && folded as u32 >= self.options.view_snapshot_every {
                // A snapshot only saves work later; failing to write one loses nothing.
                let _ = self.write_view_snapshot(view);
            }
            if state.views.len() >= MAX_CACHED_VIEWS {
                state.views.clear();
            }
            state.views.insert(plan_id.clone(), view.clone());
        }
        Ok(view)
    }

    fn read_view_snapshot(&self, plan_id: &PlanId, version: u32) -> Option<PlanView> {
        let view = read_view_file(&self.layout, plan_id).ok().flatten()?;
        (view.plan_id == *plan_id && view.version <= version).then_some(view)
    }

    fn write_view_snapshot(&self, view: &PlanView) -> Result<(), FileStoreError> {
        let views = self.layout.views_dir();
        fsutil::ensure_dir(&views)?;
        fsutil::write_atomically(&views, &self.layout.view(&view.plan_id), &frame::encode(VIEW_MAGIC, view))
    }
}

#[cfg(test)]
mod tests;
