//! Scheduled Lambda function: finalizes the streams of dead ingest nodes
//! as on demand (see `mediastreams_functions::reaper`). Triggered every
//! minute by an EventBridge schedule; the event's content is not read.

use std::sync::Arc;

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use mediastreams_storage::{DynamoTable, NodeRegistry, ObjectStore, S3Store, StreamRepo};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mediastreams_http::init_logging(mediastreams_http::LogFormat::JsonUnstamped);
    let table = std::env::var("TABLE_NAME").map_err(|_| "environment variable TABLE_NAME is not set")?;
    let bucket = std::env::var("MEDIA_BUCKET").map_err(|_| "environment variable MEDIA_BUCKET is not set")?;
    let sdk = mediastreams_storage::aws::lambda_config()?;
    let table = Arc::new(DynamoTable::from_config(&sdk, table));
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::from_config(&sdk, bucket, mediastreams_functions::config::s3_path_style()));
    let repo = StreamRepo::new(table.clone());
    let registry = NodeRegistry::new(table, mediastreams_storage::nodes::NODE_TTL);
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<serde_json::Value>| {
        let (repo, registry, store) = (repo.clone(), registry.clone(), store.clone());
        async move {
            let report = mediastreams_functions::reaper::reap(&repo, &registry, &store, time::OffsetDateTime::now_utc()).await?;
            tracing::info!(finalized = ?report.finalized, skipped = ?report.skipped, "reap pass");
            Ok::<_, lambda_runtime::Error>(serde_json::json!({ "finalized": report.finalized, "skipped": report.skipped }))
        }
    }))
    .await
}
