//! `PostgresStore`: the event-store port over PostgreSQL. Every call runs synchronously on a
//! pooled connection and returns a ready future, like the file store.
//!
//! Why this file is long (about 1,200 lines): the append, the reads and the whole-log reader
//! share one invariant (a reader never passes an append in flight, see ADR 0007), and keeping the
//! SQL that upholds it in one file keeps it reviewable as one piece.
//!
//! An append is normally one statement in one round trip (`waypoint_append`, migration 6): the
//! events with the catalog row as it will be after them, written only if the row is still at the
//! version the view was folded from. That view comes from the row this store's last append to
//! the plan wrote (a small cache), or else from reading the row. When the statement writes
//! nothing, the append runs as a transaction that locks the plan's catalog row (which serialises
//! appends to the plan), checks the expected version, then inserts the events and updates the
//! row in one statement. The log's `UNIQUE (plan_id, version)` is the last guard: a violation is
//! a conflict. A row that is a retention tombstone refuses the append (`Removed`). Retention
//! removes plans in batches, each one transaction that locks the batch's rows, so an append and a
//! removal of the same plan are ordered by that row lock too. An append whose answer was lost
//! with its connection is settled before anything is reported (see `settle`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use eventually::store::{EventStore, EventStream, Expected, Persisted, Select};
use futures::future::BoxFuture;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::Row;
use waypoint_application::{
    CatalogQuery, PlanStore, PlanView, QueueLimit, QueueLock, RecordedEvent, Removal, RemovalReport, RunLocks, StepLog,
    StoreError, StoredEvent,
};
use waypoint_domain::{EventId, PlanEvent, PlanId, QueueName, StepNumber};

use crate::error::PgStoreError;
use crate::pool::{Backend, Conn, Pool, Pooled};
use crate::retention;
use crate::runlock::PgRunLocks;
use crate::schema;

/// Events folded on top of a plan's view snapshot before a fresh snapshot is saved.
const VIEW_SNAPSHOT_EVERY: usize = 64;
/// The encoding of stored views; a snapshot of another format is ignored and rebuilt.
const VIEW_FORMAT: i32 = 1;
/// Rows per page when reading the whole log.
const PAGE: i64 = 512;
/// Attempts of one append when its transaction id came out below the plan's last one.
const APPEND_ATTEMPTS: usize = 8;
/// Plans whose catalog row the store keeps for its next append (see [`RowCache`]).
const CACHED_ROWS: usize = 4096;
/// How long settling an append whose answer was lost waits for its server process to end.
const SETTLE_WAIT_MS: i64 = 10_000;

/// The PostgreSQL store. Cheap to clone: clones share one pool of connections.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    pool: Arc<Pool>,
    cache: RowCache,
    /// Kept alive as long as the store: a test database is dropped after the last handle.
    _attachment: Option<Box<dyn std::fmt::Debug + Send + Sync>>,
}

/// An append's events, encoded for the arrays of the insert statement.
struct Encoded {
    event_ids: Vec<uuid::Uuid>,
    recorded_at: Vec<String>,
    event_types: Vec<String>,
    schema_versions: Vec<i32>,
    data: Vec<Vec<u8>>,
}

enum Attempt {
    Done(u32),
    /// This transaction's id came out below the plan's last append's: try a new transaction.
    Again,
    /// The one-statement append wrote nothing: the plan is not at the version its view was
    /// folded from (or is removed, or its last append's transaction id is above this one's).
    Missed,
}

/// What became of an append whose answer was lost.
enum Settled {
    Stored(u32),
    /// Its transaction is over and wrote nothing; the error it met.
    NotStored(PgStoreError),
}

/// A plan's catalog row as an append starts from it: the plan's version and its compact view.
#[derive(Debug)]
struct Base {
    version: u32,
    view: Option<PlanView>,
}

/// The catalog rows this store's appends last wrote (or the locking append last read), by
/// plan: the next append to such a plan folds its events into the cached view and sends them
/// in one statement, which writes only if the row is still at the cached version. An entry is
/// taken out while an append uses it and put back only when the append succeeds.
#[derive(Debug, Default)]
struct RowCache {
    rows: Mutex<HashMap<PlanId, Base>>,
}

impl RowCache {
    fn take(&self, plan_id: &PlanId) -> Option<Base> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).remove(plan_id)
    }

    fn put(&self, plan_id: &PlanId, base: Base) {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        if rows.len() >= CACHED_ROWS {
            // Any entry will do: a plan not cached costs one more round trip, nothing else.
            if let Some(evicted) = rows.keys().next().cloned() {
                rows.remove(&evicted);
            }
        }
        rows.insert(plan_id.clone(), base);
    }
}

impl PostgresStore {
    /// Connects to the database named by `url` (`postgres://user:password@host:port/db` or the
    /// `host=… dbname=…` form) and brings its schema up to date. The database must exist. A
    /// `url` without a password takes it from libpq's password file (`PGPASSFILE`, else
    /// `~/.pgpass`), refused if its group or others may access it.
    pub fn connect(url: &str) -> Result<PostgresStore, PgStoreError> {
        Self::connect_with_attachment(url, None)
    }

    pub(crate) fn connect_with_attachment(
        url: &str,
        attachment: Option<Box<dyn std::fmt::Debug + Send + Sync>>,
    ) -> Result<PostgresStore, PgStoreError> {
        let pool = Arc::new(Pool::new(url)?);
        let mut client = pool.connect_client()?;
        schema::migrate(&mut client, &pool.target)?;
        drop(client);
        // Prepares the statements now, so a broken schema fails the open rather than a read.
        drop(pool.get()?);
        Ok(PostgresStore { shared: Arc::new(Shared { pool, cache: RowCache::default(), _attachment: attachment }) })
    }

    /// Another handle on the same database with a pool of its own, as a second process would
    /// open it.
    pub fn reconnect(&self) -> Result<PostgresStore, PgStoreError> {
        let pool = Arc::new(self.shared.pool.independent());
        drop(pool.get()?);
        Ok(PostgresStore { shared: Arc::new(Shared { pool, cache: RowCache::default(), _attachment: None }) })
    }

