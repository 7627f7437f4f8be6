//! `waypoint store …`: what an operator who has only the binary needs: verify the store against
//! its log, repair a damaged file log, see how much the store holds, and compact it (in
//! `compact.rs`).

use futures::executor::block_on;
use serde_json::json;
use waypoint_application::{PlanStore, ServiceError};

use crate::cli::StoreCommand;
use crate::error::{exit, CliError};
use crate::store::{LocationExt, Service, StoreLocation};
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
        "the store at {} differs from its log in {} places; the log is the truth: copy the store aside, then \
         `waypoint store repair` rebuilds what is derived from it",
        location.display(),
        report.differences.len()
    );
    Err(CliError::new(exit::STORE_UNREADABLE, "verify_failed", message)
        .with("store", location.display())
        .with("checked", json!(report.checked))
        .with("differences", json!(report.differences)))
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
            "log": crate::ui::shown_path(&report.log),
            "backup": report.backup.as_ref().map(|p| crate::ui::shown_path(p)),
            "damage_at": report.damage_at,
            "damage": report.damage,
            "bytes_removed": report.bytes_removed,
            "quarantined": report.quarantined.as_ref().map(|p| crate::ui::shown_path(p)),
            "intact_records_removed": report.intact_records_removed,
            "records_kept": report.records_kept,
        }));
        return Ok(());
    }
    let mut text = match (report.damage_at, &report.damage) {
        (Some(at), Some(damage)) => format!(
            "{} repaired {}: damage at byte offset {at} ({damage}); {} bytes removed, {} records kept",
            ui.out.green("✓"),
            crate::ui::shown_path(&report.log),
            report.bytes_removed,
            report.records_kept
        ),
        _ => format!(
            "{} {} is whole: {} records, nothing cut; derived files will be rebuilt on next open",
            ui.out.green("✓"),
            crate::ui::shown_path(&report.log),
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
        text.push_str(&format!("\n  backup: {}", crate::ui::shown_path(backup)));
    }
    if let Some(quarantined) = &report.quarantined {
        text.push_str(&format!("\n  removed bytes kept in: {}", crate::ui::shown_path(quarantined)));
    }
    ui.stdout(&text);
    Ok(())
}

fn stats(location: &StoreLocation, ui: &Ui) -> Result<(), CliError> {
    let service = open_existing(location)?;
    let stats = block_on(service.store().stats()).map_err(ServiceError::from)?;
    if ui.json() {
        ui.json_document(&stats);
        return Ok(());
    }
    let mut text = format!("{:<18}{}\n", "store", location.display());
    text.push_str(&format!("{:<18}{}\n", "plans", stats.plans));
    for (state, count) in &stats.plans_by_state {
        text.push_str(&format!("  {state:<16}{count}\n"));
    }
    text.push_str(&format!("{:<18}{}\n", "events", stats.events));
    if let Some(bytes) = stats.bytes {
        text.push_str(&format!("{:<18}{bytes} ({})\n", "bytes", human_bytes(bytes)));
    }
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or("-".to_owned(), |t| t.to_rfc3339());
    text.push_str(&format!("{:<18}{}\n", "oldest activity", time(stats.oldest_activity)));
    text.push_str(&format!("{:<18}{}", "newest activity", time(stats.newest_activity)));
    ui.stdout(&text);
    Ok(())
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
