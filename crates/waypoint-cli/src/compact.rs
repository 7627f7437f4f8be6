//! `waypoint store compact`: retention from the command line. Chooses the archive (never inside
//! the store), runs the service's compaction with progress on stderr, moves the removed plans'
//! step logs into the archive (the service does, through the store port), and says what was
//! removed.

use std::path::{Component, Path, PathBuf};

use futures::executor::block_on;
use serde_json::json;
use waypoint_application::{CompactRequest, Compaction, InMemoryStore};
use waypoint_domain::PlanId;

use crate::cli::CompactArgs;
use crate::error::{exit, CliError};
use crate::progress::CompactMeter;
use crate::render;
use crate::store::{open_archive, LocationExt, Service, StoreLocation};
use crate::text;
use crate::text::shown_path;
use crate::ui::Ui;

/// How many removed plans the rich output names; the rest are counted.
const NAMED: usize = 5;

pub fn compact(location: &StoreLocation, ui: &Ui, args: CompactArgs) -> Result<(), CliError> {
    let service = open_store(location)?;
    let archive = match &args.archive {
        Some(path) => resolve(path)?,
        None => location.default_archive()?,
    };
    if let StoreLocation::Dir(dir) = location {
        refuse_overlap(dir, &archive)?;
    }
    // Tombstones name the archive for good: an absolute path stays right from any folder.
    let named = archive.to_string_lossy().into_owned();
    let older_than = chrono::Duration::from_std(args.older_than)
        .map_err(|_| CliError::usage("invalid_value", "--older-than is too long"))?;
    let request = CompactRequest { older_than, dry_run: args.dry_run };
    let compaction = if args.dry_run {
        // A dry run reads the store only: the archive is neither created nor opened.
        block_on(service.compact(request, &InMemoryStore::new(), &named))?
    } else {
        let archive_store = open_archive(&archive)?;
        let mut meter = CompactMeter::new(ui.err, ui.stderr_is_terminal);
        let done = block_on(service.compact_with_progress(request, &archive_store, &named, &mut |p| meter.report(p)));
        meter.finish();
        let done = done?;
        remove_run_folders(location, &done.removed);
        done
    };
    if ui.json() {
        ui.json_document(&json!({
            "removed": compaction.removed,
            "archive": named,
            "reclaimed_bytes": compaction.reclaimed_bytes,
            "dry_run": compaction.dry_run,
            "kept": compaction.kept,
            "cutoff": compaction.cutoff.to_rfc3339(),
        }));
    } else {
        ui.stdout(&rich(ui, &compaction, &archive));
    }
    Ok(())
}

/// The store to compact must exist: compacting nothing would only hide a wrong `--store`.
fn open_store(location: &StoreLocation) -> Result<Service, CliError> {
    if let StoreLocation::Dir(dir) = location {
        if !dir.is_dir() {
            return Err(CliError::new(
                exit::STORE_UNREADABLE,
                "store_not_found",
                format!("there is no store at {}; check --store or $WAYPOINT_STORE", location.display()),
            )
            .with("store", location.display()));
        }
    }
    location.open_for_write()
}

/// `path` made absolute with every link in the part that exists resolved, so that two names of
/// one folder compare equal. The part that does not exist yet is kept as written.
fn resolve(path: &Path) -> Result<PathBuf, CliError> {
    let absolute = std::path::absolute(path).map_err(|e| {
        CliError::usage("invalid_archive", format!("cannot resolve the archive path {}: {e}", shown_path(path)))
    })?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut resolved = real;
            for part in rest.iter().rev() {
                resolved.push(part);
            }
            return Ok(normalize(&resolved));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return Ok(normalize(&absolute)),
        }
    }
}

/// Drops `.` and folds `..` lexically (only in the part of a path that does not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The archive is a store of its own: inside the store it would be read as part of it (and
/// removed with it), and a store inside its archive would be one store in another's folder.
fn refuse_overlap(store: &Path, archive: &Path) -> Result<(), CliError> {
    let store = resolve(store)?;
    let refusal = |message: String| {
        CliError::usage("invalid_archive", message)
            .with("archive", shown_path(archive))
            .with("store", shown_path(&store))
    };
    if archive.starts_with(&store) {
        return Err(refusal(format!(
            "the archive {} is the store or inside it; give --archive a folder outside {}",
            shown_path(archive),
            shown_path(&store)
        )));
    }
    if store.starts_with(archive) {
        return Err(refusal(format!(
            "the store {} is inside the archive {}; give --archive a folder outside the store",
            shown_path(&store),
            shown_path(archive)
        )));
    }
    // The same folders under other names (a bind mount, a link in a parent): compared by
    // device and inode, which no path can disguise.
    if archive.ancestors().any(|dir| same_folder(dir, &store)) {
        return Err(refusal(format!(
            "the archive {} is the store {} (or inside it) under another path; give --archive a folder outside the store",
            shown_path(archive),
            shown_path(&store)
        )));
    }
    if store.ancestors().any(|dir| same_folder(dir, archive)) {
        return Err(refusal(format!(
            "the store {} is inside the archive {} under another path; give --archive a folder outside the store",
            shown_path(&store),
            shown_path(archive)
        )));
    }
    Ok(())
}

/// Both exist and are one folder (device and inode).
fn same_folder(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The run folders of removed plans (attempt locks, output files whose content the events
/// already hold) are deleted; their step logs went to the archive with their events, through
/// the store port. Best effort: a folder that cannot be deleted stays.
fn remove_run_folders(location: &StoreLocation, removed: &[PlanId]) {
    let here = location.sidecar();
    for plan_id in removed {
        let _ = std::fs::remove_dir_all(here.run_dir(plan_id));
    }
}

fn rich(ui: &Ui, compaction: &Compaction, archive: &Path) -> String {
    let style = ui.out;
    let cutoff = text::local_time(compaction.cutoff);
    let count = text::count(compaction.removed.len(), "plan");
    let mut lines = Vec::new();
    match (compaction.dry_run, compaction.removed.is_empty()) {
        (_, true) => lines
            .push(format!("{} nothing to remove: no finished plan was last active before {cutoff}", style.green("✓"))),
        (true, false) => {
            lines.push(format!("{} dry run: {count} last active before {cutoff} would be removed", style.cyan("○")));
        }
        (false, false) => lines.push(format!("{} removed {count} last active before {cutoff}", style.green("✓"))),
    }
    if !compaction.removed.is_empty() {
        let ids: Vec<&str> = compaction.removed.iter().map(PlanId::as_str).collect();
        let mut named = render::short_ids(&ids);
        named.truncate(NAMED);
        let more = compaction.removed.len().saturating_sub(NAMED);
        let tail = if more > 0 { format!("  … and {more} more") } else { String::new() };
        lines.push(format!("  {}{tail}", named.join("  ")));
        let verb = if compaction.dry_run { "would be archived in" } else { "archived in" };
        lines.push(format!("  {verb} {}", shown_path(archive)));
    }
    if compaction.dry_run {
        lines.push(format!("  {}", style.dim("nothing was written")));
    } else if !compaction.removed.is_empty() {
        lines.push(format!("  reclaimed {}", text::human_bytes(compaction.reclaimed_bytes)));
    }
    if !compaction.kept.is_empty() {
        let ids: Vec<&str> = compaction.kept.iter().map(PlanId::as_str).collect();
        lines.push(format!(
            "{} kept {} that moved while compacting: {}",
            style.yellow("!"),
            text::count(ids.len(), "plan"),
            render::short_ids(&ids).join(" ")
        ));
    }
    lines.join("\n")
}
