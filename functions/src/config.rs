//! Configuration of the functions in the cloud, from environment variables
//! set by the SAM template.

use std::sync::Arc;

use mediastreams_storage::{DynamoTable, S3Store, StreamRepo};

use crate::{Api, ApiConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
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
/// AWS credentials and region come from the Lambda environment (and
/// `AWS_ENDPOINT_URL`, which the SDK reads, points both clients at a
/// compatible server).
pub async fn api_from_env() -> Result<Api, ConfigError> {
    let table = var("TABLE_NAME")?;
    let bucket = var("MEDIA_BUCKET")?;
    let config =
        ApiConfig { media_base_url: var("MEDIA_BASE_URL")?, ingest_base_url: var("INGEST_BASE_URL").unwrap_or_default(), api_key: None };
    let sdk = mediastreams_storage::aws::load_config().await;
    let table = Arc::new(DynamoTable::from_config(&sdk, table));
    let media = Arc::new(S3Store::from_config(&sdk, bucket, s3_path_style()));
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
