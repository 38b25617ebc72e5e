//! Segment files, records and the lock.
//!
//! A segment is `NNNNNNNNNNNNNNNN.seg` (numbers only grow): an 8-byte header
//! (`RDSPOOL` and a format version byte), then records, each
//! `[payload length: u32 LE][crc32 of payload: u32 LE][payload]`. A payload
//! is a tag byte then the item: for events, signals, identify calls and
//! spans the request JSON exactly as it will be sent (after the content
//! switch, redaction and the before-send hook, so nothing they remove
//! reaches the disk); for an interaction update, the update as the worker
//! took it from the queue (content switch and redaction applied), in JSON.
//!
//! Reading trusts nothing: a record whose length or checksum does not hold
//! is skipped, and reading resumes at the next offset where a whole record
//! checks out (so one flipped byte costs one record, and a torn tail is
//! just skipped). A segment with another header is left alone and skipped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use fs2::FileExt;
use serde::{Deserialize, Serialize};

use super::{SpoolCounters, SpoolOptions, SpoolSync};
use crate::item::{AiData, InteractionUpdate};
use crate::model::{Attachment, Timestamp};
use crate::properties::Properties;
use crate::route::Route;

const MAGIC: &[u8; 7] = b"RDSPOOL";
/// The format written; a segment with a higher version is skipped (written
/// by a newer SDK), never misread.
const VERSION: u8 = 1;
const HEADER: usize = 8;
/// Length + checksum.
const FRAME: usize = 8;
/// Larger than any record the worker writes (requests are at most 1 MiB;
/// an update's attachments are split at send time, so allow more).
const MAX_RECORD: usize = 64 << 20;
/// A segment is closed, and a new one started, past this size.
const SEGMENT_BYTES: u64 = 4 << 20;
/// Record tags: part of the format, so fixed here rather than taken from
/// the worker's route numbering.
const TAG_EVENT: u8 = 0;
const TAG_UPDATE: u8 = 1;
const TAG_SIGNAL: u8 = 2;
const TAG_IDENTIFY: u8 = 3;
const TAG_SPAN: u8 = 4;

fn tag_of(route: Route) -> u8 {
    match route {
        Route::Track => TAG_EVENT,
        Route::Partial => TAG_UPDATE,
        Route::Signals => TAG_SIGNAL,
        Route::Identify => TAG_IDENTIFY,
        Route::Traces => TAG_SPAN,
    }
}

/// An item read back from a previous process's segment.
pub(crate) enum Replayed {
    /// A request JSON for a batched route.
    Wire(Route, Vec<u8>),
    /// An interaction update and how many caller updates it merges.
    Update(Box<InteractionUpdate>, u64),
}

/// One segment this process knows of: written by it, or left by a previous
/// one and being (or done being) replayed.
struct Segment {
    number: u64,
    bytes: u64,
    /// The worker sequence number of its last item; `None` until one is in.
    last_seq: Option<u64>,
    /// Still being written or replayed: more sequence numbers may come.
    open: bool,
    /// An item in it was given up on in this process (retries exhausted, the
    /// shutdown deadline): kept for the next start.
    keep: bool,
}

/// The spool of one client: owns the directory's lock for its life.
pub(crate) struct Spool {
    dir: PathBuf,
    _lock: File,
    max_bytes: u64,
    sync: SpoolSync,
    counters: Arc<SpoolCounters>,
    /// Oldest first; a segment being written is the last.
    segments: VecDeque<Segment>,
    /// The file of the segment being written.
    current: Option<File>,
    next_number: u64,
    /// Encoded records not yet written, and how many.
    pending: Vec<u8>,
    pending_records: u64,
    /// Written since the last `fsync`.
    dirty: bool,
    last_sync: Instant,
    /// Nothing is deleted any more (the shutdown deadline dropped items).
    frozen: bool,
    /// Previous segments still to replay, oldest first.
    to_replay: VecDeque<u64>,
    /// Records of the segment being replayed.
    replaying: VecDeque<Replayed>,
}

fn segment_name(number: u64) -> String {
    format!("{number:016}.seg")
}

fn segment_number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// How long `Client::new` waits for the directory's lock: a client of
/// this process that was just shut down, or a process being spawned at
/// that moment (it shares the lock until it starts its program), lets go
/// within it; another running process does not.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

