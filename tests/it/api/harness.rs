//! Transports and environments for the API suite.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use mediastreams_functions::{Api, ApiConfig, Operation, route};
use mediastreams_local::{Backends, LocalConfig, StorageChoice, build_service, open_backends, serve};
use mediastreams_storage::{ObjectStore, StreamRepo};
use serde_json::Value;

use super::openapi;

/// One answer of the API.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The problem `code` of an error answer.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Reply;
}

/// Real HTTP to a server on loopback.
pub struct HttpTransport {
    pub client: reqwest::Client,
    pub base: String,
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = req.send().await.expect("HTTP request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.bytes().await.expect("HTTP body");
        Reply { status, headers, body }
    }
}

/// API Gateway (HTTP API, payload 2.0) events into the Lambda handler of
/// the operation API Gateway would route to.
pub struct LambdaTransport {
    pub api: Api,
}

#[async_trait]
impl Transport for LambdaTransport {
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Reply {
        let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut hdrs = serde_json::Map::new();
        for (k, v) in headers {
            hdrs.insert(k.to_ascii_lowercase(), Value::String((*v).to_owned()));
        }
        let (body, b64) = match body {
            None => (Value::Null, false),
            Some(b) => match String::from_utf8(b) {
                Ok(s) => (Value::String(s), false),
                Err(e) => {
                    use base64::Engine;
                    (Value::String(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())), true)
                }
            },
        };
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": raw_path,
            "rawQueryString": query,
            "headers": hdrs,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "api",
                "domainName": "api.example.com",
                "domainPrefix": "api",
                "http": {
                    "method": method,
                    "path": raw_path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "192.0.2.1",
                    "userAgent": "tests"
                },
                "requestId": "req",
                "routeKey": "$default",
                "stage": "$default",
                "time": "24/Nov/2026:12:00:00 +0000",
                "timeEpoch": 1_795_000_000_000u64
            },
            "body": body,
            "isBase64Encoded": b64
        });
        let request = lambda_http::request::from_str(&event.to_string()).expect("API Gateway v2 event");
        // Each operation is its own function; API Gateway picks it by route.
        let op = route(&http::Method::from_bytes(method.as_bytes()).expect("method"), raw_path).ok().map(|r| r.operation);
        let res = mediastreams_functions::lambda::handle(&self.api, op, request).await;
        let (parts, body) = res.into_parts();
        Reply { status: parts.status.as_u16(), headers: parts.headers, body: Bytes::copy_from_slice(body.as_ref()) }
    }
}

/// A running API with direct access to its storage (to act as the ingest
/// node would, and to look at media).
pub struct Env {
    pub transport: Box<dyn Transport>,
    pub repo: StreamRepo,
    pub media: Arc<dyn ObjectStore>,
    pub media_base: String,
    /// The in-process ingest node (local runner environments).
    pub node: Option<Arc<mediastreams_ingest_node::IngestNode>>,
    _dir: Option<tempfile::TempDir>,
    _server: Option<tokio::task::JoinHandle<()>>,
}

fn template(op: Operation) -> &'static str {
    match op {
        Operation::ListStreams => "/streams",
        Operation::CreateStream | Operation::GetStream | Operation::DeleteStream => "/streams/{name}",
        Operation::StartIngest => "/streams/{name}/start-ingest",
        Operation::StopIngest => "/streams/{name}/stop-ingest",
    }
}

impl Env {
    /// Sends a request and checks the answer against openapi.yaml.
    pub async fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Reply {
        let reply = self.transport.send(method, path, headers, body).await;
        let raw_path = path.split('?').next().unwrap_or(path);
        let tmpl = route(&http::Method::from_bytes(method.as_bytes()).unwrap(), raw_path).ok().map(|r| template(r.operation));
        openapi::check(method, tmpl, reply.status, reply.header("content-type"), &reply.body);
        reply
    }

