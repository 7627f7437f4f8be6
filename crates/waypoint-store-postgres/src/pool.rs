//! Connections: the parsed configuration, a small pool of idle connections with their prepared
//! statements, and dedicated connections for run locks. The pool is ours (a mutex and a vector)
//! because the synchronous client needs nothing more.

use std::str::FromStr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use postgres::{Client, NoTls, Statement};

use crate::error::PgStoreError;
use crate::redact::redact;

/// Idle connections kept for reuse; more may be open while busy.
const MAX_IDLE: usize = 32;
/// Used when the connection string names no `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to connect, and the connections not in use right now.
pub(crate) struct Pool {
    config: postgres::Config,
    /// The connection string with its password masked: the only form any message shows.
    pub(crate) target: String,
    idle: Mutex<Vec<Conn>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("target", &self.target).finish_non_exhaustive()
    }
}

/// A connection with every statement the store runs, prepared once.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) statements: Statements,
    /// The server process behind this connection: after the connection broke during an append,
    /// the append's outcome is settled by ending that process and looking (see `store.rs`).
    pub(crate) backend: Backend,
}

/// A server process: its pid, and when it started (a pid alone may be reused by a later one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backend {
    pub(crate) pid: i32,
    pub(crate) started: String,
}

/// The store's statements. Preparing them once per connection saves a round trip per query.
pub(crate) struct Statements {
    /// The append in one round trip (migration 6), and the catalog row it starts from when this
    /// store has none cached.
    pub(crate) append: Statement,
    pub(crate) plan_row: Statement,
    pub(crate) lock_plan: Statement,
    pub(crate) insert_plan: Statement,
    pub(crate) write_events: Statement,
    pub(crate) plan_version: Statement,
    pub(crate) read_plan: Statement,
    pub(crate) read_all_page: Statement,
    pub(crate) summary_view: Statement,
    pub(crate) catalog: Statement,
    /// The listing's first page and the pages after a cursor, of every plan or the open ones.
    pub(crate) listing: [Statement; 4],
    pub(crate) view_snapshot: Statement,
    pub(crate) save_view_snapshot: Statement,
    pub(crate) removal: Statement,
    pub(crate) removals_with_prefix: Statement,
    pub(crate) lock_for_removal: Statement,
    pub(crate) remove_plans: Statement,
    pub(crate) put_step_log: Statement,
    pub(crate) step_logs: Statement,
    pub(crate) queue_plans: Statement,
}

impl Pool {
    pub(crate) fn new(url: &str) -> Result<Pool, PgStoreError> {
        let passfile = crate::passfile::location(std::env::var_os("PGPASSFILE"), std::env::var_os("HOME"));
        Self::with_password_file(url, passfile.as_deref())
    }

    /// [`Pool::new`] with the password file at `passfile` (none: no file).
    pub(crate) fn with_password_file(url: &str, passfile: Option<&std::path::Path>) -> Result<Pool, PgStoreError> {
        let target = redact(url);
        let mut config = postgres::Config::from_str(url).map_err(|e| PgStoreError::InvalidUrl {
            target: target.clone(),
            // The parser's message may quote the string, password included: keep only its gist.
            detail: redact(&e.to_string()),
        })?;
        // No password in the string: libpq's password file may hold it (kept out of `ps`).
        crate::passfile::fill_password(&mut config, passfile)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        // A server that vanished (a lost machine, a cut network) while a statement waits for its
        // answer is noticed by TCP keepalives within about half a minute, not two hours.
        config.keepalives(true).keepalives_idle(Duration::from_secs(15));
        #[cfg(target_os = "linux")]
        config
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("waypoint");
        }
        Ok(Pool { config, target, idle: Mutex::new(Vec::new()) })
    }

    /// Another pool on the same server and database, with no connection shared.
    pub(crate) fn independent(&self) -> Pool {
        Pool { config: self.config.clone(), target: self.target.clone(), idle: Mutex::new(Vec::new()) }
    }

    /// A new connection of its own (not from the pool): for migrations and run locks.
    ///
    /// The driver bounds only the socket's connect by `connect_timeout`; a server that accepts
    /// and then says nothing (hung, or a proxy with nothing behind it) would hold the handshake
    /// for as long as the OS keeps the socket. So the whole connect (socket, startup,
    /// authentication) runs on a thread of its own and is given up after the same time, with a
    /// message naming the server. The thread is left to end on its own.
    pub(crate) fn connect_client(&self) -> Result<Client, PgStoreError> {
        let fail = |e| PgStoreError::from_driver(&self.target, "connect", e);
        let config = self.config.clone();
        let (sender, answer) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("waypoint-pg-connect".into()).spawn(move || {
            let _ = sender.send(config.connect(NoTls));
        });
        if spawned.is_err() {
            return self.config.connect(NoTls).map_err(fail);
        }
        let waited = self.config.get_connect_timeout().copied().unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        match answer.recv_timeout(waited) {
            Ok(connected) => connected.map_err(fail),
            Err(_) => Err(PgStoreError::NoAnswer { target: self.target.clone(), context: "connect", waited }),
        }
    }

    fn connect(&self) -> Result<Conn, PgStoreError> {
        let client = self.connect_client()?;
        Conn::prepare(client, &self.target)
    }

    /// An idle connection, or a new one. `reused` tells the caller whether the connection may
    /// have died while idle (the server restarted): such a failure before any write is retried.
    pub(crate) fn get(self: &Arc<Self>) -> Result<Pooled, PgStoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(conn) if !conn.client.is_closed() => Ok(Pooled { pool: self.clone(), conn: Some(conn), reused: true }),
            _ => Ok(Pooled { pool: self.clone(), conn: Some(self.connect()?), reused: false }),
        }
    }

    /// A fresh connection, never an idle one.
    pub(crate) fn get_fresh(self: &Arc<Self>) -> Result<Pooled, PgStoreError> {
        Ok(Pooled { pool: self.clone(), conn: Some(self.connect()?), reused: false })
    }

    /// Drops every idle connection (after the server went away, they are all dead).
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A connection on loan; it goes back to the pool when dropped unless it broke or was
/// [`Pooled::discard`]ed.
pub(crate) struct Pooled {
    pool: Arc<Pool>,
    conn: Option<Conn>,
    pub(crate) reused: bool,
}

