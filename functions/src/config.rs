//! Configuration of the functions in the cloud, from environment variables
//! set by the SAM template.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use mediastreams_storage::{DynamoTable, Object, ObjectKey, ObjectMeta, ObjectStore, Page, S3Store, StoreError, StreamRepo};

use crate::{Api, ApiConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
}

impl From<mediastreams_storage::aws::MissingVariable> for ConfigError {
    fn from(e: mediastreams_storage::aws::MissingVariable) -> Self {
        ConfigError::Missing(e.0)
    }
}

fn var(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or(ConfigError::Missing(name))
}

/// `S3_FORCE_PATH_STYLE=true`: see [`api_from_env`].
pub fn s3_path_style() -> bool {
    std::env::var("S3_FORCE_PATH_STYLE").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Builds the API from the environment:
/// * `TABLE_NAME`: the DynamoDB table of streams;
/// * `MEDIA_BUCKET`: the S3 bucket of media;
/// * `MEDIA_BASE_URL`: where players read that bucket (the CDN);
/// * `INGEST_BASE_URL` (optional): one WHIP endpoint base for every stream;
///   without it, start-ingest assigns streams to the ingest nodes registered
///   in the table (least loaded healthy node with room);
/// * `S3_FORCE_PATH_STYLE` (optional, `true`): path-style S3 requests, for
///   S3-compatible servers without virtual-hosted buckets (local invoke).
///
/// AWS credentials and region come from the variables Lambda sets, and
/// `AWS_ENDPOINT_URL` points both clients at a compatible server
/// ([`mediastreams_storage::aws::lambda_config`]).
///
/// `media` makes the media store: [`s3_media`] for the one function that
/// touches media (delete-stream), [`no_media`] for the others, so that
/// their binaries do not link the S3 client (smaller, quicker to start).
pub async fn api_from_env(media: MediaStore) -> Result<Api, ConfigError> {
    let table = var("TABLE_NAME")?;
    let bucket = var("MEDIA_BUCKET")?;
    let config =
        ApiConfig { media_base_url: var("MEDIA_BASE_URL")?, ingest_base_url: var("INGEST_BASE_URL").unwrap_or_default(), api_key: None };
    let sdk = mediastreams_storage::aws::lambda_config()?;
    let table = Arc::new(DynamoTable::from_config(&sdk, table));
    let media = media(&sdk, bucket);
    let registry = config
        .ingest_base_url
        .is_empty()
        .then(|| mediastreams_storage::NodeRegistry::new(table.clone(), mediastreams_storage::nodes::NODE_TTL));
    let api = Api::new(StreamRepo::new(table), media, config);
    Ok(match registry {
        Some(r) => api.with_node_registry(r),
        None => api,
    })
}

/// Makes a function's media store from the SDK configuration and bucket.
pub type MediaStore = fn(&mediastreams_storage::aws::SdkConfig, String) -> Arc<dyn ObjectStore>;

/// The media bucket, through S3.
pub fn s3_media(sdk: &mediastreams_storage::aws::SdkConfig, bucket: String) -> Arc<dyn ObjectStore> {
    Arc::new(S3Store::from_config(sdk, bucket, s3_path_style()))
}

/// No media store: for functions whose operations never touch media.
pub fn no_media(_: &mediastreams_storage::aws::SdkConfig, _: String) -> Arc<dyn ObjectStore> {
    Arc::new(NoMedia)
}

/// Answers every call with an error (see [`no_media`]).
struct NoMedia;

fn no_media_error() -> StoreError {
    StoreError::Refused("this function has no media store".to_owned())
}

#[async_trait]
impl ObjectStore for NoMedia {
    async fn put(&self, _: &ObjectKey, _: Bytes, _: &ObjectMeta) -> Result<(), StoreError> {
        Err(no_media_error())
    }
    async fn get(&self, _: &ObjectKey) -> Result<Option<Object>, StoreError> {
        Err(no_media_error())
    }
    async fn delete(&self, _: &ObjectKey) -> Result<(), StoreError> {
        Err(no_media_error())
    }
    async fn list(&self, _: &str, _: Option<&str>, _: usize) -> Result<Page<String>, StoreError> {
        Err(no_media_error())
    }
}
