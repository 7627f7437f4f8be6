//! Where output goes: stdout for the result (rich text or one JSON document), stderr for messages
//! and progress; colour only on a terminal and never with `NO_COLOR`; rich lines within the
//! width (`text::width`, 80 columns at most).

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::cli::Format;
use crate::error::CliError;
use crate::text::{cut, escape_controls, fit, wrap};

/// The first failed write to stdout, if any.
static STDOUT_FAILURE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Remembers a failed write to stdout for [`stdout_failure`], unless the reader closed the pipe.
fn remember_failure(result: std::io::Result<()>) {
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let mut failure = STDOUT_FAILURE.lock().unwrap_or_else(|p| p.into_inner());
            failure.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Why writing the command's result failed, if it did: the command must then exit 1.
pub fn stdout_failure() -> Option<CliError> {
    let failure = STDOUT_FAILURE.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
    Some(CliError::unexpected(format!("cannot write the result to standard output: {failure}")))
}

/// ANSI styling that is a no-op when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    enabled: bool,
}

impl Style {
    /// Colour for a stream that is (or is not) a terminal, honouring `NO_COLOR` and `TERM=dumb`.
    pub fn for_terminal(is_terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Self { enabled: is_terminal && !no_color && !dumb }
    }

    /// No colour at all: for text that is not bound for a terminal (the dashboard's pages).
    pub fn plain() -> Self {
        Self { enabled: false }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
    pub fn red(self, text: &str) -> String {
        self.paint("31", text)
    }
    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }
    pub fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }
    pub fn cyan(self, text: &str) -> String {
        self.paint("36", text)
    }
}

/// The output side of one command.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub format: Format,
    /// Styling for stdout.
    pub out: Style,
    /// Styling for stderr.
    pub err: Style,
    pub stderr_is_terminal: bool,
    /// The columns a rich line may take.
    pub width: usize,
    /// `-v`: phases, processing states and decision ids in rich output too.
    pub verbose: bool,
}

impl Ui {
    pub fn new(format: Format, verbose: bool) -> Self {
        let stderr_is_terminal = std::io::stderr().is_terminal();
        Self {
            format,
            out: Style::for_terminal(std::io::stdout().is_terminal()),
            err: Style::for_terminal(stderr_is_terminal),
            stderr_is_terminal,
            width: crate::text::width(),
            verbose,
        }
    }

    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// Writes the command's result. A closed pipe (`| head`) is the reader's choice and not an
    /// error; any other failed write (a full disk, `> /dev/full`) is remembered, and the command
    /// then exits 1 ([`stdout_failure`]): output that was lost must not look like success.
    pub fn stdout(&self, text: &str) {
        let fitted;
        let text = if self.json() {
            text
        } else {
            fitted = fit(text, self.width);
            &fitted
        };
        let mut out = std::io::stdout().lock();
        let mut result = out.write_all(text.as_bytes());
        if result.is_ok() && !text.ends_with('\n') {
            result = out.write_all(b"\n");
        }
        remember_failure(result.and_then(|()| out.flush()));
    }

    /// The one JSON document of a `--format json` command, written as it is serialized: a
    /// listing of many plans is never held twice in memory.
    pub fn json_document(&self, value: &impl Serialize) {
        // Stdout is line-buffered; a pretty document is many lines, so buffer it whole.
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        let result = serde_json::to_writer_pretty(&mut out, value)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        remember_failure(result);
    }

    /// A `--format json` document that is one list, `{"KEY": [ITEMS]}`, written an item at a
    /// time as the items come: a listing of a million plans holds none of them (the bytes are
    /// those [`Self::json_document`] would write for the whole document).
    pub fn json_list(&self, key: &'static str) -> JsonList<std::io::BufWriter<std::io::Stdout>> {
        JsonList::new(std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()), key)
    }

    /// A message for the person at the terminal (stderr in every format), within the width.
    pub fn note(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", fit(text, self.width));
    }

    /// Prints an error on stderr, and in JSON mode the error object on stdout. Rich: wrapped
    /// within the width; JSON: one line, for scripts that read stderr by the line.
    pub fn error(&self, error: &CliError) {
        if self.json() {
            self.json_document(&error.to_json());
        }
        if let Some(context) = &error.context {
            let lines: Vec<String> = context.trim_end().lines().map(|l| cut(l, self.width)).collect();
            self.note(&lines.join("\n"));
        }
        // Whatever a message quotes (a path, a name, a value), it never drives the terminal.
        let message = escape_controls(&error.message);
        let label = self.err.red(&self.err.bold("error:"));
        let text = if self.json() {
            format!("{label} {message}")
        } else {
            let lines = wrap(&message, self.width.saturating_sub(7), self.width.saturating_sub(2));
            format!("{label} {}", lines.join("\n  "))
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }
}

