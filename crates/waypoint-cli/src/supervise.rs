//! The step supervisor: a small `waypoint` process between the runner and a step's shell, so that
//! no process of a step outlives the runner that started it, and no two attempts of a plan's
//! steps ever run at once (ADR 0008).
//!
//! The runner starts `waypoint __supervise LOCK -- sh -c RUN` as the leader of a new process
//! group, with one end of a Unix socket as its stdin (the lifeline). The supervisor
//! - takes the plan's attempt lock (`LOCK`, an OS file lock) and holds it until it exits, after
//!   the step's processes are gone: while it is held, no resume may start a step of that plan;
//! - becomes a child subreaper, so the step's orphaned descendants become its children and it can
//!   tell when the last of them is gone;
//! - runs the shell in its own process group (the runner signals that group: Ctrl-C, timeouts),
//!   surviving SIGINT and SIGTERM itself so that it can report and clean up;
//! - reports how the shell ended as one line on the socket (`exit N`, `signal N`, `error TEXT`),
//!   then stops what the shell left running in the group and exits;
//! - when the socket closes before the shell ends, the runner has died (even by SIGKILL): it stops
//!   the whole group (SIGTERM, SIGKILL after [`GRACE`]) and exits.
//!
//! The other way round, the runner is a subreaper too ([`adopt_orphans`]): when a supervisor is
//! killed before it could report, the runner stops the step's processes that came to it
//! ([`Supervised::ended`]) before it records the attempt or starts another.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal, WaitOptions};

/// The hidden first argument that makes `waypoint` a supervisor.
pub const ARG: &str = "__supervise";

/// How long the step's processes get between SIGTERM and SIGKILL, whoever stops them.
pub const GRACE: Duration = Duration::from_secs(5);

/// The supervisor's program, ready for its `LOCK -- PROGRAM ARGS…`: the small
/// `waypoint-supervise` installed beside this binary, or else this binary as `waypoint
/// __supervise`. Looked up once per process.
pub fn command() -> std::io::Result<Command> {
    static FOUND: std::sync::OnceLock<Result<(std::path::PathBuf, bool), String>> = std::sync::OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let small = exe.with_file_name("waypoint-supervise");
        Ok(if small.is_file() { (small, false) } else { (exe, true) })
    });
    let (program, whole) = found.clone().map_err(std::io::Error::other)?;
    let mut command = Command::new(program);
    if whole {
        command.arg(ARG);
    }
    Ok(command)
}

/// The shell a step's `run` line is given to: `/bin/sh` (no search of `$PATH` on every step),
/// or `sh` from `$PATH` on a system without it.
pub fn shell() -> &'static str {
    static SHELL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    SHELL.get_or_init(|| if std::path::Path::new("/bin/sh").is_file() { "/bin/sh" } else { "sh" })
}

/// How a step's shell ended, as the supervisor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellEnd {
    Exited(i32),
    Signalled(i32),
    /// The shell could not be started, or the supervisor could not do its job.
    Failed(String),
}

impl ShellEnd {
    fn line(&self) -> String {
        match self {
            ShellEnd::Exited(code) => format!("exit {code}\n"),
            ShellEnd::Signalled(signal) => format!("signal {signal}\n"),
            ShellEnd::Failed(text) => format!("error {}\n", text.replace('\n', " ")),
        }
    }

    /// Reads a report line; `None` for anything else.
    pub fn parse(line: &str) -> Option<Self> {
        let (word, rest) = line.trim_end().split_once(' ')?;
        match word {
            "exit" => rest.parse().ok().map(ShellEnd::Exited),
            "signal" => rest.parse().ok().map(ShellEnd::Signalled),
            "error" => Some(ShellEnd::Failed(rest.to_owned())),
            _ => None,
        }
    }
}

/// Reads the supervisor's report from the runner's end of the socket, until the supervisor is
/// gone (end of file): only then are the step's processes gone and its attempt lock free.
pub fn read_report(stream: UnixStream) -> Option<ShellEnd> {
    let mut end = None;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if let Some(parsed) = ShellEnd::parse(&line) {
            end = Some(parsed);
        }
    }
    end
}

enum Happened {
    ShellEnded(ShellEnd),
    RunnerGone,
}