impl Pooled {
    pub(crate) fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("a pooled connection is present until dropped")
    }

    /// Closes the connection instead of returning it: its session state is unknown.
    pub(crate) fn discard(mut self) {
        self.conn = None;
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if conn.client.is_closed() {
            self.pool.clear();
            return;
        }
        let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

const LISTING_FIRST: &str = "SELECT view, activity_ns, plan_id FROM waypoint_plans WHERE view IS NOT NULL \
     ORDER BY activity_ns DESC, plan_id COLLATE \"C\" LIMIT $1";
const LISTING_AFTER: &str = "SELECT view, activity_ns, plan_id FROM waypoint_plans WHERE view IS NOT NULL \
     AND activity_ns <= $2 AND (activity_ns < $2 OR plan_id COLLATE \"C\" > $3) \
     ORDER BY activity_ns DESC, plan_id COLLATE \"C\" LIMIT $1";
const LISTING_OPEN_FIRST: &str = "SELECT view, activity_ns, plan_id FROM waypoint_plans WHERE view IS NOT NULL \
     AND state NOT IN ('applied', 'cancelled') ORDER BY activity_ns DESC, plan_id COLLATE \"C\" LIMIT $1";
const LISTING_OPEN_AFTER: &str = "SELECT view, activity_ns, plan_id FROM waypoint_plans WHERE view IS NOT NULL \
     AND state NOT IN ('applied', 'cancelled') \
     AND activity_ns <= $2 AND (activity_ns < $2 OR plan_id COLLATE \"C\" > $3) \
     ORDER BY activity_ns DESC, plan_id COLLATE \"C\" LIMIT $1";

impl Conn {
    fn prepare(mut client: Client, target: &str) -> Result<Conn, PgStoreError> {
        let mut prepare =
            |sql: &str| client.prepare(sql).map_err(|e| PgStoreError::from_driver(target, "prepare a statement", e));
        let statements = Statements {
            append: prepare(
                "SELECT waypoint_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            )?,
            plan_row: prepare("SELECT version, view, removed_at FROM waypoint_plans WHERE plan_id = $1")?,
            // `removed_at` comes with the row the append locks anyway: a tombstone costs no query.
            lock_plan: prepare("SELECT version, view, removed_at FROM waypoint_plans WHERE plan_id = $1 FOR UPDATE")?,
            insert_plan: prepare(
                "INSERT INTO waypoint_plans (plan_id, version, last_transaction_id) VALUES ($1, 0, '0') \
                 ON CONFLICT (plan_id) DO NOTHING RETURNING version, view, removed_at",
            )?,
            // One round trip writes the events and the catalog row. The row is only updated if
            // this transaction's id is above the id of the plan's last append: followers read the
            // log in transaction-id order, so a plan's versions must rise with it (see the ADR).
            write_events: prepare(
                "WITH inserted AS ( \
                   INSERT INTO waypoint_events \
                     (plan_id, version, event_id, recorded_at, event_type, schema_version, data) \
                   SELECT $1, u.version, u.event_id, u.recorded_at, u.event_type, u.schema_version, u.data \
                   FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::integer[], $7::bytea[]) \
                     AS u(version, event_id, recorded_at, event_type, schema_version, data) \
                   ORDER BY u.version) \
                 UPDATE waypoint_plans SET version = $8, last_transaction_id = pg_current_xact_id(), \
                   view = $9, phase = $10, state = $11, last_activity_at = $12::text::timestamptz, \
                   queue = $13, queued_at = $14::text::timestamptz, activity_ns = $15 \
                 WHERE plan_id = $1 AND last_transaction_id < pg_current_xact_id()",
            )?,
            plan_version: prepare("SELECT version FROM waypoint_plans WHERE plan_id = $1 AND removed_at IS NULL")?,
            read_plan: prepare(
                "SELECT position, plan_id, version, event_id, recorded_at, event_type, schema_version, data, \
                   transaction_id::text \
                 FROM waypoint_events WHERE plan_id = $1 AND version >= $2 ORDER BY version",
            )?,
            read_all_page: prepare(
                "SELECT position, plan_id, version, event_id, recorded_at, event_type, schema_version, data, \
                   transaction_id::text \
                 FROM waypoint_events WHERE position > $1 AND position <= $3 ORDER BY position LIMIT $2",
            )?,
            summary_view: prepare("SELECT view FROM waypoint_plans WHERE plan_id = $1")?,
            catalog: prepare("SELECT view FROM waypoint_plans WHERE view IS NOT NULL")?,
            queue_plans: prepare(
                "SELECT view FROM waypoint_plans WHERE queue = $1 AND view IS NOT NULL ORDER BY queued_at, plan_id",
            )?,
            // Keyset pages over the listing's indexes: `activity_ns <= $1` bounds the index scan,
            // and the rest of the condition steps past the cursor's own plan and its ties.
            listing: [
                prepare(LISTING_FIRST)?,
                prepare(LISTING_AFTER)?,
                prepare(LISTING_OPEN_FIRST)?,
                prepare(LISTING_OPEN_AFTER)?,
            ],
            view_snapshot: prepare(
                "SELECT version, view FROM waypoint_view_snapshots WHERE plan_id = $1 AND format = $2",
            )?,
            save_view_snapshot: prepare(
                "INSERT INTO waypoint_view_snapshots AS s (plan_id, version, format, view) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (plan_id) DO UPDATE SET version = excluded.version, format = excluded.format, \
                   view = excluded.view \
                 WHERE s.version < excluded.version OR s.format <> excluded.format",
            )?,
            removal: prepare(
                "SELECT version, removed_at, archive FROM waypoint_plans \
                 WHERE plan_id = $1 AND removed_at IS NOT NULL",
            )?,
            removals_with_prefix: prepare(
                "SELECT plan_id, version, removed_at, archive FROM waypoint_plans \
                 WHERE starts_with(plan_id, $1) AND removed_at IS NOT NULL ORDER BY plan_id",
            )?,
            // Sorted, so two removals (or anything else locking several rows) never deadlock.
            lock_for_removal: prepare(
                "SELECT plan_id, version, removed_at IS NOT NULL FROM waypoint_plans \
                 WHERE plan_id = ANY($1) ORDER BY plan_id FOR UPDATE",
            )?,
            // One round trip turns the catalog rows into tombstones and deletes the plans' events
            // and view snapshots; its row counts let the caller check the events against the
            // versions before committing.
            remove_plans: prepare(
                "WITH tombstones AS ( \
                   UPDATE waypoint_plans SET view = NULL, phase = NULL, state = NULL, last_activity_at = NULL, queue = NULL, \
                     removed_at = $2, archive = $3 \
                   WHERE plan_id = ANY($1) AND removed_at IS NULL RETURNING 1), \
                 snapshots AS (DELETE FROM waypoint_view_snapshots WHERE plan_id = ANY($1) RETURNING 1), \
                 logs AS (DELETE FROM waypoint_step_logs WHERE plan_id = ANY($1) RETURNING 1), \
                 events AS (DELETE FROM waypoint_events WHERE plan_id = ANY($1) RETURNING 1) \
                 SELECT (SELECT count(*) FROM tombstones), (SELECT count(*) FROM events)",
            )?,
            // An upsert, only for a plan whose catalog row holds events and is no tombstone. The
            // row's key-share lock waits for a removal that locked the row (FOR UPDATE) to end,
            // and the row is then checked again: a log never lands after its plan's removal.
            put_step_log: prepare(
                "WITH plan AS ( \
                   SELECT plan_id FROM waypoint_plans \
                   WHERE plan_id = $1 AND removed_at IS NULL AND version > 0 FOR KEY SHARE) \
                 INSERT INTO waypoint_step_logs AS l (plan_id, step, attempt, stream, bytes, cut) \
                 SELECT plan_id, $2::bigint, $3::bigint, $4::text, $5::bytea, $6::bigint FROM plan \
                 ON CONFLICT (plan_id, step, attempt, stream) DO UPDATE SET bytes = excluded.bytes, cut = excluded.cut",
            )?,
            step_logs: prepare(
                "SELECT step, attempt, stream, bytes, cut FROM waypoint_step_logs \
                 WHERE plan_id = $1 AND ($2::bigint IS NULL OR step = $2) AND ($3::bigint IS NULL OR attempt = $3) \
                 ORDER BY step, attempt, stream = 'stderr'",
            )?,
        };
        let row = client
            .query_one(
                "SELECT pg_backend_pid(), backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                &[],
            )
            .map_err(|e| PgStoreError::from_driver(target, "identify the connection's server process", e))?;
        let backend = Backend { pid: row.get(0), started: row.get(1) };
        Ok(Conn { client, statements, backend })
    }
}
