//! The password file libpq reads (`PGPASSFILE`, by default `~/.pgpass`), so that a connection
//! string needs no password: one given on the command line shows in `ps` to every local user.
//!
//! Read only when the connection string has no password, as libpq does. Each line is
//! `hostname:port:database:username:password`; `#` starts a comment line; a field that is
//! exactly `*` matches anything; `\:` and `\\` stand for `:` and `\`. The first line that matches
//! gives the password. A host that is a Unix socket's folder is matched as `localhost`, a missing
//! port as `5432`, a missing database as the user's name. The file is refused (an error, never
//! read) when its group or others have any access to it, as libpq refuses it; a file that is
//! missing or not a regular file is ignored, as libpq ignores it.
//!
//! One limit: the driver takes one password for all the hosts a connection string names, so
//! the first host with a matching line gives it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use postgres::config::Host;

use crate::error::PgStoreError;

/// libpq's default port, as the password file's port field is compared (text).
const DEFAULT_PORT: u16 = 5432;

/// Where the password file is: `PGPASSFILE` when set, else `.pgpass` in `HOME`.
pub(crate) fn location(pgpassfile: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    match pgpassfile.filter(|v| !v.is_empty()) {
        Some(file) => Some(PathBuf::from(file)),
        None => home.filter(|v| !v.is_empty()).map(|home| Path::new(&home).join(".pgpass")),
    }
}

/// Sets `config`'s password from the password file at `file` when it has none and a line
/// matches. Refuses a file its group or others may access.
pub(crate) fn fill_password(config: &mut postgres::Config, file: Option<&Path>) -> Result<(), PgStoreError> {
    if config.get_password().is_some_and(|p| !p.is_empty()) {
        return Ok(());
    }
    let Some(file) = file else { return Ok(()) };
    let Some(text) = read(file)? else { return Ok(()) };
    let Some(user) = config.get_user() else { return Ok(()) };
    let database = config.get_dbname().unwrap_or(user);
    let ports = config.get_ports();
    let hosts: Vec<String> = if config.get_hosts().is_empty() {
        config.get_hostaddrs().iter().map(|a| a.to_string()).collect()
    } else {
        config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(_) => "localhost".to_owned(),
            })
            .collect()
    };
    let hosts = if hosts.is_empty() { vec!["localhost".to_owned()] } else { hosts };
    for (i, host) in hosts.iter().enumerate() {
        // One port for every host, or one per host, as the driver reads them.
        let port = match ports {
            [] => DEFAULT_PORT,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(DEFAULT_PORT),
        };
        if let Some(password) = lookup(&text, host, &port.to_string(), database, user) {
            config.password(password);
            return Ok(());
        }
    }
    Ok(())
}

/// The file's text; `None` when it is missing or not a regular file.
fn read(file: &Path) -> Result<Option<String>, PgStoreError> {
    use std::os::unix::fs::PermissionsExt;
    let refused = |detail: String| PgStoreError::PasswordFile { path: file.display().to_string(), detail };
    let meta = match std::fs::metadata(file) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(refused(format!("cannot be read ({e})"))),
    };
    if !meta.is_file() {
        return Ok(None);
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(refused(format!(
            "has group or world access (mode {:04o}); permissions should be u=rw (0600) or less, as libpq requires: chmod 600 {}",
            mode & 0o7777,
            file.display()
        )));
    }
    let bytes = std::fs::read(file).map_err(|e| refused(format!("cannot be read ({e})")))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The password of the first line of `text` that matches, de-escaped.
pub(crate) fn lookup(text: &str, host: &str, port: &str, database: &str, user: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let rest = matches_field(line, host)?;
        let rest = matches_field(rest, port)?;
        let rest = matches_field(rest, database)?;
        let rest = matches_field(rest, user)?;
        let password = unescape_field(rest);
        (!password.is_empty()).then_some(password)
    })
}

/// Whether the first field of `line` (up to an unescaped `:`) is `*` or equals `value`; then
/// what follows that colon. A line that ends before the colon matches nothing.
fn matches_field<'a>(line: &'a str, value: &str) -> Option<&'a str> {
    if let Some(rest) = line.strip_prefix("*:") {
        return Some(rest);
    }
    let mut chars = line.char_indices();
    let mut wanted = value.chars();
    while let Some((at, c)) = chars.next() {
        let c = match c {
            ':' => return wanted.next().is_none().then(|| &line[at + 1..]),
            '\\' => match chars.next() {
                Some((_, escaped)) => escaped,
                None => '\\',
            },
            c => c,
        };
        if wanted.next() != Some(c) {
            return None;
        }
    }
    None
}

/// The last field: up to an unescaped `:` or the end, with `\x` read as `x`.
fn unescape_field(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            ':' => break,
            '\\' => out.push(chars.next().unwrap_or('\\')),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