/// A pretty JSON document `{"KEY": [ITEMS]}` written an item at a time (see [`Ui::json_list`]).
/// The first failed write is kept, and reported by [`Self::finish`].
pub struct JsonList<W: Write> {
    out: W,
    items: usize,
    /// One item's text, with the separator before it.
    scratch: RenderedItems,
    result: std::io::Result<()>,
}

impl<W: Write> JsonList<W> {
    pub fn new(mut out: W, key: &'static str) -> Self {
        let result = write!(out, "{{\n  {}: [", serde_json::Value::from(key));
        Self { out, items: 0, scratch: RenderedItems::default(), result }
    }

    /// Adds `item` to the list.
    pub fn push<T: Serialize>(&mut self, item: &T) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.push(item);
        self.push_rendered(&scratch);
        self.scratch = scratch;
    }

    /// Adds the items `items` holds, rendered elsewhere (another thread), in their order.
    pub fn push_rendered(&mut self, items: &RenderedItems) {
        if self.result.is_err() {
            return;
        }
        if let Some(e) = &items.failed {
            self.result = Err(std::io::Error::other(e.to_string()));
            return;
        }
        if items.count == 0 {
            return;
        }
        // Each item's text follows a comma; the list's first follows only its line break.
        let text = if self.items == 0 { &items.bytes[1..] } else { &items.bytes[..] };
        self.items += items.count;
        self.result = self.out.write_all(text);
    }

    /// Closes the list and the document; the first failed write, if any.
    pub fn finish(mut self) -> std::io::Result<()> {
        let end: &[u8] = if self.items == 0 { b"]\n}\n" } else { b"\n  ]\n}\n" };
        self.result.and_then(|()| self.out.write_all(end)).and_then(|()| self.out.flush())
    }
}

/// Items of a [`JsonList`] rendered ahead of printing (on another thread than the one that
/// prints them), so that rendering and printing a long listing overlap.
#[derive(Default)]
pub struct RenderedItems {
    /// Each item's text as it stands in the document, after a comma, a line break and its
    /// indentation: a batch is printed with one write.
    bytes: Vec<u8>,
    count: usize,
    failed: Option<serde_json::Error>,
}

impl RenderedItems {
    /// Renders `item` after the others.
    pub fn push<T: Serialize>(&mut self, item: &T) {
        if self.failed.is_some() {
            return;
        }
        let formatter = Nested { depth: LIST_ITEM_DEPTH, has_value: false };
        let rendered = formatter
            .line_break(&mut self.bytes, false)
            .map_err(serde_json::Error::io)
            .and_then(|()| item.serialize(&mut serde_json::Serializer::with_formatter(&mut self.bytes, formatter)));
        match rendered {
            Ok(()) => self.count += 1,
            Err(e) => self.failed = Some(e),
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
        self.failed = None;
    }
}

/// How deep a [`JsonList`]'s items stand: inside the document's object, then its list.
const LIST_ITEM_DEPTH: usize = 2;

/// serde_json's pretty layout (two spaces a level, as `to_writer_pretty`) for a value that stands
/// `depth` levels deep in a document: the bytes the whole document's pretty rendering has there,
/// with each line break and its indentation written at once, not a level at a time.
struct Nested {
    depth: usize,
    has_value: bool,
}

/// A comma, a line break and the indentation of up to 32 levels.
const BREAK: &[u8] = b",\n                                                                ";

impl Nested {
    /// A line break (after a comma unless `first`) and the current level's indentation.
    fn line_break<W: ?Sized + Write>(&self, out: &mut W, first: bool) -> std::io::Result<()> {
        let from = usize::from(first);
        match BREAK.get(from..2 + 2 * self.depth) {
            Some(text) => out.write_all(text),
            None => {
                out.write_all(&BREAK[from..2])?;
                (0..self.depth).try_for_each(|_| out.write_all(b"  "))
            }
        }
    }

    fn open<W: ?Sized + Write>(&mut self, out: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        out.write_all(bracket)
    }

    fn close<W: ?Sized + Write>(&mut self, out: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            self.line_break(out, true)?;
        }
        out.write_all(bracket)
    }
}

impl serde_json::ser::Formatter for Nested {
    fn begin_array<W: ?Sized + Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        self.open(out, b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        self.close(out, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, out: &mut W, first: bool) -> std::io::Result<()> {
        self.line_break(out, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _out: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        self.open(out, b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        self.close(out, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, out: &mut W, first: bool) -> std::io::Result<()> {
        self.line_break(out, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        out.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _out: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

impl JsonList<std::io::BufWriter<std::io::Stdout>> {
    /// [`Self::finish`] for stdout: a failed write makes the command fail, as for
    /// [`Ui::json_document`].
    pub fn finish_stdout(self) {
        remember_failure(self.finish());
    }
}
