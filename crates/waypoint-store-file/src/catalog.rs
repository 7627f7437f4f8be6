//! The catalog at scale (ADR 0009): `catalog.ckpt` is a small checkpoint head (where the log was
//! folded up to, bound to that record, and how long each rows file is), and the listing lives in
//! two files of compact rows, `catalog/open-<gen>.rows` (plans that may still move) and
//! `catalog/done-<gen>.rows` (applied or cancelled: terminal). A checkpoint appends one row per
//! plan it folded; the last row of a plan wins, and a tombstone row in the open file says the
//! plan moved to the done file. A listing of resumable plans reads the open file only. When a
//! file holds more than twice the rows it had after its last compaction (plus a slack), the
//! checkpoint rewrites it with only the latest rows under the next generation number.
//!
//! Beside each rows file, `order.rs` keeps its order by last activity, which the head vouches for
//! too (`RowsFile::order`); every append and compaction here writes it.
//!
//! Row frame, little-endian: `len u32 | crc32c(body) u32 | body`, body `kind u8 | version u32 |
//! plan_len u8 | plan id | compact view`. The kind says how the view is encoded: 2 binary
//! (postcard: a listing decodes one view per plan, and binary costs a fraction of JSON), 1 JSON
//! (a view the binary encoding cannot carry: one that does not read back equal), 0 none (a
//! tombstone). The view is the application's `PlanView`, stored opaque: the store names none of
//! its fields. The binary encoding follows the fields' order, so a change to `PlanView`'s shape
//! changes [`FORMAT`] (a pinned test says when): a head of another format is not taken, and the
//! catalog is folded again from the log.

use std::collections::HashMap;
use std::hash::Hasher;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use waypoint_application::{listing_order, PlanView};
use waypoint_domain::PlanId;

use crate::binding::{self, Binding, StoreId, FILE_HEADER_LEN};
use crate::error::FileStoreError;
use crate::layout::{Layout, RowsKind};
use crate::{crc, frame, fsutil, order};

use crate::format::{CATALOG_HEAD_MAGIC as HEAD_MAGIC, CATALOG_ROWS_MAGIC as ROWS_MAGIC};
/// The catalog's format: 3 since rows carry binary views, 4 since their times are integers
/// (`waypoint_domain::timestamp`: no text to parse per view). A test pins the binary encoding of a
/// view with every field set; when it fails, `PlanView` changed shape and this must change.
pub(crate) const FORMAT: u32 = 4;

/// A row's kind: a tombstone, a view in JSON, a view in the binary encoding.
const TOMBSTONE: u8 = 0;
const JSON_VIEW: u8 = 1;
const BINARY_VIEW: u8 = 2;
/// Rows a file may gain past twice its size after the last compaction before it is compacted.
const COMPACTION_SLACK: u64 = 1024;

/// One rows file as the head vouches for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowsFile {
    pub generation: u64,
    /// Bytes vouched for; anything after (a checkpoint that did not finish) is ignored and
    /// overwritten.
    pub len: u64,
    pub rows: u64,
    /// Rows right after the last compaction: the live plans then.
    pub compacted_rows: u64,
    /// Bytes of the order file (`order.rs`) vouched for; 0: none (a head written before order
    /// files, or by a build without them), and a listing sorts the rows instead.
    #[serde(default)]
    pub order: u64,
}

/// `catalog.ckpt`: the checkpoint head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub format: u32,
    pub store: StoreId,
    /// The last record folded: its position, offset and checksum.
    pub last: Binding,
    /// Offset just past it.
    pub end: u64,
    pub open: RowsFile,
    pub done: RowsFile,
}

impl Head {
    pub fn position(&self) -> u32 {
        self.last.position
    }

    pub fn rows(&self, kind: RowsKind) -> &RowsFile {
        match kind {
            RowsKind::Open => &self.open,
            RowsKind::Done => &self.done,
        }
    }

    fn rows_mut(&mut self, kind: RowsKind) -> &mut RowsFile {
        match kind {
            RowsKind::Open => &mut self.open,
            RowsKind::Done => &mut self.done,
        }
    }
}

/// Reads the checkpoint head; `None` if missing, damaged, or of an older layout (whose
/// one-document catalog is not read any more: the log is folded again instead).
pub fn read_head(layout: &Layout) -> Result<Option<Head>, FileStoreError> {
    let path = layout.checkpoint();
    match fsutil::read_file(&path) {
        Ok(Some(bytes)) => Ok(frame::decode::<Head>(HEAD_MAGIC, &bytes).filter(|h| h.format == FORMAT)),
        Ok(None) => Ok(None),
        Err(e) => Err(FileStoreError::io("cannot read the catalog checkpoint", &path, e)),
    }
}

