//! The upload path's store writes, measured: objects per second, MB/s and
//! put latency against the S3-compatible test server (moto, as CI runs it)
//! and the local directory store. Each stream writes its objects one at a
//! time, in order, as the ingest node's uploader does; streams write side
//! by side. One fragment period of a stream is a 2 s video fragment at 2.5
//! Mbit/s (625 KB), an audio fragment at 64 kb/s (16 KB) and the live
//! manifest rewritten after each (3 KB).
//!
//!   cargo bench -p mediastreams-storage --bench upload
//!
//! It starts `.tools/venv/bin/moto_server` (scripts/install-test-deps) on a
//! free port, or uses `MEDIASTREAMS_TEST_AWS_ENDPOINT` when set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mediastreams_storage::{LocalDirStore, ObjectKey, ObjectMeta, ObjectStore, S3Store};

const PERIODS: usize = 10;

fn objects(stream: usize, period: usize) -> Vec<(String, Bytes, &'static str)> {
    let t = period * 20_000_000;
    let p = format!("s{stream}/smooth.ism");
    vec![
        (format!("{p}/QualityLevels(2500000)/Fragments(video={t})"), Bytes::from(vec![0x5au8; 625_000]), "video/mp4"),
        (format!("{p}/Manifest"), Bytes::from(vec![b'<'; 3_000]), "application/vnd.ms-sstr+xml"),
        (format!("{p}/QualityLevels(64000)/Fragments(audio={t})"), Bytes::from(vec![0x21u8; 16_000]), "audio/mp4"),
        (format!("{p}/Manifest"), Bytes::from(vec![b'<'; 3_000]), "application/vnd.ms-sstr+xml"),
    ]
}

async fn run(store: Arc<dyn ObjectStore>, what: &str, streams: usize) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..streams {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut bytes) = (Vec::new(), 0usize);
            for period in 0..PERIODS {
                for (key, body, content_type) in objects(s, period) {
                    bytes += body.len();
                    let key = ObjectKey::parse(&key).expect("a valid key");
                    let t = Instant::now();
                    store.put(&key, body, &ObjectMeta::new(content_type, None)).await.expect("stored");
                    latencies.push(t.elapsed());
                }
            }
            (latencies, bytes)
        }));
    }
    let (mut latencies, mut bytes): (Vec<Duration>, usize) = (Vec::new(), 0);
    for t in tasks {
        let (l, b) = t.await.expect("a stream");
        latencies.extend(l);
        bytes += b;
    }
    let wall = started.elapsed().as_secs_f64();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1].as_secs_f64() * 1e3;
    println!(
        "{what:<22} {streams:>3} streams: {:>7.0} objects/s {:>7.1} MB/s   put p50 {:>7.2} ms   p99 {:>7.2} ms",
        latencies.len() as f64 / wall,
        bytes as f64 / 1e6 / wall,
        p(0.5),
        p(0.99)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let mut moto = None;
    let endpoint = match std::env::var("MEDIASTREAMS_TEST_AWS_ENDPOINT") {
        Ok(e) => Some(e),
        Err(_) => {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let port = free_port();
            match std::process::Command::new(root.join(".tools/venv/bin/moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
            {
                Ok(child) => {
                    moto = Some(child);
                    Some(format!("http://127.0.0.1:{port}"))
                }
                Err(e) => {
                    println!("no S3-compatible server (moto_server: {e}; run scripts/install-test-deps): S3 not measured");
                    None
                }
            }
        }
    };
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("upload-bench-{}", std::process::id()));
        let local: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::open(dir.clone()).expect("a directory"));
        for streams in [1, 8, 40] {
            run(local.clone(), "local directory", streams).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
        if let Some(endpoint) = endpoint {
            let config = mediastreams_storage::aws::local_config(&endpoint);
            let s3 = S3Store::from_config(&config, "upload-bench", true);
            // The server may still be starting.
            let mut ready = false;
            for _ in 0..100 {
                if s3.ensure_bucket().await.is_ok() {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(ready, "the S3-compatible server at {endpoint} did not answer");
            let s3: Arc<dyn ObjectStore> = Arc::new(s3);
            for streams in [1, 8, 40] {
                run(s3.clone(), "S3 (moto)", streams).await;
            }
        }
    });
    if let Some(mut m) = moto {
        let _ = m.kill();
    }
}
