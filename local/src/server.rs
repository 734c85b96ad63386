use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use mediastreams_functions::{Api, ApiConfig, MAX_BODY_BYTES, Problem};
use mediastreams_storage::{DynamoTable, EmbeddedTable, LocalDirStore, ObjectStore, S3Store, StreamRepo, Table};

/// Where the table and the media live.
#[derive(Debug, Clone)]
pub enum StorageChoice {
    /// `{data_dir}/table.redb` and `{data_dir}/media/`.
    Embedded { data_dir: PathBuf },
    /// DynamoDB and S3 (or compatible servers at the given endpoints).
    Aws { dynamodb_endpoint: Option<String>, table: String, s3_endpoint: Option<String>, bucket: String },
}

#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub storage: StorageChoice,
    /// The in-process ingest node's settings.
    pub ingest: mediastreams_ingest_node::NodeConfig,
    /// The URL clients reach this server at (`http://127.0.0.1:8080`); the
    /// API's streaming and ingest URLs are built on it.
    pub public_url: String,
    pub api_key: Option<String>,
    /// The pages' directory (`web/public`), if served.
    pub web_dir: Option<PathBuf>,
    /// Timeouts and the connection cap of the HTTP server.
    pub limits: mediastreams_http::Limits,
}

#[derive(Clone)]
pub struct Backends {
    pub table: Arc<dyn Table>,
    pub media: Arc<dyn ObjectStore>,
}

pub async fn open_backends(storage: &StorageChoice) -> anyhow::Result<Backends> {
    Ok(match storage {
        StorageChoice::Embedded { data_dir } => Backends {
            table: Arc::new(EmbeddedTable::open(&data_dir.join("table.redb"))?),
            media: Arc::new(LocalDirStore::open(data_dir.join("media"))?),
        },
        StorageChoice::Aws { dynamodb_endpoint, table, s3_endpoint, bucket } => {
            let from_env = mediastreams_storage::aws::load_config().await;
            let sdk = |endpoint: &Option<String>| match endpoint {
                Some(e) => mediastreams_storage::aws::local_config(e),
                None => from_env.clone(),
            };
            let t = DynamoTable::from_config(&sdk(dynamodb_endpoint), table.clone());
            let s = S3Store::from_config(&sdk(s3_endpoint), bucket.clone(), s3_endpoint.is_some());
            // Local servers start empty; real accounts get them from SAM.
            if dynamodb_endpoint.is_some() {
                t.ensure_table().await?;
            }
            if s3_endpoint.is_some() {
                s.ensure_bucket().await?;
            }
            Backends { table: Arc::new(t), media: Arc::new(s) }
        }
    })
}

/// The router of the whole local service: the API, the media store, and
/// the WHIP endpoint of an in-process ingest node.
pub fn build_router(backends: &Backends, config: &LocalConfig) -> Router {
    build_service(backends, config).0
}

/// [`build_router`], and the in-process ingest node (whose media socket
/// the binary binds at start).
pub fn build_service(backends: &Backends, config: &LocalConfig) -> (Router, Arc<mediastreams_ingest_node::IngestNode>) {
    let base = config.public_url.trim_end_matches('/');
    let api = Api::new(
        StreamRepo::new(backends.table.clone()),
        backends.media.clone(),
        ApiConfig { media_base_url: format!("{base}/media"), ingest_base_url: base.to_owned(), api_key: config.api_key.clone() },
    );
    let node =
        mediastreams_ingest_node::IngestNode::new(StreamRepo::new(backends.table.clone()), backends.media.clone(), config.ingest.clone());
    let whip = mediastreams_ingest_node::whip::endpoint::router(node.clone());
    let media = Router::new().route("/media/{*key}", get(crate::media::get_object)).with_state(backends.media.clone());
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(mediastreams_packager::layout::TIME_PATH, get(crate::media::time))
        .route("/streams", axum::routing::any(api_handler))
        .route("/streams/{*rest}", axum::routing::any(api_handler))
        .with_state((api, config.limits))
        .merge(media)
        .merge(whip)
        .merge(match &config.web_dir {
            Some(dir) => Router::new().route("/", get(crate::web::index)).route("/{*path}", get(crate::web::file)).with_state(dir.clone()),
            None => Router::new(),
        })
        .fallback(|| async { Problem::not_found("no resource here").into_response().map(Body::from) });
    (router, node)
}

/// Hands a request to the API handlers, reading at most the body limit
/// within the body timeout.
async fn api_handler(State((api, limits)): State<(Api, mediastreams_http::Limits)>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match mediastreams_http::read_body(body, MAX_BODY_BYTES, &limits).await {
        Ok(b) => b,
        Err(e) => return body_problem(e).into_response().map(Body::from),
    };
    api.handle(http::Request::from_parts(parts, bytes)).await.map(Body::from)
}

/// The answer to a body that was not read.
pub fn body_problem(e: mediastreams_http::BodyError) -> Problem {
    match e {
        mediastreams_http::BodyError::TooLarge => Problem::payload_too_large(MAX_BODY_BYTES),
        mediastreams_http::BodyError::TimedOut => {
            Problem::new(http::StatusCode::REQUEST_TIMEOUT, "body-timeout", "the request body did not arrive in time")
        }
        mediastreams_http::BodyError::Incomplete => Problem::bad_request("incomplete-body", "the request body ended early"),
    }
}

/// Serves until `shutdown` resolves, within `limits` (header, idle and
/// body timeouts, a connection cap: see `mediastreams-http`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: mediastreams_http::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    mediastreams_http::serve(listener, router, limits, Default::default(), shutdown).await
}
