//! The password file: lines as libpq reads them, where it is, when it is refused, and the
//! password it gives reaching a server that asks for one. No PostgreSQL needed.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::pool::Pool;

/// A folder of this test's own under the temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "waypoint-passfile-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Writes a password file with `mode`.
    fn file(&self, text: &str, mode: u32) -> PathBuf {
        let path = self.0.join("pgpass");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn password_of(url: &str, file: &Path) -> Result<Option<String>, PgStoreError> {
    let mut config = postgres::Config::from_str(url).unwrap();
    fill_password(&mut config, Some(file))?;
    Ok(config.get_password().map(|p| String::from_utf8(p.to_vec()).unwrap()))
}

#[test]
fn the_first_line_that_matches_every_field_gives_the_password() {
    let text = "\
# a comment:*:*:*:never
db.example:5432:app:alice:first
*:*:*:alice:second
db.example:5432:app:alice:third
";
    assert_eq!(lookup(text, "db.example", "5432", "app", "alice").as_deref(), Some("first"));
    assert_eq!(lookup(text, "other", "6543", "x", "alice").as_deref(), Some("second"), "`*` matches anything");
    assert_eq!(lookup(text, "db.example", "5432", "app", "bob"), None);
    assert_eq!(lookup(text, "db.example", "5432", "app", "alic"), None, "a field matches whole, not a prefix");
    assert_eq!(lookup("h:1:d:u:pw\r\n", "h", "1", "d", "u").as_deref(), Some("pw"), "CRLF lines");
    assert_eq!(lookup("h:1:d:u\n", "h", "1", "d", "u"), None, "a line without a password field");
    assert_eq!(lookup("h:1:d:u:\n", "h", "1", "d", "u"), None, "an empty password is none");
    assert_eq!(lookup("", "h", "1", "d", "u"), None);
    // `*` is a wildcard only as a whole field; `\*` is a star.
    assert_eq!(lookup("h*:1:d:u:pw\n", "h-x", "1", "d", "u"), None);
    assert_eq!(lookup("\\*:1:d:u:pw\n", "*", "1", "d", "u").as_deref(), Some("pw"));
    assert_eq!(lookup("\\*:1:d:u:pw\n", "h", "1", "d", "u"), None);
}

#[test]
fn backslash_escapes_colons_and_backslashes_in_every_field() {
    let text = "fe80\\:\\:1:5432:my\\\\db:us\\:er:pa\\:ss\\\\word:ignored\n";
    assert_eq!(lookup(text, "fe80::1", "5432", "my\\db", "us:er").as_deref(), Some("pa:ss\\word"));
    // An unescaped colon ends the password, as libpq reads it; a backslash last stays one.
    assert_eq!(lookup("h:1:d:u:a\\b:c\n", "h", "1", "d", "u").as_deref(), Some("ab"));
    assert_eq!(lookup("h:1:d:u:pw\\\n", "h", "1", "d", "u").as_deref(), Some("pw\\"));
}

#[test]
fn pgpassfile_wins_over_the_home_folders_pgpass() {
    assert_eq!(location(Some("/etc/pw".into()), Some("/home/a".into())), Some(PathBuf::from("/etc/pw")));
    assert_eq!(location(Some("".into()), Some("/home/a".into())), Some(PathBuf::from("/home/a/.pgpass")));
    assert_eq!(location(None, Some("/home/a".into())), Some(PathBuf::from("/home/a/.pgpass")));
    assert_eq!(location(None, None), None);
    assert_eq!(location(None, Some("".into())), None);
}

#[test]
fn a_connection_string_without_a_password_takes_it_from_the_file() {
    let scratch = Scratch::new();
    let file =
        scratch.file("db.example:5433:app:alice:tcp-pw\nlocalhost:5432:alice:alice:socket-pw\n*:*:*:bob:bobs\n", 0o600);
    assert_eq!(password_of("postgres://alice@db.example:5433/app", &file).unwrap().as_deref(), Some("tcp-pw"));
    // A Unix socket's folder is matched as localhost, no port as 5432, no database as the user.
    assert_eq!(password_of("host=/run/postgresql user=alice", &file).unwrap().as_deref(), Some("socket-pw"));
    assert_eq!(password_of("postgres://bob@h/x", &file).unwrap().as_deref(), Some("bobs"));
    assert_eq!(password_of("postgres://carol@h/x", &file).unwrap(), None, "no line matches");
    // Several hosts: the first one with a line gives the password.
    assert_eq!(
        password_of("host=nowhere,db.example port=1,5433 user=alice dbname=app", &file).unwrap().as_deref(),
        Some("tcp-pw")
    );
    // A password in the string is kept; the file is not even read.
    let open = scratch.file("*:*:*:*:from-file\n", 0o644);
    assert_eq!(password_of("postgres://alice:given@h/app", &open).unwrap().as_deref(), Some("given"));
}

#[test]
fn a_file_others_may_read_is_refused_and_a_missing_one_ignored() {
    let scratch = Scratch::new();
    for mode in [0o644, 0o640, 0o604, 0o610, 0o601] {
        let file = scratch.file("*:*:*:*:leaked\n", mode);
        let error = password_of("postgres://alice@h/app", &file).unwrap_err();
        let shown = error.to_string();
        assert!(matches!(error, PgStoreError::PasswordFile { .. }), "{mode:o}: {shown}");
        assert!(shown.contains("chmod 600") && shown.contains(&file.display().to_string()), "{shown}");
        assert!(!shown.contains("leaked"), "{shown}");
    }
    let private = scratch.file("*:*:*:*:kept\n", 0o400);
    assert_eq!(password_of("postgres://alice@h/app", &private).unwrap().as_deref(), Some("kept"));
    assert_eq!(password_of("postgres://alice@h/app", &scratch.0.join("missing")).unwrap(), None);
    assert_eq!(password_of("postgres://alice@h/app", &scratch.0).unwrap(), None, "a folder is not a file");
}

/// A server that asks the client for its password in clear text, hands back what it got, and
/// then refuses the login.
fn password_sent(url_without_port: &str, file: &Path) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut length = [0u8; 4];
        socket.read_exact(&mut length).unwrap();
        let mut startup = vec![0u8; u32::from_be_bytes(length) as usize - 4];
        socket.read_exact(&mut startup).unwrap();
        // AuthenticationCleartextPassword.
        socket.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).unwrap();
        let mut tag = [0u8; 1];
        socket.read_exact(&mut tag).unwrap();
        assert_eq!(tag[0], b'p', "a password message");
        socket.read_exact(&mut length).unwrap();
        let mut password = vec![0u8; u32::from_be_bytes(length) as usize - 4];
        socket.read_exact(&mut password).unwrap();
        password.pop(); // its NUL
        let mut error = vec![b'E'];
        let fields = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0";
        error.extend(((fields.len() + 4) as u32).to_be_bytes());
        error.extend(fields);
        let _ = socket.write_all(&error);
        String::from_utf8(password).unwrap()
    });
    let pool = Pool::with_password_file(&format!("{url_without_port}:{port}/app?connect_timeout=10"), Some(file))
        .expect("the connection string parses");
    let refused = pool.connect_client().map(drop).expect_err("the server refuses every login");
    assert!(!refused.to_string().contains("from-the-file"), "{refused}");
    server.join().unwrap()
}

#[test]
fn the_password_from_the_file_is_what_the_server_gets() {
    let scratch = Scratch::new();
    let file = scratch.file("127.0.0.1:*:app:alice:from-the-file\n", 0o600);
    assert_eq!(password_sent("postgres://alice@127.0.0.1", &file), "from-the-file");
    assert_eq!(password_sent("postgres://alice:in-the-url@127.0.0.1", &file), "in-the-url");
}
