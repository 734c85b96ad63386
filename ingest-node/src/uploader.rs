//! Writing a stream's objects to the media store, in order, with retries.
//!
//! One uploader task per stream drains one ordered queue: fragments
//! before the manifests that list them, as the packager produced them.
//!
//! * **Transient errors** (a store that is down, slow or throttling) are
//!   retried with exponential backoff (100 ms doubling to 5 s): an outage
//!   delays media but does not drop it. While the stream is live this
//!   goes on as long as the outage lasts; once the recording is being
//!   finalized, a store that stays unreachable for [`FINISH_WAIT`] fails
//!   the upload, so stop-ingest always ends.
//! * **Memory is bounded in bytes** ([`UploaderConfig::memory_bytes`] per
//!   stream). Past it, objects go to the node's spool on local disk
//!   ([`Spool`], bounded in bytes for the whole node) and are uploaded
//!   from there in their turn; past that too, the producer waits, which
//!   slows only the stream task (RTP reception runs in other tasks and
//!   sheds load before it).
//! * **Refusals** (access denied, no such bucket: [`StoreError::is_refusal`])
//!   that last [`REFUSAL_WAIT`] fail the upload at once, live or not: the
//!   stream ends `Failed`, its `failure` says why, what was written stays,
//!   and spooled objects stay on disk for an operator.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mediastreams_packager::PublishedObject;
use mediastreams_storage::{ObjectKey, ObjectMeta, ObjectStore, StoreError};
use tokio::sync::{Semaphore, mpsc};

/// Default bytes queued in memory per stream.
pub const MEMORY_BYTES: usize = 64 * 1024 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long refusals are tried again before the upload fails (an
/// operator fixing a bucket policy at that moment wins).
pub const REFUSAL_WAIT: Duration = Duration::from_secs(10);
/// How long an unreachable store is waited for once the recording is
/// being finalized.
pub const FINISH_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, thiserror::Error)]
pub enum UploadError {
    #[error("the uploader has stopped")]
    Stopped,
    #[error("object key {0:?} is invalid")]
    BadKey(String),
    #[error("{0}")]
    Failed(String),
}

/// The node's spool: objects waiting on local disk for a store that is
/// down, bounded in bytes for all streams together.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
    next: AtomicU64,
}

impl Spool {
    /// A spool in `dir` (created when first used) of at most `max_bytes`.
    pub fn new(dir: PathBuf, max_bytes: u64) -> Arc<Spool> {
        Arc::new(Spool { dir, max_bytes, used: AtomicU64::new(0), next: AtomicU64::new(0) })
    }

    /// Bytes on disk now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    fn reserve(&self, len: u64) -> bool {
        self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| (u + len <= self.max_bytes).then_some(u + len)).is_ok()
    }

    fn release(&self, len: u64) {
        let _ = self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| Some(u.saturating_sub(len)));
    }

    /// Writes `body` to a new spool file.
    async fn write(&self, prefix: &str, body: &[u8]) -> std::io::Result<PathBuf> {
        let dir = self.dir.join(prefix.trim_end_matches('/'));
        tokio::fs::create_dir_all(&dir).await?;
        let path = dir.join(format!("{:016}", self.next.fetch_add(1, Ordering::SeqCst)));
        tokio::fs::write(&path, body).await?;
        Ok(path)
    }
}

/// Limits of one stream's uploader.
#[derive(Debug, Clone)]
pub struct UploaderConfig {
    pub memory_bytes: usize,
    pub spool: Option<Arc<Spool>>,
}

impl Default for UploaderConfig {
    fn default() -> Self {
        UploaderConfig { memory_bytes: MEMORY_BYTES, spool: None }
    }
}

enum Body {
    Memory(Bytes),
    Spooled(PathBuf),
}

struct Job {
    key: ObjectKey,
    meta: ObjectMeta,
    size: usize,
    body: Body,
    /// When the packager handed it over.
    queued: Instant,
}

/// What the producer and the task share.
struct Shared {
    /// Why the upload failed, once it has.
    failed: OnceLock<String>,
    /// The recording is being finalized: no more objects come.
    finishing: AtomicBool,
    /// The recording was abandoned: queued objects are dropped.
    abandoned: AtomicBool,
    /// How long objects took from the packager to the store.
    delays: Mutex<StoreDelays>,
    /// A fragment stored later than this after it was handed over is late.
    late_after: Duration,
}