    /// The connection string, password masked.
    pub fn target(&self) -> &str {
        &self.shared.pool.target
    }

    /// The run locks of the plans in this database.
    pub fn run_locks(&self) -> PgRunLocks {
        PgRunLocks::new(self.shared.pool.clone())
    }

    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.shared.pool
    }

    pub(crate) fn fail(&self, context: &'static str) -> impl Fn(postgres::Error) -> PgStoreError + '_ {
        move |e| PgStoreError::from_driver(&self.shared.pool.target, context, e)
    }

    /// Runs a read on a pooled connection; if the connection had died while idle (the server
    /// restarted), runs it once more on a fresh one. Reads change nothing, so this is safe.
    pub(crate) fn read<T>(&self, mut op: impl FnMut(&mut Conn) -> Result<T, PgStoreError>) -> Result<T, PgStoreError> {
        let mut pooled = self.pool().get()?;
        match op(pooled.conn()) {
            Err(e) if e.is_unavailable() && pooled.reused => {
                drop(pooled);
                self.pool().clear();
                op(self.pool().get_fresh()?.conn())
            }
            result => result,
        }
    }

    /// Runs a writing transaction on a pooled connection. If its `BEGIN` failed on a connection
    /// that had died while idle (nothing else was sent), runs it once more on a fresh one.
    pub(crate) fn write<T>(&self, once: impl FnMut(&mut Conn) -> Result<T, AppendFailure>) -> Result<T, PgStoreError> {
        self.write_attempt(once).map_err(|failure| match failure {
            BeginFailed(error) | Failed(error) | Uncertain { error, .. } => error,
        })
    }

    /// Appends `events` to `plan_id`'s stream if its version is `expected`; returns the new
    /// version once the transaction has committed.
    ///
    /// First in one round trip (see [`Self::append_in_one_statement`]); if that wrote nothing
    /// (another writer moved the plan, a removal, a transaction id below the plan's last), in
    /// a transaction that locks the plan's catalog row and says why.
    pub fn append_events(
        &self,
        plan_id: &PlanId,
        expected: Expected,
        events: Vec<RecordedEvent>,
    ) -> Result<u32, PgStoreError> {
        let encoded = encode(&events);
        let mut optimistic = true;
        // Each done at most once: an append that wrote nothing and met a broken connection (one
        // that died while idle, or while the append was on its way) is sent again.
        let (mut settled_once, mut refreshed) = (false, false);
        for _ in 0..APPEND_ATTEMPTS {
            let attempt = if optimistic {
                self.append_in_one_statement(plan_id, expected, &events, &encoded)
            } else {
                self.write_attempt(|conn| self.append_locked(conn, plan_id, expected, &events, &encoded))
            };
            match attempt {
                Ok(Attempt::Done(version)) => return Ok(version),
                Ok(Attempt::Again) => {}
                Ok(Attempt::Missed) => optimistic = false,
                Err(Uncertain { backend, error }) => {
                    // The answer was lost: look whether the events are stored, once their
                    // writer can no longer commit.
                    let first = encoded.event_ids.first().copied().unwrap_or_default();
                    match self.settle(&backend, plan_id, first, error)? {
                        Settled::Stored(version) => return Ok(version + events.len() as u32 - 1),
                        // Not stored, and never will be: trying again cannot write twice.
                        Settled::NotStored(_) if !settled_once => {
                            settled_once = true;
                            self.pool().clear();
                        }
                        Settled::NotStored(error) => return Err(error),
                    }
                }
                Err(BeginFailed(error)) if error.is_unavailable() && !refreshed => {
                    refreshed = true;
                    self.pool().clear();
                }
                Err(BeginFailed(error) | Failed(error)) => return Err(error),
            }
        }
        Err(PgStoreError::Corrupt {
            location: format!("plan {plan_id}"),
            detail: "its last append's transaction id stayed above every new one".into(),
        })
    }

    /// The append in one round trip: the view of the expected version (the one this store
    /// cached when it last wrote the plan, or else the catalog row, read without a lock) with
    /// the events folded in goes to `waypoint_append` (migration 6), which runs as one
    /// statement in its own transaction and writes only if the catalog row is still at that
    /// version. The reply arrives after the commit.
    fn append_in_one_statement(
        &self,
        plan_id: &PlanId,
        expected: Expected,
        events: &[RecordedEvent],
        encoded: &Encoded,
    ) -> Result<Attempt, AppendFailure> {
        let mut pooled = self.pool().get().map_err(Failed)?;
        let conn = pooled.conn();
        let backend = conn.backend.clone();
        let target = &self.shared.pool.target;
        // A cached entry is taken out: it is put back only by an append that succeeds. An empty
        // append only checks the version, which a cache cannot tell.
        let cached = self.shared.cache.take(plan_id).filter(|base| {
            !events.is_empty()
                && match expected {
                    Expected::Exact(expected) => base.version == expected,
                    Expected::Any => true,
                }
        });
        let base = match cached {
            Some(base) => base,
            None => {
                let row = conn.client.query_opt(&conn.statements.plan_row, &[&plan_id.as_str()]).map_err(|e| {
                    // Nothing was written: like a failed BEGIN, this may be retried on a fresh
                    // connection.
                    BeginFailed(PgStoreError::from_driver(target, "read the plan's catalog row", e))
                })?;
                let base = catalog_row(plan_id, row.as_ref()).map_err(Failed)?;
                if let Expected::Exact(expected) = expected {
                    if expected != base.version {
                        return Err(Failed(PgStoreError::Conflict {
                            plan_id: plan_id.clone(),
                            expected,
                            actual: base.version,
                        }));
                    }
                }
                if events.is_empty() {
                    return Ok(Attempt::Done(base.version));
                }
                base
            }
        };
        let current = base.version;
        let write = CatalogWrite::fold(plan_id, base, events).map_err(Failed)?;
        let written = {
            let row = RowParams::new(&write, encoded);
            let (id, expected) = (plan_id.as_str(), i64::from(current));
            let params: Vec<&(dyn ToSql + Sync)> = [&id as _, &expected as _].into_iter().chain(row.params()).collect();
            conn.client.query_one(&conn.statements.append, &params)
        };
        match written {
            Ok(row) if row.get::<_, bool>(0) => {
                let version = write.version;
                self.shared.cache.put(plan_id, write.into_base());
                Ok(Attempt::Done(version))
            }
            Ok(_) => Ok(Attempt::Missed),
            Err(e) => {
                let error = append_error(plan_id, current, target, "append events", e);
                if error.is_unavailable() {
                    // Sent, and no answer: the statement may have committed.
                    pooled.discard();
                    Err(Uncertain { backend, error })
                } else {
                    Err(Failed(error))
                }
            }
        }
    }

    /// The append as one transaction that locks the plan's catalog row: used when the one
    /// statement wrote nothing, to tell a conflict, a removal or a transaction id below the
    /// plan's last one apart, and to append whatever the plan's version when `expected` is
    /// `Any`.
    fn append_locked(
        &self,
        conn: &mut Conn,
        plan_id: &PlanId,
        expected: Expected,
        events: &[RecordedEvent],
        encoded: &Encoded,
    ) -> Result<Attempt, AppendFailure> {
        let fail = |context| {
            let target = &self.shared.pool.target;
            move |e| Failed(PgStoreError::from_driver(target, context, e))
        };
        let Conn { client, statements: st, backend } = conn;
        client
            .batch_execute(BEGIN_APPEND)
            .map_err(|e| BeginFailed(PgStoreError::from_driver(&self.shared.pool.target, "begin an append", e)))?;
        let mut tx = OpenTransaction { client, committed: false };
        let mut row = tx.client.query_opt(&st.lock_plan, &[&plan_id.as_str()]).map_err(fail("lock the plan"))?;
        if row.is_none() && !events.is_empty() {
            row = tx.client.query_opt(&st.insert_plan, &[&plan_id.as_str()]).map_err(fail("add the plan"))?;
            if row.is_none() {
                // Another append created the plan and committed meanwhile: lock its row.
                row = tx.client.query_opt(&st.lock_plan, &[&plan_id.as_str()]).map_err(fail("lock the plan"))?;
            }
        }
        let base = catalog_row(plan_id, row.as_ref()).map_err(Failed)?;
        let current = base.version;
        if let Expected::Exact(expected) = expected {
            if expected != current {
                return Err(Failed(PgStoreError::Conflict { plan_id: plan_id.clone(), expected, actual: current }));
            }
        }
        if events.is_empty() {
            return Ok(Attempt::Done(current));
        }
        let write = CatalogWrite::fold(plan_id, base, events).map_err(Failed)?;
        let row = RowParams::new(&write, encoded);
        let id = plan_id.as_str();
        let params: Vec<&(dyn ToSql + Sync)> = [&id as _].into_iter().chain(row.params()).collect();
        let updated = tx
            .client
            .execute(&st.write_events, &params)
            .map_err(|e| Failed(append_error(plan_id, current, &self.shared.pool.target, "append events", e)))?;
        if updated == 0 {
            return Ok(Attempt::Again);
        }
        if let Err(e) = tx.client.batch_execute("COMMIT") {
            let error = PgStoreError::from_driver(
                &self.shared.pool.target,
                "commit an append (it may or may not have been stored)",
                e,
            );
            // The transaction is over either way: nothing to roll back.
            tx.committed = true;
            return Err(if error.is_unavailable() {
                Uncertain { backend: backend.clone(), error }
            } else {
                Failed(error)
            });
        }
        tx.committed = true;
        let version = write.version;
        self.shared.cache.put(plan_id, write.into_base());
        Ok(Attempt::Done(version))
    }

    /// Settles an append whose answer was lost with its connection: on a fresh connection, ends
    /// the server process that ran it (if it still runs, and waits until it has ended), after
    /// which its transaction has committed or never will; then looks for the append's first
    /// event (`event_id`). If even that cannot be told (the server is unreachable), the
    /// append's error, saying that the events may or may not have been stored.
    fn settle(
        &self,
        backend: &Backend,
        plan_id: &PlanId,
        event_id: uuid::Uuid,
        error: PgStoreError,
    ) -> Result<Settled, PgStoreError> {
        let unknown = |error| recontext(error, "append events (they may or may not have been stored)");
        let Ok(mut pooled) = self.pool().get_fresh() else { return Err(unknown(error)) };
        let client = &mut pooled.conn().client;
        let ended = client.query_opt(
            "SELECT pg_terminate_backend(pid, $3) FROM pg_stat_activity WHERE pid = $1 AND backend_start::text = $2",
            &[&backend.pid, &backend.started, &SETTLE_WAIT_MS],
        );
        match ended {
            // Gone already, or ended now.
            Ok(None) => {}
            Ok(Some(row)) if row.get::<_, bool>(0) => {}
            // Still running after the wait, or not ours to end: its outcome stays open.
            Ok(Some(_)) | Err(_) => return Err(unknown(error)),
        }
        let found = client.query_opt(
            "SELECT version FROM waypoint_events WHERE plan_id = $1 AND event_id = $2",
            &[&plan_id.as_str(), &event_id],
        );
        match found {
            Ok(Some(row)) => Ok(Settled::Stored(to_u32(row.get(0), "version")?)),
            Ok(None) => Ok(Settled::NotStored(recontext(error, "append events (nothing was stored)"))),
            Err(_) => Err(unknown(error)),
        }
    }

    /// [`Self::write`] for appends: an uncertain commit comes back as such.
    fn write_attempt<T>(
        &self,
        mut once: impl FnMut(&mut Conn) -> Result<T, AppendFailure>,
    ) -> Result<T, AppendFailure> {
        let mut fresh = false;
        loop {
            let mut pooled = if fresh { self.pool().get_fresh() } else { self.pool().get() }.map_err(Failed)?;
            let reused = pooled.reused;
            match once(pooled.conn()) {
                Err(BeginFailed(e)) if reused && e.is_unavailable() && !fresh => {
                    pooled.discard();
                    self.pool().clear();
                    fresh = true;
                }
                Err(BeginFailed(e)) => return Err(Failed(e)),
                other => return other,
            }
        }
    }

    /// A digest of every table the store keeps (log, catalog, view snapshots, step logs),
    /// computed by the server in one snapshot: equal exactly when nothing was written.
    pub fn fingerprint(&self) -> Result<String, PgStoreError> {
        self.read(|conn| {
            let row = conn
                .client
                .query_one(
                    "SELECT (SELECT count(*) FROM waypoint_events)::text || ':' \
                       || coalesce((SELECT md5(string_agg(concat_ws('|', position, transaction_id, plan_id, version, \
                            event_id, recorded_at, event_type, schema_version, encode(data, 'hex')), ',' \
                            ORDER BY position)) FROM waypoint_events), '') || ':' \
                       || coalesce((SELECT md5(string_agg(concat_ws('|', plan_id, version, view, phase, state, \
                            last_activity_at, removed_at, archive, queue, queued_at), ',' ORDER BY plan_id)) \
                            FROM waypoint_plans), '') \
                       || ':' \
                       || coalesce((SELECT md5(string_agg(concat_ws('|', name, max_running), ',' ORDER BY name)) \
                            FROM waypoint_queues), '') \
                       || ':' \
                       || coalesce((SELECT md5(string_agg(concat_ws('|', plan_id, version, format, view), ',' \
                            ORDER BY plan_id)) FROM waypoint_view_snapshots), '') \
                       || ':' \
                       || coalesce((SELECT md5(string_agg(concat_ws('|', plan_id, step, attempt, stream, md5(bytes), \
                            cut), ',' ORDER BY plan_id, step, attempt, stream)) FROM waypoint_step_logs), '')",
                    &[],
                )
                .map_err(self.fail("fingerprint the store"))?;
            Ok(format!("postgres:{}", row.get::<_, &str>(0)))
        })
    }

    /// The server's clock (`now()`): the time every machine sharing this database grants and
    /// judges leases by, whatever its own clock says.
    pub fn server_now(&self) -> Result<DateTime<Utc>, PgStoreError> {
        self.read(|conn| {
            let row = conn
                .client
                .query_one("SELECT (extract(epoch FROM now()) * 1000000)::int8", &[])
                .map_err(self.fail("read the server's clock"))?;
            let micros: i64 = row.get(0);
            DateTime::from_timestamp_micros(micros).ok_or_else(|| PgStoreError::Corrupt {
                location: "the server's clock".to_owned(),
                detail: format!("now() is {micros} µs from 1970, outside the calendar Waypoint keeps"),
            })
        })
    }

    /// One plan's events from version `from` (1: all), in version order.
    pub fn read_plan(&self, plan_id: &PlanId, from: u32) -> Result<Vec<StoredEvent>, PgStoreError> {
        self.read(|conn| {
            let rows = conn
                .client
                .query(&conn.statements.read_plan, &[&plan_id.as_str(), &i64::from(from.max(1))])
                .map_err(self.fail("read a plan"))?;
            rows.iter().map(|row| to_stored(row).map(|(_, stored)| stored)).collect()
        })
    }

    /// One plan's current version (0: no events).
    pub fn plan_version(&self, plan_id: &PlanId) -> Result<u32, PgStoreError> {
        self.read(|conn| {
            let row = conn
                .client
                .query_opt(&conn.statements.plan_version, &[&plan_id.as_str()])
                .map_err(self.fail("read a plan's version"))?;
            row.map_or(Ok(0), |row| to_u32(row.get(0), "version"))
        })
    }

    /// One plan's full view: its view snapshot plus only the events after it.
    pub fn plan_view(&self, plan_id: &PlanId) -> Result<Option<PlanView>, PgStoreError> {
        let (view, folded) = self.read(|conn| {
            let base = conn
                .client
                .query_opt(&conn.statements.view_snapshot, &[&plan_id.as_str(), &VIEW_FORMAT])
                .map_err(self.fail("read a view snapshot"))?
                // A snapshot that does not decode is only a lost shortcut: replay instead.
                .and_then(|row| serde_json::from_str::<PlanView>(row.get::<_, &str>(1)).ok())
                .filter(|view| view.plan_id == *plan_id);
            let from = base.as_ref().map_or(1, |v| i64::from(v.version) + 1);
            let rows = conn
                .client
                .query(&conn.statements.read_plan, &[&plan_id.as_str(), &from])
                .map_err(self.fail("read a plan"))?;
            let mut view = base;
            for row in &rows {
                view = PlanView::fold(view, &to_stored(row)?.1);
            }
            Ok((view, rows.len()))
        })?;
        if let Some(view) = view.as_ref().filter(|_| folded >= VIEW_SNAPSHOT_EVERY) {
            // A snapshot only saves later work; failing to save one loses nothing.
            let _ = self.save_view_snapshot(view);
        }
        Ok(view)
    }

    fn save_view_snapshot(&self, view: &PlanView) -> Result<(), PgStoreError> {
        let mut pooled = self.pool().get()?;
        let conn = pooled.conn();
        conn.client
            .execute(
                &conn.statements.save_view_snapshot,
                &[&view.plan_id.as_str(), &i64::from(view.version), &VIEW_FORMAT, &encode_view(view)],
            )
            .map_err(self.fail("save a view snapshot"))?;
        Ok(())
    }

    /// One plan's compact view (see `PlanView::compact`) from its catalog row.
    pub fn summary_view(&self, plan_id: &PlanId) -> Result<Option<PlanView>, PgStoreError> {
        self.read(|conn| {
            let row = conn
                .client
                .query_opt(&conn.statements.summary_view, &[&plan_id.as_str()])
                .map_err(self.fail("read a plan's catalog row"))?;
            match row {
                Some(row) => decode_view(row.get(0)),
                None => Ok(None),
            }
        })
    }

    /// Every plan's compact view, one catalog row each.
    pub fn catalog_views(&self) -> Result<Vec<PlanView>, PgStoreError> {
        self.read(|conn| {
            // Each row is decoded as it arrives, while the server is still sending the rest:
            // decoding the views is most of a listing's cost, and this overlaps it with the query.
            let mut rows = conn
                .client
                .query_raw(&conn.statements.catalog, std::iter::empty::<&dyn postgres::types::ToSql>())
                .map_err(self.fail("read the catalog"))?;
            let mut views = Vec::with_capacity(rows.size_hint().0);
            while let Some(row) = rows.next().map_err(self.fail("read the catalog"))? {
                views.push(decode_view(row.get(0))?.expect("the query skips empty views"));
            }
            Ok(views)
        })
    }

    /// The claim index of `queue` (ADR 0017): the compact views of the plans in it, oldest
    /// submission first, read through the partial index on the catalog's queue column.
    pub fn queue_views(&self, queue: &QueueName) -> Result<Vec<PlanView>, PgStoreError> {
        self.read(|conn| {
            let rows = conn
                .client
                .query(&conn.statements.queue_plans, &[&queue.as_str()])
                .map_err(self.fail("read a queue's plans"))?;
            rows.iter().map(|row| Ok(decode_view(row.get(0))?.expect("the query skips empty views"))).collect()
        })
    }

    /// Every queue's limit on running plans, by name.
    pub fn queue_limits(&self) -> Result<Vec<QueueLimit>, PgStoreError> {
        self.read(|conn| {
            let rows = conn
                .client
                .query("SELECT name, max_running FROM waypoint_queues ORDER BY name", &[])
                .map_err(self.fail("read the queue limits"))?;
            rows.iter()
                .map(|row| {
                    let name: &str = row.get(0);
                    let queue = QueueName::parse(name).map_err(|e| PgStoreError::Corrupt {
                        location: "table waypoint_queues".into(),
                        detail: format!("a queue name does not parse: {e}"),
                    })?;
                    Ok(QueueLimit { queue, limit: row.get::<_, i32>(1).max(0) as u32 })
                })
                .collect()
        })
    }

    /// Sets (or, with `None`, clears) `queue`'s limit.
    pub fn set_queue_limit(&self, queue: &QueueName, limit: Option<u32>) -> Result<(), PgStoreError> {
        let mut pooled = self.pool().get()?;
        let client = &mut pooled.conn().client;
        let result = match limit {
            Some(limit) => client.execute(
                "INSERT INTO waypoint_queues (name, max_running) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET max_running = EXCLUDED.max_running",
                &[&queue.as_str(), &(limit.min(i32::MAX as u32) as i32)],
            ),
            None => client.execute("DELETE FROM waypoint_queues WHERE name = $1", &[&queue.as_str()]),
        };
        result.map(|_| ()).map_err(self.fail("set a queue limit"))
    }

    /// A page of the listing (`PlanStore::catalog_page`): keyset pages over the listing's
    /// index, fetched until the text filter (applied here, as every store applies it) has
    /// admitted a page or the listing ends.
    pub fn catalog_page_views(&self, query: &CatalogQuery) -> Result<Vec<PlanView>, PgStoreError> {
        self.read(|conn| {
            let limit = i64::try_from(query.limit()).unwrap_or(i64::MAX);
            let open = usize::from(query.is_open_only()) * 2;
            let mut after = query.cursor().map(|c| (activity_ns(c.last_activity_at), c.plan_id.as_str().to_owned()));
            let mut page = Vec::with_capacity(query.limit());
            loop {
                let rows = match &after {
                    None => conn.client.query(&conn.statements.listing[open], &[&limit]),
                    Some((ns, id)) => conn.client.query(&conn.statements.listing[open + 1], &[&limit, ns, id]),
                }
                .map_err(self.fail("read a page of the catalog"))?;
                let fetched = rows.len();
                for row in &rows {
                    let view = decode_view(row.get(0))?.expect("the query skips empty views");
                    if query.matches_text(&view) && page.len() < query.limit() {
                        page.push(view);
                    }
                }
                match rows.last() {
                    Some(last) if fetched as i64 == limit && page.len() < query.limit() => {
                        after = Some((last.get::<_, i64>(1), last.get::<_, String>(2)));
                    }
                    _ => return Ok(page),
                }
            }
        })
    }

    /// Every event from global position `from` (1: all) in position order, as one consistent
    /// snapshot of the log, read page by page on one connection. It first waits for the appends
    /// in flight (the settle lock) and stops at the highest position drawn before that, so no
    /// event can later commit below what it returned: a follower may resume from the last
    /// position it saw plus one.
    pub fn read_all(&self, from: u32) -> Result<LogReader, PgStoreError> {
        let mut pooled = self.pool().get()?;
        let settled = match settle_and_begin(pooled.conn(), &self.shared.pool.target) {
            Err(error) if error.is_unavailable() && pooled.reused => {
                pooled.discard();
                self.pool().clear();
                pooled = self.pool().get_fresh()?;
                settle_and_begin(pooled.conn(), &self.shared.pool.target)?
            }
            result => result?,
        };
        let mut reader = LogReader {
            pooled: Some(pooled),
            target: self.shared.pool.target.clone(),
            after: i64::from(from.max(1)) - 1,
            settled,
            buffer: VecDeque::new(),
            done: false,
        };
        reader.fill()?;
        Ok(reader)
    }
}

