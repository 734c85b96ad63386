//! The embedded table: one `redb` database file, for running locally
//! without a cloud account.
//!
//! Writes run in redb write transactions, which are serialized, so a
//! precondition check and the write it guards are atomic.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Page, Precondition, Record, Table, TableError, clamp_limit};

/// key -> stored record.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// (collection, key) -> (), the ordered listing index.
const BY_COLLECTION: TableDefinition<(&str, &str), ()> = TableDefinition::new("by_collection");

#[derive(Serialize, Deserialize)]
struct Stored {
    collection: String,
    version: u64,
    body: String,
}

#[derive(Clone)]
pub struct EmbeddedTable {
    db: Arc<Database>,
}

impl EmbeddedTable {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, TableError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(TableError::backend)?;
        }
        let db = Database::create(path).map_err(TableError::backend)?;
        let txn = db.begin_write().map_err(TableError::backend)?;
        txn.open_table(RECORDS).map_err(TableError::backend)?;
        txn.open_table(BY_COLLECTION).map_err(TableError::backend)?;
        txn.commit().map_err(TableError::backend)?;
        Ok(EmbeddedTable { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, TableError> + Send + 'static,
    ) -> Result<T, TableError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(TableError::backend)?
    }
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record, TableError> {
    let s: Stored = serde_json::from_slice(bytes).map_err(|e| TableError::Corrupt { key: key.to_owned(), reason: e.to_string() })?;
    Ok(Record { key: key.to_owned(), collection: s.collection, version: s.version, body: s.body })
}

fn read(db: &Database, key: &str) -> Result<Option<Record>, TableError> {
    let txn = db.begin_read().map_err(TableError::backend)?;
    let t = txn.open_table(RECORDS).map_err(TableError::backend)?;
    match t.get(key).map_err(TableError::backend)? {
        Some(v) => decode(key, v.value()).map(Some),
        None => Ok(None),
    }
}

fn stored_version(t: &redb::Table<'_, &str, &[u8]>, key: &str) -> Result<Option<Stored>, TableError> {
    match t.get(key).map_err(TableError::backend)? {
        Some(v) => {
            serde_json::from_slice(v.value()).map(Some).map_err(|e| TableError::Corrupt { key: key.to_owned(), reason: e.to_string() })
        }
        None => Ok(None),
    }
}

#[async_trait]
impl Table for EmbeddedTable {
    async fn get(&self, key: &str) -> Result<Option<Record>, TableError> {
        let key = key.to_owned();
        self.blocking(move |db| read(db, &key)).await
    }

    async fn put(&self, record: &Record, precondition: Precondition) -> Result<(), TableError> {
        let record = record.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(TableError::backend)?;
            {
                let mut records = txn.open_table(RECORDS).map_err(TableError::backend)?;
                let current = stored_version(&records, &record.key)?;
                let ok = match (precondition, &current) {
                    (Precondition::Absent, None) => true,
                    (Precondition::Version(v), Some(c)) => c.version == v,
                    _ => false,
                };
                if !ok {
                    return Err(TableError::ConditionFailed);
                }
                let mut index = txn.open_table(BY_COLLECTION).map_err(TableError::backend)?;
                if let Some(c) = &current
                    && c.collection != record.collection
                {
                    index.remove((c.collection.as_str(), record.key.as_str())).map_err(TableError::backend)?;
                }
                let bytes = serde_json::to_vec(&Stored {
                    collection: record.collection.clone(),
                    version: record.version,
                    body: record.body.clone(),
                })
                .map_err(TableError::backend)?;
                records.insert(record.key.as_str(), bytes.as_slice()).map_err(TableError::backend)?;
                index.insert((record.collection.as_str(), record.key.as_str()), ()).map_err(TableError::backend)?;
            }
            txn.commit().map_err(TableError::backend)
        })
        .await
    }

    async fn delete(&self, key: &str, version: u64) -> Result<(), TableError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(TableError::backend)?;
            {
                let mut records = txn.open_table(RECORDS).map_err(TableError::backend)?;
                let current = match stored_version(&records, &key)? {
                    Some(c) if c.version == version => c,
                    _ => return Err(TableError::ConditionFailed),
                };
                records.remove(key.as_str()).map_err(TableError::backend)?;
                let mut index = txn.open_table(BY_COLLECTION).map_err(TableError::backend)?;
                index.remove((current.collection.as_str(), key.as_str())).map_err(TableError::backend)?;
            }
            txn.commit().map_err(TableError::backend)
        })
        .await
    }

    async fn list(&self, collection: &str, after: Option<&str>, limit: usize) -> Result<Page<Record>, TableError> {
        let limit = clamp_limit(limit);
        let collection = collection.to_owned();
        let after = after.map(str::to_owned);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(TableError::backend)?;
            let index = txn.open_table(BY_COLLECTION).map_err(TableError::backend)?;
            let records = txn.open_table(RECORDS).map_err(TableError::backend)?;
            let start = after.as_deref().unwrap_or("");
            let mut keys = Vec::with_capacity(limit + 1);
            for entry in index.range((collection.as_str(), start)..).map_err(TableError::backend)? {
                let (k, _) = entry.map_err(TableError::backend)?;
                let (c, key) = k.value();
                if c != collection {
                    break;
                }
                if after.as_deref() == Some(key) {
                    continue;
                }
                keys.push(key.to_owned());
                if keys.len() > limit {
                    break;
                }
            }
            let more = keys.len() > limit;
            keys.truncate(limit);
            let mut items = Vec::with_capacity(keys.len());
            for key in &keys {
                if let Some(v) = records.get(key.as_str()).map_err(TableError::backend)? {
                    items.push(decode(key, v.value())?);
                }
            }
            let next = if more { keys.last().cloned() } else { None };
            Ok(Page { items, next })
        })
        .await
    }
}