/// What a checkpoint of the layout before ADR 0009 (magic `WPCK`, one JSON document) vouched
/// for: the position of its last record and where that record ends.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct OlderHead {
    pub position: u32,
    pub end: u64,
}

/// Reads a checkpoint of the older layout, if that is what `catalog.ckpt` holds. Its catalog is
/// not used (the log is folded again), but what it vouched for still is.
pub fn read_older_head(layout: &Layout) -> Result<Option<OlderHead>, FileStoreError> {
    let path = layout.checkpoint();
    match fsutil::read_file(&path) {
        Ok(Some(bytes)) if bytes.starts_with(b"WPCK") => Ok(frame::decode::<OlderHead>(*b"WPCK", &bytes)),
        Ok(_) => Ok(None),
        Err(e) => Err(FileStoreError::io("cannot read the catalog checkpoint", &path, e)),
    }
}

pub fn write_head(layout: &Layout, head: &Head) -> Result<(), FileStoreError> {
    fsutil::write_atomically(&layout.tmp_dir(), layout.dir(), &layout.checkpoint(), &frame::encode(HEAD_MAGIC, head))
}

/// Which class a plan's row belongs to.
pub fn kind_of(view: &PlanView) -> RowsKind {
    if view.state.state.is_terminal() {
        RowsKind::Done
    } else {
        RowsKind::Open
    }
}

/// The latest row of every plan in one rows file, once each, in no particular order.
#[derive(Debug, Default)]
pub struct Rows {
    /// Each plan with its latest row's version, and whether that row holds a view (a tombstone
    /// holds none).
    pub plans: Vec<(PlanId, u32, bool)>,
    /// The views of the plans whose row holds one, in `plans`' order, in parts: each the views
    /// one thread decoded, left where it decoded them (a view is large, and moving ten thousand
    /// into one vector costs a listing more than finding them).
    pub parts: Vec<Vec<PlanView>>,
}

impl Rows {
    /// Each plan with its version and its view (`None`: a tombstone).
    pub fn into_rows(self) -> impl Iterator<Item = (PlanId, u32, Option<PlanView>)> {
        let mut views = self.parts.into_iter().flatten();
        self.plans
            .into_iter()
            .map(move |(plan_id, version, has_view)| (plan_id, version, has_view.then(|| views.next()).flatten()))
    }
}

/// Where a row's view lies: its kind, and its span in the file.
type ViewAt = (u8, usize, usize);

/// Rows past which a listing parses its views on two threads.
const PARALLEL_FROM: usize = 2048;

/// Reads the rows the head vouches for in `kind`'s file. Damage inside vouched bytes is a typed
/// error: the head of this very store promised them.
pub fn read_rows(layout: &Layout, head: &Head, kind: RowsKind) -> Result<Rows, FileStoreError> {
    let mut plans = Vec::new();
    let parts = read_latest(layout, head, kind, |plan, version, has_view| {
        plans.push((PlanId::parse(plan).expect("latest_rows checked it"), version, has_view));
    })?;
    Ok(Rows { plans, parts })
}

/// The views of [`read_rows`] alone, in its parts: no plan id is made for a row (its view has
/// one).
pub fn read_views(layout: &Layout, head: &Head, kind: RowsKind) -> Result<Vec<Vec<PlanView>>, FileStoreError> {
    read_latest(layout, head, kind, |_, _, _| {})
}

/// The views of the latest row of each plan in `kind`'s file, in parts; `each` is told each
/// plan's id (checked to be a valid one), its latest row's version and whether that row holds a
/// view, in the order of the views.
fn read_latest(
    layout: &Layout,
    head: &Head,
    kind: RowsKind,
    mut each: impl FnMut(&str, u32, bool),
) -> Result<Vec<Vec<PlanView>>, FileStoreError> {
    let Some((path, bytes)) = read_file(layout, head, kind)? else { return Ok(Vec::new()) };
    // Latest row of each plan first, then decode only those views.
    let latest = latest_rows(&path, &bytes, head.rows(kind).rows)?;
    let mut spans = Vec::with_capacity(latest.len());
    for (plan, (version, span)) in latest {
        each(plan, version, span.is_some());
        spans.extend(span);
    }
    let decode = |spans: &[ViewAt]| -> Result<Vec<PlanView>, FileStoreError> {
        let mut views = Vec::with_capacity(spans.len());
        for &(kind, from, to) in spans {
            views.push(decode_view(kind, &bytes[from..to]).map_err(|e| {
                FileStoreError::corrupt(&path, from as u64, format!("a row's view is unreadable: {e}"))
            })?);
        }
        Ok(views)
    };
    if spans.len() < PARALLEL_FROM {
        return Ok(vec![decode(&spans)?]);
    }
    // Decoding the views is most of a listing's cost: split it over two threads.
    let (first, second) = spans.split_at(spans.len() / 2);
    let (mine, other) = std::thread::scope(|scope| {
        let other = scope.spawn(|| decode(second));
        (decode(first), other.join())
    });
    let mine = mine?;
    // The other half's thread panicked: decode it here, which reports the same way.
    let rest = other.unwrap_or_else(|_| decode(second))?;
    Ok(vec![mine, rest])
}