/// `waypoint __supervise LOCK -- PROGRAM ARGS…`. Its exit code means nothing to anyone: the
/// report on the socket is what the runner reads.
pub fn main(args: &[OsString]) -> ExitCode {
    let mut lifeline = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(_) => return ExitCode::from(1),
    };
    let mut report = |end: ShellEnd| {
        let _ = lifeline.write_all(end.line().as_bytes());
    };
    let (lock_path, program, rest) = match args {
        [lock, dash, program, rest @ ..] if dash == "--" => (lock, program, rest),
        _ => {
            report(ShellEnd::Failed("the supervisor was started with the wrong arguments".into()));
            return ExitCode::from(1);
        }
    };
    // The lock is held until this process is gone: the OS releases it, even after SIGKILL.
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(lock_path);
    let _lock = match lock.and_then(|file| file.lock().map(|()| file)) {
        Ok(file) => file,
        Err(e) => {
            report(ShellEnd::Failed(format!("cannot take the attempt lock: {e}")));
            return ExitCode::from(1);
        }
    };
    // Linux only; elsewhere, orphans of the step are stopped by the group signal alone.
    #[cfg(target_os = "linux")]
    if rustix::process::set_child_subreaper(Some(rustix::process::getpid())).is_ok() {
        REAPS_ORPHANS.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // A SIGCHLD ignored by whoever started us (inherited across exec) would have the kernel reap
    // the step's orphans unseen and make `waitpid` answer "no children" while they run: a handler
    // of our own restores the normal bookkeeping.
    let _ = signal_hook::flag::register(signal_hook::consts::SIGCHLD, Arc::new(AtomicBool::new(false)));
    // Signals for the step's group reach this process too: survive them, report, clean up.
    let survived = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        let _ = signal_hook::flag::register(signal, Arc::clone(&survived));
    }
    let mut shell = match Command::new(program).args(rest).stdin(Stdio::null()).spawn() {
        Ok(child) => child,
        Err(e) => {
            report(ShellEnd::Failed(format!("cannot start {}: {e}", program.to_string_lossy())));
            return ExitCode::from(1);
        }
    };
    let (happened, wait) = mpsc::channel();
    let ended = happened.clone();
    std::thread::spawn(move || {
        let end = match shell.wait() {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => ShellEnd::Exited(code),
                (None, Some(signal)) => ShellEnd::Signalled(signal),
                _ => ShellEnd::Failed("the shell ended in an unknown way".into()),
            },
            Err(e) => ShellEnd::Failed(format!("cannot wait for the shell: {e}")),
        };
        let _ = ended.send(Happened::ShellEnded(end));
    });
    let mut watcher = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(_) => return ExitCode::from(1),
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        // The runner never writes: any end of reading (end of file, an error) means it is gone.
        while matches!(watcher.read(&mut buf), Ok(n) if n > 0) {}
        let _ = happened.send(Happened::RunnerGone);
    });
    let group = rustix::process::getpid();
    match wait.recv() {
        Ok(Happened::ShellEnded(end)) => {
            report(end);
            stop_leftovers(group);
        }
        Ok(Happened::RunnerGone) | Err(_) => stop_group(group),
    }
    ExitCode::SUCCESS
}

/// Whether this supervisor is a child subreaper: every orphan of the step is then its child.
static REAPS_ORPHANS: AtomicBool = AtomicBool::new(false);

/// Whether any descendant of the step is still alive (reaping any child that ended).
fn children_left() -> bool {
    loop {
        // Any child, whatever its process group (`waitpid(-1)`; `waitpid(0)` sees only our own
        // group, and a step's `setsid` or `timeout` leaves it).
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some(_)) => continue,
            Ok(None) => return true,
            // No child to wait for. As a subreaper that settles it: every live descendant has an
            // ancestor among our children, since an orphan is re-parented to us. Without it, a
            // descendant whose parent still lives may be left, and only `/proc` can tell (a scan
            // of every process: the cost the subreaper saves on each step).
            Err(_) => return !REAPS_ORPHANS.load(std::sync::atomic::Ordering::Relaxed) && !descendants().is_empty(),
        }
    }
}

