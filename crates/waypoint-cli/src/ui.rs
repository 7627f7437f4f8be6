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
    /// One item's text, printed as it stands two levels deep.
    scratch: Vec<u8>,
    result: std::io::Result<()>,
}

/// An item printed inside `[[ ]]` stands where a list item of the document stands (two levels
/// deep, indented by four spaces): its text is what lies between these.
const NESTED_OPEN: &[u8] = b"[\n  [\n    ";
const NESTED_CLOSE: &[u8] = b"\n  ]\n]";

impl<W: Write> JsonList<W> {
    pub fn new(mut out: W, key: &'static str) -> Self {
        let result = write!(out, "{{\n  {}: [", serde_json::Value::from(key));
        Self { out, items: 0, scratch: Vec::new(), result }
    }

    /// Adds `item` to the list.
    pub fn push<T: Serialize>(&mut self, item: &T) {
        if self.result.is_err() {
            return;
        }
        self.result = match item_text(&mut self.scratch, item) {
            Ok(text) => write_item(&mut self.out, &mut self.items, &self.scratch[text]),
            Err(e) => Err(e.into()),
        };
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
        let mut start = 0;
        for &end in &items.ends {
            self.result = write_item(&mut self.out, &mut self.items, &items.bytes[start..end]);
            if self.result.is_err() {
                return;
            }
            start = end;
        }
    }

    /// Closes the list and the document; the first failed write, if any.
    pub fn finish(mut self) -> std::io::Result<()> {
        let end: &[u8] = if self.items == 0 { b"]\n}\n" } else { b"\n  ]\n}\n" };
        self.result.and_then(|()| self.out.write_all(end)).and_then(|()| self.out.flush())
    }
}

/// Items of a [`JsonList`] rendered ahead of printing (on another thread than the one that
/// prints): their texts one after another, and where each ends. The first failure to render one
/// is kept, and reported when they are pushed.
#[derive(Default)]
pub struct RenderedItems {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    scratch: Vec<u8>,
    failed: Option<serde_json::Error>,
}

impl RenderedItems {
    /// Renders `item` after the others.
    pub fn push<T: Serialize>(&mut self, item: &T) {
        if self.failed.is_some() {
            return;
        }
        match item_text(&mut self.scratch, item) {
            Ok(text) => {
                self.bytes.extend_from_slice(&self.scratch[text]);
                self.ends.push(self.bytes.len());
            }
            Err(e) => self.failed = Some(e),
        }
    }
}

/// Writes an item's `text` after the `items` written before it.
fn write_item(out: &mut impl Write, items: &mut usize, text: &[u8]) -> std::io::Result<()> {
    let separator: &[u8] = if *items == 0 { b"\n    " } else { b",\n    " };
    *items += 1;
    out.write_all(separator).and_then(|()| out.write_all(text))
}

/// Renders `item` into `scratch` and returns where in it the item's text is as it stands in a
/// [`JsonList`]: pretty JSON two levels deep (every line after the first indented by four more
/// spaces).
fn item_text<T: Serialize>(scratch: &mut Vec<u8>, item: &T) -> serde_json::Result<std::ops::Range<usize>> {
    scratch.clear();
    serde_json::to_writer_pretty(&mut *scratch, &[std::slice::from_ref(item)])?;
    Ok(NESTED_OPEN.len()..scratch.len() - NESTED_CLOSE.len())
}

impl JsonList<std::io::BufWriter<std::io::Stdout>> {
    /// [`Self::finish`] for stdout: a failed write makes the command fail, as for
    /// [`Ui::json_document`].
    pub fn finish_stdout(self) {
        remember_failure(self.finish());
    }
}
