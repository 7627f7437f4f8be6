//! The store's directory layout: every file and directory name is built here and nowhere else,
//! so the on-disk names (listed in lib.rs) cannot drift apart between modules.

use std::path::{Path, PathBuf};

use waypoint_application::LogStream;
use waypoint_domain::{Attempt, PlanId, QueueName, StepNumber};

const LOG_FILE: &str = "events.log";
const STORE_LOCK: &str = "store.lock";
const WRITE_LOCK: &str = "write.lock";
const CHECKPOINT_LOCK: &str = "checkpoint.lock";
const LOCKS_DIR: &str = "locks";
const CHECKPOINT_FILE: &str = "catalog.ckpt";
const INDEX_DIR: &str = "index";
const VIEWS_DIR: &str = "views";
const CATALOG_DIR: &str = "catalog";
const TMP_DIR: &str = "tmp";
const TORN_DIR: &str = "torn";
const BACKUP_DIR: &str = "backup";
const RETENTION_DIR: &str = "retention";
const REMOVED_DIR: &str = "removed";
const LOGS_DIR: &str = "logs";
const RUNS_DIR: &str = "runs";
const QUEUES_DIR: &str = "queues";
const QUEUE_LIMITS: &str = "limits.json";

/// The paths of one store directory. Per-plan names use the plan id as is: `PlanId` admits only
/// `[A-Za-z0-9_-]{1,64}`, so no such path can leave its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `events.log`: the log.
    pub fn log(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// `store.lock`: held shared by every open store, exclusively by `repair`.
    pub fn store_lock(&self) -> PathBuf {
        self.dir.join(STORE_LOCK)
    }

    /// `write.lock`: held exclusively while appending, shared while catching up.
    pub fn write_lock(&self) -> PathBuf {
        self.dir.join(WRITE_LOCK)
    }

    /// `checkpoint.lock`: held exclusively by the one process writing a checkpoint.
    pub fn checkpoint_lock(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_LOCK)
    }

    /// `locks/`: the run locks' directory.
    pub fn locks_dir(&self) -> PathBuf {
        self.dir.join(LOCKS_DIR)
    }

    /// `locks/<plan>.lock`: `plan_id`'s run lock.
    pub fn run_lock(&self, plan_id: &PlanId) -> PathBuf {
        self.locks_dir().join(format!("{}.lock", plan_id.as_str()))
    }

    /// `locks/<plan>.attempt`: the lock a plan-file step's supervisor holds while any process of
    /// the step lives. Beside the run lock, never in the step's own run folder: a step may remove
    /// that folder (it knows its path from `$WAYPOINT_OUTPUT`), and the lock with it.
    pub fn attempt_lock(&self, plan_id: &PlanId) -> PathBuf {
        self.locks_dir().join(format!("{}.attempt", plan_id.as_str()))
    }

    /// `catalog.ckpt`: the catalog checkpoint.
    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    /// `index/`: the per-plan offset indexes' directory.
    pub fn index_dir(&self) -> PathBuf {
        self.dir.join(INDEX_DIR)
    }

    /// `index/<plan>.idx`: `plan_id`'s offset index.
    pub fn plan_index(&self, plan_id: &PlanId) -> PathBuf {
        self.index_dir().join(format!("{}.idx", plan_id.as_str()))
    }

    /// `views/`: the view snapshots' directory.
    pub fn views_dir(&self) -> PathBuf {
        self.dir.join(VIEWS_DIR)
    }

    /// `views/<plan>.view`: `plan_id`'s full-view snapshot.
    pub fn view(&self, plan_id: &PlanId) -> PathBuf {
        self.views_dir().join(format!("{}.view", plan_id.as_str()))
    }

    /// `views/<plan>.sum`: `plan_id`'s compact-view snapshot, kept current by checkpoints.
    pub fn summary(&self, plan_id: &PlanId) -> PathBuf {
        self.views_dir().join(format!("{}.sum", plan_id.as_str()))
    }

    /// `tmp/`: files being written, renamed into place when whole.
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join(TMP_DIR)
    }

    /// The entries of the store directory that the store opens: none may be a symbolic link.
    pub fn own_entries(&self) -> Vec<PathBuf> {
        [LOG_FILE, STORE_LOCK, WRITE_LOCK, CHECKPOINT_LOCK, CHECKPOINT_FILE, LOCKS_DIR, INDEX_DIR, VIEWS_DIR]
            .iter()
            .chain(&[CATALOG_DIR, TMP_DIR, TORN_DIR, BACKUP_DIR, RETENTION_DIR, REMOVED_DIR, LOGS_DIR, RUNS_DIR])
            .chain(&[QUEUES_DIR])
            .map(|name| self.dir.join(name))
            .collect()
    }

    /// `queues/`: the queues' claim locks and limits (ADR 0017).
    pub fn queues_dir(&self) -> PathBuf {
        self.dir.join(QUEUES_DIR)
    }

    /// `queues/<queue>.claim`: held exclusively while a worker claims a plan of `queue`.
    pub fn queue_claim_lock(&self, queue: &QueueName) -> PathBuf {
        self.queues_dir().join(format!("{}.claim", queue.as_str()))
    }

    /// `queues/limits.json`: every queue's limit on running plans.
    pub fn queue_limits(&self) -> PathBuf {
        self.queues_dir().join(QUEUE_LIMITS)
    }

    /// `queues/limits.lock`: held exclusively while the limits are rewritten.
    pub fn queue_limits_lock(&self) -> PathBuf {
        self.queues_dir().join("limits.lock")
    }

    /// `catalog/`: the catalog's rows files.
    pub fn catalog_dir(&self) -> PathBuf {
        self.dir.join(CATALOG_DIR)
    }

    /// `catalog/open-<generation>.rows` or `catalog/done-<generation>.rows`.
    pub fn rows(&self, kind: RowsKind, generation: u64) -> PathBuf {
        self.catalog_dir().join(format!("{}-{generation}.rows", kind.class()))
    }

    /// `catalog/open-<generation>.order` or `catalog/done-<generation>.order`: the rows file's
    /// order by last activity.
    pub fn order(&self, kind: RowsKind, generation: u64) -> PathBuf {
        self.catalog_dir().join(format!("{}-{generation}.order", kind.class()))
    }

    /// `torn/`: bytes cut off the log, kept for inspection.
    pub fn torn_dir(&self) -> PathBuf {
        self.dir.join(TORN_DIR)
    }

    /// `torn/events.log.at-<offset>.<stamp>.torn`: a torn last record cut off on open.
    pub fn torn_tail(&self, offset: u64, stamp: &str) -> PathBuf {
        self.torn_dir().join(format!("{LOG_FILE}.at-{offset}.{stamp}.torn"))
    }

    /// `torn/events.log.repair-at-<offset>.<stamp>.cut`: the bytes `repair` cut off.
    pub fn repair_cut(&self, offset: u64, stamp: &str) -> PathBuf {
        self.torn_dir().join(format!("{LOG_FILE}.repair-at-{offset}.{stamp}.cut"))
    }

    /// `retention/`: the removals of retention (ADR 0010).
    pub fn retention_dir(&self) -> PathBuf {
        self.dir.join(RETENTION_DIR)
    }

    /// `retention/batches`: the commit records of removals.
    pub fn retention_commits(&self) -> PathBuf {
        self.retention_dir().join("batches")
    }

    /// `retention/<n>.batch`: one removal's plans and holes.
    pub fn retention_batch(&self, batch: u64) -> PathBuf {
        self.retention_dir().join(format!("{batch}.batch"))
    }

    /// `removed/`: tombstones of removed plans.
    pub fn removed_dir(&self) -> PathBuf {
        self.dir.join(REMOVED_DIR)
    }

    /// `removed/<bucket>.rm`: the tombstones of the plans whose id hashes to `bucket`.
    pub fn tombstones(&self, bucket: u16) -> PathBuf {
        self.removed_dir().join(format!("{bucket:03x}.rm"))
    }

    /// `runs/<plan>/`: what a runner keeps for a plan's running step and nothing reads later
    /// (the files behind `$WAYPOINT_OUTPUT` and `$WAYPOINT_OUTPUTS`). The
    /// store only names it; the runner that owns it builds the names inside.
    pub fn plan_runs(&self, plan_id: &PlanId) -> PathBuf {
        self.dir.join(RUNS_DIR).join(plan_id.as_str())
    }

    /// `logs/`: the steps' logs, a directory per plan.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join(LOGS_DIR)
    }

    /// `logs/<plan>/`: `plan_id`'s step logs.
    pub fn plan_logs(&self, plan_id: &PlanId) -> PathBuf {
        self.logs_dir().join(plan_id.as_str())
    }

    /// `logs/<plan>/<step>-<attempt>.out` (standard output) or `.err` (standard error): what is
    /// kept of one stream of one attempt of one step.
    pub fn step_log(&self, plan_id: &PlanId, step: StepNumber, attempt: Attempt, stream: LogStream) -> PathBuf {
        self.plan_logs(plan_id).join(step_log_name(step, attempt, stream))
    }

    /// `tmp/logs.<plan>.<step>-<attempt>.<out|err>.<n>.<pid>.tmp`: the temporary file the `n`th
    /// step-log write of this process renames into place. Unlike [`temp_for`] it names the plan
    /// and a sequence number: threads of one process may write the same log name of two plans,
    /// or the same log twice, at once.
    pub fn step_log_temp(
        &self,
        plan_id: &PlanId,
        step: StepNumber,
        attempt: Attempt,
        stream: LogStream,
        n: u64,
    ) -> PathBuf {
        let name = step_log_name(step, attempt, stream);
        self.tmp_dir().join(format!("{LOGS_DIR}.{}.{name}.{n}.{}.tmp", plan_id.as_str(), std::process::id()))
    }

    /// `backup/`: copies of the log taken by `repair`.
    pub fn backup_dir(&self) -> PathBuf {
        self.dir.join(BACKUP_DIR)
    }

    /// `backup/events.log.<stamp>.bak`: the log as it was before a repair.
    pub fn backup(&self, stamp: &str) -> PathBuf {
        self.backup_dir().join(format!("{LOG_FILE}.{stamp}.bak"))
    }
}