/// Opens an append's transaction and takes the settle lock shared, in one round trip. Every
/// append holds it from before its positions are drawn until it commits; a reader that takes it
/// exclusively waits for every append in flight, after which no position below the sequence's
/// value can still commit (see [`PostgresStore::read_all`]).
const BEGIN_APPEND: &str = "BEGIN; SELECT pg_advisory_xact_lock_shared(1465011527, 2)";

/// Waits until every position drawn so far is settled (committed or rolled back), then opens the
/// snapshot the whole-log read pages through. One round trip; its rows: the sequence's value.
const SETTLE_AND_BEGIN_READ: &str = "BEGIN; \
    SELECT last_value, is_called FROM waypoint_events_position_seq; \
    SELECT pg_advisory_xact_lock(1465011527, 2); \
    COMMIT; \
    BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// An append's open transaction: rolled back when dropped before its commit.
pub(crate) struct OpenTransaction<'a> {
    pub(crate) client: &'a mut postgres::Client,
    pub(crate) committed: bool,
}

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // A failure here means the connection is gone, which ends the transaction anyway.
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

/// Why an append or removal attempt failed: at BEGIN (nothing was sent; a dead idle connection may be
/// replaced), later (nothing was committed), or with the answer to its commit lost.
pub(crate) enum AppendFailure {
    BeginFailed(PgStoreError),
    Failed(PgStoreError),
    /// The commit was sent on the connection to `backend`, which broke before it answered: the
    /// append may have committed.
    Uncertain {
        backend: Backend,
        error: PgStoreError,
    },
}
pub(crate) use AppendFailure::{BeginFailed, Failed, Uncertain};

