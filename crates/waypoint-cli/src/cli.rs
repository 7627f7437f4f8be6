//! The command line, as clap sees it: every command, flag and help text of the `waypoint` contract.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use waypoint_application::LeaseRequest;
use waypoint_domain::{
    Actor, Artifact, DecisionId, Fingerprint, Message, Phase, PlanId, PlanName, QueueName, RunnerId, SnapshotId,
    StepName, StepNumber, StepOutput, TotalSteps,
};

const ABOUT: &str = "Resumable multi-step work: every completed step is recorded, so an interrupted plan resumes \
                     from its last completed step";

const LONG_ABOUT: &str = "\
Waypoint records every completed step of long multi-step work in an append-only log, so an interrupted plan \
resumes from its last completed step, safely.

Start with `waypoint run PLAN.toml`: it runs a plan file step by step and records each step. Press Ctrl-C, then \
run the same command again to carry on where it stopped. Plan ids may be shortened to a unique prefix.";

const EXAMPLES: &str = "\
Examples:
  waypoint run examples/demo.toml        run a plan file, step by step; run it
                                         again after a stop and it continues
  waypoint plan list --resumable         plans that can resume now
  waypoint resume ID --dry-run           which steps a resume would skip and run
  waypoint resume ID                     resume, running the remaining steps
  waypoint plan logs ID --step 2         what step 2 printed
  waypoint --format json plan show ID    one JSON document on stdout, for scripts
  waypoint -v plan show ID               phases, states and decision ids too

Exit codes:
  0    success
  1    unexpected failure, or a step of a plan file failed
  2    usage error (bad arguments, malformed id, unreadable or invalid plan file)
  3    plan not found
  4    not eligible to resume (every reason is printed)
  5    conflict: a concurrent change, a conflicting checkpoint, the plan is
       being run, or another runner holds its lease now (lease_lost)
  6    store unreadable or corrupt
  7    invalid transition or invalid input for the plan's state
  130  interrupted by SIGINT (143: by SIGTERM) during `run` or a resumed run

