//! Reading the log: random access to one record, a flat-memory sequential reader, and the scan
//! that tells a torn tail (cut back) from damage in the middle (a typed error).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eventually::store::Persisted;
use waypoint_application::{RecordedEvent, StoredEvent};
use waypoint_domain::{EventId, PlanEvent, PlanId};

use crate::error::FileStoreError;
use crate::record::{self, RawRecord, RecordError, RecordRef, FILE_HEADER, HEADER_LEN, MAGIC};
use crate::retention::Holes;

/// Where the first record starts.
pub const FIRST_RECORD: u64 = FILE_HEADER.len() as u64;
const CHUNK: usize = 1 << 20;

pub fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<(), FileStoreError> {
    crate::storage::count_read(buf.len());
    file.read_exact_at(buf, offset).map_err(|e| FileStoreError::io("cannot read the log", path, e))
}

/// Reads and checks the record at `offset`, which must end at or before `end`.
pub fn read_record_at(file: &File, path: &Path, offset: u64, end: u64) -> Result<(RawRecord, u64), FileStoreError> {
    read_record_with_crc(file, path, offset, end).map(|(raw, len, _)| (raw, len))
}

/// [`read_record_at`], with the record's checksum.
pub fn read_record_with_crc(
    file: &File,
    path: &Path,
    offset: u64,
    end: u64,
) -> Result<(RawRecord, u64, u32), FileStoreError> {
    let corrupt = |e: RecordError| FileStoreError::corrupt(path, offset, e.to_string());
    let available = end.saturating_sub(offset);
    let mut header = [0u8; HEADER_LEN];
    if available < HEADER_LEN as u64 {
        return Err(corrupt(RecordError::Incomplete { needed: HEADER_LEN, available: available as usize }));
    }
    read_exact_at(file, path, &mut header, offset)?;
    let total = record::frame_len(&header).map_err(corrupt)?;
    if available < total as u64 {
        return Err(corrupt(RecordError::Incomplete { needed: total, available: available as usize }));
    }
    let mut bytes = vec![0u8; total];
    read_exact_at(file, path, &mut bytes, offset)?;
    let (raw, len) = record::decode(&bytes).map_err(corrupt)?;
    Ok((raw, len as u64, u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]])))
}

/// Reads records one after another from `offset` up to `end`, holding at most about one chunk
/// (or one record, if larger) in memory whatever the log's size.
#[derive(Debug)]
pub struct RecordReader {
    file: Arc<File>,
    path: PathBuf,
    offset: u64,
    end: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    failed: bool,
    /// The checksum of the last record returned.
    crc: u32,
    /// Byte ranges retention removed (by start offset), stepped over without reading.
    holes: Arc<Holes>,
    /// Positions stepped over in holes since the last record returned.
    skipped: u32,
    /// The position of the record just before `offset` (the last one returned or stepped over).
    last_position: u32,
}

/// A record the reader could not take whole, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub offset: u64,
    pub error: RecordError,
}

impl RecordReader {
    pub fn new(file: Arc<File>, path: PathBuf, offset: u64, end: u64) -> Self {
        Self {
            file,
            path,
            offset,
            end,
            buf: Vec::new(),
            buf_start: offset,
            failed: false,
            crc: 0,
            holes: Arc::default(),
            skipped: 0,
            last_position: 0,
        }
    }

    /// The same reader, told the position of the record just before where it starts, so that a
    /// start inside a hole (a process that read part of it before it was removed) counts the
    /// hole's remaining positions.
    pub fn after_position(mut self, position: u32) -> Self {
        self.last_position = position;
        self
    }

    /// The same reader, stepping over the byte ranges retention removed.
    pub fn skipping(mut self, holes: Arc<Holes>) -> Self {
        self.holes = holes;
        self
    }

    /// Positions of removed records stepped over between the last two records returned (the
    /// global order has a gap there, and only there).
    pub fn skipped(&self) -> u32 {
        self.skipped
    }

    /// The offset of the next record (after the last one returned).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The checksum of the last record returned.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// Makes `buf` hold `[offset, offset + n)`, or as much of it as lies before `end`.
    fn fill(&mut self, n: usize) -> Result<&[u8], FileStoreError> {
        let have_from = (self.offset - self.buf_start) as usize;
        if self.buf.len() - have_from < n {
            self.buf.drain(..have_from);
            self.buf_start = self.offset;
            let want = (n.max(CHUNK) as u64).min(self.end - self.offset) as usize;
            if self.buf.len() < want {
                let old = self.buf.len();
                self.buf.resize(want, 0);
                let at = self.buf_start + old as u64;
                read_exact_at(&self.file, &self.path, &mut self.buf[old..], at)?;
            }
        }
        let from = (self.offset - self.buf_start) as usize;
        let upto = (from + n).min(self.buf.len());
        Ok(&self.buf[from..upto])
    }