/// How long objects took from [`Uploader::send`] to stored: queueing,
/// spooling, retries and the write itself.
#[derive(Debug, Default)]
struct StoreDelays {
    /// The longest of any object since the last [`Uploader::store_report`].
    window_max: Duration,
    /// Every fragment of the recording.
    fragments: DelayHistogram,
    late: u64,
}

/// What the store did with a recording's objects so far (see
/// [`Uploader::store_report`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreReport {
    /// The longest any object took since the previous report.
    pub window_max: Duration,
    /// Fragments stored, and of them those stored more than a fragment
    /// duration after the packager handed them over.
    pub fragments: u64,
    pub late: u64,
    /// The 99th percentile of the fragments' delays (milliseconds; the
    /// upper end of its bucket, at most 1/8 above the true value).
    pub fragment_p99_ms: Option<u64>,
}

/// Counts of delays in milliseconds, in buckets exact below 64 ms and
/// then 8 per power of two (12.5% wide): a day of 2 s fragments, or any
/// number, in 1.4 KiB.
#[derive(Debug, Clone)]
pub struct DelayHistogram {
    counts: Vec<u32>,
    total: u64,
}

impl Default for DelayHistogram {
    fn default() -> Self {
        DelayHistogram { counts: vec![0; Self::BUCKETS], total: 0 }
    }
}

impl DelayHistogram {
    const EXACT: u64 = 64;
    /// Up to 2^40 ms.
    const BUCKETS: usize = 64 + (40 - 6) * 8 + 8;

    fn bucket(ms: u64) -> usize {
        if ms < Self::EXACT {
            return ms as usize;
        }
        let e = 63 - u64::from(ms.leading_zeros());
        let sub = (ms >> (e - 3)) & 7;
        (64 + (e - 6) * 8 + sub).min(Self::BUCKETS as u64 - 1) as usize
    }

    /// The largest value a bucket holds.
    fn upper(bucket: usize) -> u64 {
        let b = bucket as u64;
        if b < Self::EXACT {
            return b;
        }
        let (e, sub) = (6 + (b - 64) / 8, (b - 64) % 8);
        ((8 + sub + 1) << (e - 3)) - 1
    }

    pub fn record(&mut self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        if let Some(c) = self.counts.get_mut(Self::bucket(ms)) {
            *c = c.saturating_add(1);
        }
        self.total += 1;
    }

    /// How many delays were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at or below which `p` percent of the delays lie (the
    /// upper end of its bucket); `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p / 100.0 * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(Self::upper(i));
            }
        }
        Some(Self::upper(Self::BUCKETS - 1))
    }
}

impl Shared {
    /// An object was stored.
    fn stored(&self, job: &Job) {
        let delay = job.queued.elapsed();
        let Ok(mut d) = self.delays.lock() else { return };
        d.window_max = d.window_max.max(delay);
        if mediastreams_packager::layout::is_fragment_key(job.key.as_str()) {
            d.fragments.record(delay);
            if delay > self.late_after {
                d.late += 1;
            }
        }
    }

    fn store_report(&self, new_window: bool) -> StoreReport {
        let Ok(mut d) = self.delays.lock() else { return StoreReport::default() };
        let report = StoreReport {
            window_max: d.window_max,
            fragments: d.fragments.count(),
            late: d.late,
            fragment_p99_ms: d.fragments.percentile(99.0),
        };
        if new_window {
            d.window_max = Duration::ZERO;
        }
        report
    }
}

/// The producer side.
#[derive(Clone)]
pub struct Uploader {
    tx: mpsc::UnboundedSender<Job>,
    budget: Arc<Semaphore>,
    memory_bytes: usize,
    spool: Option<Arc<Spool>>,
    shared: Arc<Shared>,
    prefix: String,
}

/// Waits for the queue to drain.
pub struct UploaderTask {
    handle: tokio::task::JoinHandle<UploadStats>,
    shared: Arc<Shared>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadStats {
    pub objects: u64,
    pub bytes: u64,
    pub retries: u64,
    /// Objects that waited in the spool.
    pub spooled: u64,
    /// Why the upload failed, if it did; what was not written then.
    pub failed: Option<String>,
    pub not_written: u64,
    /// How long the recording's objects took to be stored.
    pub store: StoreReport,
}

impl Uploader {
    /// Starts an uploader writing under `prefix` (`{playbackId}/`).
    /// A fragment stored more than `late_after` after it was handed over
    /// counts as late (the recorder gives its fragment duration).
    pub fn start(store: Arc<dyn ObjectStore>, prefix: String, config: UploaderConfig, late_after: Duration) -> (Uploader, UploaderTask) {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let memory_bytes = config.memory_bytes.max(1);
        let budget = Arc::new(Semaphore::new(memory_bytes));
        let shared = Arc::new(Shared {
            failed: OnceLock::new(),
            finishing: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            delays: Mutex::default(),
            late_after,
        });
        let handle = tokio::spawn(run(store, rx, budget.clone(), memory_bytes, config.spool.clone(), shared.clone()));
        (Uploader { tx, budget, memory_bytes, spool: config.spool, shared: shared.clone(), prefix }, UploaderTask { handle, shared })
    }

