//! Progress while a plan file runs, on stderr: a live bar on a terminal, plain lines otherwise.
//! Step output passes through here too, so it never tears the bar.

use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use waypoint_application::CompactProgress;

use crate::text::{columns, cut, elapsed, fit, with_name};
use crate::ui::Style;

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

#[derive(Debug)]
pub struct Progress {
    style: Style,
    live: bool,
    total: u32,
    /// The columns a line may take.
    width: usize,
    state: Mutex<State>,
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
        Self { style, live, total, width, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, state: &mut State, line: Option<&str>) {
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
        let mut state = self.lock();
        state.completed = state.completed.max(step);
        let line = self.line(&self.style.dim("↷"), step, name, &self.style.dim("skipped: completed before"));
        self.write(&mut state, Some(&line));
    }

    pub fn started(&self, step: u32, name: &str) {
        let mut state = self.lock();
        state.current = Some(Current { step, name: name.to_owned(), started: Instant::now() });
        let line = (!self.live).then(|| self.line("▶", step, name, "started"));
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
