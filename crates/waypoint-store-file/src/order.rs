//! The catalog's order by last activity (ADR 0009, "Pages of the listing"): beside each rows file,
//! `catalog/<class>-<gen>.order` lists its view rows newest activity first, so a page of the
//! listing reads the rows it returns instead of every row.
//!
//! The file is a header (`WPCO`, format, store id; 32 bytes) and then sorted runs, one per
//! checkpoint that appended rows: a run is its entries, each `activity i64 | row offset u64`
//! (little-endian; the activity is the row's last activity in nanoseconds since 1970, the offset
//! where the row starts in the rows file of the same generation), sorted newest activity first
//! and then by plan id, then a 16-byte footer `entries u64 | crc32c(entries) u32 | WPCR`. A
//! checkpoint appends one run (its cost is in the rows it appends, not in the store), and the
//! rows file's compaction writes the file again as one run of the latest rows. The head vouches
//! for the order file's length beside the rows file's (`RowsFile::order`; 0: there is none).
//!
//! A reader walks the footers back from that length, finds each run's start by binary search,
//! and merges the runs. An entry names a row, not a plan's latest row: a plan's older rows stay
//! in the runs until compaction, and the reader skips every row whose version is not the plan's
//! version at the checkpoint. Derived data: a missing, foreign or damaged order file, or an entry
//! that does not name a row of its activity, makes the listing sort the rows instead; it never
//! changes an answer. `store verify` reads every run.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use waypoint_application::{CatalogQuery, PlanView};
use waypoint_domain::PlanId;

use crate::binding::{self, StoreId, FILE_HEADER_LEN};
use crate::catalog::{Head, RowsFile};
use crate::crc;
use crate::error::FileStoreError;
use crate::format::{CATALOG_ORDER_MAGIC as MAGIC, CATALOG_ORDER_RUN_MAGIC as RUN_MAGIC};
use crate::fsutil;
use crate::layout::{Layout, RowsKind};

const FORMAT: u32 = 1;
const ENTRY_LEN: usize = 16;
const FOOTER_LEN: usize = 16;
/// Entries read at once while a run is walked.
const BLOCK: usize = 64;
/// Bytes read at once for a row: most rows are a few hundred bytes.
const ROW_GUESS: usize = 512;
/// Bytes read at once for rows that lie one after the other.
const READ_AHEAD: usize = 64 * 1024;
/// Entries read at once while a run is checked whole (64 KiB).
const CHECK_BLOCK: u64 = 4096;

/// A row's key in the order: its last activity in nanoseconds (times outside 1677..2262 are
/// clamped; the store refuses times before 1970).
pub fn activity_key(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

/// A view row to put in the order: its activity, plan and offset in the rows file.
pub struct Placed<'a> {
    pub activity: i64,
    pub plan_id: &'a PlanId,
    pub offset: u64,
}