    /// Why the upload failed, once it has: nothing more will be written.
    pub fn failure(&self) -> Option<String> {
        self.shared.failed.get().cloned()
    }

    /// How long objects took to be stored: the most since the last call,
    /// and the recording's fragments so far.
    pub fn store_report(&self) -> StoreReport {
        self.shared.store_report(true)
    }

    /// Queues objects in order: in memory while the stream's budget lasts,
    /// then in the spool, else waits for the budget.
    pub async fn send(&self, objects: Vec<PublishedObject>) -> Result<(), UploadError> {
        let queued = Instant::now();
        for object in objects {
            if let Some(reason) = self.shared.failed.get() {
                return Err(UploadError::Failed(reason.clone()));
            }
            let full = format!("{}{}", self.prefix, object.key);
            let key = ObjectKey::parse(&full).map_err(|_| UploadError::BadKey(full.clone()))?;
            let meta = ObjectMeta::new(object.content_type, Some(object.cache_control));
            let size = object.body.len();
            let n = permits(size, self.memory_bytes) as u32;
            let body = match self.budget.try_acquire_many(n) {
                Ok(p) => {
                    p.forget();
                    Body::Memory(object.body)
                }
                Err(_) => match self.spool_object(&object.body).await {
                    Some(path) => Body::Spooled(path),
                    None => {
                        self.budget.acquire_many(n).await.map_err(|_| UploadError::Stopped)?.forget();
                        Body::Memory(object.body)
                    }
                },
            };
            self.tx.send(Job { key, meta, size, body, queued }).map_err(|_| UploadError::Stopped)?;
        }
        Ok(())
    }

    async fn spool_object(&self, body: &Bytes) -> Option<PathBuf> {
        let spool = self.spool.as_ref()?;
        let len = body.len() as u64;
        if !spool.reserve(len) {
            return None;
        }
        match spool.write(&self.prefix, body).await {
            Ok(path) => Some(path),
            Err(e) => {
                spool.release(len);
                tracing::warn!(error = %e, "cannot spool to local disk; waiting for the store instead");
                None
            }
        }
    }
}

async fn run(
    store: Arc<dyn ObjectStore>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    budget: Arc<Semaphore>,
    memory_bytes: usize,
    spool: Option<Arc<Spool>>,
    shared: Arc<Shared>,
) -> UploadStats {
    let mut stats = UploadStats::default();
    while let Some(job) = rx.recv().await {
        if shared.abandoned.load(Ordering::SeqCst) {
            release(&job, &budget, memory_bytes, spool.as_deref()).await;
            continue;
        }
        let body = match &job.body {
            Body::Memory(b) => b.clone(),
            Body::Spooled(path) => {
                stats.spooled += 1;
                match tokio::fs::read(path).await {
                    Ok(b) => Bytes::from(b),
                    Err(e) => {
                        // Someone removed it: the object is lost; say so.
                        tracing::error!(key = %job.key, path = %path.display(), error = %e, "a spooled object cannot be read; it is not written");
                        stats.not_written += 1;
                        release(&job, &budget, memory_bytes, spool.as_deref()).await;
                        continue;
                    }
                }
            }
        };
        match put_with_retries(store.as_ref(), &job, body, &shared, &mut stats).await {
            Put::Written => {
                shared.stored(&job);
                stats.objects += 1;
                stats.bytes += job.size as u64;
                release(&job, &budget, memory_bytes, spool.as_deref()).await;
            }
            Put::Abandoned => release(&job, &budget, memory_bytes, spool.as_deref()).await,
            Put::Failed(reason) => {
                tracing::error!(key = %job.key, reason = %reason, "upload failed; the stream's recording fails");
                let _ = shared.failed.set(reason.clone());
                stats.failed = Some(reason);
                // What is queued is not written; spooled objects stay on
                // disk for an operator.
                let mut kept = Vec::new();
                for j in std::iter::once(job).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                    stats.not_written += 1;
                    match j.body {
                        Body::Spooled(p) => kept.push(p),
                        Body::Memory(_) => budget.add_permits(permits(j.size, memory_bytes)),
                    }
                }
                if !kept.is_empty() {
                    tracing::error!(objects = kept.len(), first = %kept[0].display(), "spooled objects kept on local disk");
                }
                rx.close();
                break;
            }
        }
    }
    stats
}