/// The greatest row version of each plan in the rows files, in about 2.6 bytes a plan (a map of
/// plan ids costs a hundred). What a walk of a million plans' rows, or a replay of them, holds
/// in memory.
///
/// - A plan id's 64-bit hash picks a bucket by its top bits: 16 to 32 plans a bucket, so the
///   buckets' starts cost a sixth of a byte a plan.
/// - Within its bucket a plan is one entry, sorted: the hash's next 16 bits above the version.
///   The version field is as narrow as lets all but one row in 64 fit (4 bits when most plans
///   have fewer than 16 events, so an entry is 20 bits), and the entries are packed bit to bit.
/// - A row whose version does not fit (a plan of many more events than most) is kept whole
///   instead, by its full hash, in a short sorted list beside the buckets.
///
/// Plans that share their bits share an entry, which keeps the greater version. So
/// [`Self::is_latest`] answering `true` is exact (no row of the plan has a greater version),
/// and `false` means only "perhaps not": the caller asks the plan's index.
#[derive(Debug, Default)]
pub struct RowVersions {
    /// Each entry in `REST_BITS + version_bits` bits, packed little-endian: the hash's bits
    /// below the bucket's, then the version. Eight bytes of padding follow the last, so any
    /// entry is read with one 8-byte load.
    entries: Vec<u8>,
    /// Where each bucket's entries start, and (last) where the last one ends, counted in entries.
    starts: Vec<u32>,
    /// The rows too wide for an entry: each hash with its greatest version, sorted by hash.
    wide: Vec<(u64, u32)>,
    bits: u32,
    version_bits: u32,
}

impl RowVersions {
    /// The hash bits an entry keeps below its bucket's: with some 30 plans a bucket, about one
    /// plan in 2,000 shares its entry (and is then "perhaps not" until its index is asked).
    const REST_BITS: u32 = 16;
    /// The widest version field; with more plans than one in 64 past it, those are kept whole.
    const MOST_VERSION_BITS: u32 = 16;
    /// At most one row in this many is kept whole, beside the entries.
    const WIDE_SHARE: u64 = 64;

