//! A key-value table of versioned JSON records.
//!
//! Every record has a unique `key`, belongs to one `collection` (listing is
//! per collection, in key order), carries a `version` that each write bumps,
//! and a JSON `body`. Writes are conditional ([`Precondition`]): this is how
//! every state change of a stream stays atomic without locks.

mod dynamo;
mod embedded;

pub use dynamo::{COLL, DynamoTable, INDEX_BY_COLLECTION, PK};
pub use embedded::EmbeddedTable;

use async_trait::async_trait;

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub collection: String,
    /// Starts at 1 and grows by one with each successful write.
    pub version: u64,
    /// A JSON document.
    pub body: String,
}

/// What must be true of the stored record for a write to happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No record with this key exists.
    Absent,
    /// The stored record has exactly this version.
    Version(u64),
}

/// A page of a listing, in ascending key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The last key of this page when more items follow; pass it as `after`
    /// to get the next page.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The precondition did not hold: someone else wrote first.
    #[error("the record changed or exists (conditional write failed)")]
    ConditionFailed,
    /// A stored record could not be read back.
    #[error("stored record {key:?} is malformed: {reason}")]
    Corrupt { key: String, reason: String },
    /// The backing store failed.
    #[error("table backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl TableError {
    pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        TableError::Backend(Box::new(e))
    }
}

/// Most items a single `list` call returns.
pub const MAX_PAGE: usize = 1000;

#[async_trait]
pub trait Table: Send + Sync + 'static {
    /// Reads a record, strongly consistent.
    async fn get(&self, key: &str) -> Result<Option<Record>, TableError>;

    /// Writes `record` if `precondition` holds.
    async fn put(&self, record: &Record, precondition: Precondition) -> Result<(), TableError>;

    /// Deletes a record if it is at `version`.
    async fn delete(&self, key: &str, version: u64) -> Result<(), TableError>;

    /// Lists a collection in key order, starting after `after`, at most
    /// `limit` items (clamped to 1..=[`MAX_PAGE`]).
    async fn list(&self, collection: &str, after: Option<&str>, limit: usize) -> Result<Page<Record>, TableError>;
}

pub(crate) fn clamp_limit(limit: usize) -> usize {
    limit.clamp(1, MAX_PAGE)
}
