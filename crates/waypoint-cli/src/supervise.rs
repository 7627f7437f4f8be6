//! The step supervisor: a small `waypoint-supervise` process beside the runner, so that no
//! process of a step outlives the runner that started it, and no two attempts of a plan's steps
//! ever run at once (ADR 0008).
//!
//! A runner starts one supervisor for its whole run ([`Supervisor::start`]), with one end of a
//! Unix socket as its stdin (the lifeline), and hands it each attempt in turn
//! ([`Supervisor::begin`]): the attempt lock's path, the program and its arguments, the folder,
//! the whole environment, and the write ends of the step's stdout and stderr pipes (passed as
//! file descriptors over the socket). For each attempt the supervisor
//! - takes the plan's attempt lock (an OS file lock) and holds it until the attempt's processes
//!   are gone: while it is held, no resume may start a step of that plan;
//! - runs the shell as the leader of a new process group (the runner signals that group: Ctrl-C,
//!   timeouts) and says `started PID`;
//! - says how the shell ended (`exit N`, `signal N`, or `error TEXT` when it could not start),
//!   stops whatever the step left running, in its group or out of it (it is a child subreaper,
//!   so every orphan of the step is its child), releases the lock and says `ready`.
//!
//! When the socket closes (the runner died, even by SIGKILL, or is done), the supervisor stops
//! the running attempt's processes, if any (SIGTERM, SIGKILL after [`GRACE`]), and exits. It
//! survives SIGINT, SIGTERM and SIGHUP meanwhile, so that it can clean up.
//!
//! One supervisor per run rather than one per attempt: starting a process is most of what a
//! short step costs, and each attempt now starts one (its shell), not two.
//!
//! The other way round, the runner is a subreaper too ([`adopt_orphans`]): when a supervisor is
//! killed before it could say `ready`, the runner stops the step's processes that came to it
//! ([`stop_orphans`]) before it records the attempt or starts another.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use rustix::process::{kill_process_group, Pid, Signal, WaitOptions};

/// The hidden first argument that makes `waypoint` a supervisor.
pub const ARG: &str = "__supervise";

/// How long the step's processes get between SIGTERM and SIGKILL, whoever stops them.
pub const GRACE: Duration = Duration::from_secs(5);

/// The largest request a supervisor accepts: the environment and the command line together.
const MAX_REQUEST: usize = 16 * 1024 * 1024;

/// The supervisor's program: the small `waypoint-supervise` installed beside this binary, or
/// else this binary as `waypoint __supervise`. Looked up once per process.
fn command() -> std::io::Result<Command> {
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
}

/// One line the supervisor says on the lifeline.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Said {
    /// The attempt's shell runs, leading its own process group.
    Started(i32),
    /// How the attempt's shell ended.
    Ended(ShellEnd),
    /// The attempt's processes are gone and its lock is free: the next attempt may begin.
    Ready,
}

impl Said {
    fn parse(line: &str) -> Option<Self> {
        let line = line.trim_end();
        if line == "ready" {
            return Some(Said::Ready);
        }
        let (word, rest) = line.split_once(' ')?;
        match word {
            "started" => rest.parse().ok().map(Said::Started),
            "exit" => rest.parse().ok().map(|code| Said::Ended(ShellEnd::Exited(code))),
            "signal" => rest.parse().ok().map(|signal| Said::Ended(ShellEnd::Signalled(signal))),
            "error" => Some(Said::Ended(ShellEnd::Failed(rest.to_owned()))),
            _ => None,
        }
    }
}

/// What the runner hears from its supervisor: a line, or that it is gone (with how it ended).
#[derive(Debug)]
enum News {
    Said(Said),
    Gone(Option<ExitStatus>),
}

/// One attempt for the supervisor to run.
#[derive(Debug)]
pub struct AttemptSpec {
    /// The plan's attempt lock, held while the attempt's processes live.
    pub lock: PathBuf,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub dir: PathBuf,
    /// The shell's whole environment (nothing is inherited from the supervisor).
    pub env: BTreeMap<OsString, OsString>,
    /// The write ends of the step's stdout and stderr pipes.
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl AttemptSpec {
    /// Fields separated by NUL, which no path, argument or environment entry can hold.
    fn encode(&self) -> Vec<u8> {
        let mut fields: Vec<&[u8]> = vec![self.lock.as_os_str().as_bytes(), self.dir.as_os_str().as_bytes()];
        fields.push(self.program.as_bytes());
        let argc = self.args.len().to_string();
        fields.push(argc.as_bytes());
        fields.extend(self.args.iter().map(|a| a.as_bytes()));
        let entries: Vec<Vec<u8>> = self.env.iter().map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat()).collect();
        fields.extend(entries.iter().map(Vec::as_slice));
        let body = fields.join(&0u8);
        let mut message = (body.len() as u32).to_le_bytes().to_vec();
        message.extend(body);
        message
    }
}