    fn hash(plan: &[u8]) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(plan);
        hasher.finish()
    }

    /// The least version too wide for an entry.
    fn narrow_limit(&self) -> u32 {
        1 << self.version_bits
    }

    /// A hash's bucket, and its bits below the bucket's that an entry keeps.
    fn place(&self, hash: u64) -> (usize, u32) {
        let bucket = hash.checked_shr(64 - self.bits).unwrap_or(0) as usize;
        let rest = (hash.checked_shl(self.bits).unwrap_or(0) >> (64 - Self::REST_BITS)) as u32;
        (bucket, rest)
    }

    fn entry_bits(&self) -> usize {
        (Self::REST_BITS + self.version_bits) as usize
    }

    /// The bytes `entries` entries take, padding included.
    fn entries_len(&self, entries: usize) -> usize {
        (entries * self.entry_bits()).div_ceil(8) + 8
    }

    /// Entry `at`'s 8-byte word (starting at the byte its first bit is in) and its shift in it.
    fn word(&self, at: usize) -> (usize, u64, u32) {
        let bit = at * self.entry_bits();
        let byte = bit / 8;
        let word = u64::from_le_bytes(self.entries[byte..byte + 8].try_into().expect("eight bytes"));
        (byte, word, (bit % 8) as u32)
    }

    fn entry(&self, at: usize) -> u32 {
        let (_, word, shift) = self.word(at);
        ((word >> shift) & ((1 << self.entry_bits()) - 1)) as u32
    }

    fn set_entry(&mut self, at: usize, entry: u32) {
        let (byte, word, shift) = self.word(at);
        let mask = ((1u64 << self.entry_bits()) - 1) << shift;
        let word = word & !mask | u64::from(entry) << shift;
        self.entries[byte..byte + 8].copy_from_slice(&word.to_le_bytes());
    }

    /// The version field for rows whose versions have these bit lengths (`lengths[n]`: how many
    /// rows' versions are `n` bits long): the narrowest that all but one row in
    /// [`Self::WIDE_SHARE`] fit, and at most [`Self::MOST_VERSION_BITS`].
    fn version_bits_for(lengths: &[u64; 33]) -> u32 {
        let rows: u64 = lengths.iter().sum();
        let mut wider = rows;
        (1..Self::MOST_VERSION_BITS)
            .find(|&bits| {
                wider -= lengths[bits as usize];
                wider <= rows / Self::WIDE_SHARE
            })
            .unwrap_or(Self::MOST_VERSION_BITS)
    }

    /// The versions of the rows `each_row` hands over, each as its plan id's bytes and its version.
    /// `each_row` is called twice and must hand over the same rows both times (the first counts
    /// each bucket's plans and sizes the versions, the second fills the buckets: nothing is held
    /// twice); `rows` (about how many there are) sizes the buckets.
    pub fn build<E>(
        rows: u64,
        mut each_row: impl FnMut(&mut dyn FnMut(&[u8], u32)) -> Result<(), E>,
    ) -> Result<Self, E> {
        Self::build_hashed(rows, |visit| each_row(&mut |plan, version| visit(Self::hash(plan), version)))
    }

    /// [`Self::build`] from the rows' hashes.
    fn build_hashed<E>(
        rows: u64,
        mut each_row: impl FnMut(&mut dyn FnMut(u64, u32)) -> Result<(), E>,
    ) -> Result<Self, E> {
        let bits = rows.max(1).ilog2().saturating_sub(4).min(24);
        let buckets = 1usize << bits;
        let mut versions = Self { bits, ..Self::default() };
        let mut counts = vec![0u32; buckets];
        let mut lengths = [0u64; 33];
        each_row(&mut |hash, version| {
            counts[versions.place(hash).0] += 1;
            lengths[(u32::BITS - version.leading_zeros()) as usize] += 1;
        })?;
        versions.version_bits = Self::version_bits_for(&lengths);
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut total = 0u32;
        for count in &counts {
            starts.push(total);
            total += count;
        }
        starts.push(total);
        // Where the next entry of each bucket goes.
        let mut next = counts;
        next.copy_from_slice(&starts[..buckets]);
        versions.entries = vec![0u8; versions.entries_len(total as usize)];
        let limit = versions.narrow_limit();
        let mut wide = Vec::new();
        each_row(&mut |hash, version| {
            if version >= limit {
                wide.push((hash, version));
                return;
            }
            let (bucket, rest) = versions.place(hash);
            // A row the first pass did not count cannot be placed: it is left out, and its plan
            // is then "perhaps not" at any version (never a wrong "latest").
            if next[bucket] < starts[bucket + 1] {
                versions.set_entry(next[bucket] as usize, rest << versions.version_bits | version);
                next[bucket] += 1;
            }
        })?;
        // Each bucket sorted, and only the greatest version of each hash kept (it sorts last).
        // A bucket ends where its rows ended: the slots of its wide rows (counted too) are left out.
        let mut kept = 0;
        let mut bucket_entries = Vec::new();
        for bucket in 0..buckets {
            let (from, to) = (starts[bucket] as usize, next[bucket] as usize);
            bucket_entries.clear();
            bucket_entries.extend((from..to).map(|at| versions.entry(at)));
            bucket_entries.sort_unstable();
            starts[bucket] = kept as u32;
            for (at, &entry) in bucket_entries.iter().enumerate() {
                let hash_of = |entry: u32| entry >> versions.version_bits;
                if bucket_entries.get(at + 1).is_none_or(|&next| hash_of(next) != hash_of(entry)) {
                    versions.set_entry(kept, entry);
                    kept += 1;
                }
            }
        }
        drop(next);
        starts[buckets] = kept as u32;
        versions.entries.truncate(versions.entries_len(kept));
        versions.entries.shrink_to_fit();
        versions.starts = starts;
        wide.sort_unstable();
        // Sorted by hash then version: the last of each hash is its greatest.
        wide.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                earlier.1 = later.1;
            }
            same
        });
        wide.shrink_to_fit();
        versions.wide = wide;
        Ok(versions)
    }

    /// Whether a row of `plan_id` at `version` is certainly its plan's latest: no row of the plan
    /// is greater. `false` when one is, and when a plan whose hash shares the entry's bits has a
    /// greater version.
    pub fn is_latest(&self, plan_id: &PlanId, version: u32) -> bool {
        self.is_latest_hashed(Self::hash(plan_id.as_str().as_bytes()), version)
    }

    fn is_latest_hashed(&self, hash: u64, version: u32) -> bool {
        let wide = self.wide.binary_search_by_key(&hash, |&(wide, _)| wide).ok().map(|at| self.wide[at].1);
        if version >= self.narrow_limit() || self.entries.is_empty() {
            // Kept whole, or nowhere (built of no rows, or not built: the default, of no entries).
            return wide == Some(version);
        }
        if wide.is_some() {
            // A row of the plan (or of one sharing all 64 bits) is wider, so greater.
            return false;
        }
        let (bucket, rest) = self.place(hash);
        let (Some(&from), Some(&to)) = (self.starts.get(bucket), self.starts.get(bucket + 1)) else { return false };
        // The first entry of the bucket whose hash bits are not below `rest`.
        let (mut low, mut high) = (from as usize, to as usize);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.entry(middle) >> self.version_bits < rest {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low < to as usize && self.entry(low) == rest << self.version_bits | version
    }
}