With --format json, an error prints {\"error\": {\"code\", \"message\", …}} on stdout
and one line on stderr.";

const RUN_LONG_ABOUT: &str = "\
Runs a plan file's steps in order, recording each step's start before it runs and a checkpoint \
after it completes. It prints the plan id first, then progress while it runs.

Run the same file again and it continues the file's plan: an interrupted, crashed or failed plan resumes \
from where it stopped (saying which plan, from which step and why); a completed one is left alone (exit 0); \
a plan still being run is refused (exit 5). Steps added at the end of the file since are run too. `--new` \
starts a fresh plan; `--from-step N` forks the last plan at step N-1 (keeping steps 1 to N-1 and their \
outputs) and runs the fork from step N.

A plan file is TOML (a step's `outputs` are relative to its `dir`):

  name = \"demo\"
  dir = \".\"        # optional: where steps run (default: the file's folder)
  [env]            # optional: extra environment for every step
  GREETING = \"hello\"

  [[steps]]
  name = \"fetch\"
  run = \"mkdir -p out && echo data > out/fetch.txt\"     # run with `sh -c`
  outputs = [\"out/fetch.txt\"]  # optional: files whose digest is the snapshot
  timeout = \"90s\"              # optional: stop it after this long
  retries = 3                  # optional: try a failed attempt again
  retry_delay = \"2s\"           # optional: doubled after each failed attempt
  env = { MODE = \"fast\" }      # optional: this step's own environment
  dir = \".\"                    # optional: this step's folder, in the plan's

When the last step completes, the plan has completed. A step that still fails after its retries fails the \
plan (exit 1, with its exit code and the tail of its stderr); fix the cause and run the file again.

Ctrl-C (SIGINT) or SIGTERM while a step runs is passed to the step's process group; Waypoint waits for the \
step, records the interruption, starts no further step and exits 130 (SIGINT) or 143 (SIGTERM). A second \
Ctrl-C kills the step and stops waiting. The interrupted step runs again on resume; completed steps never do. \
If Waypoint itself is killed, its step is stopped with it.

Each step sees WAYPOINT_PLAN_ID, WAYPOINT_STEP, WAYPOINT_STEP_NAME, WAYPOINT_DECISION_ID and WAYPOINT_ATTEMPT. \
It may append `key=value` lines to the file named by WAYPOINT_OUTPUT; every later step finds the completed \
steps' outputs as JSON in the file named by WAYPOINT_OUTPUTS. Its stdout and stderr are kept: see \
`waypoint plan logs`.";

const RUN_EXAMPLES: &str = "\
Examples:
  waypoint run examples/demo.toml
  waypoint --store /tmp/wp run build.toml
  waypoint --format json run build.toml > result.json";

const PLAN_EXAMPLES: &str = "\
Example: a script or orchestrator that records its own steps
  id=$(waypoint plan create --name nightly --total-steps 2)
  waypoint plan start \"$id\" --phase strategize
  waypoint plan step-started \"$id\" --step 1 --decision job-1
  ./do-step-1 && waypoint plan checkpoint \"$id\" --step 1 --decision job-1
  # stop for now
  waypoint plan interrupt \"$id\" --reason \"deploy freeze\"
  # later: where does it pick up? Then record the resume and go on
  waypoint plan resume \"$id\" --dry-run
  waypoint plan resume \"$id\"

Example: an orchestrator that holds the plan by lease (no run lock between
commands)
  waypoint plan start \"$id\" --phase strategize --runner orch-1 --lease 60s
  waypoint plan step-started \"$id\" --step 1 --decision job-1 \\
    --runner orch-1 --lease 60s
  # every 20s or so while step 1 runs
  waypoint plan heartbeat \"$id\" --runner orch-1 --lease 60s
  # orch-1 died? once its lease ran out the plan is crashed (lease_expired):
  waypoint plan resume \"$id\" --runner orch-2 --lease 60s
  # from then on orch-1's heartbeat exits 5 (lease_lost): it must stop";

const HEARTBEAT_LONG_ABOUT: &str = "\
Renews the lease a runner holds the plan by (taken with `--runner NAME --lease DURATION` on `plan start`, \
`plan resume` or `plan step-started`): the lease then lasts DURATION from now, on the store's clock. Send one \
well before the lease runs out, say every third of its length.

While the lease is live the plan is running (`still_running`). A lease that runs out without a heartbeat \
leaves the plan crashed, its interruption inferred as `lease_expired`; any runner may then resume it with a \
lease of its own. A runner whose lease ran out and whom nobody replaced renews it as usual.

Exit 5 with code `lease_lost` when the runner does not hold the plan's lease: another runner took the plan \
over, or the plan is no longer running under a lease (it was interrupted, failed, completed, cancelled). \
The runner must then stop working on the plan and start no further step.

Expiry is judged by the store's clock (PostgreSQL's `now()`, or the clock of the machine that holds a \
directory store), so clocks that differ between machines do not matter.";

const RESUME_LONG_ABOUT: &str = "\
Checks whether the plan can resume and prints every reason it cannot (exit 4). If it can, records the resume \
and prints where work picks up.

For a plan created by `waypoint run`, the plan file is read again: if it changed since the run began the plan \
is not eligible (definition_changed), and if a recorded output is gone or changed it is not eligible \
(snapshot_missing). Otherwise the remaining steps run in the foreground, as in `waypoint run`; completed steps \
never run again and the step that was interrupted runs again. Only one process may run a plan at a time: a \
second resume while one is running exits 5.

With --dry-run nothing is written: it shows the summary, and for a plan file which steps would be skipped and \
which would run. A dry run exits 0 whether or not the plan is eligible; read `eligible` and `reasons`.";

#[derive(Debug, Parser)]
#[command(name = "waypoint", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
// Help fits 80 columns, like every other rich line (narrower on a narrower terminal).
#[command(max_term_width = crate::text::MAX_WIDTH)]
// A later --store or --format wins, so scripts can append to a base command line.
#[command(args_override_self = true)]
pub struct Cli {
    /// Where plans are stored: a directory (created on first write, mode 0700)
    #[arg(
        long,
        global = true,
        display_order = 100,
        env = "WAYPOINT_STORE",
        default_value = "./.waypoint",
        value_name = "LOCATION",
        hide_env_values = true
    )]
    pub store: String,

    /// Output format: `rich` for people, `json` for scripts (one JSON document on stdout)
    #[arg(long, global = true, display_order = 101, value_enum, default_value_t = Format::Rich)]
    pub format: Format,

    /// Rich output names phases, processing states and decision ids too
    #[arg(short, long, global = true, display_order = 102)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Rich,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a plan file step by step, recording each step so it can resume after an interruption
    #[command(long_about = RUN_LONG_ABOUT, after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Create, record, inspect and resume plans
    #[command(subcommand, after_help = PLAN_EXAMPLES)]
    Plan(PlanCommand),
    /// Resume a plan: the same as `waypoint plan resume`
    #[command(long_about = RESUME_LONG_ABOUT, after_help = "Examples:\n  waypoint resume ID --dry-run\n  waypoint resume ID")]
    Resume(ResumeArgs),
    /// Check, repair and measure the store itself (for operators)
    #[command(subcommand)]
    Store(StoreCommand),
    /// Serve a web dashboard and its JSON HTTP API over this store (127.0.0.1:8080 by default)
    #[command(long_about = crate::web::UI_LONG_ABOUT, after_help = crate::web::UI_EXAMPLES)]
    Ui(crate::web::UiArgs),
    /// Submit a plan file to a queue, whole, for workers on any machine to run
    #[command(long_about = SUBMIT_LONG_ABOUT, after_help = WORKER_EXAMPLES)]
    Submit(SubmitArgs),
    /// Claim and run the submitted plans of a queue until SIGINT or SIGTERM (`--once`: until it is empty)
    #[command(long_about = WORKER_LONG_ABOUT, after_help = WORKER_EXAMPLES)]
    Worker(WorkerArgs),
    /// Set and list queue limits on running plans
    #[command(subcommand)]
    Queue(QueueCommand),
}

const SUBMIT_LONG_ABOUT: &str = "\
Records a plan from a plan file without running it: the store keeps the file's whole definition (every \
step's command, environment, folder and policy), so a worker on any machine that shares the store runs it \
without a copy of the file. Step folders are taken inside the worker's working folder (`--workdir` here, \
when given, is joined to the worker's own when relative). The plan's status is `queued` until a worker \
claims it.

Submitting is idempotent by key: the key defaults to the plan file's path, as `waypoint run FILE` derives \
it; submitting the same key again gives back the plan it made (json: `\"created\": false`).";

const WORKER_LONG_ABOUT: &str = "\
Claims the oldest submitted plan of its queue, and plans of its queue whose worker stopped (interrupted) or \
vanished (its lease expired), and runs them step by step like `waypoint run`, holding each by a lease that it \
renews while the step runs. Exactly one runner holds a plan at a time, across every worker of every machine.

A worker killed outright (SIGKILL, a lost machine, a cut connection) loses its plans to other workers once \
their leases expire; the step it was running runs again there. Its steps die with it, and a worker that \
cannot renew its lease stops its step before the lease can run out, so a step never runs twice at once.

SIGINT or SIGTERM drains the worker: it claims nothing more, lets its running steps finish within the grace \
period, then stops what still runs, records the interruption (another worker picks the plan up) and exits 0. \
A second signal stops the steps at once.

It prints one line per claim, step and finish; with --format json, one JSON object per line.";

const WORKER_EXAMPLES: &str = "\
Examples:
  waypoint --store postgres://wp@db/wp submit build.toml --queue builds
  waypoint --store postgres://wp@db/wp worker --queue builds --concurrency 4
  waypoint --store postgres://wp@db/wp queue set builds --limit 2
  waypoint worker --once          # run what is queued in `default`, then exit";

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The plan file (TOML)
    pub file: PathBuf,
    /// The plan's key (its id); default: derived from the file's path, as `waypoint run` does
    #[arg(long, value_parser = PlanId::parse)]
    pub key: Option<PlanId>,
    /// The queue it waits in
    #[arg(long, value_parser = QueueName::parse, default_value = QueueName::DEFAULT)]
    pub queue: QueueName,
    /// The working folder its step folders are relative to (relative: inside the worker's own)
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The queue it claims from
    #[arg(long, value_parser = QueueName::parse, default_value = QueueName::DEFAULT)]
    pub queue: QueueName,
    /// How many plans it runs at once
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// How long a claim holds without a renewal; renewed every third of it
    #[arg(long, value_parser = lease_duration, default_value = "30s", value_name = "DURATION")]
    pub lease: Duration,
    /// Where plans' step folders are taken from (default: the current folder)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub workdir: PathBuf,
    /// Exit once nothing in the queue can be claimed, instead of waiting for more
    #[arg(long)]
    pub once: bool,
    /// On SIGINT/SIGTERM, how long running steps may take to finish before they are stopped
    #[arg(long, value_parser = lease_duration, default_value = "30s", value_name = "DURATION")]
    pub grace: Duration,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Limit how many plans of a queue run at once, across every worker of every machine
    #[command(after_help = "Examples:\n  waypoint queue set builds --limit 2\n  waypoint queue set builds --no-limit")]
    Set {
        /// The queue
        #[arg(value_parser = QueueName::parse)]
        name: QueueName,
        /// At most this many of its plans run at once (0: none starts)
        #[arg(long, required_unless_present = "no_limit", conflicts_with = "no_limit")]
        limit: Option<u32>,
        /// Remove the queue's limit
        #[arg(long)]
        no_limit: bool,
    },
    /// Every queue with a limit or with plans: its limit, and how many plans wait and run
    List,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Rebuild every projection from the log and compare it with the stored ones (exit 6 naming every difference)
    #[command(after_help = "Example:\n  waypoint --store /var/lib/waypoint store verify")]
    Verify,
    /// Cut a damaged log back to its last good record, after taking a backup (file store only; stop every other waypoint process first)
    #[command(after_help = "Example:\n  cp -a .waypoint /tmp/waypoint-copy && waypoint store repair")]
    Repair,
    /// Plans by state, events, bytes, oldest and newest activity
    Stats,
    /// Archive, then remove, finished plans (applied, cancelled, phase complete) last active before a cutoff
    #[command(long_about = COMPACT_LONG_ABOUT, after_help = COMPACT_EXAMPLES)]
    Compact(CompactArgs),
}

