//! A step's output on its way from the step's pipes to the progress display, the capped logs
//! and the stderr tail that a failed step's error quotes: read in chunks, split into lines of
//! bounded length, made safe to print and record.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use crate::error::one_line;
use crate::logs::KeptTail;
use crate::progress::Progress;

/// How much of a failed step's stderr goes into the plan's error.
pub const TAIL_LINES: usize = 20;
const TAIL_CHARS: usize = 2000;

/// One of a step's output streams.
pub type Stream = Box<dyn Read + Send>;

/// The longest line shown on the progress display or kept in the stderr tail; the rest of a
/// longer line is dropped (the log keeps the bytes, up to its cap).
const MAX_LINE_BYTES: usize = 8 * 1024;

/// Splits a stream's chunks into lines, holding at most [`MAX_LINE_BYTES`] of a line.
#[derive(Debug, Default)]
struct LineSplitter {
    pending: Vec<u8>,
    dropped: usize,
}

impl LineSplitter {
    fn push(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(String)) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.keep(&bytes[..end]);
            self.flush(emit);
            bytes = &bytes[end + 1..];
        }
        self.keep(bytes);
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.pending.len());
        let kept = bytes.len().min(room);
        self.pending.extend_from_slice(&bytes[..kept]);
        self.dropped += bytes.len() - kept;
    }

    fn flush(&mut self, emit: &mut impl FnMut(String)) {
        let mut line = String::from_utf8_lossy(&self.pending).trim_end_matches('\r').to_owned();
        if self.dropped > 0 {
            line.push_str(&format!(" … ({} more bytes on this line)", self.dropped));
        }
        emit(line);
        self.pending.clear();
        self.dropped = 0;
    }

    fn finish(&mut self, emit: &mut impl FnMut(String)) {
        if !self.pending.is_empty() || self.dropped > 0 {
            self.flush(emit);
        }
    }
}

/// Passes the step's stdout and stderr through the progress display and into their capped
/// logs, keeping stderr's last lines. Reads in chunks, so a step printing one huge line costs
/// bounded memory. The receiver gets one message per stream when it closes.
pub fn forward(
    progress: &Arc<Progress>,
    [stdout, stderr]: [Stream; 2],
    tail: &Arc<Mutex<VecDeque<String>>>,
    logs: [KeptTail; 2],
) -> Receiver<()> {
    let (done, drained) = mpsc::channel();
    let [out_log, err_log] = logs;
    let streams: [(Stream, KeptTail, bool); 2] = [(stdout, out_log, false), (stderr, err_log, true)];
    for (mut stream, log, keep_tail) in streams {
        let progress = Arc::clone(progress);
        let tail = Arc::clone(tail);
        let done = done.clone();
        std::thread::spawn(move || {
            let mut lines = LineSplitter::default();
            let mut buf = vec![0u8; 64 * 1024];
            let mut emit = |line: String| {
                progress.output(&line);
                if keep_tail {
                    let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                    tail.push_back(line);
                    if tail.len() > TAIL_LINES {
                        tail.pop_front();
                    }
                }
            };
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                log.push(&buf[..n]);
                lines.push(&buf[..n], &mut emit);
            }
            lines.finish(&mut emit);
            let _ = done.send(());
        });
    }
    drained
}

/// The end of a step's stderr, made safe to record and print: colour sequences dropped, other
/// control characters (but newline and tab) replaced, at most `TAIL_CHARS` characters.
pub fn stderr_tail(lines: &[String]) -> String {
    let text = strip_control(&lines.join("\n"));
    let text = text.trim();
    let chars = text.chars().count();
    if chars > TAIL_CHARS {
        text.chars().skip(chars - TAIL_CHARS).collect()
    } else {
        text.to_owned()
    }
}

fn strip_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // CSI sequences (`ESC [ … final byte`), such as colours: dropped whole.
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

pub fn last_line(text: &str) -> Option<String> {
    text.lines().rev().find(|l| !l.trim().is_empty()).map(one_line)
}