/// Every plan's greatest row version in the rows files `head` vouches for, views left undecoded
/// ([`RowVersions`]: each file is read twice, a chunk at a time, and nothing but the versions
/// is held: not the files, whatever their size).
pub fn row_versions(layout: &Layout, head: &Head) -> Result<RowVersions, FileStoreError> {
    RowVersions::build(head.open.rows + head.done.rows, |visit| {
        for kind in [RowsKind::Open, RowsKind::Done] {
            each_row_version(layout, head, kind, VERSIONS_CHUNK, visit)?;
        }
        Ok(())
    })
}

/// Hands each row of `kind`'s file to `visit` (its plan id's bytes, not parsed, and its
/// version), reading `chunk_len` bytes at a time: memory holds a chunk, not the file.
fn each_row_version(
    layout: &Layout,
    head: &Head,
    kind: RowsKind,
    chunk_len: u64,
    visit: &mut dyn FnMut(&[u8], u32),
) -> Result<(), FileStoreError> {
    let rows = head.rows(kind);
    if rows.len == 0 {
        return Ok(());
    }
    let path = layout.rows(kind, rows.generation);
    let file = open_vouched(&path)?;
    // `chunk` holds the file's bytes from offset `base`: a row cut by the chunk's end waits there
    // for the next chunk.
    let (mut chunk, mut base, mut read) = (Vec::new(), 0u64, 0u64);
    while read < rows.len {
        let more = (rows.len - read).min(chunk_len) as usize;
        let filled = chunk.len();
        chunk.resize(filled + more, 0);
        read_exact_vouched(&file, &path, &mut chunk[filled..], read, rows.len)?;
        read += more as u64;
        let mut at = 0;
        if base == 0 {
            if chunk.len() < FILE_HEADER_LEN && read < rows.len {
                continue;
            }
            if !binding::header_matches(&chunk, ROWS_MAGIC, FORMAT, &head.store) {
                return Err(FileStoreError::corrupt(&path, 0, "the rows file does not belong to this store's log"));
            }
            at = FILE_HEADER_LEN;
        }
        while let Some(frame) = row_frame(&path, &chunk, at, base)? {
            visit(frame.plan, frame.version);
            at += frame.len;
        }
        chunk.drain(..at);
        base += at as u64;
    }
    if chunk.is_empty() {
        Ok(())
    } else {
        Err(FileStoreError::corrupt(&path, base, "a row is cut short"))
    }
}

/// Each plan's last row in a rows file (a later row of a plan replaces its earlier ones), by the
/// plan id as the row holds it (checked, not copied). `rows` (the head's count of them, stale
/// ones included) sizes the map once.
fn latest_rows<'a>(
    path: &Path,
    bytes: &'a [u8],
    rows: u64,
) -> Result<HashMap<&'a str, (u32, Option<ViewAt>)>, FileStoreError> {
    let mut latest = HashMap::with_capacity(usize::try_from(rows).unwrap_or(0));
    let mut at = FILE_HEADER_LEN;
    while at < bytes.len() {
        let frame = row_frame(path, bytes, at, 0)?
            .ok_or_else(|| FileStoreError::corrupt(path, at as u64, "a row is cut short"))?;
        let plan = std::str::from_utf8(frame.plan)
            .ok()
            .filter(|plan| PlanId::check(plan).is_ok())
            .ok_or_else(|| FileStoreError::corrupt(path, at as u64, "a row's plan id is invalid"))?;
        latest.insert(plan, (frame.version, frame.view_at()));
        at += frame.len;
    }
    Ok(latest)
}

