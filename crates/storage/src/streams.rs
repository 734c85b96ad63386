//! Media stream records in a [`Table`], with every change a conditional
//! write.
//!
//! A change reads the record, computes the new record with pure code from
//! `mediastreams-model`, and writes it on the condition that the version is
//! still the one read. When another writer got there first the change is
//! computed again from the new record, which may now refuse it: so of many
//! concurrent `start-ingest` calls exactly one moves `Created -> Ready`, the
//! rest see `Ready` and fail, and no update is ever lost.

use std::sync::Arc;

use mediastreams_model::{Stream, Transition, TransitionError};
use time::OffsetDateTime;

use crate::table::{Page, Precondition, Record, Table, TableError};

/// The collection stream records are listed in.
pub const COLLECTION: &str = "stream";
/// How often a change is recomputed after losing a race before giving up.
const MAX_ATTEMPTS: usize = 32;

fn key(name: &str) -> String {
    format!("stream#{name}")
}

fn name_of(key: &str) -> &str {
    key.strip_prefix("stream#").unwrap_or(key)
}

/// A stream with the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedStream {
    pub stream: Stream,
    pub version: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("no stream named {0:?}")]
    NotFound(String),
    #[error("a stream named {0:?} already exists")]
    AlreadyExists(String),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("the stream changed {MAX_ATTEMPTS} times while this change was applied; try again")]
    Contention,
    #[error(transparent)]
    Table(#[from] TableError),
}

#[derive(Clone)]
pub struct StreamRepo {
    table: Arc<dyn Table>,
}

impl StreamRepo {
    pub fn new(table: Arc<dyn Table>) -> Self {
        StreamRepo { table }
    }

    fn decode(record: Record) -> Result<VersionedStream, RepoError> {
        let stream: Stream =
            serde_json::from_str(&record.body).map_err(|e| TableError::Corrupt { key: record.key.clone(), reason: e.to_string() })?;
        Ok(VersionedStream { stream, version: record.version })
    }

    fn encode(stream: &Stream, version: u64) -> Result<Record, RepoError> {
        Ok(Record {
            key: key(stream.name.as_str()),
            collection: COLLECTION.to_owned(),
            version,
            body: serde_json::to_string(stream).map_err(TableError::backend)?,
        })
    }

    pub async fn get(&self, name: &str) -> Result<Option<VersionedStream>, RepoError> {
        self.table.get(&key(name)).await?.map(Self::decode).transpose()
    }

    /// Stores a new stream; fails with `AlreadyExists` when the name is
    /// taken.
    pub async fn create(&self, stream: &Stream) -> Result<VersionedStream, RepoError> {
        match self.table.put(&Self::encode(stream, 1)?, Precondition::Absent).await {
            Ok(()) => Ok(VersionedStream { stream: stream.clone(), version: 1 }),
            Err(TableError::ConditionFailed) => Err(RepoError::AlreadyExists(stream.name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams in name order, after the stream named `after`.
    pub async fn list(&self, after: Option<&str>, limit: usize) -> Result<Page<VersionedStream>, RepoError> {
        let after_key = after.map(key);
        let page = self.table.list(COLLECTION, after_key.as_deref(), limit).await?;
        Ok(Page {
            items: page.items.into_iter().map(Self::decode).collect::<Result<_, _>>()?,
            next: page.next.as_deref().map(|k| name_of(k).to_owned()),
        })
    }

    /// Applies `change` to the stored stream as a conditional write,
    /// recomputing it whenever another writer got there first. `change`
    /// returns `Ok(None)` when there is nothing to write.
    pub async fn update<F>(&self, name: &str, mut change: F) -> Result<VersionedStream, RepoError>
    where
        F: FnMut(&Stream) -> Result<Option<Stream>, RepoError>,
    {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.get(name).await?.ok_or_else(|| RepoError::NotFound(name.to_owned()))?;
            let Some(next) = change(&current.stream)? else {
                return Ok(current);
            };
            let version = current.version + 1;
            match self.table.put(&Self::encode(&next, version)?, Precondition::Version(current.version)).await {
                Ok(()) => {
                    return Ok(VersionedStream { stream: next, version });
                }
                Err(TableError::ConditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RepoError::Contention)
    }

    /// Takes a state-machine transition as a conditional write.
    pub async fn transition(
        &self,
        name: &str,
        t: Transition,
        now: OffsetDateTime,
        ingest: Option<mediastreams_model::IngestSession>,
    ) -> Result<VersionedStream, RepoError> {
        self.update(name, |s| Ok(Some(s.transition(t, now, ingest.clone())?))).await
    }

    /// Removes the record if it is still at `version`.
    pub async fn delete(&self, name: &str, version: u64) -> Result<(), RepoError> {
        self.table.delete(&key(name), version).await?;
        Ok(())
    }
}