/// Waits until no child is left, or `deadline`. Returns whether none is left.
fn reap_until(deadline: Instant) -> bool {
    loop {
        if !children_left() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The shell ended: whatever it left running in its group is stopped, so the step ends whole.
fn stop_leftovers(group: Pid) {
    if !children_left() {
        return;
    }
    stop_group(group);
}

/// SIGTERM to the group and to every descendant, SIGKILL after the grace period. Descendants are
/// signalled one by one as well as through the group: a step's process may have left the group
/// (`setsid`, GNU `timeout`, a daemon), and it must not outlive the step either. The supervisor
/// survives SIGTERM; the final SIGKILL reaches it last, once the rest are gone.
fn stop_group(group: Pid) {
    signal_step(group, Signal::TERM);
    if reap_until(Instant::now() + GRACE) {
        return;
    }
    for (pid, _) in descendants() {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
    let _ = reap_until(Instant::now() + Duration::from_secs(1));
    let _ = kill_process_group(group, Signal::KILL);
}

/// Sends `signal` to the step's process group, and to every descendant of this supervisor and
/// each descendant's own group.
fn signal_step(group: Pid, signal: Signal) {
    let _ = kill_process_group(group, signal);
    let found = descendants();
    for &(pid, pgrp) in &found {
        let _ = rustix::process::kill_process(pid, signal);
        // Only a group a descendant leads (`setsid`, `timeout`): never a group of someone else's
        // that a step joined.
        let leads = found.iter().any(|(other, _)| *other == pgrp);
        if pgrp != group && leads {
            let _ = kill_process_group(pgrp, signal);
        }
    }
}

/// This process's children that ended and wait to be reaped (zombies).
fn ended_children() -> Vec<Pid> {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    proc_table().into_iter().filter(|p| p.parent == me && p.ended).filter_map(|p| Pid::from_raw(p.pid)).collect()
}

/// One process as `/proc/PID/stat` shows it.
struct ProcEntry {
    pid: i32,
    parent: i32,
    group: i32,
    /// A zombie: it has ended, only its parent's reaping is left.
    ended: bool,
}

/// Every process this one may read in `/proc`.
fn proc_table() -> Vec<ProcEntry> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid pgrp …`: comm may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 1..];
            let mut fields = after.split_whitespace();
            let ended = fields.next()? == "Z";
            let parent = fields.next()?.parse().ok()?;
            let group = fields.next()?.parse().ok()?;
            Some(ProcEntry { pid, parent, group, ended })
        })
        .collect()
}

/// Every live descendant of this process, with its process group, as `/proc` lists them. The
/// subreaper makes orphans our children, so a process whose parent died is still found.
fn descendants() -> Vec<(Pid, Pid)> {
    descendants_except(&[])
}

/// Every live descendant of this process but those of the subtrees rooted at `spared` (and
/// those processes themselves).
fn descendants_except(spared: &[i32]) -> Vec<(Pid, Pid)> {
    let table: Vec<(i32, i32, i32)> =
        proc_table().into_iter().filter(|p| !p.ended).map(|p| (p.pid, p.parent, p.group)).collect();
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let mut found = Vec::new();
    let mut parents = vec![me];
    while let Some(parent) = parents.pop() {
        for &(pid, _, group) in table.iter().filter(|(pid, p, _)| *p == parent && !spared.contains(pid)) {
            if let (Some(pid), Some(group)) = (Pid::from_raw(pid), Pid::from_raw(group)) {
                found.push((pid, group));
            }
            parents.push(pid);
        }
    }
    found
}

/// The supervisors this process runs now: [`stop_orphans`] spares them and their steps.
static LIVE_SUPERVISORS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Makes this process (a runner) the reaper of its supervisors' orphans, so that a step's
/// processes whose supervisor was killed outright (SIGKILL, the OOM killer) become its children
/// and [`stop_orphans`] can stop them before anything else of the plan runs. Linux only.
pub fn adopt_orphans() {
    #[cfg(target_os = "linux")]
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
}

/// A supervisor this process started, counted as live from start to [`Supervised::ended`].
#[derive(Debug)]
pub struct Supervised(i32);

impl Supervised {
    /// Starts a supervisor. The list of live ones is held while it starts, so that no
    /// [`stop_orphans`] of another step takes it for an orphan.
    pub fn spawn(command: &mut Command) -> std::io::Result<(std::process::Child, Self)> {
        let mut live = LIVE_SUPERVISORS.lock().unwrap_or_else(|p| p.into_inner());
        let child = command.spawn()?;
        let pid = child.id() as i32;
        live.push(pid);
        Ok((child, Self(pid)))
    }

    /// The supervisor is gone (waited for). Without its report it was killed before it could
    /// stop its step: whatever the step left running has come to this process (see
    /// [`adopt_orphans`]) and is stopped now, before the runner records the attempt and maybe
    /// starts the next one. Returns once they are gone (SIGTERM, SIGKILL after [`GRACE`]).
    pub fn ended(self, reported: bool) {
        LIVE_SUPERVISORS.lock().unwrap_or_else(|p| p.into_inner()).retain(|&pid| pid != self.0);
        if !reported {
            stop_orphans();
        }
    }
}

/// Stops every descendant of this process that no live supervisor of it answers for: the
/// processes of steps whose supervisor was killed outright. Each is signalled, with any group
/// it leads; those that are this process's own children are reaped by pid, never by
/// `waitpid(-1)`, which would take a live supervisor's status from the thread waiting for it.
fn stop_orphans() {
    // Under the list's lock: a supervisor starting meanwhile is either spared or not yet born.
    let orphans = || {
        let live = LIVE_SUPERVISORS.lock().unwrap_or_else(|p| p.into_inner());
        descendants_except(&live)
    };
    // Orphans that ended are zombies until reaped: only their pids are waited for.
    let reap = || {
        let live = LIVE_SUPERVISORS.lock().unwrap_or_else(|p| p.into_inner());
        for pid in ended_children().into_iter().filter(|pid| !live.contains(&pid.as_raw_nonzero().get())) {
            let _ = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG);
        }
    };
    for (signal, within) in [(Signal::TERM, GRACE), (Signal::KILL, Duration::from_secs(1))] {
        reap();
        let found = orphans();
        if found.is_empty() {
            return;
        }
        for &(pid, group) in &found {
            let _ = rustix::process::kill_process(pid, signal);
            if found.iter().any(|(other, _)| *other == group) {
                let _ = kill_process_group(group, signal);
            }
        }
        let deadline = Instant::now() + within;
        loop {
            // Reaped after the look: one that ends in between is a zombie by then.
            let left = orphans();
            reap();
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