/// The whole log read in one REPEATABLE READ snapshot, a page at a time.
pub struct LogReader {
    pooled: Option<Pooled>,
    target: String,
    /// Position of the last event fetched.
    after: i64,
    /// Every position up to this one was settled when the read began: the read stops there.
    settled: i64,
    buffer: VecDeque<StoredEvent>,
    done: bool,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader").field("target", &self.target).field("after", &self.after).finish_non_exhaustive()
    }
}

impl LogReader {
    fn fill(&mut self) -> Result<(), PgStoreError> {
        let Some(pooled) = self.pooled.as_mut() else {
            self.done = true;
            return Ok(());
        };
        let conn = pooled.conn();
        let rows = conn
            .client
            .query(&conn.statements.read_all_page, &[&self.after, &PAGE, &self.settled])
            .map_err(|e| PgStoreError::from_driver(&self.target, "read the log", e))?;
        for row in &rows {
            let (_, stored) = to_stored(row)?;
            self.after = i64::from(stored.sequence_number());
            self.buffer.push_back(stored);
        }
        if (rows.len() as i64) < PAGE {
            self.finish();
        }
        Ok(())
    }

    /// Ends the read-only transaction and hands the connection back.
    fn finish(&mut self) {
        self.done = true;
        if let Some(mut pooled) = self.pooled.take() {
            if pooled.conn().client.batch_execute("COMMIT").is_err() {
                pooled.discard();
            }
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<StoredEvent, PgStoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffer.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                if let Some(pooled) = self.pooled.take() {
                    pooled.discard();
                }
                return Some(Err(e));
            }
        }
        self.buffer.pop_front().map(Ok)
    }
}

