//! The durable spool: an opt-in write-ahead copy of what the worker holds,
//! so that items accepted before a crash, a deploy or an OOM kill are sent
//! after the restart.
//!
//! The worker appends every item it takes from the queue to segment files
//! in the spool directory (one checksummed record per item), before the item
//! can be sent. A segment is deleted once every item in it has settled
//! (delivered, or dropped for good). At start, the worker replays the
//! segments a previous process left, in order, before it takes new items.
//! See `docs/spool.md` for what it promises and what it does not.

mod log;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub(crate) use log::{Replayed, Spool};

/// When the spool's appended records are forced to the disk with `fsync`.
///
/// Records reach the operating system (`write`) before the items in them
/// are sent, whatever the policy: a killed process (`kill -9`, an OOM kill,
/// a panic) loses nothing the worker had taken from the queue. The policy
/// only decides what a power cut or a kernel crash can lose.
///
/// ```
/// use raindrop_core::{SpoolOptions, SpoolSync};
/// use std::time::Duration;
/// let spool = SpoolOptions::new("/var/lib/my-service/raindrop")
///     .sync(SpoolSync::Every(Duration::from_millis(200)));
/// assert_eq!(spool.sync, SpoolSync::Every(Duration::from_millis(200)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpoolSync {
    /// `fsync` after every write, before the items written are sent: a
    /// power cut loses only what the worker had not taken from the queue.
    Always,
    /// `fsync` at most this often (and at the next worker wake-up after
    /// it): a power cut loses at most this long of items, plus one
    /// `upload_interval`. The default, every second.
    Every(Duration),
    /// Never `fsync`: the operating system writes back when it chooses
    /// (about 30 s on Linux). A killed process still loses nothing.
    Never,
}

/// Where and how the spool keeps items; set with
/// [`ClientOptions::spool`](crate::ClientOptions::spool) or
/// [`ClientOptions::spool_options`](crate::ClientOptions::spool_options).
///
/// ```
/// use raindrop_core::{ClientOptions, SpoolOptions};
/// let opts = ClientOptions::default()
///     .spool_options(SpoolOptions::new("/var/lib/my-service/raindrop").max_bytes(64 << 20));
/// assert_eq!(opts.spool.unwrap().max_bytes, 64 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpoolOptions {
    /// The directory (created if missing). One process at a time: a lock
    /// file in it refuses a second client.
    pub dir: PathBuf,
    /// The bound on the spool's bytes on disk (default 256 MiB). When it is
    /// reached, the newest items are not written (what the spool holds is
    /// kept until delivered): they are still sent from memory, but would
    /// not survive a restart; counted in `Stats::spool_not_written`.
    pub max_bytes: u64,
    /// When records are forced to the disk (default every second).
    pub sync: SpoolSync,
}

impl SpoolOptions {
    /// The default bound on the spool's bytes on disk.
    pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

    /// A spool in `dir` with the default bound and sync policy.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolOptions {
            dir: dir.into(),
            max_bytes: Self::DEFAULT_MAX_BYTES,
            sync: SpoolSync::Every(Duration::from_secs(1)),
        }
    }

    /// The bound on the spool's bytes on disk.
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n;
        self
    }

    /// When records are forced to the disk.
    pub fn sync(mut self, sync: SpoolSync) -> Self {
        self.sync = sync;
        self
    }
}

/// The spool's counters, shared by the worker (which writes them) and
/// `Client::stats`.
#[derive(Debug, Default)]
pub(crate) struct SpoolCounters {
    pub written: AtomicU64,
    pub not_written: AtomicU64,
    pub replayed: AtomicU64,
    pub corrupt: AtomicU64,
    pub bytes: AtomicU64,
}

/// What [`Stats`](crate::Stats) shows of the spool.
pub(crate) struct SpoolSnapshot {
    pub written: u64,
    pub not_written: u64,
    pub replayed: u64,
    pub corrupt: u64,
    pub bytes: u64,
}

impl SpoolCounters {
    pub fn snapshot(&self) -> SpoolSnapshot {
        SpoolSnapshot {
            written: self.written.load(Relaxed),
            not_written: self.not_written.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
        }
    }
}
