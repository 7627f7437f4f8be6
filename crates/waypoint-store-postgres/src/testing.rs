//! Test support: a fresh database per test on the server that `cargo xtask test` starts, so
//! tests run in parallel without seeing each other's plans or run locks.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use postgres::NoTls;

use crate::error::PgStoreError;

mod cluster;

use crate::store::PostgresStore;
pub use cluster::{find_server_binaries, TestCluster, BIN_VAR};

/// The variable naming the test server (a URL whose database can run `CREATE DATABASE`).
pub const URL_VAR: &str = "WAYPOINT_TEST_POSTGRES_URL";

/// The test server's URL. Panics when it is unset: PostgreSQL tests never skip.
pub fn server_url() -> String {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{URL_VAR} is not set: run `cargo xtask test`, which starts a throwaway PostgreSQL \
             (it needs the PostgreSQL server package, e.g. `apt-get install postgresql`)"
        ),
    }
}

/// A database created for one test and dropped (with any sessions left in it) when this is.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database whose name starts with `label` (letters, digits, `_`).
    pub fn create(label: &str) -> TestDatabase {
        let database = Self::create_named(label);
        let mut client = admin_client(&database.server);
        client
            .batch_execute(&format!("CREATE DATABASE {}", database.name))
            .unwrap_or_else(|e| panic!("cannot create test database {}: {e}", database.name));
        database
    }

    /// A fresh name for a database of `label`; the database itself is not created yet.
    fn create_named(label: &str) -> TestDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let server = server_url();
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .take(30)
            .collect();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("wp_{label}_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        // Identifiers cannot be bound as parameters; this one is built from [a-z0-9_] only.
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        let url = with_database(&server, &name);
        TestDatabase { server, name, url }
    }

    /// A new database holding a copy of this one (`CREATE DATABASE … TEMPLATE`): this one must
    /// have no open sessions, so drop every store on it first.
    pub fn copy(&self, label: &str) -> TestDatabase {
        let copy = TestDatabase::create_named(label);
        let mut client = admin_client(&self.server);
        // Sessions of a store just dropped may take a moment to leave the server.
        for attempt in 0.. {
            match client.batch_execute(&format!("CREATE DATABASE {} TEMPLATE {}", copy.name, self.name)) {
                Ok(()) => break,
                Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("cannot copy test database {}: {e}", self.name),
            }
        }
        copy
    }

    /// The connection string of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (`wp_<label>_…`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a store on this database that keeps the database alive until its last clone drops.
    pub fn into_store(self) -> Result<PostgresStore, PgStoreError> {
        let url = self.url.clone();
        PostgresStore::connect_with_attachment(&url, Some(Box::new(self)))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort: the cluster is thrown away after the run anyway.
        if let Ok(mut client) = postgres::Config::from_str(&self.server).and_then(|c| c.connect(NoTls)) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// A fresh store on a fresh database: the usual start of a PostgreSQL test.
pub fn fresh_store(label: &str) -> PostgresStore {
    TestDatabase::create(label).into_store().unwrap_or_else(|e| panic!("cannot open a store on a test database: {e}"))
}

fn admin_client(server: &str) -> postgres::Client {
    postgres::Config::from_str(server)
        .and_then(|config| config.connect(NoTls))
        .unwrap_or_else(|e| panic!("cannot connect to the test server {}: {e}", crate::redact(server)))
}

/// `url` with its database replaced by `name`, in either connection-string form.
pub fn with_database(url: &str, name: &str) -> String {
    let trimmed = url.trim();
    if let Some(scheme_end) = trimmed.find("://") {
        let rest = &trimmed[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let after = &rest[authority_end..];
        let query = after.find('?').map_or("", |q| &after[q..]);
        format!("{}{}/{name}{query}", &trimmed[..scheme_end + 3], &rest[..authority_end])
    } else {
        // In the key-value form a later keyword wins.
        format!("{trimmed} dbname={name}")
    }
}