impl Drop for LogReader {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Runs [`SETTLE_AND_BEGIN_READ`]: returns the highest settled position, inside the read's open
/// snapshot.
fn settle_and_begin(conn: &mut Conn, target: &str) -> Result<i64, PgStoreError> {
    let messages = conn
        .client
        .simple_query(SETTLE_AND_BEGIN_READ)
        .map_err(|e| PgStoreError::from_driver(target, "settle and begin a read of the log", e))?;
    let row = messages
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or_else(|| PgStoreError::Corrupt {
            location: "waypoint_events_position_seq".into(),
            detail: "the sequence returned no row".into(),
        })?;
    let last: i64 = row.get(0).and_then(|v| v.parse().ok()).unwrap_or(0);
    // Before the first draw the sequence holds its start value without having handed it out.
    Ok(if row.get(1) == Some("t") { last } else { last - 1 })
}

fn encode(events: &[RecordedEvent]) -> Encoded {
    let mut encoded = Encoded {
        event_ids: Vec::with_capacity(events.len()),
        recorded_at: Vec::with_capacity(events.len()),
        event_types: Vec::with_capacity(events.len()),
        schema_versions: Vec::with_capacity(events.len()),
        data: Vec::with_capacity(events.len()),
    };
    for event in events {
        encoded.event_ids.push(event.event_id.as_uuid());
        encoded.recorded_at.push(timestamp(event.recorded_at));
        encoded.event_types.push(event.event.event_type().as_str().to_owned());
        encoded.schema_versions.push(i32::from(event.event.schema_version()));
        encoded.data.push(event.event.encode_data());
    }
    encoded
}

/// RFC 3339 with nanoseconds: the text form keeps the full precision of `recorded_at`, which
/// `timestamptz` (microseconds) would round.
/// A catalog row's last activity in nanoseconds since 1970, the listing's key (times outside
/// 1677..2262 are clamped).
pub(crate) fn activity_ns(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Folds one new event into a plan's compact view, as the catalog projection does.
fn fold_compact(view: &mut Option<PlanView>, plan_id: &PlanId, version: u32, event: &RecordedEvent) {
    match view {
        Some(view) => {
            view.apply(version, event);
            view.compact();
        }
        None => {
            let stored = Persisted::from(plan_id.clone(), event.clone()).version(version).sequence_number(0);
            *view = PlanView::fold(None, &stored).map(|mut view| {
                view.compact();
                view
            });
        }
    }
}

/// A catalog row (version, view, removed_at) as an append's base; no row is version 0.
fn catalog_row(plan_id: &PlanId, row: Option<&Row>) -> Result<Base, PgStoreError> {
    let Some(row) = row else { return Ok(Base { version: 0, view: None }) };
    if let Some(removed_at) = row.get::<_, Option<&str>>(2) {
        let removed_at = retention::parse_removed_at(plan_id, removed_at)?;
        return Err(PgStoreError::Removed { plan_id: plan_id.clone(), removed_at });
    }
    Ok(Base { version: to_u32(row.get::<_, i64>(0), "version")?, view: decode_view(row.get(1))? })
}

/// What an append writes into the plan's catalog row: the new version, the versions of its
/// events, and the compact view with them folded in.
struct CatalogWrite {
    version: u32,
    versions: Vec<i64>,
    view: Option<PlanView>,
}

/// What both append statements (`waypoint_append` and the locking path's `write_events`) take
/// after the plan id and, for the first, the expected version: the events' columns, then the
/// catalog row's, in that order. One list, so the two statements cannot drift apart.
struct RowParams<'a> {
    write: &'a CatalogWrite,
    encoded: &'a Encoded,
    version: i64,
    view_json: Option<String>,
    columns: Columns<'a>,
}

impl<'a> RowParams<'a> {
    fn new(write: &'a CatalogWrite, encoded: &'a Encoded) -> Self {
        RowParams {
            write,
            encoded,
            version: i64::from(write.version),
            view_json: write.view.as_ref().map(encode_view),
            columns: write.columns(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 14] {
        let (write, encoded, columns) = (self.write, self.encoded, &self.columns);
        [
            &write.versions,
            &encoded.event_ids,
            &encoded.recorded_at,
            &encoded.event_types,
            &encoded.schema_versions,
            &encoded.data,
            &self.version,
            &self.view_json,
            &columns.phase,
            &columns.state,
            &columns.last_activity,
            &columns.queue,
            &columns.queued_at,
            &columns.activity_ns,
        ]
    }
}

/// The catalog row's columns derived from its view.
struct Columns<'a> {
    phase: Option<&'a str>,
    state: Option<&'a str>,
    last_activity: Option<String>,
    queue: Option<&'a str>,
    queued_at: Option<String>,
    activity_ns: Option<i64>,
}

impl CatalogWrite {
    fn fold(plan_id: &PlanId, base: Base, events: &[RecordedEvent]) -> Result<CatalogWrite, PgStoreError> {
        let count = events.len() as u32;
        let Some(version) = base.version.checked_add(count) else {
            return Err(PgStoreError::TooLarge(format!("plan {plan_id} would pass u32::MAX events; start a new plan")));
        };
        let versions = (1..=i64::from(count)).map(|i| i64::from(base.version) + i).collect();
        let mut view = base.view;
        for (event, version) in events.iter().zip(base.version + 1..) {
            fold_compact(&mut view, plan_id, version, event);
        }
        Ok(CatalogWrite { version, versions, view })
    }