const COMPACT_LONG_ABOUT: &str = "\
Retention: every plan that finished (applied, cancelled, or its phase completed) and whose last activity is \
older than --older-than has its events written to an archive, then removed from the store, and the space is \
given back. A plan that may still move (resumable, running, queued, failed) is never removed, however old.

The archive is a store directory of its own: `waypoint --store ARCHIVE plan show ID` and \
`waypoint --store ARCHIVE store verify` read it. A removed plan answers plan_not_found, saying when it was \
removed and where its events are; its id is never used again. Without --archive the archive is \
`<store>.archive` beside a directory store, or the state directory Waypoint keeps for a PostgreSQL store.

Running it again is safe: a compaction that stopped half way goes on where it stopped.";

const COMPACT_EXAMPLES: &str = "\
Examples:
  waypoint store compact --older-than 30d --dry-run
  waypoint store compact --older-than 30d
  waypoint store compact --older-than 12h --archive /backup/waypoint-archive";

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Remove finished plans last active longer ago than this: `30d`, `12h`, `90m`, `45s` (`0s`: every finished plan)
    #[arg(long, value_parser = older_than, value_name = "DURATION")]
    pub older_than: std::time::Duration,
    /// Where the removed plans' events are written (a store directory; created if missing)
    #[arg(long, value_name = "PATH")]
    pub archive: Option<PathBuf>,
    /// Only list what would be removed; write nothing, neither archive nor store
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Create a plan and print its id
    #[command(after_help = "Example:\n  id=$(waypoint plan create --name nightly --total-steps 3)")]
    Create(CreateArgs),
    /// Enter a phase: action → strategize → execute → apply (or revert to strategize)
    #[command(
        after_help = "Examples:\n  waypoint plan start ID --phase strategize\n  waypoint plan start ID --phase strategize --runner orch-1 --lease 60s"
    )]
    Start {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// The phase to enter
        #[arg(long, value_enum)]
        phase: StartablePhase,
        #[command(flatten)]
        lease: LeaseArgs,
    },
    /// Set how many steps the current phase has
    TotalSteps {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// The number of steps, 1 or more
        #[arg(value_parser = total_steps)]
        n: TotalSteps,
    },
    /// Record that a step is about to run (until its checkpoint it is the uncertain step)
    #[command(
        after_help = "Examples:\n  waypoint plan step-started ID --step 1 --decision job-42\n  waypoint plan step-started ID --step 1 --decision job-42 \\\n    --runner orch-1 --lease 60s"
    )]
    #[command(override_usage = "waypoint plan step-started [OPTIONS] <ID> --step <N>\n       --decision <DECISION>")]
    StepStarted {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// The step number, from 1
        #[arg(long, value_parser = step_number, value_name = "N")]
        step: StepNumber,
        /// The decision that produced the step's work
        #[arg(long, value_parser = DecisionId::parse)]
        decision: DecisionId,
        /// With a lease: renew it, which only the runner holding the plan's lease may (exit 5, lease_lost, otherwise)
        #[command(flatten)]
        lease: LeaseArgs,
    },
    /// Renew the lease a runner holds the plan by (exit 5, lease_lost, once another runner holds it)
    #[command(
        long_about = HEARTBEAT_LONG_ABOUT,
        after_help = "Example:\n  waypoint plan heartbeat ID --runner orch-1 --lease 60s"
    )]
    Heartbeat {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// The runner that holds the lease
        #[arg(long, value_parser = RunnerId::parse, value_name = "NAME")]
        runner: RunnerId,
        /// How long from now the renewed lease lasts: `30s`, `5m`, `2h`
        #[arg(long, value_parser = lease_duration, value_name = "DURATION", default_value = DEFAULT_LEASE)]
        lease: Duration,
    },
    /// Record that a step completed (a retry with the same payload records nothing)
    #[command(
        after_help = "Example:\n  waypoint plan checkpoint ID --step 1 --decision job-42 \\\n    --snapshot snap-1 --artifact out/a.txt"
    )]
    Checkpoint(CheckpointArgs),
    /// Record a graceful shutdown: the plan stops and can resume later
    Interrupt {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// Why it stopped
        #[arg(long, value_parser = Message::parse, default_value = "interrupted by operator")]
        reason: Message,
    },
    /// Record that the current phase failed
    Fail {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// What went wrong
        #[arg(long, value_parser = Message::parse)]
        message: Message,
    },
    /// Complete the current strategize or execute phase
    CompletePhase {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
    },
    /// Record that the apply phase applied the plan (terminal)
    Apply {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
    },
    /// Record that the apply phase hit a constraint
    Constrain {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// The constraint that stopped it
        #[arg(long, value_parser = Message::parse)]
        message: Message,
    },
    /// Approve the step the plan waits at, so that its next run goes past it
    #[command(after_help = "Example:\n  waypoint plan approve ID --comment \"checked the migration\"")]
    Approve {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// The step approved (default: the one the plan waits at)
        #[arg(long, value_parser = step_number)]
        step: Option<StepNumber>,
        /// Who approves (default: your login name)
        #[arg(long, value_parser = Actor::parse)]
        by: Option<Actor>,
        /// A comment kept with the approval
        #[arg(long, value_parser = Message::parse)]
        comment: Option<Message>,
    },
    /// Reject the step the plan waits at: the plan fails (approval_rejected)
    #[command(after_help = "Example:\n  waypoint plan reject ID --reason \"not during the freeze\"")]
    Reject {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// The step rejected (default: the one the plan waits at)
        #[arg(long, value_parser = step_number)]
        step: Option<StepNumber>,
        /// Why
        #[arg(long, value_parser = Message::parse)]
        reason: Message,
        /// Who rejects (default: your login name)
        #[arg(long, value_parser = Actor::parse)]
        by: Option<Actor>,
    },
    /// Ask the plan to stop at its next step boundary (at once if nobody runs it)
    Pause {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// Why
        #[arg(long, value_parser = Message::parse)]
        reason: Option<Message>,
    },
    /// Cancel the plan (terminal)
    Cancel {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// Why it was cancelled
        #[arg(long, value_parser = Message::parse)]
        reason: Option<Message>,
    },
    /// List plans, newest activity first
    #[command(after_help = "Example:\n  waypoint plan list --resumable")]
    List {
        /// Only plans that can resume now
        #[arg(long)]
        resumable: bool,
        /// Only plans submitted to this queue
        #[arg(long, value_parser = QueueName::parse)]
        queue: Option<QueueName>,
    },
    /// Show one plan's summary: phase, state, progress, and whether it can resume
    Show {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// Print the completed steps' recorded outputs instead (`{"step name": {"key": "value"}}`)
        #[arg(long)]
        outputs: bool,
        /// Print each step's attempts instead (started, ended, outcome, exit code) with its output, as JSON
        #[arg(long, conflicts_with = "outputs")]
        steps: bool,
    },
    /// Write one self-contained HTML page about a plan (summary, steps, logs, history), for a CI artifact
    #[command(
        after_help = "Examples:\n  waypoint plan report ID --output report.html\n  waypoint plan report ID > report.html"
    )]
    Report {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// Where to write it (default: standard output)
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Show the stored stdout and stderr of a plan file's steps (the last 1 MiB of each stream, per attempt)
    #[command(after_help = "Examples:\n  waypoint plan logs ID\n  waypoint plan logs ID --step 2 --attempt 1")]
    Logs {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// Only this step
        #[arg(long, value_parser = step_number)]
        step: Option<StepNumber>,
        /// Only this attempt (from 1)
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        attempt: Option<u32>,
    },
    /// Make a new plan from another's completed steps, to run again from step N
    #[command(
        long_about = "Makes a new plan that holds copies of the source plan's checkpoints 1 to N-1 of its current phase \
                      (outputs included), starts queued in the same phase and resumes at step N. The source does not \
                      change. For a plan file, `waypoint plan resume NEW` then runs steps N… with the file as it is now.",
        after_help = "Examples:\n  waypoint plan fork ID --from-step 3\n  waypoint plan fork ID --from-step 1 --id retry-1"
    )]
    Fork {
        /// The source plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
        /// The step the new plan runs first; steps before it are copied (1 copies none)
        #[arg(long, value_parser = step_number, value_name = "N")]
        from_step: StepNumber,
        /// The new plan's id (default: a plan file's next plan id, so `waypoint run FILE` continues the fork; otherwise 20 random hex digits)
        #[arg(long = "id", value_parser = PlanId::parse, value_name = "NEW")]
        new_id: Option<PlanId>,
    },
    /// Show every event recorded for a plan, oldest first
    History {
        /// The plan id
        #[arg(value_parser = PlanId::parse)]
        id: PlanId,
    },
    /// Resume an interrupted, failed or crashed plan from its last completed step
    #[command(long_about = RESUME_LONG_ABOUT, after_help = "Examples:\n  waypoint plan resume ID --dry-run\n  waypoint plan resume ID")]
    Resume(ResumeArgs),
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The plan id (or a unique prefix of at least 4 characters)
    #[arg(value_parser = PlanId::parse)]
    pub id: PlanId,
    /// Only show what a resume would do; write nothing
    #[arg(long, conflicts_with = "lease")]
    pub dry_run: bool,
    /// The plan definition's fingerprint (hex), compared with the one recorded at creation
    #[arg(long, value_parser = Fingerprint::parse)]
    pub fingerprint: Option<Fingerprint>,
    /// With a lease: take the plan over by lease (an orchestrator's plan, not a plan file's)
    #[command(flatten)]
    pub lease: LeaseArgs,
}

