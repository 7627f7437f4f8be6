//! One group commit of appends: each request checked against the log as it is now and encoded,
//! the accepted ones written together and made durable with one fdatasync, then folded in. A
//! failed write is taken back; a failed fsync (or a failed take-back) poisons the store until it
//! is reopened, since what reached the disk is then unknown.

use std::collections::HashMap;

use eventually::store::{Expected, Persisted};
use eventually::versioning::Versioned;
use waypoint_application::{RecordedEvent, StoredEvent};
use waypoint_domain::PlanId;

use crate::error::FileStoreError;
use crate::fsutil;
use crate::record::{self, RawRecord};
use crate::recovery::Access;
use crate::state::{Folded, Shared, State};

/// One append: `events` go to `plan_id` if its version is `expected`.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// The plan whose stream the events extend.
    pub plan_id: PlanId,
    /// The stream version the append requires (or `Any`); a mismatch fails only this request,
    /// with `Conflict`.
    pub expected: Expected,
    /// The events, in order; they are written all or none, with consecutive versions.
    pub events: Vec<RecordedEvent>,
}

/// A record accepted into a commit: the event, its offset and its checksum.
type Accepted = (StoredEvent, u64, u32);

/// A batch checked and encoded, ready to write.
struct Planned {
    results: Vec<(u64, Result<u32, FileStoreError>)>,
    accepted: Vec<(u64, Vec<Accepted>)>,
    bytes: Vec<u8>,
}

/// A request with its records already framed (numbered 0 until the commit seals them), so the
/// encoding happens in the caller's thread, outside the commit's critical section.
#[derive(Debug)]
pub(crate) struct Prepared {
    request: AppendRequest,
    frames: Result<Vec<Vec<u8>>, FileStoreError>,
}

impl Prepared {
    pub(crate) fn new(request: AppendRequest) -> Self {
        let frames = request
            .events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                if event.recorded_at < chrono::DateTime::UNIX_EPOCH {
                    return Err(FileStoreError::ClockBeforeEpoch { at: event.recorded_at.to_rfc3339() });
                }
                let raw = RawRecord {
                    position: 0,
                    version: 0,
                    batch_start: 0,
                    event_id: event.event_id.as_uuid(),
                    recorded_at: event.recorded_at,
                    plan_id: request.plan_id.as_str().to_owned(),
                    event_type: event.event.event_type().as_str().to_owned(),
                    schema_version: event.event.schema_version(),
                    data: event.event.encode_data(),
                };
                raw.encode().map_err(|e| {
                    FileStoreError::TooLarge(format!(
                        "event {} of plan {} is too large to store ({e}); store large data elsewhere and record a reference",
                        i + 1,
                        request.plan_id
                    ))
                })
            })
            .collect();
        Prepared { request, frames }
    }
}

impl Shared {
    /// Queues `requests` and waits for them. Whoever finds no commit running leads the next one,
    /// taking every queued caller's requests into one write and one fdatasync.
    pub(crate) fn submit(&self, requests: Vec<AppendRequest>) -> Vec<Result<u32, FileStoreError>> {
        let requests: Vec<Prepared> = requests.into_iter().map(Prepared::new).collect();
        self.group.submit(requests, |batch| self.commit_catching_panics(batch), || self.checkpoint_if_due())
    }