/// A request as the supervisor reads it.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    lock: PathBuf,
    dir: PathBuf,
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Request {
    fn decode(body: &[u8]) -> Option<Self> {
        let mut fields = body.split(|&b| b == 0).map(|f| OsStr::from_bytes(f).to_owned());
        let lock = PathBuf::from(fields.next()?);
        let dir = PathBuf::from(fields.next()?);
        let program = fields.next()?;
        let argc: usize = fields.next()?.to_str()?.parse().ok()?;
        let args: Vec<OsString> = fields.by_ref().take(argc).collect();
        if args.len() != argc {
            return None;
        }
        let env = fields
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let bytes = entry.into_vec();
                let at = bytes.iter().position(|&b| b == b'=')?;
                Some((OsString::from_vec(bytes[..at].to_vec()), OsString::from_vec(bytes[at + 1..].to_vec())))
            })
            .collect::<Option<_>>()?;
        Some(Request { lock, dir, program, args, env })
    }
}

/// The runner's handle on its supervisor: one per run, alive from the first attempt to the end
/// of the run (dropping it closes the lifeline, and the supervisor exits).
#[derive(Debug)]
pub struct Supervisor {
    lifeline: UnixStream,
    news: Arc<Mutex<Receiver<News>>>,
    gone: Arc<AtomicBool>,
}

/// How [`Supervisor::begin`] went.
#[derive(Debug)]
pub enum Begun {
    /// The shell runs, leading this process group; [`Ending::wait`] tells how it ended.
    Started(Pid, Ending),
    /// Nothing ran: the text says why (the lock, the folder, the program).
    Refused(String),
}

