//! The schema and its migrations. Every open reads the schema version; only when it is behind
//! does it run `migrate_to`, under a transaction-scoped advisory lock, so processes starting at
//! once apply each migration exactly once (and a role that may only read opens a current store).

use postgres::Client;

use crate::error::PgStoreError;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock taken while migrating, in the two-key space (run locks use the one-key
/// space, so the two never collide): 'WPMG' and 1.
const MIGRATION_LOCK: (i32, i32) = (0x5750_4d47, 1);

/// Migration `n` (1-based) takes the schema from version `n - 1` to `n`. Never edit one that has
/// shipped: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the log, the catalog and view snapshots.
    "CREATE TABLE waypoint_events (
        position bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME waypoint_events_position_seq MAXVALUE 4294967295) PRIMARY KEY,
        transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
        plan_id text NOT NULL,
        version bigint NOT NULL CHECK (version BETWEEN 1 AND 4294967295),
        event_id uuid NOT NULL,
        recorded_at text NOT NULL,
        event_type text NOT NULL,
        schema_version integer NOT NULL CHECK (schema_version BETWEEN 1 AND 65535),
        data bytea NOT NULL,
        CONSTRAINT waypoint_events_plan_version UNIQUE (plan_id, version)
    );
    CREATE INDEX waypoint_events_global_order ON waypoint_events (transaction_id, position);
    CREATE TABLE waypoint_plans (
        plan_id text PRIMARY KEY,
        version bigint NOT NULL,
        last_transaction_id xid8 NOT NULL,
        view text,
        phase text,
        state text,
        last_activity_at timestamptz
    );
    CREATE TABLE waypoint_view_snapshots (
        plan_id text PRIMARY KEY,
        version bigint NOT NULL,
        format integer NOT NULL,
        view text NOT NULL
    );",
    // 2: retention. A removed plan keeps its catalog row as its tombstone: the append already
    // locks that row, so it meets the tombstone without another query. `removed_at` is RFC 3339
    // text with nanoseconds, like `recorded_at`.
    "ALTER TABLE waypoint_plans ADD COLUMN removed_at text, ADD COLUMN archive text;
    ALTER TABLE waypoint_plans ADD CONSTRAINT waypoint_plans_tombstone
        CHECK ((removed_at IS NULL) = (archive IS NULL) AND (removed_at IS NULL OR view IS NULL));",
    // 3: step logs, the kept end of each stream of each attempt (1 MiB at most). A log belongs to
    // a plan's catalog row, which outlives the plan as its tombstone; retention deletes the logs
    // in the transaction that makes the row a tombstone.
    "CREATE TABLE waypoint_step_logs (
        plan_id text NOT NULL REFERENCES waypoint_plans (plan_id),
        step bigint NOT NULL CHECK (step BETWEEN 1 AND 4294967295),
        attempt bigint NOT NULL CHECK (attempt BETWEEN 1 AND 4294967295),
        stream text NOT NULL CHECK (stream IN ('stdout', 'stderr')),
        bytes bytea NOT NULL CHECK (octet_length(bytes) <= 1048576),
        cut bigint NOT NULL CHECK (cut >= 0),
        PRIMARY KEY (plan_id, step, attempt, stream)
    );",
    // 4: workers and queues (ADR 0017). The claim index: a plan's catalog row names its queue
    // (and when it was submitted) exactly while the plan is in that queue (submitted, neither
    // finished nor failed), kept by the append that moves the plan; a partial index serves a
    // queue's plans oldest first without reading any other plan. Queue limits are a table of
    // their own.
    "ALTER TABLE waypoint_plans ADD COLUMN queue text, ADD COLUMN queued_at timestamptz;
    CREATE INDEX waypoint_plans_queue ON waypoint_plans (queue, queued_at, plan_id) WHERE queue IS NOT NULL;
    CREATE TABLE waypoint_queues (
        name text PRIMARY KEY,
        max_running integer NOT NULL CHECK (max_running >= 0)
    );",
    // 5: the listing a page at a time, newest activity first: each catalog row's last activity
    // in nanoseconds (timestamptz keeps microseconds), filled in from the view for rows written
    // before, and an index in the listing's order (plan ids in byte order, as Rust compares
    // them), with a partial one for the plans that may still move.
    "ALTER TABLE waypoint_plans ADD COLUMN activity_ns bigint;
    UPDATE waypoint_plans SET activity_ns =
        extract(epoch FROM (left(view::json->>'last_activity_at', 19) || '+00')::timestamptz)::bigint * 1000000000
        + coalesce(rpad(substring(view::json->>'last_activity_at' FROM '\\.([0-9]+)'), 9, '0')::bigint, 0)
      WHERE view IS NOT NULL;
    CREATE INDEX waypoint_plans_listing ON waypoint_plans (activity_ns DESC, plan_id COLLATE \"C\")
      WHERE view IS NOT NULL;
    CREATE INDEX waypoint_plans_open_listing ON waypoint_plans (activity_ns DESC, plan_id COLLATE \"C\")
      WHERE view IS NOT NULL AND state NOT IN ('applied', 'cancelled');",
    // 6: an append in one round trip (ADR 0007). The caller folded the events into the view of
    // the version it expects; this takes the settle lock shared, then moves the catalog row on
    // only if it is still at that version, no tombstone, and its last append's transaction id is
    // below this one's (for a new plan: inserts the row unless one exists), and inserts the
    // events only then. `false`: nothing was written, and the caller takes the locking path.
    "CREATE FUNCTION waypoint_append(
        p_plan_id text, p_expected bigint, p_versions bigint[], p_event_ids uuid[], p_recorded_at text[],
        p_event_types text[], p_schema_versions integer[], p_data bytea[], p_version bigint, p_view text,
        p_phase text, p_state text, p_last_activity_at text, p_queue text, p_queued_at text, p_activity_ns bigint)
    RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock_shared(1465011527, 2);
        IF p_expected = 0 THEN
            INSERT INTO waypoint_plans (plan_id, version, last_transaction_id, view, phase, state,
                last_activity_at, queue, queued_at, activity_ns)
            VALUES (p_plan_id, p_version, pg_current_xact_id(), p_view, p_phase, p_state,
                p_last_activity_at::timestamptz, p_queue, p_queued_at::timestamptz, p_activity_ns)
            ON CONFLICT (plan_id) DO NOTHING;
        ELSE
            UPDATE waypoint_plans SET version = p_version, last_transaction_id = pg_current_xact_id(),
                view = p_view, phase = p_phase, state = p_state,
                last_activity_at = p_last_activity_at::timestamptz, queue = p_queue,
                queued_at = p_queued_at::timestamptz, activity_ns = p_activity_ns
            WHERE plan_id = p_plan_id AND version = p_expected AND removed_at IS NULL
                AND last_transaction_id < pg_current_xact_id();
        END IF;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
        INSERT INTO waypoint_events (plan_id, version, event_id, recorded_at, event_type, schema_version, data)
        SELECT p_plan_id, u.version, u.event_id, u.recorded_at, u.event_type, u.schema_version, u.data
        FROM unnest(p_versions, p_event_ids, p_recorded_at, p_event_types, p_schema_versions, p_data)
            AS u(version, event_id, recorded_at, event_type, schema_version, data)
        ORDER BY u.version;
        RETURN true;
    END
    $$;",
];