/// `<step>-<attempt>.out|err`.
fn step_log_name(step: StepNumber, attempt: Attempt, stream: LogStream) -> String {
    format!("{step}-{attempt}.{}", stream_suffix(stream))
}

fn stream_suffix(stream: LogStream) -> &'static str {
    match stream {
        LogStream::Stdout => "out",
        LogStream::Stderr => "err",
    }
}

/// The step, attempt and stream whose log a file of `logs/<plan>/` named `name` is; `None` for
/// any name [`Layout::step_log`] does not build (another spelling of the same numbers included).
pub fn parse_step_log(name: &str) -> Option<(StepNumber, Attempt, LogStream)> {
    let (stem, suffix) = name.rsplit_once('.')?;
    let stream = LogStream::ALL.into_iter().find(|stream| stream_suffix(*stream) == suffix)?;
    let (step, attempt) = stem.split_once('-')?;
    let step = StepNumber::new(step.parse().ok()?).ok()?;
    let attempt = Attempt::new(attempt.parse().ok()?).ok()?;
    (step_log_name(step, attempt, stream) == name).then_some((step, attempt, stream))
}

/// The two classes of catalog rows: plans that may still move, and finished (terminal) ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowsKind {
    Open,
    Done,
}

impl RowsKind {
    /// The class's word in its files' names.
    fn class(self) -> &'static str {
        match self {
            RowsKind::Open => "open",
            RowsKind::Done => "done",
        }
    }
}

/// The UTC time stamp in the names of cut-off and backup files; sorts by time as text.
pub fn stamp_now() -> String {
    // Not `Utc::now()`, which panics on a clock before 1970.
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()).format("%Y%m%dT%H%M%S%.9fZ").to_string()
}

/// `tmp/<name>.<pid>.tmp`: the temporary file an atomic write of `path` renames into place. One
/// name per process: two processes may write at once, and the last rename wins with a whole file
/// either way. All temporaries live in `tmp/`, so removing those of dead writers reads one small
/// directory, whatever the store's size.
pub fn temp_for(tmp_dir: &Path, path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    tmp_dir.join(name)
}

/// The pid in a temporary file's name `<name>.<pid>.tmp`.
pub fn temp_owner(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".tmp")?;
    stem.rsplit_once('.')?.1.parse().ok()
}

#[cfg(test)]
mod tests;