fn encode_run(rows: &mut [Placed<'_>]) -> Vec<u8> {
    rows.sort_unstable_by(|a, b| b.activity.cmp(&a.activity).then_with(|| a.plan_id.cmp(b.plan_id)));
    let mut out = Vec::with_capacity(rows.len() * ENTRY_LEN + FOOTER_LEN);
    for row in rows.iter() {
        out.extend_from_slice(&row.activity.to_le_bytes());
        out.extend_from_slice(&row.offset.to_le_bytes());
    }
    let check = crc::checksum(&out);
    out.extend_from_slice(&(rows.len() as u64).to_le_bytes());
    out.extend_from_slice(&check.to_le_bytes());
    out.extend_from_slice(&RUN_MAGIC);
    out
}

/// Appends one sorted run of `rows` to `kind`'s order file of `file.generation`, after the
/// `file.order` bytes the head vouches for (a file is started when there are none), and makes it
/// durable. Returns the length to vouch for.
pub fn append_run(
    layout: &Layout,
    store: &StoreId,
    kind: RowsKind,
    file: &RowsFile,
    rows: &mut [Placed<'_>],
) -> Result<u64, FileStoreError> {
    let path = layout.order(kind, file.generation);
    let (handle, created) = fsutil::open_or_create(&path)?;
    let mut len = file.order;
    let io = |e| FileStoreError::io("cannot write a catalog order file", &path, e);
    if len == 0 {
        handle.set_len(0).map_err(io)?;
        handle.write_all_at(&binding::file_header(MAGIC, FORMAT, store), 0).map_err(io)?;
        len = FILE_HEADER_LEN as u64;
    } else {
        // Bytes past what the head vouches for are a checkpoint that did not finish.
        handle.set_len(len).map_err(io)?;
    }
    let run = encode_run(rows);
    handle.write_all_at(&run, len).map_err(io)?;
    handle.sync_data().map_err(io)?;
    if created {
        fsutil::sync_dir(&layout.catalog_dir())?;
    }
    Ok(len + run.len() as u64)
}

/// Writes `kind`'s order file of `generation` as one run of `rows` (a compaction's), atomically.
/// Returns its length.
pub fn write_whole(
    layout: &Layout,
    store: &StoreId,
    kind: RowsKind,
    generation: u64,
    rows: &mut [Placed<'_>],
) -> Result<u64, FileStoreError> {
    let mut out = binding::file_header(MAGIC, FORMAT, store).to_vec();
    out.extend_from_slice(&encode_run(rows));
    fsutil::write_atomically(&layout.tmp_dir(), &layout.catalog_dir(), &layout.order(kind, generation), &out)?;
    Ok(out.len() as u64)
}

/// Why an order file cannot be used: the listing then sorts the rows instead.
#[derive(Debug)]
pub struct Unusable(pub String);

/// One run of an order file: where its entries lie.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u64,
    entries: u64,
    crc: u32,
}

/// A rows file and its order, opened for reading.
pub struct Ordered {
    rows_path: PathBuf,
    rows: File,
    rows_len: u64,
    order_path: PathBuf,
    order: File,
    runs: Vec<Run>,
}

/// A view row as the order names it.
#[derive(Debug)]
pub struct Row {
    pub activity: i64,
    pub plan_id: PlanId,
    pub version: u32,
    offset: u64,
    /// The row's kind, its bytes (the frame whole), and where its view lies in them.
    kind: u8,
    bytes: Vec<u8>,
    view: (usize, usize),
}

impl Row {
    /// Parses the row's view and checks that it is the row the order named.
    pub fn view(&self, ordered: &Ordered) -> Result<PlanView, Unusable> {
        let view = crate::catalog::decode_view(self.kind, &self.bytes[self.view.0..self.view.1]).map_err(|e| {
            Unusable(format!("{} at {}: a row's view is unreadable: {e}", ordered.rows_path.display(), self.offset))
        })?;
        if view.plan_id != self.plan_id || activity_key(view.last_activity_at) != self.activity {
            return Err(Unusable(format!(
                "{}: the entry for the row at {} does not match its view",
                ordered.order_path.display(),
                self.offset
            )));
        }
        Ok(view)
    }
}

impl Ordered {
    /// Opens `kind`'s rows and order files as `head` vouches for them (the rows file is not
    /// empty); `Unusable` when there is no order or it is not this store's.
    pub fn open(layout: &Layout, head: &Head, kind: RowsKind, checked: &mut CheckedRuns) -> Result<Self, Unusable> {
        let ordered = Self::open_footers(layout, head, kind)?;
        // A run is read whole once per process (its checksum, and its times never rising): a
        // binary search would step over a damaged entry unseen. Runs never change once vouched.
        let generation = head.rows(kind).generation;
        checked.retain(|key| key.kind != kind || key.generation == generation);
        for run in &ordered.runs {
            let key = RunKey { kind, generation, start: run.start, entries: run.entries, crc: run.crc };
            if !checked.contains(&key) {
                ordered.check_run(run)?;
                checked.insert(key);
            }
        }
        Ok(ordered)
    }

    /// [`Self::open`] reading only the runs' footers.
    fn open_footers(layout: &Layout, head: &Head, kind: RowsKind) -> Result<Self, Unusable> {
        let file = head.rows(kind);
        let order_path = layout.order(kind, file.generation);
        let rows_path = layout.rows(kind, file.generation);
        let unusable = |what: &str| Unusable(format!("{}: {what}", order_path.display()));
        if file.order == 0 {
            return Err(unusable("the checkpoint vouches for no order"));
        }
        let open = |path: &Path| match fsutil::open_existing_read_only(path) {
            Ok(Some(file)) => Ok(file),
            Ok(None) => Err(Unusable(format!("{} is missing", path.display()))),
            Err(e) => Err(Unusable(e.to_string())),
        };
        let order = open(&order_path)?;
        let rows = open(&rows_path)?;
        let mut header = [0u8; FILE_HEADER_LEN];
        order.read_exact_at(&mut header, 0).map_err(|_| unusable("its header is cut short"))?;
        if !binding::header_matches(&header, MAGIC, FORMAT, &head.store) {
            return Err(unusable("it does not belong to this store's log"));
        }
        let actual = order.metadata().map_err(|e| unusable(&e.to_string()))?.len();
        if actual < file.order {
            return Err(unusable("it is shorter than the checkpoint vouches for"));
        }
        let mut runs = Vec::new();
        let mut end = file.order;
        while end > FILE_HEADER_LEN as u64 {
            let mut footer = [0u8; FOOTER_LEN];
            let at = end.checked_sub(FOOTER_LEN as u64).ok_or_else(|| unusable("a run's footer is cut short"))?;
            order.read_exact_at(&mut footer, at).map_err(|_| unusable("a run's footer is unreadable"))?;
            let entries = u64::from_le_bytes(footer[..8].try_into().expect("8 bytes"));
            let crc = u32::from_le_bytes(footer[8..12].try_into().expect("4 bytes"));
            let start = entries
                .checked_mul(ENTRY_LEN as u64)
                .and_then(|bytes| at.checked_sub(bytes))
                .filter(|&start| footer[12..] == RUN_MAGIC && start >= FILE_HEADER_LEN as u64)
                .ok_or_else(|| unusable("a run's footer is damaged"))?;
            runs.push(Run { start, entries, crc });
            end = start;
        }
        runs.reverse();
        Ok(Self { rows_path, rows, rows_len: file.len, order_path, order, runs })
    }

    /// Reads `run` whole: its checksum, and its times never rising. A block at a time: memory
    /// holds a block of entries, not the run (a million plans' run is 16 MB).
    fn check_run(&self, run: &Run) -> Result<(), Unusable> {
        let (mut crc, mut previous, mut rising) = (0, i64::MAX, false);
        self.run_blocks(run, |block| {
            crc = crc::extend(crc, block);
            for entry in block.chunks_exact(ENTRY_LEN) {
                let (activity, _) = decode_entry(entry);
                rising |= activity > previous;
                previous = activity;
            }
            Ok(())
        })?;
        if crc != run.crc {
            return Err(Unusable(format!(
                "{}: the run at {} does not match its checksum",
                self.order_path.display(),
                run.start
            )));
        }
        if rising {
            return Err(Unusable(format!("{}: the run at {} is out of order", self.order_path.display(), run.start)));
        }
        Ok(())
    }

    /// Hands `run`'s entries to `each`, [`CHECK_BLOCK`] entries at a time, in order.
    fn run_blocks(&self, run: &Run, mut each: impl FnMut(&[u8]) -> Result<(), Unusable>) -> Result<(), Unusable> {
        let mut block = Vec::new();
        let mut at = 0;
        while at < run.entries {
            let entries = (run.entries - at).min(CHECK_BLOCK);
            block.resize(entries as usize * ENTRY_LEN, 0);
            self.order
                .read_exact_at(&mut block, run.start + at * ENTRY_LEN as u64)
                .map_err(|_| Unusable(format!("{}: a run is unreadable", self.order_path.display())))?;
            each(&block)?;
            at += entries;
        }
        Ok(())
    }

    fn entry(&self, run: &Run, index: u64) -> Result<(i64, u64), Unusable> {
        let mut bytes = [0u8; ENTRY_LEN];
        self.order
            .read_exact_at(&mut bytes, run.start + index * ENTRY_LEN as u64)
            .map_err(|_| Unusable(format!("{}: an entry is unreadable", self.order_path.display())))?;
        Ok(decode_entry(&bytes))
    }

    /// Reads the row at `offset`, whose order key is `activity`: one read of [`ROW_GUESS`]
    /// bytes holds most rows whole, and a longer one takes a second for the rest.
    fn row(&self, activity: i64, offset: u64) -> Result<Row, Unusable> {
        self.row_via(&mut ReadAhead::default(), activity, offset)
    }

    /// [`Self::row`] through `ahead`: a walk whose rows lie one after the other in the file (rows
    /// are written in the listing's order) reads [`READ_AHEAD`] bytes at a time, not a row.
    fn row_via(&self, ahead: &mut ReadAhead, activity: i64, offset: u64) -> Result<Row, Unusable> {
        let bad = |what: &str| Unusable(format!("{} at {offset}: {what}", self.rows_path.display()));
        if offset < FILE_HEADER_LEN as u64 || offset + 8 > self.rows_len {
            return Err(bad("an order entry points outside the rows"));
        }
        let available = usize::try_from(self.rows_len - offset).unwrap_or(usize::MAX);
        let sequential = ahead.end == Some(offset);
        let buffered = offset.checked_sub(ahead.at).and_then(|from| usize::try_from(from).ok());
        let in_buffer = buffered.filter(|&from| from + 8 <= ahead.bytes.len());
        let from = match in_buffer {
            Some(from) => from,
            None => {
                let read = available.min(if sequential { READ_AHEAD } else { ROW_GUESS });
                ahead.bytes.resize(read, 0);
                self.rows.read_exact_at(&mut ahead.bytes, offset).map_err(|_| bad("a row is unreadable"))?;
                ahead.at = offset;
                0
            }
        };
        let len = 8 + u32::from_le_bytes(ahead.bytes[from..from + 4].try_into().expect("4 bytes")) as usize;
        if len > available {
            return Err(bad("a row is cut short"));
        }
        let mut bytes = ahead.bytes[from..ahead.bytes.len().min(from + len)].to_vec();
        if len > bytes.len() {
            let read = bytes.len();
            bytes.resize(len, 0);
            self.rows
                .read_exact_at(&mut bytes[read..], offset + read as u64)
                .map_err(|_| bad("a row is unreadable"))?;
        }
        ahead.end = Some(offset + len as u64);
        crate::storage::count_read(len);
        let frame = match crate::catalog::row_frame(&self.rows_path, &bytes, 0, offset) {
            Ok(Some(frame)) if crate::catalog::is_view_row(frame.kind) => frame,
            Ok(None) => return Err(bad("a row is cut short")),
            _ => return Err(bad("an order entry names no view row")),
        };
        let plan_id = frame.plan_id().ok_or_else(|| bad("a row's plan id is invalid"))?;
        let (kind, version, view) = (frame.kind, frame.version, frame.view);
        Ok(Row { activity, plan_id, version, offset, kind, bytes, view })
    }

    /// The rows of every run after `query`'s cursor, merged in the listing's order: newest
    /// activity first, then plan id. Lazy: it holds one block of entries and one row per run.
    pub fn rows_after<'a>(&'a self, query: &CatalogQuery) -> Result<Merged<'a>, Unusable> {
        let mut heap = BinaryHeap::with_capacity(self.runs.len());
        let mut walks = Vec::with_capacity(self.runs.len());
        for (index, run) in self.runs.iter().enumerate() {
            let next = self.first_after(run, query)?;
            let mut walk =
                Walk { run: *run, next, block: Vec::new(), block_at: next, last: None, ahead: ReadAhead::default() };
            if let Some(row) = walk.advance(self)? {
                heap.push(RunHead { row, run: index });
            }
            walks.push(walk);
        }
        Ok(Merged { ordered: self, heap, walks })
    }

    /// The index of the first entry of `run` after the cursor (binary search; a tie on activity
    /// reads the row for its plan id).
    fn first_after(&self, run: &Run, query: &CatalogQuery) -> Result<u64, Unusable> {
        let Some(cursor) = query.cursor() else { return Ok(0) };
        let at = activity_key(cursor.last_activity_at);
        let (mut low, mut high) = (0, run.entries);
        while low < high {
            let middle = low + (high - low) / 2;
            let (activity, offset) = self.entry(run, middle)?;
            let after = match activity.cmp(&at) {
                Ordering::Less => true,
                Ordering::Greater => false,
                Ordering::Equal => self.row(activity, offset)?.plan_id > cursor.plan_id,
            };
            if after {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        Ok(low)
    }

    /// Every run's entries, checked: the run's checksum and order, each entry naming a view row
    /// of its activity, ties in plan id order. Returns how many entries there are; `store verify`
    /// calls it.
    pub fn check(&self) -> Result<u64, Unusable> {
        let mut total = 0;
        for run in &self.runs {
            self.check_run(run)?;
            let mut previous: Option<(i64, PlanId)> = None;
            // A run names its rows in the file's order when a checkpoint wrote them: read ahead.
            let mut ahead = ReadAhead::default();
            self.run_blocks(run, |block| {
                for entry in block.chunks_exact(ENTRY_LEN) {
                    let (activity, offset) = decode_entry(entry);
                    let row = self.row_via(&mut ahead, activity, offset)?;
                    row.view(self)?;
                    let key = (activity, row.plan_id);
                    if previous.as_ref().is_some_and(|p| p.0 == key.0 && p.1 >= key.1) {
                        return Err(Unusable(format!(
                            "{}: the run at {} is out of order at the row at {offset}",
                            self.order_path.display(),
                            run.start
                        )));
                    }
                    previous = Some(key);
                }
                Ok(())
            })?;
            total += run.entries;
        }
        Ok(total)
    }
}

/// A run of an order file read whole and found sound by this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunKey {
    kind: RowsKind,
    generation: u64,
    start: u64,
    entries: u64,
    crc: u32,
}

/// The runs this process has read whole: a few per rows file, dropped when it is compacted.
pub type CheckedRuns = std::collections::HashSet<RunKey>;

/// Whether `kind`'s order can be read as `head` vouches for it (its header and runs' footers,
/// not every entry: a checkpoint's cost stays in the rows it appends), or there are no rows to
/// order. A checkpoint that finds it cannot writes it again by compacting the rows.
pub fn usable(layout: &Layout, head: &Head, kind: RowsKind) -> bool {
    head.rows(kind).len == 0 || Ordered::open_footers(layout, head, kind).is_ok()
}

/// `store verify`'s look at the order files the checkpoint `head` vouches for: how many entries
/// were checked, and what is wrong. Rows without an order (written before order files) are no
/// difference: the next checkpoint orders them.
pub fn verify(layout: &Layout, head: &Head) -> (u64, Vec<String>) {
    let mut entries = 0;
    let mut problems = Vec::new();
    for kind in [RowsKind::Open, RowsKind::Done] {
        let file = head.rows(kind);
        if file.len == 0 || file.order == 0 {
            continue;
        }
        match Ordered::open(layout, head, kind, &mut CheckedRuns::new()).and_then(|ordered| ordered.check()) {
            Ok(n) => entries += n,
            Err(Unusable(why)) => problems.push(format!(
                "catalog order {why}; the store lists by sorting the rows until a checkpoint writes the order again"
            )),
        }
    }
    (entries, problems)
}

fn decode_entry(bytes: &[u8]) -> (i64, u64) {
    let activity = i64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let offset = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    (activity, offset)
}

/// Where the walk of one run is.
struct Walk {
    run: Run,
    /// The next entry to read.
    next: u64,
    /// Entries read ahead, from `block_at`.
    block: Vec<(i64, u64)>,
    block_at: u64,
    /// The last row taken: its time and plan.
    last: Option<(i64, PlanId)>,
    /// The rows file's bytes read ahead.
    ahead: ReadAhead,
}

/// Bytes of a rows file read ahead of a walk, and where the last row read ended.
#[derive(Debug, Default)]
struct ReadAhead {
    /// The bytes from offset `at`.
    at: u64,
    bytes: Vec<u8>,
    end: Option<u64>,
}

impl Walk {
    fn advance(&mut self, ordered: &Ordered) -> Result<Option<Row>, Unusable> {
        if self.next >= self.run.entries {
            return Ok(None);
        }
        let in_block = self.next.checked_sub(self.block_at).filter(|&i| (i as usize) < self.block.len());
        let (activity, offset) = match in_block {
            Some(i) => self.block[i as usize],
            None => {
                let count = (self.run.entries - self.next).min(BLOCK as u64) as usize;
                let mut bytes = vec![0u8; count * ENTRY_LEN];
                ordered
                    .order
                    .read_exact_at(&mut bytes, self.run.start + self.next * ENTRY_LEN as u64)
                    .map_err(|_| Unusable(format!("{}: an entry is unreadable", ordered.order_path.display())))?;
                self.block = bytes.chunks_exact(ENTRY_LEN).map(decode_entry).collect();
                self.block_at = self.next;
                self.block[0]
            }
        };
        self.next += 1;
        let row = ordered.row_via(&mut self.ahead, activity, offset)?;
        // Ties on time are in plan id order: checked as they are met, the run's checksum having
        // vouched for the rest.
        if self.last.as_ref().is_some_and(|(at, id)| *at == row.activity && *id >= row.plan_id) {
            return Err(Unusable(format!("{}: a run is out of order", ordered.order_path.display())));
        }
        self.last = Some((row.activity, row.plan_id.clone()));
        Ok(Some(row))
    }
}

/// The head row of one run in the merge.
struct RunHead {
    row: Row,
    run: usize,
}

impl PartialEq for RunHead {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for RunHead {}

impl PartialOrd for RunHead {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RunHead {
    /// The greatest comes first in the listing: newest activity, then the smallest plan id.
    fn cmp(&self, other: &Self) -> Ordering {
        self.row.activity.cmp(&other.row.activity).then_with(|| other.row.plan_id.cmp(&self.row.plan_id))
    }
}

/// The runs' rows merged in the listing's order.
pub struct Merged<'a> {
    ordered: &'a Ordered,
    heap: BinaryHeap<RunHead>,
    walks: Vec<Walk>,
}

impl Merged<'_> {
    /// The next row in the listing's order, without taking it.
    pub fn peek(&self) -> Option<&Row> {
        self.heap.peek().map(|head| &head.row)
    }

    /// Takes the next row.
    pub fn next_row(&mut self) -> Result<Option<Row>, Unusable> {
        let Some(head) = self.heap.pop() else { return Ok(None) };
        if let Some(row) = self.walks[head.run].advance(self.ordered)? {
            self.heap.push(RunHead { row, run: head.run });
        }
        Ok(Some(head.row))
    }

    /// The files the rows come from.
    pub fn ordered(&self) -> &Ordered {
        self.ordered
    }
}

#[cfg(test)]
mod tests;
