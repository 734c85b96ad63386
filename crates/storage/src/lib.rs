//! Storage for the media stream service.
//!
//! Two abstractions, each with a cloud and a local implementation:
//!
//! * [`Table`]: a key-value table of versioned JSON records with conditional
//!   writes and ordered listing per collection. [`DynamoTable`] speaks
//!   DynamoDB; [`EmbeddedTable`] is a `redb` file under the data directory.
//! * [`ObjectStore`]: immutable-per-put objects with a content type and a
//!   cache policy. [`S3Store`] speaks S3; [`LocalDirStore`] is a directory.
//!
//! [`StreamRepo`] keeps media stream records in a [`Table`] and applies the
//! state machine of `mediastreams-model` as conditional writes.
#![forbid(unsafe_code)]

pub mod aws;
pub mod nodes;
pub mod object;
pub mod recording;
pub mod streams;
pub mod table;

pub use nodes::{NodeRecord, NodeRegistry};
pub use object::{LocalDirStore, Object, ObjectKey, ObjectKeyError, ObjectMeta, ObjectStore, S3Store, StoreError};
pub use streams::{RepoError, StreamRepo, VersionedStream};
pub use table::{DynamoTable, EmbeddedTable, Page, Precondition, Record, Table, TableError};
