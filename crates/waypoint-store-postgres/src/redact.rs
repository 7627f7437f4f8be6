//! Connection strings with their passwords masked, for every message, log line and `Debug`.

/// `conn` with any password replaced by `***`: the user-info password of a
/// `postgres://user:password@host/db` URL, a `password=` query parameter, and the `password`
/// keyword of a `host=… password=…` key-value string. Everything else is kept, so the result
/// still says which server and database were meant.
pub fn redact(conn: &str) -> String {
    let trimmed = conn.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        redact_url(conn)
    } else {
        redact_key_values(conn)
    }
}

fn redact_url(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    // The user info ends at the last '@' of the whole rest, as the driver reads it: a password
    // may hold an unencoded '/', '?', '#' or '@' (base64 passwords often do), and cutting the
    // authority at the first '/' would print it. An '@' later in the URL masks a little more
    // than needed, never less.
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..scheme_end]);
    let (authority, authority_end) = match rest.rfind('@') {
        Some(at) => {
            let user_info = &rest[..at];
            match user_info.find(':') {
                Some(colon) => {
                    out.push_str(&user_info[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(user_info),
            }
            let after = &rest[at..];
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (&after[..end], at + end)
        }
        None => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            (&rest[..end], end)
        }
    };
    out.push_str(authority);
    let tail = &rest[authority_end..];
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..=q]);
            let query = &tail[q + 1..];
            let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => param.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
            if let Some(fragment) = fragment {
                out.push('#');
                out.push_str(fragment);
            }
        }
        None => out.push_str(tail),
    }
    out
}

/// libpq's key-value form: `key = value` pairs separated by whitespace, values optionally in
/// single quotes with backslash escapes.
fn redact_key_values(conn: &str) -> String {
    let chars: Vec<char> = conn.chars().collect();
    let mut out = String::with_capacity(conn.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let key_start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
            i += 1;
        }
        let key: String = chars[key_start..i].iter().collect();
        out.push_str(&key);
        while i < chars.len() && chars[i].is_whitespace() {
            out.push(chars[i]);
            i += 1;
        }
        if i >= chars.len() || chars[i] != '=' {
            continue;
        }
        out.push('=');
        i += 1;
        while i < chars.len() && chars[i].is_whitespace() {
            out.push(chars[i]);
            i += 1;
        }
        let value_start = i;
        if i < chars.len() && chars[i] == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(chars.len());
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i = i.min(chars.len());
        }
        if key.eq_ignore_ascii_case("password") {
            out.push_str("***");
        } else {
            out.extend(&chars[value_start..i]);
        }
    }
    out
}
