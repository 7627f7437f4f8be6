//! Progress while a plan file runs, on stderr: a live bar on a terminal, plain lines otherwise.
//! Step output passes through here too, so it never tears the bar.

use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use waypoint_application::CompactProgress;

use crate::text::{columns, cut, elapsed, fit, with_name};
use crate::ui::Style;

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

pub struct Progress {
    style: Style,
    live: bool,
    total: u32,
    /// The columns a line may take.
    width: usize,
    state: Mutex<State>,
    /// A worker's own report of each step (ADR 0017); a worker's progress writes nothing else.
    feed: Option<StepFeed>,
}

/// Told of every step's start, rerun, skip and end: `(step, name, what)`, `what` one of
/// `started`, `rerun`, `skipped`, `completed`, `failed`, `interrupted`.
pub type StepFeed = Box<dyn Fn(u32, &str, &'static str) + Send + Sync>;

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("live", &self.live).field("total", &self.total).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    current: Option<Current>,
    completed: u32,
    bar_drawn: bool,
}

#[derive(Debug)]
struct Current {
    step: u32,
    name: String,
    started: Instant,
}

/// How a step ended, for its progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    Completed,
    Failed,
    Interrupted,
}

impl Progress {
    /// `live`: draw a bar (stderr is a terminal); otherwise print plain lines, each within
    /// `width` columns.
    pub fn new(style: Style, live: bool, total: u32, width: usize) -> Self {
        Self { style, live, total, width, state: Mutex::new(State::default()), feed: None }
    }

    /// A worker's progress: each step goes to `feed`, and nothing is written to stderr (a worker
    /// runs many plans at once; their steps' output is in the store's logs).
    pub fn for_worker(total: u32, feed: StepFeed) -> Self {
        let style = Style::for_terminal(false);
        Self { style, live: false, total, width: usize::MAX, state: Mutex::new(State::default()), feed: Some(feed) }
    }

    fn tell(&self, step: u32, name: &str, what: &'static str) {
        if let Some(feed) = &self.feed {
            feed(step, name, what);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, state: &mut State, line: Option<&str>) {
        if self.feed.is_some() {
            return;
        }
        let mut err = std::io::stderr().lock();
        if state.bar_drawn {
            let _ = write!(err, "\r\x1b[2K");
            state.bar_drawn = false;
        }
        if let Some(line) = line {
            let _ = writeln!(err, "{line}");
        }
        if self.live {
            if let Some(current) = &state.current {
                let took = elapsed(current.started.elapsed());
                let frame = SPINNER[(current.started.elapsed().as_millis() / 100) as usize % SPINNER.len()];
                let head =
                    format!("  {frame} {} {}/{}  ", bar(state.completed, self.total, 20), current.step, self.total);
                let name = cut(&current.name, self.width.saturating_sub(columns(&head) + 2 + columns(&took) + 1));
                let _ = write!(
                    err,
                    "  {} {} {}/{}  {}  {}",
                    self.style.cyan(frame),
                    self.style.green(&bar(state.completed, self.total, 20)),
                    current.step,
                    self.total,
                    self.style.bold(&name),
                    self.style.dim(&took),
                );
                state.bar_drawn = true;
            }
        }
        let _ = err.flush();
    }

    /// `  M 2/4  name  TAIL`, the name cut so that the line fits the width.
    fn line(&self, mark: &str, step: u32, name: &str, tail: &str) -> String {
        with_name(&format!("  {mark} {step}/{}  ", self.total), name, &format!("  {tail}"), self.width)
    }

    pub fn skipped(&self, step: u32, name: &str) {
        self.tell(step, name, "skipped");
        let mut state = self.lock();
        state.completed = state.completed.max(step);
        let line = self.line(&self.style.dim("↷"), step, name, &self.style.dim("skipped: completed before"));
        self.write(&mut state, Some(&line));
    }

    pub fn started(&self, step: u32, name: &str) {
        self.tell(step, name, "started");
        self.start(step, name, "started");
    }

    /// A step that an earlier run started but did not finish starts again.
    pub fn rerun(&self, step: u32, name: &str) {
        self.tell(step, name, "rerun");
        self.start(step, name, "started again");
    }

    fn start(&self, step: u32, name: &str, word: &str) {
        let mut state = self.lock();
        state.current = Some(Current { step, name: name.to_owned(), started: Instant::now() });
        let line = (!self.live).then(|| self.line("▶", step, name, word));
        self.write(&mut state, line.as_deref());
    }

    /// A line the step printed.
    pub fn output(&self, line: &str) {
        let mut state = self.lock();
        let line = format!("    {} {line}", self.style.dim("│"));
        self.write(&mut state, Some(&line));
    }

    /// A message from Waypoint itself while a step runs.
    pub fn note(&self, text: &str) {
        let mut state = self.lock();
        self.write(&mut state, Some(&fit(&format!("  {text}"), self.width)));
    }

    pub fn finished(&self, step: u32, name: &str, end: StepEnd) {
        self.tell(
            step,
            name,
            match end {
                StepEnd::Completed => "completed",
                StepEnd::Failed => "failed",
                StepEnd::Interrupted => "interrupted",
            },
        );
        let mut state = self.lock();
        let took = state.current.take().map(|c| c.started.elapsed()).unwrap_or_default();
        let (mark, word) = match end {
            StepEnd::Completed => {
                state.completed = state.completed.max(step);
                (self.style.green("✓"), "done")
            }
            StepEnd::Failed => (self.style.red("✗"), "failed"),
            StepEnd::Interrupted => (self.style.yellow("■"), "interrupted"),
        };
        let line = self.line(&mark, step, name, &format!("{word} {}", self.style.dim(&elapsed(took))));
        self.write(&mut state, Some(&line));
    }

    /// Redraws the bar (its clock and spinner move).
    pub fn tick(&self) {
        if self.live {
            let mut state = self.lock();
            self.write(&mut state, None);
        }
    }
}

/// A filled bar of `width` cells for `done` of `total`.
pub fn bar(done: u32, total: u32, width: usize) -> String {
    let filled = if total == 0 { 0 } else { (done.min(total) as usize * width) / total as usize };
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// Progress of `store compact`, on stderr: one line redrawn in place on a terminal; otherwise
/// plain lines, and only once a compaction has run long enough for someone to wonder.
#[derive(Debug)]
pub struct CompactMeter {
    style: Style,
    live: bool,
    started: Instant,
    drawn: bool,
}

/// A compaction quicker than this prints no progress when stderr is not a terminal.
const QUIET_FOR: Duration = Duration::from_secs(2);

impl CompactMeter {
    pub fn new(style: Style, live: bool) -> Self {
        Self { style, live, started: Instant::now(), drawn: false }
    }

    pub fn report(&mut self, progress: CompactProgress) {
        let line = match progress {
            CompactProgress::Archived { done, total } => {
                format!("  archiving {} {done}/{total} plans", self.style.green(&bar(clamp(done), clamp(total), 20)))
            }
            CompactProgress::Removing { total } => format!("  removing {total} archived plans from the store"),
        };
        let mut err = std::io::stderr().lock();
        if self.live {
            let _ = write!(err, "\r\x1b[2K{line}");
            self.drawn = true;
        } else if self.started.elapsed() >= QUIET_FOR {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Clears the live line, so the result prints on a clean one.
    pub fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