    fn columns(&self) -> Columns<'_> {
        let view = self.view.as_ref();
        // The claim index (ADR 0017): the row names its queue only while the plan is in it.
        let queue = view.and_then(|v| waypoint_application::in_queue(&v.state)).map(|q| q.as_str());
        Columns {
            phase: view.map(|v| v.state.phase.as_str()),
            state: view.map(|v| v.state.state.as_str()),
            last_activity: view.map(|v| timestamp(v.last_activity_at)),
            queue,
            queued_at: view
                .filter(|_| queue.is_some())
                .and_then(|v| v.state.submission.as_ref())
                .map(|submission| timestamp(submission.at)),
            activity_ns: view.map(|v| activity_ns(v.last_activity_at)),
        }
    }

    fn into_base(self) -> Base {
        Base { version: self.version, view: self.view }
    }
}

/// A driver error of an append's write, typed: a unique violation on `(plan_id, version)` is a
/// conflict (the last guard), an exhausted position sequence is `TooLarge`.
fn append_error(
    plan_id: &PlanId,
    current: u32,
    target: &str,
    context: &'static str,
    e: postgres::Error,
) -> PgStoreError {
    if is_unique_violation(&e) {
        PgStoreError::Conflict { plan_id: plan_id.clone(), expected: current, actual: current + 1 }
    } else if is_sequence_exhausted(&e) {
        PgStoreError::TooLarge("the log's global positions reached u32::MAX; start a new database".into())
    } else {
        PgStoreError::from_driver(target, context, e)
    }
}

/// `error` saying `context` instead of what it said, if it is a connection's.
fn recontext(error: PgStoreError, context: &'static str) -> PgStoreError {
    match error {
        PgStoreError::Unavailable { target, source, .. } => PgStoreError::Unavailable { target, context, source },
        other => other,
    }
}

pub(crate) fn encode_view(view: &PlanView) -> String {
    // Views are plain structs of strings and numbers: serialization cannot fail.
    serde_json::to_string(view).expect("a plan view serializes")
}

fn decode_view(json: Option<&str>) -> Result<Option<PlanView>, PgStoreError> {
    json.map(|json| {
        serde_json::from_str(json).map_err(|e| PgStoreError::Corrupt {
            location: "the catalog (waypoint_plans)".into(),
            detail: e.to_string(),
        })
    })
    .transpose()
}

pub(crate) fn to_u32(value: i64, what: &str) -> Result<u32, PgStoreError> {
    u32::try_from(value).map_err(|_| PgStoreError::Corrupt {
        location: "waypoint_events".into(),
        detail: format!("{what} {value} is outside 0..=u32::MAX"),
    })
}

/// A log row as a stored event, with its transaction id.
fn to_stored(row: &Row) -> Result<(u64, StoredEvent), PgStoreError> {
    let position: i64 = row.get(0);
    let plan_id: &str = row.get(1);
    let version: i64 = row.get(2);
    let corrupt =
        |detail: String| PgStoreError::Corrupt { location: format!("waypoint_events position {position}"), detail };
    let id = PlanId::parse(plan_id).map_err(|e| corrupt(format!("the plan id is invalid: {e}")))?;
    let recorded_at = DateTime::parse_from_rfc3339(row.get(4))
        .map_err(|e| corrupt(format!("recorded_at is not RFC 3339: {e}")))?
        .with_timezone(&Utc);
    let schema_version =
        u16::try_from(row.get::<_, i32>(6)).map_err(|_| corrupt("schema_version is outside u16".into()))?;
    let event = PlanEvent::decode(row.get(5), schema_version, row.get(7)).map_err(|source| PgStoreError::Decode {
        plan_id: plan_id.to_owned(),
        version,
        position,
        source,
    })?;
    let transaction_id: u64 =
        row.get::<_, &str>(8).parse().map_err(|_| corrupt("transaction_id is not a number".into()))?;
    let recorded = RecordedEvent { event_id: EventId::from_uuid(row.get(3)), recorded_at, event };
    let stored = Persisted::from(id, recorded)
        .version(to_u32(version, "version")?)
        .sequence_number(to_u32(position, "position")?);
    Ok((transaction_id, stored))
}

fn is_unique_violation(error: &postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| db.code() == &postgres::error::SqlState::UNIQUE_VIOLATION)
}