/// Frees what a written (or lost) job held.
async fn release(job: &Job, budget: &Semaphore, memory_bytes: usize, spool: Option<&Spool>) {
    match &job.body {
        Body::Memory(_) => budget.add_permits(permits(job.size, memory_bytes)),
        Body::Spooled(path) => {
            let _ = tokio::fs::remove_file(path).await;
            if let Some(s) = spool {
                s.release(job.size as u64);
            }
        }
    }
}

enum Put {
    Written,
    Abandoned,
    /// Given up, with the reason.
    Failed(String),
}

/// Puts one object, retrying as the module documentation says.
async fn put_with_retries(store: &dyn ObjectStore, job: &Job, body: Bytes, shared: &Shared, stats: &mut UploadStats) -> Put {
    let mut backoff = FIRST_BACKOFF;
    let mut refused_since: Option<Instant> = None;
    let mut failing_since: Option<Instant> = None;
    loop {
        if shared.abandoned.load(Ordering::SeqCst) {
            return Put::Abandoned;
        }
        let e: StoreError = match store.put(&job.key, body.clone(), &job.meta).await {
            Ok(()) => return Put::Written,
            Err(e) => e,
        };
        stats.retries += 1;
        let now = Instant::now();
        if e.is_refusal() {
            let since = *refused_since.get_or_insert(now);
            if now.duration_since(since) >= REFUSAL_WAIT {
                return Put::Failed(format!("the media store refused to write {}: {e}", job.key));
            }
        } else {
            refused_since = None;
        }
        let since = *failing_since.get_or_insert(now);
        if shared.finishing.load(Ordering::SeqCst) && now.duration_since(since) >= FINISH_WAIT {
            return Put::Failed(format!(
                "the media store was unreachable for {} s while the recording was finalized: {e}",
                FINISH_WAIT.as_secs()
            ));
        }
        tracing::warn!(key = %job.key, error = %e, retry_in_ms = backoff.as_millis() as u64, "upload failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Queue budget units of an object: bytes, at least 1, at most the budget.
fn permits(size: usize, memory_bytes: usize) -> usize {
    size.clamp(1, memory_bytes)
}

impl UploaderTask {
    /// Waits until everything queued before the last `Uploader` was dropped
    /// is written, or the upload failed.
    pub async fn finish(self) -> UploadStats {
        self.shared.finishing.store(true, Ordering::SeqCst);
        let mut stats = self.handle.await.unwrap_or_default();
        stats.store = self.shared.store_report(false);
        stats
    }

    /// Stops writing: what is queued is dropped, spooled copies removed
    /// (the recording was abandoned: its stream was deleted or admitted
    /// again).
    pub fn abandon(self) {
        self.shared.abandoned.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::DelayHistogram;
    use std::time::Duration;

    fn of(ms: impl IntoIterator<Item = u64>) -> DelayHistogram {
        let mut h = DelayHistogram::default();
        for v in ms {
            h.record(Duration::from_millis(v));
        }
        h
    }

    #[test]
    fn percentiles_are_exact_below_64_ms_and_within_an_eighth_above() {
        assert_eq!(DelayHistogram::default().percentile(99.0), None);
        let h = of(1..=50);
        assert_eq!((h.percentile(50.0), h.percentile(99.0), h.percentile(100.0)), (Some(25), Some(50), Some(50)));
        // 1..=1000: the 99th value is 990, in the bucket 960..=1023.
        let h = of(1..=1000);
        assert_eq!(h.count(), 1000);
        assert_eq!(h.percentile(99.0), Some(1023));
        for v in [64u64, 100, 999, 4_000, 123_456, 1 << 39] {
            let p = of([v]).percentile(100.0).unwrap();
            assert!(p >= v && p <= v + v / 8, "{v} reported as {p}");
        }
        // Beyond the last bucket: counted, reported as the largest.
        assert!(of([u64::MAX / 2]).percentile(100.0).is_some());
    }

    #[test]
    fn one_slow_fragment_in_a_hundred_is_the_99th_percentile_only_beyond_it() {
        let h = of((0..99).map(|_| 5).chain([900]));
        assert_eq!(h.percentile(99.0), Some(5));
        let h = of((0..98).map(|_| 5).chain([900, 900]));
        assert!(h.percentile(99.0).unwrap() >= 900);
    }
}