/// `kind`'s rows file as the head vouches for it, checked to be this store's; `None` when the
/// head vouches for no rows.
fn read_file(layout: &Layout, head: &Head, kind: RowsKind) -> Result<Option<(PathBuf, Vec<u8>)>, FileStoreError> {
    let file = head.rows(kind);
    if file.len == 0 {
        return Ok(None);
    }
    let path = layout.rows(kind, file.generation);
    let bytes = read_vouched(&path, file.len)?;
    if !binding::header_matches(&bytes, ROWS_MAGIC, FORMAT, &head.store) {
        return Err(FileStoreError::corrupt(&path, 0, "the rows file does not belong to this store's log"));
    }
    Ok(Some((path, bytes)))
}

/// A row as framed, checked against its checksum: its kind, version and plan id's bytes (not
/// yet parsed), its body's span in the bytes it was read from, and its length.
pub(crate) struct Frame<'a> {
    pub kind: u8,
    pub version: u32,
    pub plan: &'a [u8],
    /// Where the view starts and ends in those bytes.
    pub view: (usize, usize),
    pub len: usize,
}

impl Frame<'_> {
    /// The row's plan id, parsed; `None` when it is not a valid one.
    pub fn plan_id(&self) -> Option<PlanId> {
        std::str::from_utf8(self.plan).ok().and_then(|p| PlanId::parse(p).ok())
    }

    /// Where the row's view lies (its kind and span); `None` for a tombstone.
    fn view_at(&self) -> Option<ViewAt> {
        (self.kind != TOMBSTONE).then_some((self.kind, self.view.0, self.view.1))
    }
}

/// The row framed at `bytes[at..]`, checked against its checksum; `None` when `bytes` ends
/// inside it. `bytes` starts at offset `base` of the file (for errors).
pub(crate) fn row_frame<'a>(
    path: &Path,
    bytes: &'a [u8],
    at: usize,
    base: u64,
) -> Result<Option<Frame<'a>>, FileStoreError> {
    let bad = |detail: &str| FileStoreError::corrupt(path, base + at as u64, detail.to_owned());
    let Some(header) = bytes.get(at..at + 8) else { return Ok(None) };
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let stored = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    let Some(body) = bytes.get(at + 8..at + 8 + len) else { return Ok(None) };
    if crc::checksum(body) != stored || body.len() < 6 {
        return Err(bad("a row's checksum does not match"));
    }
    let version = u32::from_le_bytes(body[1..5].try_into().expect("4 bytes"));
    let plan_len = usize::from(body[5]);
    let plan = body.get(6..6 + plan_len).ok_or_else(|| bad("a row is malformed"))?;
    Ok(Some(Frame { kind: body[0], version, plan, view: (at + 8 + 6 + plan_len, at + 8 + len), len: 8 + len }))
}

/// How much of a rows file [`each_row_version`] reads at once.
const VERSIONS_CHUNK: u64 = 1 << 20;

fn read_vouched(path: &Path, len: u64) -> Result<Vec<u8>, FileStoreError> {
    let file = open_vouched(path)?;
    let mut bytes = vec![0u8; len as usize];
    read_exact_vouched(&file, path, &mut bytes, 0, len)?;
    Ok(bytes)
}

/// The rows file a head vouches for, open to read.
fn open_vouched(path: &Path) -> Result<std::fs::File, FileStoreError> {
    fsutil::open_existing_read_only(path)?.ok_or_else(|| {
        FileStoreError::corrupt(path, 0, "the catalog checkpoint vouches for this rows file, which is missing")
    })
}

/// Fills `bytes` from `offset` of a rows file whose head vouches for `len` bytes.
fn read_exact_vouched(
    file: &std::fs::File,
    path: &Path,
    bytes: &mut [u8],
    offset: u64,
    len: u64,
) -> Result<(), FileStoreError> {
    crate::storage::count_read(bytes.len());
    file.read_exact_at(bytes, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FileStoreError::corrupt(path, 0, format!("the rows file is shorter than the {len} bytes vouched for"))
        } else {
            FileStoreError::io("cannot read a catalog rows file", path, e)
        }
    })
}

