//! The API handlers on the embedded table (`redb`), in process: requests
//! per second and latency percentiles of each operation, 8 requests in
//! flight on a 2-thread runtime, as the local runner serves them (without
//! the HTTP layer, which `mediastreams-http` adds). Each stream goes
//! through create, get, start-ingest, stop-ingest (`Ready -> Created`) and
//! delete; list reads pages of 50 from a table of that many streams.
//!
//!   cargo bench -p mediastreams-functions --bench api

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mediastreams_functions::{Api, ApiConfig};
use mediastreams_storage::{EmbeddedTable, LocalDirStore, StreamRepo};

const STREAMS: usize = 2_000;
const IN_FLIGHT: usize = 8;

fn request(method: &str, path: &str, body: &str) -> http::Request<Bytes> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Bytes::copy_from_slice(body.as_bytes()))
        .expect("a valid request")
}

/// Runs `make(i)` for i in 0..n, `IN_FLIGHT` at a time; every answer must
/// have `status`. Prints requests per second and latency percentiles.
async fn measure(api: &Api, what: &str, n: usize, status: u16, make: impl Fn(usize) -> http::Request<Bytes> + Send + Sync + 'static) {
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (api, next, make, what) = (api.clone(), next.clone(), make.clone(), what.to_owned());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let req = make(i);
                let t = Instant::now();
                let res = api.handle(req).await;
                latencies.push(t.elapsed());
                assert_eq!(res.status().as_u16(), status, "{what} {i}: {:?}", res.body());
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for w in workers {
        latencies.extend(w.await.expect("a worker"));
    }
    let wall = started.elapsed();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!(
        "{what:<28} {:>8.0} requests/s   p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms",
        n as f64 / wall.as_secs_f64(),
        p(0.50).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        p(1.0).as_secs_f64() * 1e3
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("api-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let table = Arc::new(EmbeddedTable::open(&dir.join("table.redb")).expect("the table"));
        let media = Arc::new(LocalDirStore::open(dir.join("media")).expect("the media directory"));
        let api = Api::new(
            StreamRepo::new(table),
            media,
            ApiConfig { media_base_url: "http://127.0.0.1/media".into(), ingest_base_url: "http://127.0.0.1".into(), api_key: None },
        );
        println!("API handlers on the embedded table, {STREAMS} streams, {IN_FLIGHT} in flight, 2 threads:");
        let body = r#"{"outputs":[{"name":"smooth","format":"smooth"},{"name":"web","format":"dash"}]}"#;
        measure(&api, "PUT /streams/{name}", STREAMS, 201, |i| request("PUT", &format!("/streams/s{i}"), body)).await;
        measure(&api, "GET /streams/{name}", STREAMS, 200, |i| request("GET", &format!("/streams/s{i}"), "")).await;
        measure(&api, "GET /streams?limit=50", 200, 200, |_| request("GET", "/streams?limit=50", "")).await;
        measure(&api, "POST .../start-ingest", STREAMS, 200, |i| request("POST", &format!("/streams/s{i}/start-ingest"), "")).await;
        measure(&api, "POST .../stop-ingest", STREAMS, 200, |i| request("POST", &format!("/streams/s{i}/stop-ingest"), "")).await;
        measure(&api, "DELETE /streams/{name}", STREAMS, 204, |i| request("DELETE", &format!("/streams/s{i}"), "")).await;
        let _ = std::fs::remove_dir_all(&dir);
    });
}