    /// Commits `batch`; a panic inside fails its requests and poisons the store instead of
    /// leaving the queue without a leader and the write lock held.
    fn commit_catching_panics(&self, batch: Vec<Prepared>) -> Vec<Result<u32, FileStoreError>> {
        let count = batch.len();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit(batch))).unwrap_or_else(|_| {
            let mut state = self.lock_state();
            state.poisoned = Some("an append panicked".into());
            if state.committing {
                if let Some(lock) = &self.write_lock {
                    let _ = lock.unlock();
                }
                state.committing = false;
            }
            drop(state);
            let error = FileStoreError::Poisoned { path: self.log_path.clone(), detail: "an append panicked".into() };
            (0..count).map(|_| Err(error.duplicate())).collect()
        })
    }

    /// One group commit: check every request against the log as it is now, write the accepted
    /// ones together, fdatasync once, then fold them in. The state mutex is released during the
    /// write and the fdatasync, so this process's readers are not held up by the disk; they see
    /// `committing` and read the state as it is rather than touching `write.lock`.
    fn commit(&self, batch: Vec<Prepared>) -> Vec<Result<u32, FileStoreError>> {
        let numbered = batch.into_iter().enumerate().map(|(i, request)| (i as u64, request)).collect();
        let mut results = self.commit_numbered(numbered);
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, result)| result).collect()
    }

    fn commit_numbered(&self, batch: Vec<(u64, Prepared)>) -> Vec<(u64, Result<u32, FileStoreError>)> {
        let fail_all = |batch: &[(u64, Prepared)], error: &FileStoreError| {
            batch.iter().map(|(t, _)| (*t, Err(error.duplicate()))).collect::<Vec<_>>()
        };
        let (Some(file), Some(lock), false) = (&self.log, &self.write_lock, self.read_only) else {
            return fail_all(&batch, &FileStoreError::ReadOnly { path: self.layout.dir().to_path_buf() });
        };
        let mut state = self.lock_state();
        if let Some(detail) = &state.poisoned {
            return fail_all(&batch, &FileStoreError::Poisoned { path: self.log_path.clone(), detail: detail.clone() });
        }
        if let Err(e) = fsutil::lock_bounded(lock, &self.layout.write_lock(), true, self.options.lock_timeout) {
            return fail_all(&batch, &e);
        }
        state.committing = true;
        let planned = match self.catch_up(&mut state, Access::Exclusive) {
            Ok(()) => {
                let mut versions = HashMap::new();
                let mut failed = Vec::new();
                for (ticket, prepared) in &batch {
                    let plan_id = &prepared.request.plan_id;
                    if versions.contains_key(plan_id) {
                        continue;
                    }
                    match self.append_refused(plan_id) {
                        Ok(Some(removed_at)) => {
                            failed.push((*ticket, FileStoreError::Removed { plan_id: plan_id.clone(), removed_at }));
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            failed.push((*ticket, e));
                            continue;
                        }
                    }
                    match self.current_version(&mut state, plan_id) {
                        Ok(version) => {
                            versions.insert(plan_id.clone(), version);
                        }
                        Err(e) => failed.push((*ticket, e)),
                    }
                }
                Ok(Self::plan_batch(&state, &versions, batch, failed))
            }
            Err(e) => Err(fail_all(&batch, &e)),
        };
        let (mut results, accepted, bytes) = match planned {
            Ok(Planned { results, accepted, bytes }) if !accepted.is_empty() => (results, accepted, bytes),
            Ok(Planned { results, .. }) | Err(results) => {
                let _ = lock.unlock();
                state.committing = false;
                return results;
            }
        };
        // After records that retention removed, the log ends past them.
        let start = state.trailing.map_or(state.end, |(end, _)| end);
        drop(state);

        let storage = &self.options.storage;
        let written = storage
            .write_all_at(file, &bytes, start)
            .map_err(|e| (FileStoreError::io("cannot append to the log", &self.log_path, e), false))
            .and_then(|()| {
                storage.sync_data(file).map_err(|e| {
                    let error = FileStoreError::io("cannot make the append durable (fsync failed)", &self.log_path, e);
                    (error, true)
                })
            });

        let mut state = self.lock_state();
        match written {
            Ok(()) => {
                for (ticket, records) in accepted {
                    let mut version = 0;
                    for (stored, offset, crc) in &records {
                        let skipped = state.trailing.map_or(0, |(_, skipped)| skipped);
                        let folded = Folded {
                            offset: *offset,
                            crc: *crc,
                            plan_id: stored.source_id(),
                            position: stored.sequence_number(),
                            version: stored.version(),
                            event_id: *stored.event_id.as_uuid().as_bytes(),
                            event: Some(stored),
                            skipped,
                        };
                        // These records passed the same checks a moment ago under the same lock.
                        if let Err(e) = state.apply(&self.log_path, folded) {
                            state.poisoned = Some(format!("the in-memory state diverged from the log: {e}"));
                        }
                        version = stored.version();
                    }
                    results.push((ticket, Ok(version)));
                }
                state.end = start + bytes.len() as u64;
                state.trailing = None;
            }
            Err((error, sync_failed)) => {
                // Take back whatever part reached the file, so no half record outlives the error.
                // After a failed fsync the kernel may have dropped the dirty pages: what is on
                // disk is unknown, so refuse further writes until a reopen reads the log again.
                let undone = storage.truncate(file, start);
                if sync_failed {
                    state.poisoned = Some(format!("fsync failed: {error}"));
                } else if let Err(undo) = undone {
                    state.poisoned = Some(format!("a failed append could not be taken back: {undo}"));
                }
                results.extend(accepted.iter().map(|(t, _)| (*t, Err(error.duplicate()))));
            }
        }
        let _ = lock.unlock();
        state.committing = false;
        results
    }

    /// Writes a checkpoint if enough records were folded since the last one. The leader calls it
    /// after handing out a commit's results, so callers do not wait for it.
    fn checkpoint_if_due(&self) {
        let mut state = self.lock_state();
        if state.tail_len >= self.options.checkpoint_every && state.poisoned.is_none() {
            // The events are durable already; a failed checkpoint only means a longer catch-up
            // next time, and it is retried after the next commit.
            let _ = self.checkpoint(&mut state);
        }
    }

    /// Checks each request against the current versions (and the batch's earlier requests) and
    /// encodes the accepted ones. A refused request does not stop the others.
    fn plan_batch(
        state: &State,
        versions: &HashMap<PlanId, u32>,
        batch: Vec<(u64, Prepared)>,
        failed: Vec<(u64, FileStoreError)>,
    ) -> Planned {
        let mut results = Vec::with_capacity(batch.len());
        let failed: HashMap<u64, FileStoreError> = failed.into_iter().collect();
        let mut accepted: Vec<(u64, Vec<Accepted>)> = Vec::new();
        let mut bytes = Vec::new();
        let mut batch_versions: HashMap<PlanId, u32> = HashMap::new();
        // Records retention removed at the log's end keep their positions: new ones follow them.
        let (start, skipped) = state.trailing.unwrap_or((state.end, 0));
        let mut position = state.position + skipped;
        let batch_start = position + 1;
        for (ticket, Prepared { request, frames }) in batch {
            if let Some(error) = failed.get(&ticket) {
                results.push((ticket, Err(error.duplicate())));
                continue;
            }
            let plan_id = request.plan_id;
            let current = batch_versions.get(&plan_id).or(versions.get(&plan_id)).copied().unwrap_or(0);
            if let Expected::Exact(expected) = request.expected {
                if expected != current {
                    results.push((ticket, Err(FileStoreError::Conflict { plan_id, expected, actual: current })));
                    continue;
                }
            }
            if request.events.is_empty() {
                results.push((ticket, Ok(current)));
                continue;
            }
            let frames = match frames {
                Ok(frames) => frames,
                Err(error) => {
                    results.push((ticket, Err(error)));
                    continue;
                }
            };
            let count = frames.len() as u32;
            if position.checked_add(count).is_none() || current.checked_add(count).is_none() {
                let error = FileStoreError::TooLarge("the store holds u32::MAX events; start a new store".into());
                results.push((ticket, Err(error)));
                continue;
            }
            let mut records = Vec::with_capacity(frames.len());
            for (i, (event, mut frame)) in request.events.into_iter().zip(frames).enumerate() {
                let (next_position, version) = (position + i as u32 + 1, current + i as u32 + 1);
                record::seal(&mut frame, next_position, version, batch_start);
                let offset = start + bytes.len() as u64;
                let crc = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]);
                bytes.extend_from_slice(&frame);
                records.push((
                    Persisted::from(plan_id.clone(), event).version(version).sequence_number(next_position),
                    offset,
                    crc,
                ));
            }
            position += count;
            batch_versions.insert(plan_id, current + count);
            accepted.push((ticket, records));
        }
        Planned { results, accepted, bytes }
    }
}

#[cfg(test)]
mod tests;
