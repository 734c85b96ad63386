//! The object store players read media from.
//!
//! Objects are written whole (a put replaces an object atomically: readers
//! see the old or the new bytes, never a mix) with a content type and a
//! `Cache-Control` policy that the media server or CDN passes on.

mod key;
mod local;
mod s3;

pub use key::{ObjectKey, ObjectKeyError};
pub use local::LocalDirStore;
pub use s3::S3Store;

use async_trait::async_trait;
use bytes::Bytes;

use crate::table::Page;

/// How an object is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub content_type: String,
    pub cache_control: Option<String>,
}

impl ObjectMeta {
    pub fn new(content_type: impl Into<String>, cache_control: Option<&str>) -> Self {
        ObjectMeta { content_type: content_type.into(), cache_control: cache_control.map(str::to_owned) }
    }
}

/// An object read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub body: Bytes,
    pub meta: ObjectMeta,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    InvalidKey(#[from] ObjectKeyError),
    #[error("object store I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store refused the request and will go on refusing it until an
    /// operator acts: access denied, no such bucket, a read-only disk.
    #[error("the object store refuses writes: {0}")]
    Refused(String),
}

impl StoreError {
    /// Whether trying again cannot help (see [`StoreError::Refused`]).
    pub fn is_refusal(&self) -> bool {
        match self {
            StoreError::Refused(_) | StoreError::InvalidKey(_) => true,
            StoreError::Io(e) => matches!(e.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem),
            StoreError::Backend(_) => false,
        }
    }

    pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// Most keys one `list` call returns (S3's own page size).
pub const MAX_LIST: usize = 1000;

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores `body` under `key`, replacing any object there.
    async fn put(&self, key: &ObjectKey, body: Bytes, meta: &ObjectMeta) -> Result<(), StoreError>;

    /// Reads an object; `None` when there is none.
    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError>;

    /// Removes an object; removing a missing object is not an error.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// Keys under `prefix` in ascending order, after `after`, at most
    /// `limit` (clamped to 1..=[`MAX_LIST`]).
    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Page<String>, StoreError>;

    /// Removes every object under `prefix` (which must end with `/`);
    /// returns how many were removed.
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        ObjectKey::check_prefix(prefix)?;
        let mut removed = 0;
        loop {
            // Always list from the start: what was listed is gone.
            let page = self.list(prefix, None, MAX_LIST).await?;
            if page.items.is_empty() {
                return Ok(removed);
            }
            for k in &page.items {
                self.delete(&ObjectKey::parse(k)?).await?;
                removed += 1;
            }
        }
    }
}