fn take_lock(lock: &File) -> bool {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        if lock.try_lock_exclusive().is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

impl Spool {
    /// Creates the directory, takes its lock and lists what a previous
    /// process left (read later, on the worker). Runs in `Client::new`, so
    /// a second process gets its error there.
    pub fn open(opts: &SpoolOptions, counters: Arc<SpoolCounters>) -> Result<Spool, String> {
        let dir = opts.dir.clone();
        let shown = dir.display();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the spool directory {shown}: {e}"))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        if !take_lock(&lock) {
            return Err(format!(
                "the spool directory {shown} is in use by another raindrop client (its LOCK file is held); \
                 give each process its own spool directory"
            ));
        }
        let mut numbers = Vec::new();
        let mut bytes = 0;
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot list the spool directory {shown}: {e}"))?;
        for entry in entries.flatten() {
            if let Some(n) = segment_number(&entry.path()) {
                numbers.push(n);
                bytes += entry.metadata().map_or(0, |m| m.len());
            }
        }
        numbers.sort_unstable();
        counters.bytes.store(bytes, Relaxed);
        Ok(Spool {
            dir,
            _lock: lock,
            max_bytes: opts.max_bytes,
            sync: opts.sync,
            counters,
            segments: VecDeque::new(),
            current: None,
            next_number: numbers.last().map_or(1, |n| n + 1),
            pending: Vec::new(),
            pending_records: 0,
            dirty: false,
            last_sync: Instant::now(),
            frozen: false,
            to_replay: numbers.into(),
            replaying: VecDeque::new(),
        })
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(segment_name(number))
    }

    fn disk_bytes(&self) -> u64 {
        self.counters.bytes.load(Relaxed)
    }

    // ---- writing -------------------------------------------------------

    /// Appends a request JSON of a batched route, given sequence number `seq`.
    pub fn append_wire(&mut self, route: Route, json: &[u8], seq: u64) {
        self.append(tag_of(route), json, seq);
    }

    /// Appends an interaction update (merging `updates` caller updates).
    pub fn append_update(&mut self, patch: &InteractionUpdate, updates: u64, seq: u64) {
        match serde_json::to_vec(&SpooledUpdate::from_update(patch, updates)) {
            Ok(json) => self.append(TAG_UPDATE, &json, seq),
            Err(_) => self.not_written(1, "an interaction update could not be encoded"),
        }
    }

    fn append(&mut self, tag: u8, body: &[u8], seq: u64) {
        let len = body.len() + 1;
        let size = (FRAME + len) as u64;
        let room = self.max_bytes.saturating_sub(self.disk_bytes());
        if len > MAX_RECORD || size + self.pending.len() as u64 > room {
            self.not_written(1, "the spool is at its max_bytes bound");
            return;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[tag]);
        crc.update(body);
        let mut record = Vec::with_capacity(FRAME + len);
        record.extend_from_slice(&(len as u32).to_le_bytes());
        record.extend_from_slice(&crc.finalize().to_le_bytes());
        record.push(tag);
        record.extend_from_slice(body);
        if !self.segments.back().is_some_and(|s| s.open && !s.keep) {
            self.start_segment();
        }
        self.pending.extend_from_slice(&record);
        self.pending_records += 1;
        if let Some(s) = self.segments.back_mut() {
            s.last_seq = Some(seq);
        }
    }

    /// Starts a new segment (its file is created at the next commit); what
    /// was appended to the previous one is written there first.
    fn start_segment(&mut self) {
        self.write_or_count();
        self.close_current();
        self.segments.push_back(Segment {
            number: self.next_number,
            bytes: 0,
            last_seq: None,
            open: true,
            keep: false,
        });
        self.next_number += 1;
    }

    /// Closes the segment being written (forced to the disk unless the
    /// policy is `Never`, since later syncs only reach the newer file).
    fn close_current(&mut self) {
        if let Some(f) = self.current.take() {
            if self.dirty && self.sync != SpoolSync::Never {
                let _ = f.sync_data();
            }
            self.dirty = false;
        }
        if let Some(s) = self.segments.back_mut() {
            s.open = false;
        }
    }

    /// Writes what was appended since the last call, then forces it to the
    /// disk if the policy says so. Called before any of it is sent.
    pub fn commit(&mut self) {
        self.write_or_count();
        let due = match self.sync {
            SpoolSync::Always => true,
            SpoolSync::Every(d) => self.last_sync.elapsed() >= d,
            SpoolSync::Never => false,
        };
        if self.dirty && due {
            if let Some(f) = &self.current {
                let _ = f.sync_data();
            }
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        if self
            .segments
            .back()
            .is_some_and(|s| s.bytes >= SEGMENT_BYTES)
        {
            self.close_current();
        }
    }

    /// Writes what was appended; on an error counts it as not written.
    fn write_or_count(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if let Err(e) = self.write_pending() {
            let n = self.pending_records;
            self.pending.clear();
            self.pending_records = 0;
            // The next record starts a new segment.
            self.close_current();
            self.not_written(n, &format!("writing a spool segment failed ({e})"));
        }
    }

    fn write_pending(&mut self) -> std::io::Result<()> {
        let number = match self.segments.back() {
            Some(s) if s.open => s.number,
            _ => return Err(std::io::Error::other("no open segment")),
        };
        let mut added = 0;
        if self.current.is_none() {
            let mut f = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(self.path(number))?;
            let mut header = [0u8; HEADER];
            header[..7].copy_from_slice(MAGIC);
            header[7] = VERSION;
            f.write_all(&header)?;
            added += HEADER as u64;
            if self.sync != SpoolSync::Never {
                // The new name must survive a power cut too.
                if let Ok(d) = File::open(&self.dir) {
                    let _ = d.sync_all();
                }
            }
            self.current = Some(f);
        }
        if let Some(f) = self.current.as_mut() {
            f.write_all(&self.pending)?;
        }
        added += self.pending.len() as u64;
        if let Some(s) = self.segments.back_mut() {
            s.bytes += added;
        }
        self.counters.bytes.fetch_add(added, Relaxed);
        self.counters
            .written
            .fetch_add(self.pending_records, Relaxed);
        self.pending.clear();
        self.pending_records = 0;
        self.dirty = true;
        Ok(())
    }

    fn not_written(&self, n: u64, why: &str) {
        let total = self.counters.not_written.fetch_add(n, Relaxed) + n;
        if total == n || total % 10_000 < n {
            tracing::warn!(target: "raindrop", total, "raindrop spool: {why}; {n} item(s) are sent from memory only and would not survive a restart ({total} so far); see Client::stats()");
        }
    }

    // ---- settling ------------------------------------------------------

    /// Deletes the segments whose items have all settled: every sequence
    /// number below `watermark` is delivered or dropped for good.
    pub fn settle(&mut self, watermark: u64) {
        if self.frozen {
            return;
        }
        let settled = |s: &Segment| !s.keep && s.last_seq.is_none_or(|l| l < watermark);
        // The segment being written goes too once all of it has settled
        // (the next item starts a new one), so an idle spool is empty.
        if self.pending.is_empty()
            && self
                .segments
                .back()
                .is_some_and(|s| s.open && s.last_seq.is_some() && settled(s))
            && self.to_replay.is_empty()
            && self.replaying.is_empty()
        {
            // Deleted next: no point forcing it to the disk.
            self.dirty = false;
            self.close_current();
        }
        let mut kept = VecDeque::with_capacity(self.segments.len());
        for s in std::mem::take(&mut self.segments) {
            if !s.open && settled(&s) {
                self.remove(s.number, s.bytes);
            } else {
                kept.push_back(s);
            }
        }
        self.segments = kept;
    }

    fn remove(&self, number: u64, bytes: u64) {
        let _ = std::fs::remove_file(self.path(number));
        let _ = self
            .counters
            .bytes
            .fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(bytes)));
    }

    /// Items from sequence number `seq` on were given up on in this process
    /// (retries exhausted): their segments stay for the next start. Which
    /// later items are in the same request is not known here, so every
    /// segment that may hold one is kept.
    pub fn keep_from(&mut self, seq: u64) {
        for s in self.segments.iter_mut() {
            if s.open || s.last_seq.is_some_and(|l| l >= seq) {
                s.keep = true;
            }
        }
    }

    /// Nothing is deleted any more: the shutdown deadline dropped what was
    /// left, which stays on disk for the next start.
    pub fn freeze(&mut self) {
        self.commit();
        if let Some(f) = &self.current {
            let _ = f.sync_data();
        }
        self.frozen = true;
    }

    // ---- replay --------------------------------------------------------

    /// Whether segments of a previous process are still to be replayed.
    pub fn replaying(&self) -> bool {
        !self.to_replay.is_empty() || !self.replaying.is_empty()
    }

    /// The next item of a previous process, in order; `None` when all are
    /// replayed. Each item returned must be given a sequence number with
    /// [`Spool::replayed`].
    pub fn next_replayed(&mut self) -> Option<Replayed> {
        while self.replaying.is_empty() {
            let number = self.to_replay.pop_front()?;
            self.load(number);
        }
        let r = self.replaying.pop_front();
        if self.replaying.is_empty() {
            // Its last item: the segment is settled once that item is.
            if let Some(s) = self.segments.back_mut() {
                s.open = false;
            }
        }
        r
    }

    /// The sequence number given to the item [`Spool::next_replayed`] returned.
    pub fn replayed(&mut self, seq: u64) {
        if let Some(s) = self.segments.back_mut() {
            s.last_seq = Some(seq);
        }
        self.counters.replayed.fetch_add(1, Relaxed);
    }

    /// Replay stops early (a shutdown came first): what is not replayed
    /// stays on disk for the next start.
    pub fn stop_replay(&mut self) {
        if let Some(s) = self.segments.back_mut().filter(|s| s.open) {
            s.open = false;
            s.keep = true;
        }
        self.replaying.clear();
        self.to_replay.clear();
    }

    /// Reads a previous segment into `replaying`.
    fn load(&mut self, number: u64) {
        let path = self.path(number);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                self.corrupt(1, &format!("{} could not be read ({e})", path.display()));
                return;
            }
        };
        let bytes = data.len() as u64;
        if data.len() < HEADER || &data[..7] != MAGIC {
            self.corrupt(1, &format!("{} has no spool header", path.display()));
            // A torn creation (empty or cut header) is ours to remove;
            // anything else with our name is left for a person to look at.
            if data.len() < HEADER && MAGIC.starts_with(&data[..data.len().min(7)]) {
                self.remove(number, bytes);
            }
            return;
        }
        if data[7] != VERSION {
            self.corrupt(
                1,
                &format!(
                    "{} is format version {}, this SDK reads {VERSION}; it is left in place",
                    path.display(),
                    data[7]
                ),
            );
            return;
        }
        let (records, bad) = read_records(&data[HEADER..]);
        if bad > 0 {
            self.corrupt(bad, &format!("{} has {bad} damaged region(s) (a torn write or changed bytes); they are skipped", path.display()));
        }
        for (tag, body) in records {
            match decode(tag, body) {
                Some(r) => self.replaying.push_back(r),
                None => self.corrupt(
                    1,
                    &format!("a record of {} could not be decoded", path.display()),
                ),
            }
        }
        self.segments.push_back(Segment {
            number,
            bytes,
            last_seq: None,
            open: !self.replaying.is_empty(),
            keep: false,
        });
    }

    fn corrupt(&self, n: u64, why: &str) {
        let total = self.counters.corrupt.fetch_add(n, Relaxed) + n;
        tracing::warn!(target: "raindrop", total, "raindrop spool: {why} ({total} skipped so far); see Client::stats()");
    }
}