fn encode_row(out: &mut Vec<u8>, plan_id: &PlanId, version: u32, view: Option<&PlanView>) {
    let mut body = Vec::with_capacity(256);
    body.push(TOMBSTONE);
    body.extend_from_slice(&version.to_le_bytes());
    body.push(plan_id.as_str().len() as u8);
    body.extend_from_slice(plan_id.as_str().as_bytes());
    if let Some(view) = view {
        body[0] = encode_view(&mut body, view);
    }
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc::checksum(&body).to_le_bytes());
    out.extend_from_slice(&body);
}

/// Appends `view` to `out` in the binary encoding when it reads back equal (a step output, which
/// is any JSON, cannot be decoded without JSON's own types), else in JSON. Returns the row kind.
fn encode_view(out: &mut Vec<u8>, view: &PlanView) -> u8 {
    if let Ok(bytes) = postcard::to_allocvec(view) {
        if postcard::from_bytes::<PlanView>(&bytes).is_ok_and(|back| back == *view) {
            out.extend_from_slice(&bytes);
            return BINARY_VIEW;
        }
    }
    // A view of maps, strings and numbers: serialization cannot fail.
    serde_json::to_writer(out, view).expect("a view serializes");
    JSON_VIEW
}

/// A row of `kind` carries a view (it is no tombstone).
pub fn is_view_row(kind: u8) -> bool {
    kind == BINARY_VIEW || kind == JSON_VIEW
}

/// The view a row of `kind` carries in `bytes`.
pub fn decode_view(kind: u8, bytes: &[u8]) -> Result<PlanView, String> {
    match kind {
        BINARY_VIEW => postcard::from_bytes(bytes).map_err(|e| e.to_string()),
        JSON_VIEW => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        other => Err(format!("unknown row kind {other}")),
    }
}

/// A row to add: a plan's compact view at its version, or a tombstone.
pub struct NewRow<'a> {
    pub plan_id: &'a PlanId,
    pub version: u32,
    pub view: Option<&'a PlanView>,
}

/// Appends `rows` to `kind`'s file and makes them durable, updating `head` (not yet written).
/// Compacts the file into its next generation when it has grown enough. Returns the path of a
/// file the new head no longer needs, to delete once the head is written.
pub fn append_rows(
    layout: &Layout,
    head: &mut Head,
    kind: RowsKind,
    rows: &[NewRow<'_>],
) -> Result<Option<PathBuf>, FileStoreError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let store = head.store;
    let current = *head.rows(kind);
    let mut len = if current.len == 0 { FILE_HEADER_LEN as u64 } else { current.len };
    let mut bytes = Vec::new();
    let mut placed = Vec::with_capacity(rows.len());
    // Views in the listing's order, then tombstones: the run of the order this append writes
    // names its rows front to back, so a walk of the listing reads them in file order. (A
    // checkpoint adds one row a plan to each file.)
    let mut in_order: Vec<&NewRow<'_>> = rows.iter().collect();
    in_order.sort_by(|a, b| match (a.view, b.view) {
        (Some(a), Some(b)) => listing_order(a, b),
        (a, b) => b.is_some().cmp(&a.is_some()),
    });
    for row in in_order {
        if let Some(view) = row.view {
            let activity = order::activity_key(view.last_activity_at);
            placed.push(order::Placed { activity, plan_id: row.plan_id, offset: len + bytes.len() as u64 });
        }
        encode_row(&mut bytes, row.plan_id, row.version, row.view);
    }
    let total = current.rows + rows.len() as u64;
    // Rows without a usable order (written by a build before order files, or whose order file
    // was lost or damaged) are ordered again by compacting.
    let unordered = current.len > 0 && !order::usable(layout, head, kind);
    if current.len > 0 && (unordered || total > 2 * current.compacted_rows + COMPACTION_SLACK) {
        // Rewrite with only each plan's latest row: cost in the live plans, paid once per
        // doubling, so a row costs O(1) amortized.
        let mut live: HashMap<PlanId, (u32, Option<PlanView>)> =
            read_rows(layout, head, kind)?.into_rows().map(|(id, version, view)| (id, (version, view))).collect();
        for row in rows {
            live.insert(row.plan_id.clone(), (row.version, row.view.cloned()));
        }
        return rewrite(layout, head, kind, &live);
    }
    let path = layout.rows(kind, current.generation);
    fsutil::ensure_dir(&layout.catalog_dir())?;
    let (file, created) = fsutil::open_or_create(&path)?;
    if current.len == 0 {
        file.set_len(0).map_err(|e| FileStoreError::io("cannot reset a catalog rows file", &path, e))?;
        file.write_all_at(&binding::file_header(ROWS_MAGIC, FORMAT, &store), 0)
            .map_err(|e| FileStoreError::io("cannot write a catalog rows file", &path, e))?;
    } else {
        // Rows past what the head vouches for are a checkpoint that did not finish.
        file.set_len(len).map_err(|e| FileStoreError::io("cannot trim a catalog rows file", &path, e))?;
    }
    file.write_all_at(&bytes, len).map_err(|e| FileStoreError::io("cannot write a catalog rows file", &path, e))?;
    file.sync_data().map_err(|e| FileStoreError::io("cannot sync a catalog rows file", &path, e))?;
    if created {
        fsutil::sync_dir(&layout.catalog_dir())?;
    }
    // A fresh rows file starts a fresh order.
    let vouched = RowsFile { order: if current.len == 0 { 0 } else { current.order }, ..current };
    let order = order::append_run(layout, &store, kind, &vouched, &mut placed)?;
    len += bytes.len() as u64;
    *head.rows_mut(kind) = RowsFile { len, rows: total, order, ..current };
    Ok(None)
}