    /// The next record, handed to `take` as it lies in the read buffer (nothing copied), and what
    /// `take` made of it. Like [`Iterator::next`], a bad record ends the reading after it is
    /// reported.
    pub fn next_with<T>(&mut self, take: impl FnOnce(u64, RecordRef<'_>) -> T) -> Option<ReadWith<T>> {
        let item = self.next_record(take);
        if matches!(item, Some(Err(_)) | Some(Ok(Err(_)))) {
            self.failed = true;
        }
        item
    }

    fn next_record<T>(&mut self, take: impl FnOnce(u64, RecordRef<'_>) -> T) -> Option<ReadWith<T>> {
        self.skipped = 0;
        while self.offset < self.end {
            let Some((_, hole)) = self.holes.range(..=self.offset).next_back().filter(|(_, h)| h.end > self.offset)
            else {
                break;
            };
            let last = hole.first_position + hole.count - 1;
            self.skipped +=
                if hole.offset == self.offset { hole.count } else { last.saturating_sub(self.last_position) };
            self.last_position = last;
            self.offset = hole.end;
            self.buf.clear();
            self.buf_start = self.offset;
        }
        if self.failed || self.offset >= self.end {
            return None;
        }
        let offset = self.offset;
        let bad = |error| Some(Ok(Err(BadRecord { offset, error })));
        let header = match self.fill(HEADER_LEN) {
            Ok(header) => header,
            Err(e) => return Some(Err(e)),
        };
        let total = match record::frame_len(header) {
            Ok(total) => total,
            Err(error) => return bad(error),
        };
        let bytes = match self.fill(total) {
            Ok(bytes) => bytes,
            Err(e) => return Some(Err(e)),
        };
        match record::decode_ref(bytes) {
            Ok((raw, len)) => {
                let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                let position = raw.position;
                let taken = take(offset, raw);
                self.crc = crc;
                self.offset += len as u64;
                self.last_position = position;
                Some(Ok(Ok(taken)))
            }
            Err(error) => bad(error),
        }
    }
}

/// What [`RecordReader::next_with`] made of a whole record, or the bad record where reading
/// stopped.
pub type ReadWith<T> = Result<Result<T, BadRecord>, FileStoreError>;

/// A whole record and its offset, or the bad record where reading stopped.
pub type ReadItem = ReadWith<(u64, RawRecord)>;

impl Iterator for RecordReader {
    /// A bad record ends the iteration after it is reported.
    type Item = ReadItem;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(|offset, raw| (offset, raw.to_owned()))
    }
}

/// Whether a bad record at `from` (which should have held position `expected`) is damage: an
/// intact record after it that was written by a *later* write than the one `expected` belongs
/// to. Then the bad record's write was acknowledged before that later one began, and losing it
/// would lose acknowledged events. If every intact record after it comes from the same write
/// (pages of an unsynced write reach the disk in any order), or none follows, it is a torn last
/// write. Returns the offset of the later write's record.
pub fn later_write_follows(
    file: &File,
    path: &Path,
    from: u64,
    end: u64,
    expected: u32,
) -> Result<Option<u64>, FileStoreError> {
    let mut start = from + 1;
    let mut buf = vec![0u8; CHUNK];
    while start + HEADER_LEN as u64 <= end {
        let len = ((end - start) as usize).min(CHUNK);
        read_exact_at(file, path, &mut buf[..len], start)?;
        for i in 0..len.saturating_sub(MAGIC.len() - 1) {
            if buf[i..i + MAGIC.len()] == MAGIC {
                let at = start + i as u64;
                if let Ok((raw, _)) = read_record_at(file, path, at, end) {
                    if raw.batch_start > expected {
                        return Ok(Some(at));
                    }
                }
            }
        }
        // Overlap by the magic's length so a magic split across chunks is still seen.
        start += (len - (MAGIC.len() - 1)) as u64;
        if len < CHUNK {
            break;
        }
    }
    Ok(None)
}

/// Checks the file header at the start of the log. A log shorter than the header whose bytes
/// are a prefix of it (or zeros) was torn while being created: `Ok(false)`, write it again.
pub fn check_file_header(file: &File, path: &Path, len: u64) -> Result<bool, FileStoreError> {
    let n = (len as usize).min(FILE_HEADER.len());
    let mut bytes = vec![0u8; n];
    read_exact_at(file, path, &mut bytes, 0)?;
    if len < FIRST_RECORD {
        if bytes.iter().zip(FILE_HEADER).all(|(&b, h)| b == h || b == 0) {
            return Ok(false);
        }
    } else if bytes == FILE_HEADER {
        return Ok(true);
    }
    Err(FileStoreError::corrupt(path, 0, "this is not a Waypoint event log (bad file header)"))
}

/// Turns a stored record into the port's event, upcasting old schema versions.
pub(crate) fn to_stored(path: &Path, offset: u64, raw: RawRecord) -> Result<StoredEvent, FileStoreError> {
    to_stored_ref(path, offset, raw.as_ref())
}

/// [`to_stored`] of a record still in the read buffer: the event is decoded straight from the
/// buffer's bytes.
pub(crate) fn to_stored_ref(path: &Path, offset: u64, raw: RecordRef<'_>) -> Result<StoredEvent, FileStoreError> {
    let plan_id = PlanId::parse(raw.plan_id)
        .map_err(|e| FileStoreError::corrupt(path, offset, format!("the record's plan id is invalid: {e}")))?;
    let event =
        PlanEvent::decode(raw.event_type, raw.schema_version, raw.data).map_err(|source| FileStoreError::Decode {
            path: path.to_path_buf(),
            offset,
            plan_id: raw.plan_id.to_owned(),
            version: raw.version,
            source,
        })?;
    let recorded = RecordedEvent { event_id: EventId::from_uuid(raw.event_id), recorded_at: raw.recorded_at, event };
    Ok(Persisted::from(plan_id, recorded).version(raw.version).sequence_number(raw.position))
}

#[cfg(test)]
mod tests;
