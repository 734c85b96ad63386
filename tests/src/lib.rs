//! Test support: real servers and fixtures shared by the integration tests.
//!
//! The DynamoDB/S3 tests talk to a real protocol server (moto) that
//! `scripts/test` installs and starts; its address comes in
//! `MEDIASTREAMS_TEST_AWS_ENDPOINT`. A test that needs it fails, never
//! skips, when it is missing.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

pub mod media;

use mediastreams_storage::{DynamoTable, EmbeddedTable, LocalDirStore, S3Store};

/// The endpoint of the DynamoDB- and S3-compatible test server.
pub fn aws_endpoint() -> String {
    std::env::var("MEDIASTREAMS_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "MEDIASTREAMS_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test, \
             which starts the DynamoDB/S3-compatible server"
        )
    })
}

/// A name no other test in any process uses: `{prefix}-{pid}-{n}-{nanos}`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A fresh DynamoDB table on the test server.
pub async fn dynamo_table() -> Arc<DynamoTable> {
    let config = mediastreams_storage::aws::local_config(&aws_endpoint());
    let table = DynamoTable::from_config(&config, unique("streams"));
    table.ensure_table().await.expect("create test table");
    Arc::new(table)
}

/// A fresh bucket on the test server.
pub async fn s3_store() -> Arc<S3Store> {
    let config = mediastreams_storage::aws::local_config(&aws_endpoint());
    let store = S3Store::from_config(&config, unique("media"), true);
    store.ensure_bucket().await.expect("create test bucket");
    Arc::new(store)
}

/// A scratch directory removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("mediastreams-test-").tempdir().expect("temp dir")
}

/// A fresh embedded table in `dir`.
pub fn embedded_table(dir: &tempfile::TempDir) -> Arc<EmbeddedTable> {
    Arc::new(EmbeddedTable::open(&dir.path().join("table.redb")).expect("open embedded table"))
}

/// A fresh local-directory store in `dir`.
pub fn local_store(dir: &tempfile::TempDir) -> Arc<LocalDirStore> {
    Arc::new(LocalDirStore::open(dir.path().join("media")).expect("open local store"))
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// A binary of the workspace, built next to the test executable
/// (`target/debug/{name}`); `cargo nextest run --workspace` builds it.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/it-xxxx -> target/debug/{name}
    let dir = exe.parent().and_then(|deps| deps.parent()).map(PathBuf::from).unwrap_or_default();
    let path = dir.join(name);
    assert!(path.exists(), "{} is not built; run the tests with scripts/test (cargo nextest run --workspace)", path.display());
    path
}

/// The files under a directory served over HTTP on loopback, as a player
/// reads the media store (the path names the file, a query string is
/// ignored), until dropped. For tests that write a presentation to disk and
/// then let a real player or ffprobe read it by URL.
pub struct FileServer {
    /// `http://127.0.0.1:{port}`, no trailing slash.
    pub base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileServer {
    pub fn start(root: PathBuf) -> FileServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind file server");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let base = format!("http://{}", listener.local_addr().expect("file server address"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("file server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let app = axum::Router::new().fallback(move |uri: http::Uri| {
                    let root = root.clone();
                    async move {
                        let rel = uri.path().trim_start_matches('/');
                        let path = root.join(rel);
                        if rel.split('/').any(|c| c == "..") {
                            return (http::StatusCode::BAD_REQUEST, Vec::new());
                        }
                        match tokio::fs::read(&path).await {
                            Ok(body) => (http::StatusCode::OK, body),
                            Err(_) => (http::StatusCode::NOT_FOUND, Vec::new()),
                        }
                    }
                });
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        FileServer { base, shutdown: Some(tx), thread: Some(thread) }
    }

    /// The URL of `rel` (a path under the root).
    pub fn url(&self, rel: &str) -> String {
        format!("{}/{}", self.base, rel.trim_start_matches('/'))
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
