//! The table on Amazon DynamoDB.
//!
//! Item layout: `pk` (S, the record key, table hash key), `coll` (S, the
//! collection), `v` (N, the version), `body` (S, the JSON document). The
//! global secondary index `by-collection` (hash `coll`, range `pk`, all
//! attributes projected) serves ordered listing. Preconditions become
//! condition expressions; a failed one is [`TableError::ConditionFailed`].
//!
//! Listing reads the index, which DynamoDB keeps eventually consistent: a
//! record written a moment ago may be missing from a listing for a moment.
//! Single-record reads are strongly consistent.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};

use super::{Page, Precondition, Record, Table, TableError, clamp_limit};

pub const INDEX_BY_COLLECTION: &str = "by-collection";
/// The table's partition key attribute (also the index's sort key).
pub const PK: &str = "pk";
/// The collection attribute: the index's partition key.
pub const COLL: &str = "coll";
const VERSION: &str = "v";
const BODY: &str = "body";

#[derive(Clone)]
pub struct DynamoTable {
    client: Client,
    table: String,
}

impl DynamoTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoTable { client, table: table.into() }
    }

    pub fn from_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }

    /// Creates the table and its index if they do not exist (for local
    /// servers and tests; in the cloud the SAM template creates it).
    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    pub async fn ensure_table(&self) -> Result<(), TableError> {
        let attr = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().map_err(TableError::backend)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(TableError::backend)
        };
        let index = GlobalSecondaryIndex::builder()
            .index_name(INDEX_BY_COLLECTION)
            .key_schema(key(COLL, KeyType::Hash)?)
            .key_schema(key(PK, KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build()
            .map_err(TableError::backend)?;
        let result = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(PK)?)
            .attribute_definitions(attr(COLL)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .global_secondary_indexes(index)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => Ok(()),
            Err(e) => Err(TableError::backend(e.into_service_error())),
        }
    }

    /// Deletes the table (tests).
    pub async fn drop_table(&self) -> Result<(), TableError> {
        self.client.delete_table().table_name(&self.table).send().await.map(|_| ()).map_err(|e| TableError::backend(e.into_service_error()))
    }
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<Record, TableError> {
    let key = item.get(PK).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    let corrupt = |reason: &str| TableError::Corrupt { key: key.clone(), reason: reason.to_owned() };
    let string = |name: &str| -> Result<String, TableError> {
        item.get(name).and_then(|v| v.as_s().ok()).cloned().ok_or_else(|| corrupt(&format!("attribute {name} missing or not a string")))
    };
    let version = item
        .get(VERSION)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| corrupt("attribute v missing or not a number"))?;
    Ok(Record { key: string(PK)?, collection: string(COLL)?, version, body: string(BODY)? })
}

/// Maps an SDK error, telling failed conditions apart.
fn write_error<E, R>(e: SdkError<E, R>) -> TableError
where
    E: std::error::Error + Send + Sync + 'static + aws_sdk_dynamodb::error::ProvideErrorMetadata,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = e.as_service_error().and_then(|s| s.code());
    if code == Some("ConditionalCheckFailedException") { TableError::ConditionFailed } else { TableError::backend(e) }
}

#[async_trait]
impl Table for DynamoTable {
    async fn get(&self, key: &str) -> Result<Option<Record>, TableError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| TableError::backend(e.into_service_error()))?;
        out.item().map(decode).transpose()
    }

    async fn put(&self, record: &Record, precondition: Precondition) -> Result<(), TableError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, AttributeValue::S(record.key.clone()))
            .item(COLL, AttributeValue::S(record.collection.clone()))
            .item(VERSION, AttributeValue::N(record.version.to_string()))
            .item(BODY, AttributeValue::S(record.body.clone()));
        req = match precondition {
            Precondition::Absent => req.condition_expression("attribute_not_exists(#pk)").expression_attribute_names("#pk", PK),
            Precondition::Version(v) => req
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        req.send().await.map(|_| ()).map_err(write_error)
    }

    async fn delete(&self, key: &str, version: u64) -> Result<(), TableError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(key.to_owned()))
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(write_error)
    }

    async fn list(&self, collection: &str, after: Option<&str>, limit: usize) -> Result<Page<Record>, TableError> {
        let limit = clamp_limit(limit);
        let mut items = Vec::with_capacity(limit + 1);
        let mut start_key = after.map(|a| {
            HashMap::from([(COLL.to_owned(), AttributeValue::S(collection.to_owned())), (PK.to_owned(), AttributeValue::S(a.to_owned()))])
        });
        // One more than asked, to know whether another page follows. A query
        // page also stops at 1 MB, so keep reading until that item is seen
        // or the index is exhausted.
        loop {
            let want = limit + 1 - items.len();
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(INDEX_BY_COLLECTION)
                .key_condition_expression("#c = :c")
                .expression_attribute_names("#c", COLL)
                .expression_attribute_values(":c", AttributeValue::S(collection.to_owned()))
                .limit(i32::try_from(want).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| TableError::backend(e.into_service_error()))?;
            for item in out.items() {
                items.push(decode(item)?);
            }
            match out.last_evaluated_key {
                Some(k) if items.len() <= limit && !k.is_empty() => start_key = Some(k),
                _ => break,
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more { items.last().map(|r| r.key.clone()) } else { None };
        Ok(Page { items, next })
    }
}