fn is_sequence_exhausted(error: &postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| db.code() == &postgres::error::SqlState::SEQUENCE_GENERATOR_LIMIT_EXCEEDED)
}

impl EventStore for PostgresStore {
    type SourceId = PlanId;
    type Event = RecordedEvent;
    type Error = StoreError;

    fn append(
        &mut self,
        source_id: PlanId,
        version: Expected,
        events: Vec<RecordedEvent>,
    ) -> BoxFuture<'_, Result<u32, StoreError>> {
        let result = self.append_events(&source_id, version, events).map_err(StoreError::from);
        Box::pin(futures::future::ready(result))
    }

    fn stream(&self, source_id: PlanId, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        let from = match select {
            Select::All => 1,
            Select::From(v) => v,
        };
        let result = self.read_plan(&source_id, from).map_err(StoreError::from).map(|events| {
            let stream: EventStream<'_, Self> = Box::pin(futures::stream::iter(events.into_iter().map(Ok)));
            stream
        });
        Box::pin(futures::future::ready(result))
    }

    fn stream_all(&self, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        let from = match select {
            Select::All => 1,
            Select::From(p) => p,
        };
        let result = self.read_all(from).map_err(StoreError::from).map(|reader| {
            let stream: EventStream<'_, Self> =
                Box::pin(futures::stream::iter(reader.map(|event| event.map_err(StoreError::from))));
            stream
        });
        Box::pin(futures::future::ready(result))
    }

    fn remove(&mut self, _source_id: PlanId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(futures::future::ready(Err(StoreError::Unsupported(
            "the log is append-only; events are never removed",
        ))))
    }
}