    /// Sends a request with an optional JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        match body {
            Some(b) => self.raw(method, path, &[("content-type", "application/json")], Some(b.to_string().into_bytes())).await,
            None => self.raw(method, path, &[], None).await,
        }
    }

    pub async fn local_embedded(api_key: Option<&str>) -> Env {
        Self::local_embedded_with(api_key, mediastreams_ingest_node::NodeConfig::default()).await
    }

    /// [`Env::local_embedded`] with the in-process ingest node's configuration.
    pub async fn local_embedded_with(api_key: Option<&str>, ingest: mediastreams_ingest_node::NodeConfig) -> Env {
        let dir = mediastreams_tests::scratch();
        let storage = StorageChoice::Embedded { data_dir: dir.path().to_owned() };
        Self::local(storage, Some(dir), api_key, ingest).await
    }

    pub async fn local_aws() -> Env {
        let endpoint = mediastreams_tests::aws_endpoint();
        let storage = StorageChoice::Aws {
            dynamodb_endpoint: Some(endpoint.clone()),
            table: mediastreams_tests::unique("streams"),
            s3_endpoint: Some(endpoint),
            bucket: mediastreams_tests::unique("media"),
        };
        Self::local(storage, None, None, mediastreams_ingest_node::NodeConfig::default()).await
    }

    async fn local(
        storage: StorageChoice,
        dir: Option<tempfile::TempDir>,
        api_key: Option<&str>,
        ingest: mediastreams_ingest_node::NodeConfig,
    ) -> Env {
        let backends: Backends = open_backends(&storage).await.expect("storage");
        Self::local_with_backends(storage, backends, dir, api_key, ingest, mediastreams_http::Limits::default()).await
    }

    /// The local runner over `backends` (wrapped ones: fault injection).
    pub async fn local_with_backends(
        storage: StorageChoice,
        backends: Backends,
        dir: Option<tempfile::TempDir>,
        api_key: Option<&str>,
        ingest: mediastreams_ingest_node::NodeConfig,
        limits: mediastreams_http::Limits,
    ) -> Env {
        // Logs of the server under test, with RUST_LOG.
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = LocalConfig {
            storage: storage.clone(),
            ingest,
            public_url: base.clone(),
            api_key: api_key.map(str::to_owned),
            web_dir: Some(mediastreams_tests::workspace_root().join("web/public")),
            limits,
        };
        let (router, node) = build_service(&backends, &config);
        let server = tokio::spawn(async move {
            serve(listener, router, limits, std::future::pending()).await.unwrap();
        });
        Env {
            transport: Box::new(HttpTransport { client: reqwest::Client::new(), base: base.clone() }),
            repo: StreamRepo::new(backends.table.clone()),
            media: backends.media.clone(),
            media_base: format!("{base}/media"),
            node: Some(node),
            _dir: dir,
            _server: Some(server),
        }
    }

    pub async fn lambda_aws() -> Env {
        let table = mediastreams_tests::dynamo_table().await;
        let media = mediastreams_tests::s3_store().await;
        let media_base = "https://media.example.com".to_owned();
        let repo = StreamRepo::new(table);
        let api = Api::new(
            repo.clone(),
            media.clone(),
            ApiConfig { media_base_url: media_base.clone(), ingest_base_url: "https://ingest.example.com".into(), api_key: None },
        );
        Env { transport: Box::new(LambdaTransport { api }), repo, media, media_base, node: None, _dir: None, _server: None }
    }
}

impl Env {
    /// The API as the Lambda functions run it in a stack the SAM template
    /// created: `scripts/rehearse-deploy` translates the template as `sam
    /// deploy` does and creates the stack in the test server's
    /// CloudFormation; the API then uses the table and bucket that stack
    /// made, with the environment CloudFormation resolved for the functions.
    pub async fn lambda_rehearsed_stack() -> Env {
        let endpoint = mediastreams_tests::aws_endpoint();
        let stack = mediastreams_tests::unique("rehearsal");
        let root = mediastreams_tests::workspace_root();
        let parameters = serde_json::json!({
            "IngestImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ingest:rehearsal",
            "IngestBaseUrl": "https://ingest.example.com",
        });
        let args = [endpoint.clone(), stack, parameters.to_string()];
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(root.join("scripts/rehearse-deploy")).current_dir(&root).args(args).output()
        })
        .await
        .expect("rehearse-deploy task")
        .expect("run scripts/rehearse-deploy");
        assert!(out.status.success(), "rehearse-deploy: {}", String::from_utf8_lossy(&out.stderr));
        let report: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("report ({e}): {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(report["status"], "CREATE_COMPLETE", "{report}");
        let functions = report["functions"].as_object().expect("functions");
        assert_eq!(functions.len(), 7, "every function is in the stack: {report}");
        let env = &functions["create-stream"];
        for (name, e) in functions {
            assert_eq!(e, env, "{name} runs with the same environment as create-stream");
        }
        let var = |k: &str| env[k].as_str().unwrap_or_else(|| panic!("{k} is not in the functions' environment: {report}")).to_owned();
        let sdk = mediastreams_storage::aws::local_config(&endpoint);
        let table = Arc::new(mediastreams_storage::DynamoTable::from_config(&sdk, var("TABLE_NAME")));
        let media = Arc::new(mediastreams_storage::S3Store::from_config(&sdk, var("MEDIA_BUCKET"), true));
        let media_base = var("MEDIA_BASE_URL");
        let repo = StreamRepo::new(table);
        let api = Api::new(
            repo.clone(),
            media.clone(),
            ApiConfig { media_base_url: media_base.clone(), ingest_base_url: var("INGEST_BASE_URL"), api_key: None },
        );
        Env { transport: Box::new(LambdaTransport { api }), repo, media, media_base, node: None, _dir: None, _server: None }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self._server.take() {
            s.abort();
        }
    }
}