impl Supervisor {
    /// Starts a supervisor, in a process group of its own: a terminal's Ctrl-C reaches only the
    /// runner, which passes it on to the running step's group and then records what happened.
    pub fn start() -> std::io::Result<Self> {
        let (lifeline, supervisor_end) = UnixStream::pair()?;
        let mut command = command()?;
        command
            .stdin(Stdio::from(OwnedFd::from(supervisor_end)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        adopt_orphans();
        // The list of live supervisors is held while one starts, so that no `stop_orphans` of
        // another run in this process takes it for an orphan.
        let mut live = LIVE_SUPERVISORS.lock().unwrap_or_else(|p| p.into_inner());
        let mut child = command.spawn()?;
        let pid = child.id() as i32;
        live.push(pid);
        drop(live);
        // The command holds the supervisor's end of the lifeline: closed here, so that the
        // supervisor's exit is seen as the end of the socket.
        drop(command);
        let (tell, news) = mpsc::channel();
        let gone = Arc::new(AtomicBool::new(false));
        let reader = lifeline.try_clone()?;
        let gone_flag = Arc::clone(&gone);
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if let Some(said) = Said::parse(&line) {
                    let _ = tell.send(News::Said(said));
                }
            }
            let status = child.wait().ok();
            LIVE_SUPERVISORS.lock().unwrap_or_else(|p| p.into_inner()).retain(|&p| p != pid);
            gone_flag.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = tell.send(News::Gone(status));
        });
        Ok(Supervisor { lifeline, news: Arc::new(Mutex::new(news)), gone })
    }

    /// Whether the supervisor has died (it is then of no use: start another).
    pub fn is_gone(&self) -> bool {
        self.gone.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Hands the supervisor one attempt and waits until its shell runs (or could not).
    pub fn begin(&mut self, spec: AttemptSpec) -> std::io::Result<Begun> {
        let message = spec.encode();
        let fds = [spec.stdout.as_fd(), spec.stderr.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        let sent = rustix::net::sendmsg(&self.lifeline, &[IoSlice::new(&message)], &mut control, SendFlags::empty())?;
        self.lifeline.write_all(&message[sent..])?;
        // Our copies of the write ends: the step's processes hold the only others, so the pipes
        // close when they are gone.
        drop(spec);
        let news = self.news.lock().unwrap_or_else(|p| p.into_inner());
        let mut refusal = None;
        loop {
            match news.recv() {
                Ok(News::Said(Said::Started(pid))) => {
                    let group = Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("the supervisor said pid 0"))?;
                    return Ok(Begun::Started(group, Ending { news: Arc::clone(&self.news) }));
                }
                Ok(News::Said(Said::Ended(ShellEnd::Failed(text)))) => refusal = Some(text),
                Ok(News::Said(Said::Ready)) => {
                    return Ok(Begun::Refused(refusal.unwrap_or_else(|| "the supervisor ran nothing".into())))
                }
                Ok(News::Said(_)) => {}
                // Killed between its spawn and its word: a shell it started has come to this
                // process, and is stopped before anything is recorded or tried again.
                Ok(News::Gone(_)) | Err(_) => {
                    stop_orphans();
                    return Err(std::io::Error::other("the step supervisor ended before it started the step"));
                }
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Every clone of the socket is shut, so the supervisor reads the end at once.
        let _ = self.lifeline.shutdown(std::net::Shutdown::Both);
    }
}

/// The end of an attempt that runs, to wait for.
#[derive(Debug)]
pub struct Ending {
    news: Arc<Mutex<Receiver<News>>>,
}

/// How an attempt ended: the shell's end as reported (none if the supervisor died first), and
/// the supervisor's own exit status when it died.
#[derive(Debug)]
pub struct Ended {
    pub report: Option<ShellEnd>,
    pub supervisor_died: Option<Option<ExitStatus>>,
}

impl Ending {
    /// Waits until the attempt's processes are gone. A supervisor killed before it said `ready`
    /// left the step's processes to this process (a subreaper): they are stopped first.
    pub fn wait(self) -> Ended {
        let news = self.news.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = None;
        loop {
            match news.recv() {
                Ok(News::Said(Said::Ended(end))) => report = Some(end),
                Ok(News::Said(Said::Ready)) => return Ended { report, supervisor_died: None },
                Ok(News::Said(Said::Started(_))) => {}
                Ok(News::Gone(status)) => {
                    stop_orphans();
                    return Ended { report, supervisor_died: Some(status) };
                }
                Err(_) => {
                    stop_orphans();
                    return Ended { report, supervisor_died: Some(None) };
                }
            }
        }
    }
}

enum Happened {
    Request(Box<Request>, [OwnedFd; 2]),
    Unreadable(String),
    ShellEnded(ShellEnd),
    RunnerGone,
}

/// Reads one request and its two descriptors from the lifeline; `Ok(None)` at its end.
fn read_request(lifeline: &mut UnixStream) -> std::io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut length = [0u8; 4];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received =
        rustix::net::recvmsg(&*lifeline, &mut [IoSliceMut::new(&mut length)], &mut control, RecvFlags::CMSG_CLOEXEC)?;
    if received.bytes == 0 {
        return Ok(None);
    }
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    lifeline.read_exact(&mut length[received.bytes..])?;
    let size = u32::from_le_bytes(length) as usize;
    if size > MAX_REQUEST {
        return Err(std::io::Error::other(format!("a request of {size} bytes")));
    }
    let mut body = vec![0u8; size];
    lifeline.read_exact(&mut body)?;
    Ok(Some((body, fds)))
}

/// `waypoint-supervise` (or `waypoint __supervise`): serves one runner's attempts until its
/// lifeline closes. Its exit code means nothing to anyone: what it says on the socket is what
/// the runner reads.
pub fn main() -> ExitCode {
    let lifeline = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(_) => return ExitCode::from(1),
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
    // Signals for the step's group may reach this process too: survive them, clean up.
    let survived = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        let _ = signal_hook::flag::register(signal, Arc::clone(&survived));
    }
    let (happened, wait) = mpsc::channel();
    let mut reader = match lifeline.try_clone() {
        Ok(reader) => reader,
        Err(_) => return ExitCode::from(1),
    };
    let requests = happened.clone();
    std::thread::spawn(move || loop {
        let next = match read_request(&mut reader) {
            Ok(Some((body, fds))) => match (Request::decode(&body), <[OwnedFd; 2]>::try_from(fds)) {
                (Some(request), Ok(fds)) => Happened::Request(Box::new(request), fds),
                _ => Happened::Unreadable("the supervisor got a request it cannot read".into()),
            },
            Ok(None) | Err(_) => Happened::RunnerGone,
        };
        let gone = matches!(next, Happened::RunnerGone);
        if requests.send(next).is_err() || gone {
            return;
        }
    });
    let mut say = |said: &str| {
        let mut writer = &lifeline;
        writer.write_all(said.as_bytes()).is_ok()
    };
    loop {
        match wait.recv() {
            Ok(Happened::Request(request, [stdout, stderr])) => {
                match run_attempt(*request, stdout, stderr, &happened, &wait, &mut say) {
                    Some(()) => {}
                    None => return ExitCode::SUCCESS,
                }
            }
            Ok(Happened::Unreadable(text)) => {
                if !say(&ShellEnd::Failed(text).line()) || !say("ready\n") {
                    return ExitCode::SUCCESS;
                }
            }
            Ok(Happened::ShellEnded(_)) => {}
            Ok(Happened::RunnerGone) | Err(_) => return ExitCode::SUCCESS,
        }
    }
}