impl PlanStore for PostgresStore {
    fn run_locks(&self) -> Arc<dyn RunLocks> {
        Arc::new(PostgresStore::run_locks(self))
    }

    fn content_fingerprint(&self) -> BoxFuture<'_, Result<String, StoreError>> {
        Box::pin(futures::future::ready(self.fingerprint().map_err(StoreError::from)))
    }

    fn now(&self) -> BoxFuture<'_, Result<DateTime<Utc>, StoreError>> {
        Box::pin(futures::future::ready(self.server_now().map_err(StoreError::from)))
    }

    fn load_view<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<PlanView>, StoreError>> {
        Box::pin(futures::future::ready(self.plan_view(plan_id).map_err(StoreError::from)))
    }

    fn load_summary_view<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<PlanView>, StoreError>> {
        Box::pin(futures::future::ready(self.summary_view(plan_id).map_err(StoreError::from)))
    }

    fn catalog(&self) -> BoxFuture<'_, Result<Vec<PlanView>, StoreError>> {
        Box::pin(futures::future::ready(self.catalog_views().map_err(StoreError::from)))
    }

    fn catalog_page<'a>(&'a self, query: &'a CatalogQuery) -> BoxFuture<'a, Result<Vec<PlanView>, StoreError>> {
        Box::pin(futures::future::ready(self.catalog_page_views(query).map_err(StoreError::from)))
    }

    fn remove_plans<'a>(
        &'a self,
        plans: &'a [(PlanId, u32)],
        removed_at: DateTime<Utc>,
        archive: &'a str,
    ) -> BoxFuture<'a, Result<RemovalReport, StoreError>> {
        let result = self.remove_plan_events(plans, removed_at, archive).map_err(StoreError::from);
        Box::pin(futures::future::ready(result))
    }

    fn removal<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<Removal>, StoreError>> {
        Box::pin(futures::future::ready(self.tombstone(plan_id).map_err(StoreError::from)))
    }

    fn removals_with_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Removal>, StoreError>> {
        Box::pin(futures::future::ready(self.tombstones_with_prefix(prefix).map_err(StoreError::from)))
    }

    fn put_step_log<'a>(&'a self, plan_id: &'a PlanId, log: StepLog) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(futures::future::ready(self.write_step_log(plan_id, &log).map_err(StoreError::from)))
    }

    fn step_logs<'a>(
        &'a self,
        plan_id: &'a PlanId,
        step: Option<StepNumber>,
        attempt: Option<waypoint_domain::Attempt>,
    ) -> BoxFuture<'a, Result<Vec<StepLog>, StoreError>> {
        Box::pin(futures::future::ready(self.read_step_logs(plan_id, step, attempt).map_err(StoreError::from)))
    }

    // Workers and queues (ADR 0017): the claim index is a partial index on the catalog, the claim
    // lock a session advisory lock.

    fn queue_plans<'a>(&'a self, queue: &'a QueueName) -> BoxFuture<'a, Result<Vec<PlanView>, StoreError>> {
        Box::pin(futures::future::ready(self.queue_views(queue).map_err(StoreError::from)))
    }

    fn lock_queue<'a>(&'a self, queue: &'a QueueName) -> BoxFuture<'a, Result<QueueLock, StoreError>> {
        Box::pin(futures::future::ready(crate::runlock::lock_queue(self.pool(), queue).map_err(StoreError::from)))
    }

    fn queue_limits(&self) -> BoxFuture<'_, Result<Vec<QueueLimit>, StoreError>> {
        Box::pin(futures::future::ready(PostgresStore::queue_limits(self).map_err(StoreError::from)))
    }

    fn set_queue_limit<'a>(
        &'a self,
        queue: &'a QueueName,
        limit: Option<u32>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(futures::future::ready(PostgresStore::set_queue_limit(self, queue, limit).map_err(StoreError::from)))
    }
}
