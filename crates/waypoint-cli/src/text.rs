//! How values are written for people, in one place: the width rich output fits (80 columns at
//! most), names cut with `…` and paths shortened from the left, prose wrapped, control
//! characters escaped, local times, ages, elapsed time as a plan-file duration, sizes, counts
//! and hex. The bottom of the crate: it imports nothing of it.

use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use waypoint_application::engine::format_duration;

/// The widest rich output gets, whatever the terminal.
pub const MAX_WIDTH: usize = 80;
/// The narrowest width honoured: below it, names and labels would not fit at all.
const MIN_WIDTH: usize = 40;

/// The width rich output fits: the terminal's (stdout's, else stderr's), else `$COLUMNS`, as
/// clap reads them for `--help`; never more than [`MAX_WIDTH`], never less than 40.
pub fn width() -> usize {
    terminal_columns()
        .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse().ok()))
        .map_or(MAX_WIDTH, |w: usize| w.clamp(MIN_WIDTH, MAX_WIDTH))
}

fn terminal_columns() -> Option<usize> {
    [rustix::termios::tcgetwinsize(std::io::stdout()), rustix::termios::tcgetwinsize(std::io::stderr())]
        .into_iter()
        .find_map(|size| size.ok().map(|s| usize::from(s.ws_col)).filter(|&w| w > 0))
}

/// How many columns `text` takes on a terminal: a character each, colour sequences none.
pub fn columns(text: &str) -> usize {
    plain(text).chars().count()
}

/// `text` without its colour sequences (`ESC [ … m`).
fn plain(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\x1b') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out.into()
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

/// A path (or any text whose end matters most) in at most `max` columns: the start is cut, and
/// `…` stands for it.
pub fn cut_left(text: &str, max: usize) -> String {
    let count = columns(text);
    if count <= max {
        return text.to_owned();
    }
    let kept: String = plain(text).chars().skip(count + 1 - max.max(1)).collect();
    format!("…{kept}")
}

/// `text` as lines of at most `first` columns (the first line) and `rest` columns (the others),
/// broken between words; a command in backticks stays on one line when it fits one. A word
/// longer than a line is cut: a path from the left, anything else from the right.
pub fn wrap(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in words(paragraph, rest) {
            let word = word.as_str();
            let room = |lines: &Vec<String>| if lines.is_empty() { first } else { rest };
            if !line.is_empty() && columns(&line) + 1 + columns(word) > room(&lines) {
                lines.push(std::mem::take(&mut line));
            }
            let room = room(&lines).saturating_sub(columns(&line) + usize::from(!line.is_empty()));
            let word = match columns(word) <= room {
                true => word.to_owned(),
                false if word.contains('/') => cut_left(word, room),
                false => cut(&plain(word), room),
            };
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        lines.push(line);
    }
    lines
}

/// The words of `text`, a command in backticks as one word when it fits in `max` columns.
fn words(text: &str, max: usize) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut open: Option<Vec<&str>> = None;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        match open.as_mut() {
            Some(quoted) => quoted.push(word),
            None if word.starts_with('`') && word[1..].find('`').is_none() => open = Some(vec![word]),
            None => words.push(word.to_owned()),
        }
        let closed = open.as_ref().is_some_and(|q| q.len() > 1 && word.contains('`'));
        if closed {
            let quoted = open.take().unwrap_or_default();
            let joined = quoted.join(" ");
            if columns(&joined) <= max {
                words.push(joined);
            } else {
                words.extend(quoted.into_iter().map(str::to_owned));
            }
        }
    }
    words.extend(open.into_iter().flatten().map(str::to_owned));
    words
}

/// Every line of `text` within `width` columns: a longer line wraps between words, its
/// continuation indented two more than the line itself.
pub fn fit(text: &str, width: usize) -> String {
    let mut out = Vec::new();
    for line in text.split('\n') {
        if columns(line) <= width {
            out.push(line.to_owned());
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        let first = width.saturating_sub(indent);
        let more = width.saturating_sub(indent + 2);
        for (i, part) in wrap(line.trim_start_matches(' '), first, more).into_iter().enumerate() {
            let pad = if i == 0 { indent } else { indent + 2 };
            out.push(format!("{}{part}", " ".repeat(pad)));
        }
    }
    out.join("\n")
}

/// `{head}{name}{tail}` within `width` columns: the name is cut to the room the rest leaves.
pub fn with_name(head: &str, name: &str, tail: &str, width: usize) -> String {
    let room = width.saturating_sub(columns(head) + columns(tail)).max(1);
    format!("{head}{}{tail}", cut(name, room))
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

/// A path as messages show it: control characters (an ESC, a BEL, a newline in a file name)
/// escaped, so that printing a path can never drive the terminal.
pub fn shown_path(path: &std::path::Path) -> String {
    escape_controls(&path.display().to_string())
}

/// `text` with every control character written as an escape (`\n`, `\t`, `\u{1b}`).
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}