/// `--runner NAME --lease DURATION`: hold the plan by lease, for a runner that cannot hold the
/// run lock for its whole run. Both or neither.
#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// Hold the plan by lease as this runner (with --lease)
    #[arg(long, value_parser = RunnerId::parse, requires = "lease", value_name = "NAME")]
    pub runner: Option<RunnerId>,
    /// How long the lease lasts without a heartbeat (with --runner): `30s`, `5m`, `2h`
    #[arg(long, value_parser = lease_duration, requires = "runner", value_name = "DURATION")]
    pub lease: Option<Duration>,
}

impl LeaseArgs {
    /// The lease asked for, if any (clap sees to it that both flags or neither are given).
    pub fn request(self) -> Option<LeaseRequest> {
        match (self.runner, self.lease) {
            (Some(runner), Some(duration)) => Some(LeaseRequest::new(runner, duration)),
            _ => None,
        }
    }
}

impl PlanCommand {
    /// The id of the existing plan this command is about, to resolve a prefix; `None` for the
    /// commands that name no existing plan.
    pub fn plan_id_mut(&mut self) -> Option<&mut PlanId> {
        match self {
            PlanCommand::Create(_) | PlanCommand::List { .. } => None,
            PlanCommand::Checkpoint(args) => Some(&mut args.id),
            PlanCommand::Resume(args) => Some(&mut args.id),
            PlanCommand::Start { id, .. }
            | PlanCommand::TotalSteps { id, .. }
            | PlanCommand::StepStarted { id, .. }
            | PlanCommand::Heartbeat { id, .. }
            | PlanCommand::Interrupt { id, .. }
            | PlanCommand::Fail { id, .. }
            | PlanCommand::CompletePhase { id }
            | PlanCommand::Apply { id }
            | PlanCommand::Constrain { id, .. }
            | PlanCommand::Cancel { id, .. }
            | PlanCommand::Approve { id, .. }
            | PlanCommand::Reject { id, .. }
            | PlanCommand::Pause { id, .. }
            | PlanCommand::Show { id, .. }
            | PlanCommand::Report { id, .. }
            | PlanCommand::Logs { id, .. }
            | PlanCommand::Fork { id, .. }
            | PlanCommand::History { id } => Some(id),
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plan file (TOML)
    pub file: PathBuf,
    /// Start a fresh plan even if the store holds one for this file that could continue
    #[arg(long)]
    pub new: bool,
    /// Run again from step N: a fork of the file's plan that keeps steps 1 to N-1 (and their outputs), run from step N with the file as it is now
    #[arg(long, value_parser = step_number, value_name = "N")]
    pub from_step: Option<StepNumber>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The plan id, `[A-Za-z0-9_-]{1,64}` (default: a random UUID)
    #[arg(long, value_parser = PlanId::parse)]
    pub id: Option<PlanId>,
    /// A human name
    #[arg(long, value_parser = PlanName::parse)]
    pub name: Option<PlanName>,
    /// How many steps the first phase has
    #[arg(long, value_parser = total_steps)]
    pub total_steps: Option<TotalSteps>,
    /// A digest (hex) of the plan definition, compared on resume
    #[arg(long, value_parser = Fingerprint::parse)]
    pub fingerprint: Option<Fingerprint>,
    /// With --id: if the plan exists, return it instead of refusing (exit 0 either way; json
    /// adds "created": true|false), so an orchestrator can continue by key
    #[arg(long, requires = "id")]
    pub if_absent: bool,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// The plan id
    #[arg(value_parser = PlanId::parse)]
    pub id: PlanId,
    /// The step number, from 1
    #[arg(long, value_parser = step_number, value_name = "N")]
    pub step: StepNumber,
    /// The decision that produced the step's work
    #[arg(long, value_parser = DecisionId::parse)]
    pub decision: DecisionId,
    /// A reference to the workspace state after the step
    #[arg(long, value_parser = SnapshotId::parse)]
    pub snapshot: Option<SnapshotId>,
    /// Something the step produced (repeatable)
    #[arg(long = "artifact", value_parser = Artifact::parse)]
    pub artifacts: Vec<Artifact>,
    /// The step's name; a different name than the one recorded for this step is step_mismatch
    #[arg(long, value_parser = StepName::parse)]
    pub name: Option<StepName>,
    /// The step's output, a JSON value of at most 1 MiB, given back by `plan show --outputs`
    #[arg(long, value_parser = step_output)]
    pub output: Option<StepOutput>,
}

/// A step output given as JSON text on the command line.
fn step_output(text: &str) -> Result<StepOutput, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    StepOutput::new(value).map_err(|e| e.to_string())
}

/// The phases a plan can be asked to enter (`action` is where a plan starts, never entered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartablePhase {
    Strategize,
    Execute,
    Apply,
}

