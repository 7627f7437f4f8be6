//! `waypoint store …`: what an operator who has only the binary needs: verify the store against
//! its log, repair a damaged file log, see how much the store holds, and compact it (in
//! `compact.rs`).

use std::collections::BTreeMap;

use futures::executor::block_on;
use serde::Serialize;
use serde_json::json;
use waypoint_application::{PlanStore, ServiceError, StoreStats};
use waypoint_domain::PlanStatus;

use crate::cli::StoreCommand;
use crate::error::{exit, CliError};
use crate::store::{LocationExt, Service, StoreLocation};
use crate::text::{cut_left, human_bytes, local_time};
use crate::ui::Ui;

pub fn store(location: &StoreLocation, ui: &Ui, command: StoreCommand) -> Result<(), CliError> {
    match command {
        StoreCommand::Verify => verify(location, ui),
        StoreCommand::Repair => repair(location, ui),
        StoreCommand::Stats => stats(location, ui),
        StoreCommand::Compact(args) => crate::compact::compact(location, ui, args),
    }
}

/// The store must exist: verifying or measuring nothing would only hide a wrong `--store`.
fn open_existing(location: &StoreLocation) -> Result<Service, CliError> {
    location.open_read_only()?.ok_or_else(|| {
        CliError::new(
            exit::STORE_UNREADABLE,
            "store_not_found",
            format!("there is no store at {}; check --store or $WAYPOINT_STORE", location.display()),
        )
        .with("store", location.display())
    })
}

fn verify(location: &StoreLocation, ui: &Ui) -> Result<(), CliError> {
    let service = open_existing(location)?;
    let report = block_on(service.store().verify()).map_err(ServiceError::from)?;
    if report.ok {
        if ui.json() {
            ui.json_document(&report);
        } else {
            ui.stdout(&report.to_string());
        }
        return Ok(());
    }
    if !ui.json() {
        ui.stdout(&report.to_string());
    }
    let message = format!(
        "the store at {} differs from its log in {} places; the log is the truth: {}",
        location.display(),
        report.differences.len(),
        verify_remedy(location)
    );
    Err(CliError::new(exit::STORE_UNREADABLE, "verify_failed", message)
        .with("store", location.display())
        .with("checked", json!(report.checked))
        .with("differences", json!(report.differences)))
}

/// What to do about a store that differs from its log: the file store has its repair; a
/// PostgreSQL store has none (`store repair` refuses it), so nothing is touched.
fn verify_remedy(location: &StoreLocation) -> &'static str {
    match location {
        StoreLocation::Dir(_) => "copy the store aside, then `waypoint store repair` rebuilds what is derived from it",
        StoreLocation::Postgres(_) => {
            "nothing was changed; back the database up with pg_dump before anything else, then report the \
             differences (Waypoint has no repair for PostgreSQL)"
        }
    }
}

fn repair(location: &StoreLocation, ui: &Ui) -> Result<(), CliError> {
    let StoreLocation::Dir(dir) = location else {
        return Err(CliError::usage(
            "unsupported_store",
            "`waypoint store repair` mends the file store's log; PostgreSQL keeps its own data consistent, and \
             `waypoint store verify` checks Waypoint's tables in it",
        ));
    };
    let report = waypoint_store_file::repair(dir).map_err(|e| {
        CliError::new(exit::STORE_UNREADABLE, "repair_failed", format!("{e}")).with("store", location.display())
    })?;
    if ui.json() {
        ui.json_document(&json!({
            "store": location.display(),
            "log": crate::text::shown_path(&report.log),
            "backup": report.backup.as_ref().map(|p| crate::text::shown_path(p)),
            "damage_at": report.damage_at,
            "damage": report.damage,
            "bytes_removed": report.bytes_removed,
            "quarantined": report.quarantined.as_ref().map(|p| crate::text::shown_path(p)),
            "intact_records_removed": report.intact_records_removed,
            "records_kept": report.records_kept,
        }));
        return Ok(());
    }
    let mut text = match (report.damage_at, &report.damage) {
        (Some(at), Some(damage)) => format!(
            "{} repaired {}: damage at byte offset {at} ({damage}); {} bytes removed, {} records kept",
            ui.out.green("✓"),
            crate::text::shown_path(&report.log),
            report.bytes_removed,
            report.records_kept
        ),
        _ => format!(
            "{} {} is whole: {} records, nothing cut; derived files will be rebuilt on next open",
            ui.out.green("✓"),
            crate::text::shown_path(&report.log),
            report.records_kept
        ),
    };
    if report.intact_records_removed > 0 {
        text.push_str(&format!(
            "\n{} {} whole records after the damage were removed with it (they are in the backup)",
            ui.out.yellow("!"),
            report.intact_records_removed
        ));
    }
    if let Some(backup) = &report.backup {
        text.push_str(&format!("\n  backup: {}", crate::text::shown_path(backup)));
    }
    if let Some(quarantined) = &report.quarantined {
        text.push_str(&format!("\n  removed bytes kept in: {}", crate::text::shown_path(quarantined)));
    }
    ui.stdout(&text);
    Ok(())
}

/// `store stats --format json`: the store's own statistics, and the plans by status word.
#[derive(Debug, Serialize)]
struct StatsDoc<'a> {
    #[serde(flatten)]
    stats: &'a StoreStats,
    plans_by_status: BTreeMap<&'static str, u64>,
}

fn stats(location: &StoreLocation, ui: &Ui) -> Result<(), CliError> {
    let service = open_existing(location)?;
    let stats = block_on(service.store().stats()).map_err(ServiceError::from)?;
    // The status words are the summaries' (a crash is told by the run locks), as `plan list` has them.
    let mut by_status: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (_, summary) in block_on(service.list(false))? {
        *by_status.entry(summary.status.as_str()).or_default() += 1;
    }
    if ui.json() {
        ui.json_document(&StatsDoc { stats: &stats, plans_by_status: by_status });
        return Ok(());
    }
    let row = |label: &str, value: String| format!("{label:<18}{value}\n");
    let mut text = row("store", cut_left(&location.display(), ui.width - 18));
    text.push_str(&row("plans", stats.plans.to_string()));
    for status in PlanStatus::ALL {
        if let Some(count) = by_status.get(status.as_str()) {
            text.push_str(&row(&format!("  {}", status.as_str()), count.to_string()));
        }
    }
    text.push_str(&row("events", stats.events.to_string()));
    if let Some(bytes) = stats.bytes {
        text.push_str(&row("bytes", format!("{bytes} ({})", human_bytes(bytes))));
    }
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or("-".to_owned(), local_time);
    text.push_str(&row("oldest activity", time(stats.oldest_activity)));
    text.push_str(&row("newest activity", time(stats.newest_activity)));
    ui.stdout(text.trim_end());
    Ok(())
}