/// The whole records in `data`, and how many damaged regions were skipped.
fn read_records(data: &[u8]) -> (Vec<(u8, &[u8])>, u64) {
    let mut out = Vec::new();
    let mut bad = 0;
    let mut pos = 0;
    let mut in_damage = false;
    while pos < data.len() {
        match record_at(data, pos) {
            Some((tag, body, next)) => {
                out.push((tag, body));
                pos = next;
                in_damage = false;
            }
            None => {
                if !in_damage {
                    bad += 1;
                    in_damage = true;
                }
                pos += 1;
            }
        }
    }
    (out, bad)
}

/// The record at `pos` if its length, tag and checksum hold.
fn record_at(data: &[u8], pos: usize) -> Option<(u8, &[u8], usize)> {
    let frame = data.get(pos..pos + FRAME)?;
    let len = u32::from_le_bytes(frame[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(frame[4..].try_into().ok()?);
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let payload = data.get(pos + FRAME..pos + FRAME + len)?;
    if payload[0] > TAG_SPAN || crc32fast::hash(payload) != crc {
        return None;
    }
    Some((payload[0], &payload[1..], pos + FRAME + len))
}

fn decode(tag: u8, body: &[u8]) -> Option<Replayed> {
    let route = match tag {
        TAG_UPDATE => {
            let u: SpooledUpdate = serde_json::from_slice(body).ok()?;
            let updates = u.updates.max(1);
            return Some(Replayed::Update(Box::new(u.into_update()), updates));
        }
        TAG_EVENT => Route::Track,
        TAG_SIGNAL => Route::Signals,
        TAG_IDENTIFY => Route::Identify,
        TAG_SPAN => Route::Traces,
        _ => return None,
    };
    Some(Replayed::Wire(route, body.to_vec()))
}

/// An interaction update as written to the spool.
#[derive(Serialize, Deserialize)]
struct SpooledUpdate {
    event_id: String,
    user_id: Option<String>,
    event: Option<String>,
    model: Option<String>,
    input: Option<String>,
    output: Option<String>,
    convo_id: Option<String>,
    properties: Properties,
    attachments: Vec<SpooledAttachment>,
    timestamp: Option<String>,
    is_final: bool,
    had_content: bool,
    updates: u64,
}

#[derive(Serialize, Deserialize)]
struct SpooledAttachment {
    kind: String,
    value: String,
    name: Option<String>,
    role: Option<String>,
    language: Option<String>,
    attachment_id: Option<String>,
}

impl SpooledUpdate {
    fn from_update(u: &InteractionUpdate, updates: u64) -> Self {
        let s = |v: &Option<Arc<str>>| v.as_deref().map(str::to_owned);
        SpooledUpdate {
            event_id: u.event_id.to_string(),
            user_id: s(&u.user_id),
            event: s(&u.event),
            model: u.ai.model.clone(),
            input: u.ai.input.clone(),
            output: u.ai.output.clone(),
            convo_id: s(&u.ai.convo_id),
            properties: u.properties.clone(),
            attachments: u
                .attachments
                .iter()
                .map(|a| SpooledAttachment {
                    kind: a.kind.as_str().to_owned(),
                    value: a.value.clone(),
                    name: a.name.clone(),
                    role: a.role.map(|r| r.as_str().to_owned()),
                    language: a.language.clone(),
                    attachment_id: a.attachment_id.clone(),
                })
                .collect(),
            timestamp: u.timestamp.as_ref().map(Timestamp::to_wire),
            is_final: u.is_final,
            had_content: u.had_content,
            updates,
        }
    }

    fn into_update(self) -> InteractionUpdate {
        let arc = |v: Option<String>| v.map(Arc::<str>::from);
        let attachments = self
            .attachments
            .into_iter()
            .filter_map(|a| {
                let mut out = Attachment::new(a.kind.parse().ok()?, a.value);
                out.name = a.name;
                out.role = a.role.and_then(|r| r.parse().ok());
                out.language = a.language;
                out.attachment_id = a.attachment_id;
                Some(out)
            })
            .collect();
        InteractionUpdate {
            event_id: self.event_id.into(),
            user_id: arc(self.user_id),
            event: arc(self.event),
            ai: AiData {
                model: self.model,
                input: self.input,
                output: self.output,
                convo_id: arc(self.convo_id),
            },
            properties: self.properties,
            attachments,
            timestamp: self.timestamp.map(Timestamp::from),
            is_final: self.is_final,
            had_content: self.had_content,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut payload = vec![tag];
        payload.extend_from_slice(body);
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn a_damaged_record_costs_itself_and_reading_resumes_after_it() {
        let mut data = Vec::new();
        for i in 0..5u8 {
            data.extend(frame(0, format!("{{\"n\":{i}}}").as_bytes()));
        }
        let second = frame(0, b"{\"n\":0}").len() + FRAME + 2;
        data[second] ^= 0x20;
        data.extend_from_slice(&[7, 0, 0]);
        let (records, bad) = read_records(&data);
        let ns: Vec<&[u8]> = records.iter().map(|(_, b)| *b).collect();
        assert_eq!(
            ns.len(),
            4,
            "the flipped record is skipped, the others read"
        );
        assert!(!ns.contains(&&b"{\"n\":1}"[..]));
        assert_eq!(bad, 2, "the flipped record and the torn tail");
    }

    #[test]
    fn redaction_before_the_spool_changes_nothing_when_it_runs_again_at_send() {
        for text in [
            "mail ada@example.com or call +1 415 555 0100, card 4111 1111 1111 1111",
            "my name is Ada Lovelace and my SSN is 123-45-6789",
        ] {
            let once = crate::redact_pii(text).into_owned();
            assert_ne!(once, text);
            assert_eq!(crate::redact_pii(&once), once.as_str());
        }
    }

    #[test]
    fn an_update_reads_back_as_it_was_written() {
        let mut u = InteractionUpdate {
            event_id: "e1".into(),
            user_id: Some("u".into()),
            ai: AiData {
                input: Some("q".into()),
                convo_id: Some("c".into()),
                ..AiData::default()
            },
            timestamp: Some(Timestamp::from("2024-01-02T03:04:05Z")),
            had_content: true,
            ..InteractionUpdate::default()
        };
        u.properties.insert("k".into(), serde_json::json!({"n": 1}));
        u.attachments.push(
            Attachment::code("SELECT 1", "sql")
                .name("q.sql")
                .role(crate::Role::Input),
        );
        let json = serde_json::to_vec(&SpooledUpdate::from_update(&u, 3)).unwrap();
        let Some(Replayed::Update(back, 3)) = decode(TAG_UPDATE, &json) else {
            panic!("not an update of 3");
        };
        assert_eq!(format!("{back:?}"), format!("{u:?}"));
    }

    #[test]
    fn random_bytes_are_never_a_record() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (records, bad) = read_records(&data);
        assert!(records.is_empty());
        assert_eq!(bad, 1);
    }
}