/// Rewrites `kind`'s file with only the latest row of each plan in `live` that has a view, under
/// the next generation number; returns the file the head no longer needs.
fn rewrite(
    layout: &Layout,
    head: &mut Head,
    kind: RowsKind,
    live: &HashMap<PlanId, (u32, Option<PlanView>)>,
) -> Result<Option<PathBuf>, FileStoreError> {
    let current = *head.rows(kind);
    let generation = current.generation + 1;
    let mut out = binding::file_header(ROWS_MAGIC, FORMAT, &head.store).to_vec();
    let mut count = 0;
    let mut placed = Vec::with_capacity(live.len());
    // In the listing's order: a walk of the listing then reads the file front to back.
    let mut views: Vec<(&PlanId, u32, &PlanView)> =
        live.iter().filter_map(|(plan_id, (version, view))| Some((plan_id, *version, view.as_ref()?))).collect();
    views.sort_unstable_by(|a, b| listing_order(a.2, b.2));
    for (plan_id, version, view) in views {
        let activity = order::activity_key(view.last_activity_at);
        placed.push(order::Placed { activity, plan_id, offset: out.len() as u64 });
        encode_row(&mut out, plan_id, version, Some(view));
        count += 1;
    }
    let path = layout.rows(kind, generation);
    fsutil::ensure_dir(&layout.catalog_dir())?;
    // The order first: the rows file is what makes the new generation visible to a head.
    let order = order::write_whole(layout, &head.store, kind, generation, &mut placed)?;
    fsutil::write_atomically(&layout.tmp_dir(), &layout.catalog_dir(), &path, &out)?;
    *head.rows_mut(kind) = RowsFile { generation, len: out.len() as u64, rows: count, compacted_rows: count, order };
    Ok((current.len > 0).then(|| layout.rows(kind, current.generation)))
}

/// Rewrites `kind`'s file without the rows of `removed` (retention), if it holds any.
pub fn rewrite_without(
    layout: &Layout,
    head: &mut Head,
    kind: RowsKind,
    removed: &std::collections::HashSet<PlanId>,
) -> Result<Option<PathBuf>, FileStoreError> {
    let rows = read_rows(layout, head, kind)?;
    if !rows.plans.iter().any(|(id, _, _)| removed.contains(id)) {
        return Ok(None);
    }
    let live: HashMap<PlanId, (u32, Option<PlanView>)> = rows
        .into_rows()
        .filter(|(id, _, _)| !removed.contains(id))
        .map(|(id, version, view)| (id, (version, view)))
        .collect();
    rewrite(layout, head, kind, &live)
}

/// Deletes rows and order files that no head refers to any more (left by compactions and crashes).
pub fn remove_stale(layout: &Layout, head: &Head) {
    let Ok(entries) = std::fs::read_dir(layout.catalog_dir()) else { return };
    let keep = [
        layout.rows(RowsKind::Open, head.open.generation),
        layout.rows(RowsKind::Done, head.done.generation),
        layout.order(RowsKind::Open, head.open.generation),
        layout.order(RowsKind::Done, head.done.generation),
    ];
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "rows" || e == "order") && !keep.contains(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// A new, empty head for `store` at the log's start.
pub fn empty_head(store: StoreId) -> Head {
    Head {
        format: FORMAT,
        store,
        last: Binding::default(),
        end: 0,
        open: RowsFile::default(),
        done: RowsFile::default(),
    }
}

#[cfg(test)]
mod tests;