/// Brings the database's schema to [`SCHEMA_VERSION`]; refuses one newer than this build.
pub(crate) fn migrate(client: &mut Client, target: &str) -> Result<i32, PgStoreError> {
    // Most opens find the schema current: two reads, no lock and no DDL, so that a role that may
    // only read (a dashboard, a reporting job) can open the store.
    if let Some(found) = current_version(client, target)? {
        if found > SCHEMA_VERSION {
            return Err(PgStoreError::SchemaTooNew { target: target.to_owned(), found, supported: SCHEMA_VERSION });
        }
        if found == SCHEMA_VERSION {
            return Ok(found);
        }
    }
    migrate_to(client, target, SCHEMA_VERSION)
}

/// The schema version the database records, or `None` before the first migration.
fn current_version(client: &mut Client, target: &str) -> Result<Option<i32>, PgStoreError> {
    let fail = |context| move |e| PgStoreError::from_driver(target, context, e);
    let exists: bool = client
        .query_one("SELECT to_regclass('waypoint_schema') IS NOT NULL", &[])
        .map_err(fail("look for the schema-version table"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let found: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM waypoint_schema", &[])
        .map_err(fail("read the schema version"))?
        .get(0);
    Ok(Some(found))
}

/// Brings the database's schema to version `upto` (at most [`SCHEMA_VERSION`]); tests use an
/// older `upto` to build a database as an earlier build left it.
pub(crate) fn migrate_to(client: &mut Client, target: &str, upto: i32) -> Result<i32, PgStoreError> {
    let fail = |context| move |e| PgStoreError::from_driver(target, context, e);
    let mut tx = client.transaction().map_err(fail("begin the migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&MIGRATION_LOCK.0, &MIGRATION_LOCK.1])
        .map_err(fail("take the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS waypoint_schema (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .map_err(fail("create the schema-version table"))?;
    let found: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM waypoint_schema", &[])
        .map_err(fail("read the schema version"))?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(PgStoreError::SchemaTooNew { target: target.to_owned(), found, supported: SCHEMA_VERSION });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().take(upto.max(0) as usize).skip(found as usize) {
        let version = index as i32 + 1;
        tx.batch_execute(sql).map_err(fail("apply a migration"))?;
        tx.execute("INSERT INTO waypoint_schema (version) VALUES ($1)", &[&version])
            .map_err(fail("record a migration"))?;
    }
    tx.commit().map_err(fail("commit the migration"))?;
    Ok(found.max(upto))
}