/// Runs one attempt to its end. `None` when the runner is gone (the attempt's processes are
/// stopped by then, and the supervisor exits).
fn run_attempt(
    request: Request,
    stdout: OwnedFd,
    stderr: OwnedFd,
    happened: &mpsc::Sender<Happened>,
    wait: &Receiver<Happened>,
    say: &mut impl FnMut(&str) -> bool,
) -> Option<()> {
    let refuse = |say: &mut dyn FnMut(&str) -> bool, text: String| {
        (say(&ShellEnd::Failed(text).line()) && say("ready\n")).then_some(())
    };
    // The lock is held until the attempt's processes are gone; the OS releases it if this
    // process dies, even by SIGKILL.
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&request.lock);
    let lock = match lock.and_then(|file| file.lock().map(|()| file)) {
        Ok(file) => file,
        Err(e) => return refuse(say, format!("cannot take the attempt lock: {e}")),
    };
    let spawned = Command::new(&request.program)
        .args(&request.args)
        .current_dir(&request.dir)
        .env_clear()
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .spawn();
    let mut shell = match spawned {
        Ok(child) => child,
        Err(e) => {
            let program = request.program.to_string_lossy();
            return refuse(say, format!("could not be started in {} ({program}): {e}", request.dir.display()));
        }
    };
    let group = Pid::from_child(&shell);
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
    let alive = say(&format!("started {}\n", group.as_raw_nonzero()));
    loop {
        match wait.recv() {
            Ok(Happened::ShellEnded(end)) => {
                let heard = alive && say(&end.line());
                stop_leftovers(group);
                drop(lock);
                return (heard && say("ready\n")).then_some(());
            }
            Ok(Happened::RunnerGone) | Err(_) => {
                stop_group(group);
                return None;
            }
            // One attempt at a time: a runner never sends another before `ready`.
            Ok(Happened::Request(..) | Happened::Unreadable(_)) => {}
        }
    }
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
/// (`setsid`, GNU `timeout`, a daemon), and it must not outlive the step either.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_as_it_was_sent_whatever_its_text_holds() {
        let (stdout, _) = std::io::pipe().expect("a pipe");
        let (stderr, _) = std::io::pipe().expect("a pipe");
        let env: BTreeMap<OsString, OsString> =
            [("A", "x=y=z"), ("EMPTY", ""), ("LINES", "one\ntwo"), ("UNICODE", "é 漢")]
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
        let spec = AttemptSpec {
            lock: "/s/locks/p.attempt".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo 'a b'\n  exit 3".into(), "".into()],
            dir: "/work dir".into(),
            env: env.clone(),
            stdout: OwnedFd::from(stdout),
            stderr: OwnedFd::from(stderr),
        };
        let message = spec.encode();
        let length = u32::from_le_bytes(message[..4].try_into().expect("four bytes")) as usize;
        assert_eq!(length, message.len() - 4);
        let request = Request::decode(&message[4..]).expect("a request that reads back");
        assert_eq!(request.lock, PathBuf::from("/s/locks/p.attempt"));
        assert_eq!(request.dir, PathBuf::from("/work dir"));
        assert_eq!(request.program, OsString::from("/bin/sh"));
        assert_eq!(request.args, spec.args);
        assert_eq!(request.env, env.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn a_request_cut_short_or_without_its_arguments_is_refused() {
        assert_eq!(
            Request::decode(b"/lock\0/dir\0/bin/sh\x003\0-c\0true"),
            None,
            "three arguments announced, two sent"
        );
        assert_eq!(Request::decode(b"/lock\0/dir"), None);
        assert_eq!(Request::decode(b"/lock\0/dir\0/bin/sh\0x"), None, "a count that is not a number");
        assert_eq!(Request::decode(b"/lock\0/dir\0/bin/sh\x000\0NO_EQUALS_SIGN"), None);
    }

    #[test]
    fn every_line_the_supervisor_says_reads_back_and_others_are_ignored() {
        for end in [ShellEnd::Exited(0), ShellEnd::Exited(3), ShellEnd::Signalled(9), ShellEnd::Failed("a\nb".into())] {
            let parsed = Said::parse(&end.line()).expect("a report line");
            let expected = match end {
                ShellEnd::Failed(text) => ShellEnd::Failed(text.replace('\n', " ")),
                other => other,
            };
            assert_eq!(parsed, Said::Ended(expected));
        }
        assert_eq!(Said::parse("started 42\n"), Some(Said::Started(42)));
        assert_eq!(Said::parse("ready\n"), Some(Said::Ready));
        assert_eq!(Said::parse("started x"), None);
        assert_eq!(Said::parse("hello world"), None);
        assert_eq!(Said::parse(""), None);
    }
}
