//! The local-directory object store, for running without a cloud account.
//!
//! Layout under the root: `objects/{key}` holds the bytes, `meta/{key}`
//! the content type and cache policy as JSON, `tmp/` files being written.
//! A put writes to `tmp/` and renames into place, so readers never see a
//! partial object.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{MAX_LIST, Object, ObjectKey, ObjectMeta, ObjectStore, StoreError};
use crate::table::Page;

/// Puts written at once: more only contend in the file system.
const WRITERS: usize = 4;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaFile {
    content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_control: Option<String>,
}

pub struct LocalDirStore {
    root: PathBuf,
    counter: AtomicU64,
    writers: tokio::sync::Semaphore,
}

impl LocalDirStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        for sub in ["objects", "meta", "tmp"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        Ok(LocalDirStore { root, counter: AtomicU64::new(0), writers: tokio::sync::Semaphore::new(WRITERS) })
    }

    fn object_path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join("objects").join(key.as_str())
    }

    fn meta_path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join("meta").join(key.as_str())
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.root.join("tmp").join(format!("{}-{n}", std::process::id()))
    }

    /// Writes `bytes` to `path` through a file in `tmp/` renamed into
    /// place, blocking: the directories are made only when the rename says
    /// they are missing (a fragment's directory exists but for the first),
    /// and again if a concurrent delete pruned them in between.
    fn write_atomically(path: &Path, tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::write(tmp, bytes)?;
        let mut attempts = 0;
        loop {
            match std::fs::rename(tmp, path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 3 => {
                    attempts += 1;
                    if let Some(parent) = path.parent()
                        && let Err(e) = std::fs::create_dir_all(parent)
                    {
                        let _ = std::fs::remove_file(tmp);
                        return Err(e);
                    }
                }
                Err(e) => {
                    let _ = std::fs::remove_file(tmp);
                    return Err(e);
                }
            }
        }
    }

    /// Removes now-empty directories from `path`'s parent up to `top`.
    async fn prune_empty_dirs(path: &Path, top: &Path) {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == top || !d.starts_with(top) {
                break;
            }
            if tokio::fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
    }
}

fn not_found(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory)
}

/// Every file below `dir`, as keys relative to `base`.
fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(base, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(base)
            && let Some(s) = rel.to_str()
        {
            out.push(s.to_owned());
        }
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for LocalDirStore {
    async fn put(&self, key: &ObjectKey, body: Bytes, meta: &ObjectMeta) -> Result<(), StoreError> {
        let meta_json =
            serde_json::to_vec(&MetaFile { content_type: meta.content_type.clone(), cache_control: meta.cache_control.clone() })
                .map_err(StoreError::backend)?;
        let (meta_path, object_path) = (self.meta_path(key), self.object_path(key));
        let (meta_tmp, object_tmp) = (self.tmp_path(), self.tmp_path());
        // One blocking task for the whole put (not one per file operation),
        // and the body written from the caller's buffer, not a copy: at a
        // fragment boundary every stream on the node writes at once.
        let _writer = self.writers.acquire().await.map_err(StoreError::backend)?;
        tokio::task::spawn_blocking(move || {
            // A rewritten object (a live manifest, every fragment) mostly
            // keeps its metadata: reading the small file is far cheaper than
            // a new inode and freeing the old one.
            if std::fs::read(&meta_path).ok().as_deref() != Some(meta_json.as_slice()) {
                Self::write_atomically(&meta_path, &meta_tmp, &meta_json)?;
            }
            Self::write_atomically(&object_path, &object_tmp, &body)
        })
        .await
        .map_err(StoreError::backend)?
        .map_err(StoreError::from)
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        let body = match tokio::fs::read(self.object_path(key)).await {
            Ok(b) => Bytes::from(b),
            Err(e) if not_found(&e) => return Ok(None),
            // A directory is a prefix, not an object.
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let meta = match tokio::fs::read(self.meta_path(key)).await {
            Ok(m) => serde_json::from_slice::<MetaFile>(&m).ok(),
            Err(_) => None,
        };
        let meta = match meta {
            Some(m) => ObjectMeta { content_type: m.content_type, cache_control: m.cache_control },
            None => ObjectMeta::new("application/octet-stream", None),
        };
        Ok(Some(Object { body, meta }))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        for (path, top) in [(self.object_path(key), self.root.join("objects")), (self.meta_path(key), self.root.join("meta"))] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Self::prune_empty_dirs(&path, &top).await,
                Err(e) if not_found(&e) || e.kind() == std::io::ErrorKind::IsADirectory => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Page<String>, StoreError> {
        let limit = limit.clamp(1, MAX_LIST);
        // Walk only the deepest directory the prefix names.
        let dir_part = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        if !dir_part.is_empty() {
            ObjectKey::parse(dir_part)?;
        }
        let base = self.root.join("objects");
        let start = base.join(dir_part);
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            walk(&base, &start, &mut keys)?;
            keys.retain(|k| k.starts_with(&prefix) && after.as_ref().is_none_or(|a| k > a));
            keys.sort_unstable();
            let more = keys.len() > limit;
            keys.truncate(limit);
            let next = if more { keys.last().cloned() } else { None };
            Ok(Page { items: keys, next })
        })
        .await
        .map_err(StoreError::backend)?
    }
}
