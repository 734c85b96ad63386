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
use std::sync::{Arc, OnceLock};
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
}

/// What the producer and the task share.
struct Shared {
    /// Why the upload failed, once it has.
    failed: OnceLock<String>,
    /// The recording is being finalized: no more objects come.
    finishing: AtomicBool,
    /// The recording was abandoned: queued objects are dropped.
    abandoned: AtomicBool,
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
}

impl Uploader {
    /// Starts an uploader writing under `prefix` (`{playbackId}/`).
    pub fn start(store: Arc<dyn ObjectStore>, prefix: String, config: UploaderConfig) -> (Uploader, UploaderTask) {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let memory_bytes = config.memory_bytes.max(1);
        let budget = Arc::new(Semaphore::new(memory_bytes));
        let shared = Arc::new(Shared { failed: OnceLock::new(), finishing: AtomicBool::new(false), abandoned: AtomicBool::new(false) });
        let handle = tokio::spawn(run(store, rx, budget.clone(), memory_bytes, config.spool.clone(), shared.clone()));
        (Uploader { tx, budget, memory_bytes, spool: config.spool, shared: shared.clone(), prefix }, UploaderTask { handle, shared })
    }

    /// Why the upload failed, once it has: nothing more will be written.
    pub fn failure(&self) -> Option<String> {
        self.shared.failed.get().cloned()
    }

    /// Queues objects in order: in memory while the stream's budget lasts,
    /// then in the spool, else waits for the budget.
    pub async fn send(&self, objects: Vec<PublishedObject>) -> Result<(), UploadError> {
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
            self.tx.send(Job { key, meta, size, body }).map_err(|_| UploadError::Stopped)?;
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
        self.handle.await.unwrap_or_default()
    }

    /// Stops writing: what is queued is dropped, spooled copies removed
    /// (the recording was abandoned: its stream was deleted or admitted
    /// again).
    pub fn abandon(self) {
        self.shared.abandoned.store(true, Ordering::SeqCst);
    }
}
