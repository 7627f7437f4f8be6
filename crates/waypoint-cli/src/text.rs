//! How values are written for people, in one place: names cut with `…`, local times, ages,
//! elapsed time as a plan-file duration, sizes, counts and hex.

use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use waypoint_application::engine::format_duration;

/// How many columns `text` takes (a character each).
pub fn columns(text: &str) -> usize {
    text.chars().count()
}

/// The first line of `text` in at most `max` columns: what does not fit is cut, and `…` says so
/// (as it does for a text of several lines).
pub fn cut(text: &str, max: usize) -> String {
    let first_line = text.lines().next().unwrap_or("");
    if columns(first_line) <= max && !text.contains('\n') {
        return first_line.to_owned();
    }
    let kept: String = first_line.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// A recorded instant as rich output shows it: local time, `YYYY-MM-DD HH:MM:SS`.
pub fn local_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// "12s ago", "5m ago", "3h ago", or the local date for anything older than two days.
pub fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds().max(0);
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=172_799 => format!("{}h ago", secs / 3600),
        _ => at.with_timezone(&Local).format("%Y-%m-%d").to_string(),
    }
}

/// How long something took, as a plan file writes a duration: milliseconds under a second,
/// whole seconds from there (`350ms`, `12s`, `2m30s`).
pub fn elapsed(took: Duration) -> String {
    if took < Duration::from_secs(1) {
        format_duration(Duration::from_millis(took.as_millis() as u64))
    } else {
        format_duration(Duration::from_secs(took.as_secs()))
    }
}

/// `1 step`, `3 steps`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `512 B`, `1.5 KiB`, `3.2 GiB`.
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

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