impl From<StartablePhase> for Phase {
    fn from(phase: StartablePhase) -> Self {
        match phase {
            StartablePhase::Strategize => Phase::Strategize,
            StartablePhase::Execute => Phase::Execute,
            StartablePhase::Apply => Phase::Apply,
        }
    }
}

// Numbers parse as u32 first, so a word or a negative number gets a message of its own.
fn step_number(s: &str) -> Result<StepNumber, String> {
    let n: u32 = s.parse().map_err(|_| format!("{s:?} is not a step number; steps are numbered from 1"))?;
    StepNumber::new(n).map_err(|e| e.to_string())
}

/// The longest cutoff: any more and the cutoff would fall outside the calendar the store keeps.
const MAX_OLDER_THAN_DAYS: u64 = 36_500;

// A unit is required: a bare `30` would read as seconds to one person and days to another.
fn older_than(s: &str) -> Result<std::time::Duration, String> {
    let unit_given = s.trim().ends_with(|c: char| c.is_ascii_alphabetic());
    let duration = waypoint_application::engine::parse_duration(s)
        .filter(|_| unit_given)
        .ok_or_else(|| format!("{s:?} is not a duration; write a whole number and a unit: 30d, 12h, 90m or 45s"))?;
    if duration.as_secs() > MAX_OLDER_THAN_DAYS * 86_400 {
        return Err(format!("{s:?} is too long; at most {MAX_OLDER_THAN_DAYS}d"));
    }
    Ok(duration)
}

/// What `plan heartbeat` renews a lease for when `--lease` is not given.
const DEFAULT_LEASE: &str = "30s";

/// The longest lease: its expiry must stay within the calendar the store keeps.
const MAX_LEASE_DAYS: u64 = 36_500;

// As plan-file durations read (a bare number is seconds); zero would expire at once.
fn lease_duration(s: &str) -> Result<Duration, String> {
    let duration = waypoint_application::engine::parse_duration(s)
        .ok_or_else(|| format!("{s:?} is not a duration; write a whole number and a unit: 30s, 5m or 2h"))?;
    if duration.is_zero() {
        return Err(format!("a lease of {s:?} would run out at once; give it a length, such as 30s"));
    }
    if duration.as_secs() > MAX_LEASE_DAYS * 86_400 {
        return Err(format!("{s:?} is too long; at most {MAX_LEASE_DAYS}d (renew a lease with `plan heartbeat`)"));
    }
    Ok(duration)
}

fn total_steps(s: &str) -> Result<TotalSteps, String> {
    let n: u32 = s.parse().map_err(|_| format!("{s:?} is not a number of steps"))?;
    TotalSteps::new(n).map_err(|e| e.to_string())
}
