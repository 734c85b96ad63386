//! Node registration, heartbeats, assignment and expiry, on the embedded
//! table and on DynamoDB (moto).

use std::sync::Arc;

use mediastreams_storage::{NodeRecord, NodeRegistry, Table};
use time::{Duration, OffsetDateTime};

fn node(id: &str, active: u32, capacity: u32, at: OffsetDateTime) -> NodeRecord {
    NodeRecord { id: id.into(), whip_base_url: format!("https://{id}.example"), capacity, active_streams: active, heartbeat_at: at }
}

async fn assignment_prefers_healthy_nodes_with_room(table: Arc<dyn Table>) {
    let reg = NodeRegistry::new(table, Duration::seconds(30));
    let now = OffsetDateTime::now_utc();
    assert_eq!(reg.pick(now).await.unwrap(), None, "no nodes, no assignment");
    reg.heartbeat(&node("a", 5, 10, now)).await.unwrap();
    reg.heartbeat(&node("b", 2, 10, now)).await.unwrap();
    reg.heartbeat(&node("c", 0, 10, now - Duration::seconds(60))).await.unwrap();
    reg.heartbeat(&node("d", 4, 4, now)).await.unwrap();
    assert_eq!(reg.pick(now).await.unwrap().unwrap().id, "b", "least loaded healthy node with room");
    // Heartbeats update the load.
    reg.heartbeat(&node("b", 9, 10, now)).await.unwrap();
    assert_eq!(reg.pick(now).await.unwrap().unwrap().id, "a");
    let expired: Vec<String> = reg.expired(now).await.unwrap().into_iter().map(|n| n.id).collect();
    assert_eq!(expired, ["c"], "a node that stopped heartbeating is expired and never picked");
    // A dead node that comes back is healthy again.
    reg.heartbeat(&node("c", 0, 10, now)).await.unwrap();
    assert_eq!(reg.pick(now).await.unwrap().unwrap().id, "c");
    reg.deregister("c").await.unwrap();
    reg.deregister("c").await.unwrap();
    assert_eq!(reg.all().await.unwrap().len(), 3);
    // Everyone full: nothing to assign.
    for id in ["a", "b", "d"] {
        reg.heartbeat(&node(id, 10, 10, now)).await.unwrap();
    }
    assert_eq!(reg.pick(now).await.unwrap(), None);
}

async fn concurrent_heartbeats_never_lose_the_record(table: Arc<dyn Table>) {
    let reg = NodeRegistry::new(table, Duration::seconds(30));
    let now = OffsetDateTime::now_utc();
    let tasks: Vec<_> = (0..10u32)
        .map(|i| {
            let reg = reg.clone();
            tokio::spawn(async move { reg.heartbeat(&node("n", i, 10, now)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let all = reg.all().await.unwrap();
    assert_eq!(all.len(), 1);
}

#[tokio::test]
async fn embedded_assignment() {
    let dir = mediastreams_tests::scratch();
    assignment_prefers_healthy_nodes_with_room(mediastreams_tests::embedded_table(&dir)).await;
}

#[tokio::test]
async fn dynamodb_assignment() {
    assignment_prefers_healthy_nodes_with_room(mediastreams_tests::dynamo_table().await).await;
}

#[tokio::test]
async fn embedded_concurrent_heartbeats() {
    let dir = mediastreams_tests::scratch();
    concurrent_heartbeats_never_lose_the_record(mediastreams_tests::embedded_table(&dir)).await;
}

#[tokio::test]
async fn dynamodb_concurrent_heartbeats() {
    concurrent_heartbeats_never_lose_the_record(mediastreams_tests::dynamo_table().await).await;
}

async fn call(api: &mediastreams_functions::Api, method: &str, path: &str) -> (u16, serde_json::Value) {
    let req = http::Request::builder().method(method).uri(path).body(bytes::Bytes::new()).unwrap();
    let res = api.handle(req).await;
    let status = res.status().as_u16();
    let body = res.into_body();
    (status, if body.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&body).unwrap() })
}

#[tokio::test]
async fn start_ingest_assigns_the_least_loaded_node() {
    let table = mediastreams_tests::dynamo_table().await;
    let media = mediastreams_tests::s3_store().await;
    let registry = NodeRegistry::new(table.clone(), Duration::seconds(30));
    let api = mediastreams_functions::Api::new(
        mediastreams_storage::StreamRepo::new(table.clone()),
        media,
        mediastreams_functions::ApiConfig { media_base_url: "https://media.example".into(), ingest_base_url: String::new(), api_key: None },
    )
    .with_node_registry(registry.clone());
    assert_eq!(call(&api, "PUT", "/streams/s1").await.0, 201);
    let (status, body) = call(&api, "POST", "/streams/s1/start-ingest").await;
    assert_eq!((status, body["code"].as_str()), (503, Some("no-ingest-capacity")), "no node: a clear, retryable error");
    assert_eq!(call(&api, "GET", "/streams/s1").await.1["state"], "Created", "nothing changed");
    let now = OffsetDateTime::now_utc();
    registry.heartbeat(&node("busy", 8, 10, now)).await.unwrap();
    registry.heartbeat(&node("idle", 1, 10, now)).await.unwrap();
    let (status, body) = call(&api, "POST", "/streams/s1/start-ingest").await;
    assert_eq!(status, 200);
    assert_eq!(body["ingest"]["url"], "https://idle.example/whip/s1");
    let stored = mediastreams_storage::StreamRepo::new(table).get("s1").await.unwrap().unwrap();
    assert_eq!(stored.stream.ingest.unwrap().node_id.as_deref(), Some("idle"), "the assignment is recorded");
}

/// The standalone ingest node registers itself with a heartbeat and serves
/// its WHIP endpoint and health check.
#[tokio::test]
async fn the_ingest_node_binary_registers_and_serves_whip() {
    let endpoint = mediastreams_tests::aws_endpoint();
    let table = mediastreams_tests::dynamo_table().await;
    let bucket = mediastreams_tests::unique("media");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    // The table fixture made the table; its name is private to it, so
    // register under a known table instead.
    let table_name = mediastreams_tests::unique("nodes");
    let sdk = mediastreams_storage::aws::local_config(&endpoint);
    let t = mediastreams_storage::DynamoTable::from_config(&sdk, table_name.clone());
    t.ensure_table().await.unwrap();
    let _ = table;
    let mut child = std::process::Command::new(mediastreams_tests::workspace_binary("ingest-node"))
        .args(["--listen", &addr.to_string(), "--table", &table_name, "--bucket", &bucket, "--endpoint", &endpoint])
        .args(["--whip-base-url", &format!("http://{addr}"), "--node-id", "node-1", "--media-ip", "127.0.0.1", "--media-port", "0"])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start ingest-node");
    let registry = NodeRegistry::new(Arc::new(t), Duration::seconds(30));
    let mut registered = None;
    for _ in 0..100 {
        if let Some(n) = registry.all().await.unwrap().into_iter().find(|n| n.id == "node-1") {
            registered = Some(n);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let health = reqwest::get(format!("http://{addr}/healthz")).await.map(|r| r.status().as_u16());
    let whip = reqwest::Client::new().post(format!("http://{addr}/whip/nope")).body("v=0").send().await.map(|r| r.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();
    let n = registered.expect("the node registered itself");
    assert_eq!(n.whip_base_url, format!("http://{addr}"));
    assert_eq!(n.active_streams, 0);
    assert_eq!(health.unwrap(), 200);
    assert_eq!(whip.unwrap(), 401, "the WHIP endpoint answers (no token)");
}
