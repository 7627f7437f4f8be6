//! Verification of a file store against its log: the checkpointed catalog, every index entry,
//! every view snapshot and the store's own incremental fold, each compared with a replay, and
//! the catalog's order by activity. Shared
//! by `waypoint store verify` (through the port's `verify`) and `cargo xtask replay --verify`,
//! which feeds the same [`Verifier`] from its own pass over the log.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use eventually::versioning::Versioned;
use waypoint_application::verify::compare_views;
use waypoint_application::{Catalog, PlanView, StoredEvent, VerifyReport};
use waypoint_domain::PlanId;

use crate::catalog;
use crate::error::FileStoreError;
use crate::inspect::{self, CatalogFile, LocatedEvent};
use crate::layout::Layout;
use crate::order;
use crate::projections::StoredCatalog;
use crate::store::FileStore;

/// Where one version of a plan lies in the log, as the replay saw it.
#[derive(Debug, Clone, Copy)]
struct Located {
    version: u32,
    position: u32,
    offset: u64,
}

/// Collects what a pass over the log shows (where each version lies, the catalog as of the
/// checkpoint's position), then compares every stored projection with it. Memory holds one
/// compact view and a few numbers per event of the plans checked.
#[derive(Debug)]
pub struct Verifier {
    dir: PathBuf,
    only: Option<PlanId>,
    stored_catalog: Option<StoredCatalog>,
    catalog_file: CatalogFile,
    rebuilt: Catalog,
    at_checkpoint: Option<Catalog>,
    offsets: HashMap<PlanId, Vec<Located>>,
    events: u64,
    /// The checkpoint vouches for a record retention removed since: the catalog it holds is the
    /// rebuild as of the last position before it.
    checkpoint_removed: bool,
}

impl Verifier {
    /// A verifier of the store at `dir`, of every plan or only of `only`.
    pub fn new(dir: impl AsRef<Path>, only: Option<PlanId>) -> Result<Self, FileStoreError> {
        let dir = dir.as_ref().to_path_buf();
        let (stored_catalog, catalog_file) = match inspect::catalog_file_state(&dir)? {
            CatalogFile::Ours(catalog) => (Some(*catalog), CatalogFile::Missing),
            other => (None, other),
        };
        let holes = crate::retention::all_holes(&dir)?;
        let checkpoint_removed =
            stored_catalog.as_ref().is_some_and(|c| crate::retention::removed_position(&holes, c.position));
        Ok(Self {
            checkpoint_removed,
            dir,
            only,
            stored_catalog,
            catalog_file,
            rebuilt: Catalog::default(),
            at_checkpoint: None,
            offsets: HashMap::new(),
            events: 0,
        })
    }

    /// Takes in the next event of the log, in log order.
    pub fn observe(&mut self, located: &LocatedEvent) {
        let stored = &located.event;
        let passed = self.stored_catalog.as_ref().is_some_and(|c| c.position < stored.sequence_number());
        if self.checkpoint_removed && passed && self.at_checkpoint.is_none() {
            self.at_checkpoint = Some(self.rebuilt.clone());
        }
        if self.only.as_ref().is_none_or(|p| p == stored.source_id()) {
            self.events += 1;
            self.rebuilt.apply(stored);
            self.offsets.entry(stored.source_id().clone()).or_default().push(Located {
                version: stored.version(),
                position: stored.sequence_number(),
                offset: located.offset,
            });
        }
        // The checkpoint is compared with the rebuild as of its own log position.
        if self.stored_catalog.as_ref().is_some_and(|c| c.position == stored.sequence_number()) {
            self.at_checkpoint = Some(self.rebuilt.clone());
        }
    }

    /// The catalog rebuilt from every event observed.
    pub fn rebuilt(&self) -> &Catalog {
        &self.rebuilt
    }

