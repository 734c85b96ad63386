//! Writing a stream's objects to the media store, in order, with retries.
//!
//! One uploader task per stream drains a bounded queue: fragments before
//! the manifests that list them, as the packager produced them. A failed
//! put is retried with exponential backoff (100 ms doubling to 5 s) until
//! it succeeds or the uploader is shut down, so a store outage delays media
//! but never drops it. The queue is bounded in bytes: when it is full the
//! producer waits, which slows only the stream's recorder task, never RTP
//! reception (that runs in other tasks and sheds load before it).

use std::sync::Arc;
use std::time::Duration;

use mediastreams_packager::PublishedObject;
use mediastreams_storage::{ObjectKey, ObjectMeta, ObjectStore};
use tokio::sync::{Semaphore, mpsc};

/// Most bytes queued per stream before producers wait.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the uploader has stopped")]
    Stopped,
    #[error("object key {0:?} is invalid")]
    BadKey(String),
}

struct Job {
    key: ObjectKey,
    object: PublishedObject,
}

/// The producer side.
#[derive(Clone)]
pub struct Uploader {
    tx: mpsc::UnboundedSender<Job>,
    budget: Arc<Semaphore>,
    prefix: String,
}

/// Waits for the queue to drain.
pub struct UploaderTask {
    handle: tokio::task::JoinHandle<UploadStats>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    pub objects: u64,
    pub bytes: u64,
    pub retries: u64,
}

impl Uploader {
    /// Starts an uploader writing under `prefix` (`{playbackId}/`).
    pub fn start(store: Arc<dyn ObjectStore>, prefix: String) -> (Uploader, UploaderTask) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let budget = Arc::new(Semaphore::new(MAX_QUEUED_BYTES));
        let task_budget = budget.clone();
        let handle = tokio::spawn(async move {
            let mut stats = UploadStats::default();
            while let Some(job) = rx.recv().await {
                let meta = ObjectMeta::new(job.object.content_type, Some(job.object.cache_control));
                let size = job.object.body.len();
                let mut backoff = FIRST_BACKOFF;
                loop {
                    match store.put(&job.key, job.object.body.clone(), &meta).await {
                        Ok(()) => break,
                        Err(e) => {
                            stats.retries += 1;
                            tracing::warn!(key = %job.key, error = %e, retry_in_ms = backoff.as_millis() as u64, "upload failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
                stats.objects += 1;
                stats.bytes += size as u64;
                task_budget.add_permits(permits(size));
            }
            stats
        });
        (Uploader { tx, budget, prefix }, UploaderTask { handle })
    }

    /// Queues objects in order; waits while the queue is over budget.
    pub async fn send(&self, objects: Vec<PublishedObject>) -> Result<(), UploadError> {
        for object in objects {
            let full = format!("{}{}", self.prefix, object.key);
            let key = ObjectKey::parse(&full).map_err(|_| UploadError::BadKey(full.clone()))?;
            let n = permits(object.body.len());
            self.budget
                .acquire_many(n as u32)
                .await
                .map_err(|_| UploadError::Stopped)?
                .forget();
            self.tx.send(Job { key, object }).map_err(|_| UploadError::Stopped)?;
        }
        Ok(())
    }
}

/// Queue budget units of an object: bytes, at least 1, at most the budget.
fn permits(size: usize) -> usize {
    size.clamp(1, MAX_QUEUED_BYTES)
}

impl UploaderTask {
    /// Waits until everything queued before the last `Uploader` was dropped
    /// is written.
    pub async fn finish(self) -> UploadStats {
        self.handle.await.unwrap_or_default()
    }

    /// Stops writing: what is queued is dropped (the recording was
    /// abandoned: its stream was deleted or admitted again).
    pub fn abort(self) {
        self.handle.abort();
    }
}