    /// Compares every stored projection with the replay, naming each difference.
    pub fn finish(mut self, live: &FileStore) -> Result<VerifyReport, FileStoreError> {
        let mut report = VerifyReport::default();
        report.count("log_records", self.events);
        let dir = self.dir.as_path();
        let only = self.only.as_ref();
        let selected = |id: &PlanId| only.is_none_or(|p| p == id);

        // 1. The checkpointed catalog equals a replay up to its position. The store quietly
        //    rebuilds past a damaged checkpoint; verification names it.
        match self.catalog_file {
            CatalogFile::Damaged => report.differ(format!(
                "catalog checkpoint {} is damaged (bad frame or checksum); the store ignores it and rebuilds from the log",
                inspect::catalog_file(dir).display()
            )),
            CatalogFile::Foreign => report.differ(format!(
                "catalog checkpoint {} belongs to another store's log; the store ignores it and rebuilds from the log",
                inspect::catalog_file(dir).display()
            )),
            // The layout before ADR 0009: ignored, and replaced by the next write.
            CatalogFile::OlderLayout | CatalogFile::Missing | CatalogFile::Ours(_) => {}
        }
        if let Some(stored) = &self.stored_catalog {
            if self.checkpoint_removed && self.at_checkpoint.is_none() {
                self.at_checkpoint = Some(self.rebuilt.clone());
            }
            let checkpoint_found = self.at_checkpoint.is_some();
            let at_checkpoint = self.at_checkpoint.unwrap_or_default();
            if stored.position > 0 && !checkpoint_found {
                report.differ(format!(
                    "catalog checkpoint claims log position {}, which no record of this log has",
                    stored.position
                ));
            }
            let ids: BTreeSet<&PlanId> =
                stored.catalog.plans.keys().chain(at_checkpoint.plans.keys()).filter(|id| selected(id)).collect();
            for id in ids {
                // A removal killed past its commit point: the plan is removed (readers step over
                // its records), but only a writable open finishes the batch and rewrites the
                // catalog, and verification writes nothing. Its rows are work left, not damage.
                if live.shared.lock_retention().hides_row(id) {
                    report.count("pending_removals", 1);
                    continue;
                }
                report.count("catalog_plans", 1);
                let context = format!("catalog checkpoint (position {}): plan {id}", stored.position);
                compare_views(
                    &context,
                    stored.catalog.plans.get(id),
                    at_checkpoint.plans.get(id),
                    &mut report.differences,
                );
                let rebuilt_version = at_checkpoint.plans.get(id).map(|v| v.version);
                let stored_version = stored.versions.get(id).copied();
                if stored_version != rebuilt_version && !(stored_version.is_some() && rebuilt_version.is_none()) {
                    report.differ(format!(
                        "{context}: stored version {} but the log says {}",
                        show(stored_version),
                        show(rebuilt_version)
                    ));
                }
            }
        }

        // 2. Every stored index entry points where the log says that version lies.
        for (id, located) in self.offsets.iter().filter(|(id, _)| selected(id)) {
            if inspect::is_older_layout(&inspect::index_file(dir, id)) {
                continue;
            }
            let index = inspect::plan_index(dir, id)?;
            for (i, entry) in index.iter().enumerate() {
                let version = i as u32 + 1;
                report.count("index_entries", 1);
                let Some(entry) = entry else {
                    report.differ(format!("index of plan {id}: the entry for version {version} is damaged or missing"));
                    continue;
                };
                match located.get(i) {
                    Some(at)
                        if at.version == version && entry.position == at.position && entry.offset == at.offset => {}
                    Some(at) => report.differ(format!(
                        "index of plan {id}: version {version} is position {} at byte offset {} in the log, the index says position {} at {}",
                        at.position, at.offset, entry.position, entry.offset
                    )),
                    None => report.differ(format!(
                        "index of plan {id}: has an entry for version {version}, but the log holds only {} versions",
                        located.len()
                    )),
                }
            }
        }

        // 3. The store's own incremental fold (catalog plus catch-up, view snapshots plus tail)
        //    equals the rebuilt view, and each view snapshot equals a replay up to its version.
        for (id, view) in self.rebuilt.plans.iter().filter(|(id, _)| selected(id)) {
            report.count("incremental_views", 1);
            let incremental = live.summary_view(id)?;
            compare_views(
                &format!("incremental summary view of plan {id}"),
                incremental.as_ref(),
                Some(view),
                &mut report.differences,
            );
            let snapshot = inspect::plan_view_snapshot(dir, id)?;
            let view_file = inspect::view_file(dir, id);
            if snapshot.is_none() && view_file.exists() && !inspect::is_older_layout(&view_file) {
                report.differ(format!("view snapshot of plan {id} is damaged (bad frame or checksum)"));
            }
            if let Some(snapshot) = snapshot {
                report.count("view_snapshots", 1);
                let events: Vec<StoredEvent> =
                    live.read_plan(id, 1)?.into_iter().take_while(|e| e.version() <= snapshot.version).collect();
                let replayed = PlanView::replay(&events);
                compare_views(
                    &format!("view snapshot of plan {id}"),
                    Some(&snapshot),
                    replayed.as_ref(),
                    &mut report.differences,
                );
            }
        }
        // 4. The catalog's order: every run whole and sorted, every entry naming a row of its
        //    activity. (That the listing read through it is the catalog sorted, the checks every
        //    store shares verify.)
        if only.is_none() && self.stored_catalog.is_some() {
            let layout = Layout::new(dir);
            if let Some(head) = catalog::read_head(&layout)? {
                let (entries, problems) = order::verify(&layout, &head);
                report.count("catalog_order_entries", entries);
                for problem in problems {
                    report.differ(problem);
                }
            }
        }
        Ok(report.finish())
    }
}

fn show(version: Option<u32>) -> String {
    version.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

/// Verifies the store `live` was opened on: one pass over its log, then every comparison.
pub fn verify_store(live: &FileStore) -> Result<VerifyReport, FileStoreError> {
    let mut verifier = Verifier::new(live.dir(), None)?;
    for located in inspect::events(live.dir())? {
        verifier.observe(&located?);
    }
    verifier.finish(live)
}
