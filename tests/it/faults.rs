//! Recordings that survive faults (docs/reliability.md): a table that
//! fails while live, concurrent publishers, ingest admitted again while a
//! publisher is connected, and the local runner terminated (SIGTERM) or
//! killed (SIGKILL) mid-publish, then started again on the same data.
//!
//! Every test checks the same invariants: the stream ends `OnDemand`, the
//! recording's video timeline is continuous and decodes, and no fragment
//! or initialization segment, once written, is ever written again with
//! other bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use mediastreams_local::{Backends, StorageChoice};
use mediastreams_storage::table::{Page, Precondition, Record, Table, TableError};
use mediastreams_storage::{Object, ObjectKey, ObjectMeta, ObjectStore, StoreError};
use serde_json::{Value, json};
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::api::harness::Env;
use crate::whip::{
    connect, decoded_frames, lossy_relay, media, publisher, send_media, stop_and_check_recording, udp_host_candidates, video_chunks,
    wait_for_state,
};

/// A table that fails every call while `failing` is set (a throttled or
/// unreachable DynamoDB).
struct FaultyTable {
    inner: Arc<dyn Table>,
    failing: AtomicBool,
    failed: AtomicU64,
    /// Reads of stream records take 40 s (a throttled table).
    slow_streams: AtomicBool,
}

impl FaultyTable {
    fn check(&self) -> Result<(), TableError> {
        if self.failing.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(TableError::Backend(Box::new(std::io::Error::other("injected: the table is unreachable"))));
        }
        Ok(())
    }
}

#[async_trait]
impl Table for FaultyTable {
    async fn get(&self, key: &str) -> Result<Option<Record>, TableError> {
        self.check()?;
        if key.starts_with("stream#") && self.slow_streams.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(40)).await;
        }
        self.inner.get(key).await
    }
    async fn put(&self, record: &Record, precondition: Precondition) -> Result<(), TableError> {
        self.check()?;
        self.inner.put(record, precondition).await
    }
    async fn delete(&self, key: &str, version: u64) -> Result<(), TableError> {
        self.check()?;
        self.inner.delete(key, version).await
    }
    async fn list(&self, collection: &str, after: Option<&str>, limit: usize) -> Result<Page<Record>, TableError> {
        self.check()?;
        self.inner.list(collection, after, limit).await
    }
}

/// Whether a key is a manifest or playlist (rewritten as the recording
/// grows) rather than media (written once).
fn is_manifest(key: &str) -> bool {
    key.ends_with("/Manifest") || key.ends_with(".mpd") || key.ends_with(".m3u8")
}

/// A store that remembers every media object written and records a
/// violation when one is written again with other bytes; its puts fail
/// while `failing` says so (1: unreachable, 2: access denied).
struct WriteOnceStore {
    inner: Arc<dyn ObjectStore>,
    written: Mutex<HashMap<String, Bytes>>,
    rewritten: Mutex<Vec<String>>,
    failing: std::sync::atomic::AtomicU8,
}

const UNREACHABLE: u8 = 1;
const REFUSING: u8 = 2;

#[async_trait]
impl ObjectStore for WriteOnceStore {
    async fn put(&self, key: &ObjectKey, body: Bytes, meta: &ObjectMeta) -> Result<(), StoreError> {
        match self.failing.load(Ordering::SeqCst) {
            UNREACHABLE => return Err(StoreError::Io(std::io::Error::other("injected: the store is unreachable"))),
            REFUSING => return Err(StoreError::Refused("AccessDenied: injected".into())),
            _ => {}
        }
        let k = key.as_str().to_owned();
        if !is_manifest(&k) {
            let mut written = self.written.lock().unwrap();
            if written.get(&k).is_some_and(|b| *b != body) {
                self.rewritten.lock().unwrap().push(k.clone());
            }
            written.insert(k, body.clone());
        }
        self.inner.put(key, body, meta).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Page<String>, StoreError> {
        self.inner.list(prefix, after, limit).await
    }
}

struct FaultEnv {
    env: Env,
    table: Arc<FaultyTable>,
    store: Arc<WriteOnceStore>,
}

async fn fault_env() -> FaultEnv {
    fault_env_with(mediastreams_ingest_node::NodeConfig::default()).await
}

async fn fault_env_with(ingest: mediastreams_ingest_node::NodeConfig) -> FaultEnv {
    let dir = mediastreams_tests::scratch();
    let storage = StorageChoice::Embedded { data_dir: dir.path().to_owned() };
    let real = mediastreams_local::open_backends(&storage).await.unwrap();
    let table = Arc::new(FaultyTable {
        inner: real.table,
        failing: AtomicBool::new(false),
        failed: AtomicU64::new(0),
        slow_streams: AtomicBool::new(false),
    });
    let store =
        Arc::new(WriteOnceStore { inner: real.media, written: Mutex::default(), rewritten: Mutex::default(), failing: Default::default() });
    let backends = Backends { table: table.clone(), media: store.clone() };
    let env = Env::local_with_backends(storage, backends, Some(dir), None, ingest, mediastreams_http::Limits::default()).await;
    FaultEnv { env, table, store }
}

/// Creates a stream with Smooth and DASH outputs and starts ingest:
/// (playback id, DASH URL, WHIP URL, token).
async fn started(env: &Env, name: &str) -> (String, String, String, String) {
    let created = env
        .call("PUT", &format!("/streams/{name}"), Some(json!({"outputs":[{"name":"s","format":"smooth"},{"name":"d","format":"dash"}]})))
        .await
        .json();
    let started = env.call("POST", &format!("/streams/{name}/start-ingest"), None).await.json();
    (
        created["playbackId"].as_str().unwrap().to_owned(),
        created["outputs"][1]["url"].as_str().unwrap().to_owned(),
        started["ingest"]["url"].as_str().unwrap().to_owned(),
        started["ingest"]["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_table_outage_while_live_neither_ends_nor_rewrites_the_recording() {
    let f = fault_env().await;
    let env = &f.env;
    let dir = media();
    let (pid, dash, whip, token) = started(env, "outage").await;
    let http = reqwest::Client::new();
    let mut p = publisher().await;
    let session = connect(&http, &whip, &token, &mut p).await;
    let sending = tokio::spawn(send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 10));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.call("GET", "/streams/outage", None).await.json()["state"], "Live");
    // Four polls and a statistics write fail; so does a publisher's offer,
    // with a clear answer.
    f.table.failing.store(true, Ordering::SeqCst);
    let other = publisher().await;
    let r = http.post(&whip).bearer_auth(&token).header("content-type", "application/sdp").body(other.offer.clone()).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "storage-unavailable");
    tokio::time::sleep(Duration::from_secs(4)).await;
    f.table.failing.store(false, Ordering::SeqCst);
    assert!(f.table.failed.load(Ordering::SeqCst) >= 3, "the node read the table during the outage");
    sending.await.unwrap();
    assert_eq!(*p.state.borrow(), RTCPeerConnectionState::Connected, "the publisher was never disconnected");
    // The publisher leaves and comes back: the presentation continues.
    assert_eq!(http.delete(&session).bearer_auth(&token).send().await.unwrap().status(), 200);
    let _ = p.pc.close().await;
    let mut again = publisher().await;
    connect(&http, &whip, &token, &mut again).await;
    send_media(again.video.clone(), again.audio.clone(), dir.path().to_owned(), 3).await;
    let (total, frames) = stop_and_check_recording(env, "outage", &pid, &dash, 115_000_000, 9).await;
    let _ = again.pc.close().await;
    assert!(f.store.rewritten.lock().unwrap().is_empty(), "media rewritten: {:?}", f.store.rewritten.lock().unwrap());
    eprintln!("a 4 s table outage while live: {:.1} s recorded, {frames} frames decode", total as f64 / 1e7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_outage_past_the_memory_bound_is_spooled_then_written_in_order() {
    let spool = mediastreams_tests::scratch();
    let f = fault_env_with(mediastreams_ingest_node::NodeConfig {
        // A tiny memory bound: the outage's fragments go to the spool.
        upload_memory_bytes: 64 * 1024,
        spool_dir: Some(spool.path().to_owned()),
        ..Default::default()
    })
    .await;
    let env = &f.env;
    let node = env.node.clone().unwrap();
    let dir = media();
    let (pid, dash, whip, token) = started(env, "spooled").await;
    let http = reqwest::Client::new();
    let mut p = publisher().await;
    connect(&http, &whip, &token, &mut p).await;
    let sending = tokio::spawn(send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 12));
    tokio::time::sleep(Duration::from_secs(3)).await;
    f.store.failing.store(UNREACHABLE, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let spooled = node.spooled_bytes();
    assert!(spooled > 64 * 1024, "the outage's objects wait in the spool: {spooled} bytes");
    f.store.failing.store(0, Ordering::SeqCst);
    sending.await.unwrap();
    let (total, frames) = stop_and_check_recording(env, "spooled", &pid, &dash, 100_000_000, 9).await;
    let _ = p.pc.close().await;
    assert_eq!(node.spooled_bytes(), 0, "the spool is empty once written");
    assert!(f.store.rewritten.lock().unwrap().is_empty(), "media rewritten: {:?}", f.store.rewritten.lock().unwrap());
    eprintln!("a 6 s store outage: {spooled} bytes spooled; {:.1} s recorded, {frames} frames decode", total as f64 / 1e7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_that_refuses_writes_ends_the_stream_failed_and_says_why() {
    let f = fault_env().await;
    let env = &f.env;
    let dir = media();
    let (_, _, whip, token) = started(env, "refused").await;
    let http = reqwest::Client::new();
    let mut p = publisher().await;
    connect(&http, &whip, &token, &mut p).await;
    let sending = tokio::spawn(send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 30));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.call("GET", "/streams/refused", None).await.json()["state"], "Live");
    f.store.failing.store(REFUSING, Ordering::SeqCst);
    // Refusals are tried again for 10 s, then the stream fails.
    let after = wait_for_state(env, "refused", "Failed", Duration::from_secs(20)).await.expect("Failed, not a hang");
    let v = env.call("GET", "/streams/refused", None).await.json();
    let failure = v["failure"].as_str().unwrap_or_default().to_owned();
    assert!(failure.contains("refused") && failure.contains("AccessDenied"), "{v}");
    sending.abort();
    let _ = p.pc.close().await;
    // The publisher was let go; a Failed stream can be deleted.
    assert!(node_idle(env, Duration::from_secs(2)).await);
    f.store.failing.store(0, Ordering::SeqCst);
    assert_eq!(env.call("DELETE", "/streams/refused", None).await.status, 204);
    eprintln!("store refusing writes: Failed {:.1} s later: {failure}", after.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_offers_build_exactly_one_peer_connection() {
    let env = Env::local_embedded(None).await;
    let (_, _, whip, token) = started(&env, "race").await;
    let p = publisher().await;
    let http = reqwest::Client::new();
    let posts: Vec<_> = (0..40)
        .map(|_| {
            let (http, whip, token, offer) = (http.clone(), whip.clone(), token.clone(), p.offer.clone());
            tokio::spawn(async move {
                let r = http.post(&whip).bearer_auth(&token).header("content-type", "application/sdp").body(offer).send().await.unwrap();
                let status = r.status().as_u16();
                let body = r.text().await.unwrap();
                (status, body)
            })
        })
        .collect();
    let mut statuses = HashMap::<u16, usize>::new();
    for post in posts {
        let (status, body) = post.await.unwrap();
        *statuses.entry(status).or_default() += 1;
        if status == 409 {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["code"], "publisher-connected", "{body}");
        }
    }
    assert_eq!(statuses.get(&201), Some(&1), "{statuses:?}");
    assert_eq!(statuses.get(&409), Some(&39), "{statuses:?}");
    let node = env.node.as_ref().unwrap();
    assert_eq!(node.counters().sessions_started.load(Ordering::SeqCst), 1, "one PeerConnection was built");
    let _ = p.pc.close().await;
}

/// Waits until the node records no stream.
async fn node_idle(env: &Env, within: Duration) -> bool {
    let began = Instant::now();
    while began.elapsed() < within {
        if env.node.as_ref().unwrap().active_streams() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admitting_a_stream_again_disconnects_the_old_publisher_and_takes_the_new_one() {
    let env = Env::local_embedded(None).await;
    let dir = media();
    let http = reqwest::Client::new();
    // A publisher connects; no media yet, so the stream stays Ready.
    let (_, _, whip, old_token) = started(&env, "again").await;
    let mut old = publisher().await;
    connect(&http, &whip, &old_token, &mut old).await;
    // Stop and start ingest: a new token. The new publisher is taken at
    // once, the old one is dropped.
    assert_eq!(env.call("POST", "/streams/again/stop-ingest", None).await.status, 200, "Ready -> Created");
    let restarted = env.call("POST", "/streams/again/start-ingest", None).await.json();
    let token = restarted["ingest"]["token"].as_str().unwrap().to_owned();
    let mut new = publisher().await;
    connect(&http, &whip, &token, &mut new).await;
    let r =
        http.post(&whip).bearer_auth(&old_token).header("content-type", "application/sdp").body(old.offer.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401, "the old token is refused");
    send_media(new.video.clone(), new.audio.clone(), dir.path().to_owned(), 3).await;
    assert_eq!(env.call("GET", "/streams/again", None).await.json()["state"], "Live");
    assert_eq!(env.call("POST", "/streams/again/stop-ingest", None).await.status, 202);
    wait_for_state(&env, "again", "OnDemand", Duration::from_secs(10)).await.expect("OnDemand");
    let _ = (old.pc.close().await, new.pc.close().await);

    // Stop (Ready -> Created) ends the node's hold on the stream within a
    // second, and a stream deleted and created again under the same name
    // takes a publisher at once.
    let (_, _, whip, token) = started(&env, "renamed").await;
    let mut first = publisher().await;
    connect(&http, &whip, &token, &mut first).await;
    assert_eq!(env.call("POST", "/streams/renamed/stop-ingest", None).await.status, 200);
    // Within the poll second; 3 s allowed for a loaded machine.
    assert!(node_idle(&env, Duration::from_secs(3)).await, "the node let go of the stopped stream");
    assert_eq!(env.call("DELETE", "/streams/renamed", None).await.status, 204);
    let (pid, dash, whip, token) = started(&env, "renamed").await;
    let mut second = publisher().await;
    connect(&http, &whip, &token, &mut second).await;
    send_media(second.video.clone(), second.audio.clone(), dir.path().to_owned(), 3).await;
    stop_and_check_recording(&env, "renamed", &pid, &dash, 25_000_000, 8).await;
    let _ = (first.pc.close().await, second.pc.close().await);
}

/// `mediastreams-local` as a user runs it, on `data_dir`, listening on
/// `port`.
struct LocalRunner {
    child: std::process::Child,
    base: String,
}

impl LocalRunner {
    fn start(data_dir: &Path, port: u16) -> LocalRunner {
        use std::io::BufRead;
        let mut child = std::process::Command::new(mediastreams_tests::workspace_binary("mediastreams-local"))
            .current_dir(mediastreams_tests::workspace_root())
            .args(["--listen", &format!("127.0.0.1:{port}"), "--media-port", "0", "--idle-timeout", "4"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("mediastreams-local starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let base = loop {
            let line = lines.next().expect("mediastreams-local prints its URL").unwrap();
            if let Some(url) = line.strip_prefix("mediastreams-local listening on ") {
                break url.trim().to_owned();
            }
        };
        // Keep draining its stdout.
        std::thread::spawn(move || for _ in lines {});
        LocalRunner { child, base }
    }

    fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; its status.
    fn wait(mut self, within: Duration) -> std::process::ExitStatus {
        let began = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(began.elapsed() < within, "mediastreams-local did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LocalRunner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn api(http: &reqwest::Client, base: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut r = http.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    r.json().await.unwrap_or(Value::Null)
}

async fn state_of(http: &reqwest::Client, base: &str, name: &str) -> String {
    api(http, base, "GET", &format!("/streams/{name}"), None).await["state"].as_str().unwrap_or("").to_owned()
}

async fn wait_for(http: &reqwest::Client, base: &str, name: &str, state: &str, within: Duration) -> bool {
    let began = Instant::now();
    while began.elapsed() < within {
        if state_of(http, base, name).await == state {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The media objects (not manifests) under `root`, by path.
fn media_files(root: &Path) -> HashMap<PathBuf, Vec<u8>> {
    let mut out = HashMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if !is_manifest(&p.to_string_lossy()) {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The start times of the stored video fragments among `files`.
fn video_starts(files: &HashMap<PathBuf, Vec<u8>>) -> Vec<u64> {
    let mut starts: Vec<u64> =
        files.keys().filter_map(|p| p.file_name()?.to_str()?.strip_prefix("Fragments(video=")?.strip_suffix(')')?.parse().ok()).collect();
    starts.sort_unstable();
    starts
}

/// The final manifest's video fragment starts.
fn listed_starts(data: &Path, pid: &str) -> Vec<u64> {
    let xml = std::fs::read_to_string(data.join("media/objects").join(pid).join("smooth.ism/Manifest")).unwrap();
    video_chunks(&xml).into_iter().map(|c| c.0).collect()
}

/// Reads the final Smooth manifest of `pid` from the data directory: its
/// video fragments, checked continuous; the recorded duration.
fn recorded(data: &Path, pid: &str) -> u64 {
    let xml = std::fs::read_to_string(data.join("media/objects").join(pid).join("smooth.ism/Manifest")).unwrap();
    assert!(!xml.contains("IsLive=\"TRUE\""), "the final manifest: {xml}");
    let chunks = video_chunks(&xml);
    for w in chunks.windows(2) {
        assert_eq!(w[0].0 + w[0].1, w[1].0, "continuous: {chunks:?}");
    }
    chunks.last().map(|(t, d)| t + d).unwrap_or(0) - chunks.first().map(|c| c.0).unwrap_or(0)
}

/// A stream on a running `mediastreams-local`, a publisher sending to it.
struct RunnerStream {
    pid: String,
    dash: String,
    whip: String,
    token: String,
    publisher: crate::whip::Publisher,
    sending: tokio::task::JoinHandle<()>,
}

/// Creates stream `name` (Smooth and DASH) on the runner at `base`, starts
/// ingest and publishes the clip in `dir` for `seconds`.
async fn publish_to_runner(http: &reqwest::Client, base: &str, name: &str, dir: &Path, seconds: u64) -> RunnerStream {
    let created = api(
        http,
        base,
        "PUT",
        &format!("/streams/{name}"),
        Some(json!({"outputs":[{"name":"s","format":"smooth"},{"name":"d","format":"dash"}]})),
    )
    .await;
    let pid = created["playbackId"].as_str().unwrap().to_owned();
    let dash = created["outputs"][1]["url"].as_str().unwrap().to_owned();
    let started = api(http, base, "POST", &format!("/streams/{name}/start-ingest"), None).await;
    let (whip, token) = (started["ingest"]["url"].as_str().unwrap().to_owned(), started["ingest"]["token"].as_str().unwrap().to_owned());
    let mut publisher = publisher().await;
    connect(http, &whip, &token, &mut publisher).await;
    let sending = tokio::spawn(send_media(publisher.video.clone(), publisher.audio.clone(), dir.to_owned(), seconds));
    RunnerStream { pid, dash, whip, token, publisher, sending }
}

/// Kills the runner with `signal` and waits for it to exit.
async fn stop_runner(runner: LocalRunner, signal: &str, within: Duration) -> std::process::ExitStatus {
    runner.signal(signal);
    tokio::task::spawn_blocking(move || runner.wait(within)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_of_the_local_runner_finalizes_a_live_recording() {
    let dir = media();
    let data = mediastreams_tests::scratch();
    let port = free_port();
    let runner = LocalRunner::start(data.path(), port);
    let http = reqwest::Client::new();
    let base = runner.base.clone();
    let RunnerStream { pid, dash, publisher: p, sending, .. } = publish_to_runner(&http, &base, "term", dir.path(), 8).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(state_of(&http, &base, "term").await, "Live");
    let status = stop_runner(runner, "TERM", Duration::from_secs(30)).await;
    assert!(status.success(), "a drained exit: {status:?}");
    sending.abort();
    let _ = p.pc.close().await;
    // On demand before it exited: a new run finds it so at once.
    let total = recorded(data.path(), &pid);
    assert!(total >= 40_000_000, "the recording up to SIGTERM: {total}");
    let runner = LocalRunner::start(data.path(), port);
    assert_eq!(state_of(&http, &runner.base, "term").await, "OnDemand");
    let frames = decoded_frames(&dash);
    assert!(frames * 10 >= total * 30 / 10_000_000 * 9, "{frames} frames of {total}");
    eprintln!("SIGTERM after 5 s: {:.1} s recorded, {frames} frames decode", total as f64 / 1e7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_local_runner_continues_the_recording_when_the_publisher_reconnects() {
    let dir = media();
    let data = mediastreams_tests::scratch();
    let port = free_port();
    let runner = LocalRunner::start(data.path(), port);
    let http = reqwest::Client::new();
    let base = runner.base.clone();
    let RunnerStream { pid, dash, whip, token, publisher: p, sending } = publish_to_runner(&http, &base, "kill", dir.path(), 20).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop_runner(runner, "KILL", Duration::from_secs(10)).await;
    sending.abort();
    let _ = p.pc.close().await;
    let before = media_files(&data.path().join("media/objects").join(&pid));
    assert!(!before.is_empty(), "fragments were stored before the kill");

    let runner = LocalRunner::start(data.path(), port);
    assert_eq!(state_of(&http, &runner.base, "kill").await, "Live", "the stream waits for its publisher");
    let mut again = publisher().await;
    connect(&http, &whip, &token, &mut again).await;
    send_media(again.video.clone(), again.audio.clone(), dir.path().to_owned(), 4).await;
    api(&http, &runner.base, "POST", "/streams/kill/stop-ingest", None).await;
    assert!(wait_for(&http, &runner.base, "kill", "OnDemand", Duration::from_secs(15)).await, "OnDemand after stop");
    let _ = again.pc.close().await;
    let after = media_files(&data.path().join("media/objects").join(&pid));
    for (path, bytes) in &before {
        assert!(after.get(path) == Some(bytes), "{} was rewritten or removed", path.display());
    }
    let total = recorded(data.path(), &pid);
    // A kill loses what was not stored yet (the fragment being built and
    // the one held for its successor's times, its `tfrf`); everything
    // stored is listed, and the second session follows it.
    let stored = video_starts(&before);
    let listed = listed_starts(data.path(), &pid);
    assert!(stored.iter().all(|t| listed.contains(t)), "every stored fragment is listed: {stored:?} in {listed:?}");
    assert!(listed.len() > stored.len(), "the second session is recorded after the stored part: {listed:?}");
    assert!(total >= 30_000_000 + stored.len() as u64 * 10_000_000, "both parts recorded: {total}");
    let frames = decoded_frames(&dash);
    assert!(frames * 10 >= total * 30 / 10_000_000 * 8, "{frames} frames of {total}");
    eprintln!(
        "SIGKILL after 6 s, reconnect for 4 s: {:.1} s recorded, {frames} frames decode, {} stored objects untouched",
        total as f64 / 1e7,
        before.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_local_runner_finalizes_the_recording_when_nobody_reconnects() {
    let dir = media();
    let data = mediastreams_tests::scratch();
    let port = free_port();
    let runner = LocalRunner::start(data.path(), port);
    let http = reqwest::Client::new();
    let base = runner.base.clone();
    let RunnerStream { pid, publisher: p, sending, .. } = publish_to_runner(&http, &base, "gone", dir.path(), 20).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop_runner(runner, "KILL", Duration::from_secs(10)).await;
    sending.abort();
    let _ = p.pc.close().await;
    let before = media_files(&data.path().join("media/objects").join(&pid));
    let runner = LocalRunner::start(data.path(), port);
    // The idle timeout (4 s) passes without a publisher.
    assert!(wait_for(&http, &runner.base, "gone", "OnDemand", Duration::from_secs(15)).await, "finalized after the idle timeout");
    let after = media_files(&data.path().join("media/objects").join(&pid));
    let added: Vec<_> = after.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
    assert!(added.is_empty() && before.len() == after.len(), "finalizing wrote manifests only: {added:?}");
    recorded(data.path(), &pid);
    let stored = video_starts(&before);
    assert!(!stored.is_empty());
    assert_eq!(listed_starts(data.path(), &pid), stored, "what was stored before the kill is the recording");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_connections_neither_stop_the_server_nor_stay_open() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = mediastreams_tests::scratch();
    let storage = StorageChoice::Embedded { data_dir: dir.path().to_owned() };
    let backends = mediastreams_local::open_backends(&storage).await.unwrap();
    let limits = mediastreams_http::Limits {
        header_read_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(2),
        max_connections: 4096,
    };
    let env = Env::local_with_backends(storage, backends, Some(dir), None, Default::default(), limits).await;
    let base = env.media_base.trim_end_matches("/media").to_owned();
    let addr = base.trim_start_matches("http://").to_owned();
    // 2,000 clients that start a request and never finish its headers.
    let mut half_open = Vec::new();
    for _ in 0..2000 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /streams HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        half_open.push(c);
    }
    // A stalled body, too.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(b"PUT /streams/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    // A normal request is answered meanwhile.
    let r = reqwest::Client::new().get(format!("{base}/streams")).timeout(Duration::from_secs(10)).send().await.expect("answered");
    assert_eq!(r.status(), 200);
    // The half-open ones are closed by the server (EOF), after the header
    // timeout.
    let mut closed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for c in &mut half_open {
        let mut buf = [0u8; 512];
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(closed, 2000, "every half-open connection was closed");
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "the stalled body gets 408: {answer}");
    assert!(answer.contains("body-timeout"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_percent_audio_loss_keeps_audio_in_place_against_video() {
    use std::sync::atomic::Ordering::Relaxed;
    let env = Env::local_embedded(None).await;
    let dir = media();
    let (pid, dash, whip, token) = started(&env, "lossy-audio").await;
    let http = reqwest::Client::new();
    let mut p = publisher().await;
    let r = http.post(&whip).bearer_auth(&token).header("content-type", "application/sdp").body(p.offer.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let answer = r.text().await.unwrap();
    let (ip, port) = udp_host_candidates(&answer).first().cloned().expect("a host candidate");
    // Every tenth Opus packet (payload type 111) is lost; video passes.
    let (relay, counters) = lossy_relay(format!("{ip}:{port}").parse().unwrap(), 10, u64::MAX, Some(111)).await;
    let answer = answer.replace(&format!(" {ip} {port} typ host"), &format!(" {} {} typ host", relay.ip(), relay.port()));
    p.pc.set_remote_description(webrtc::peer_connection::RTCSessionDescription::answer(answer).unwrap()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), p.connected.recv()).await.expect("connects through the relay").unwrap();
    send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 10).await;
    stop_and_check_recording(&env, "lossy-audio", &pid, &dash, 80_000_000, 9).await;
    let _ = p.pc.close().await;
    let key = ObjectKey::parse(&format!("{pid}/smooth.ism/Manifest")).unwrap();
    let xml = String::from_utf8(env.media.get(&key).await.unwrap().unwrap().body.to_vec()).unwrap();
    let end = |c: &[(u64, u64)]| c.last().map(|(t, d)| t + d).unwrap_or(0);
    let (video, audio) = (crate::recorder::chunks(&xml, "video"), crate::recorder::chunks(&xml, "audio"));
    let (rtp, dropped) = (counters.rtp.load(Relaxed), counters.dropped.load(Relaxed));
    // The recorded audio lasts as long as the audio sent (20 ms per Opus
    // packet, lost ones included): each loss is concealed in place, so
    // nothing after it moves earlier against video. Within one AAC frame
    // (1024 samples at 48 kHz): the last one is padded.
    const AAC_FRAME: i64 = 213_333;
    let recorded = end(&audio) as i64 - audio.first().map_or(0, |c| c.0 as i64);
    let sent = rtp as i64 * 200_000;
    eprintln!(
        "audio loss: {dropped} of {rtp} Opus packets; {:.1} ms of audio recorded for {:.1} ms sent; audio ends {:.1} ms from video",
        recorded as f64 / 1e4,
        sent as f64 / 1e4,
        (end(&audio) as i64 - end(&video) as i64) as f64 / 1e4
    );
    assert!(rtp >= 400 && dropped >= rtp / 11, "the relay dropped {dropped} of {rtp} Opus packets");
    assert!((recorded - sent).abs() <= AAC_FRAME, "{recorded} of audio recorded for {sent} sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_at_capacity_answers_503_with_retry_after() {
    let env = Env::local_embedded_with(None, mediastreams_ingest_node::NodeConfig { capacity: Some(1), ..Default::default() }).await;
    let http = reqwest::Client::new();
    let (_, _, whip_a, token_a) = started(&env, "first").await;
    let (_, _, whip_b, token_b) = started(&env, "second").await;
    let mut a = publisher().await;
    connect(&http, &whip_a, &token_a, &mut a).await;
    let b = publisher().await;
    let r = http.post(&whip_b).bearer_auth(&token_b).header("content-type", "application/sdp").body(b.offer.clone()).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some(), "{:?}", r.headers());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "node-at-capacity", "{v}");
    // Room again once the first stream is stopped (Ready -> Created).
    assert_eq!(env.call("POST", "/streams/first/stop-ingest", None).await.status, 200);
    assert!(node_idle(&env, Duration::from_secs(3)).await);
    let mut b = publisher().await;
    connect(&http, &whip_b, &token_b, &mut b).await;
    let _ = (a.pc.close().await, b.pc.close().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_of_an_ingest_node_finalizes_its_streams_and_deregisters() {
    use mediastreams_storage::{DynamoTable, NodeRegistry, S3Store, StreamRepo};
    let endpoint = mediastreams_tests::aws_endpoint();
    let sdk = mediastreams_storage::aws::local_config(&endpoint);
    let (table_name, bucket) = (mediastreams_tests::unique("drain"), mediastreams_tests::unique("drain-media"));
    let table = DynamoTable::from_config(&sdk, table_name.clone());
    table.ensure_table().await.unwrap();
    let store = S3Store::from_config(&sdk, bucket.clone(), true);
    store.ensure_bucket().await.unwrap();
    let table: Arc<dyn Table> = Arc::new(table);
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(mediastreams_tests::workspace_binary("ingest-node"))
        .args(["--listen", &addr, "--table", &table_name, "--bucket", &bucket, "--endpoint", &endpoint])
        .args(["--whip-base-url", &format!("http://{addr}"), "--node-id", "drained", "--media-ip", "127.0.0.1", "--media-port", "0"])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start ingest-node");
    let registry = NodeRegistry::new(table.clone(), time::Duration::seconds(30));
    let began = Instant::now();
    while !registry.all().await.unwrap().iter().any(|n| n.id == "drained") {
        assert!(began.elapsed() < Duration::from_secs(20), "the node registers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let repo = StreamRepo::new(table.clone());
    let api = mediastreams_functions::Api::new(
        repo.clone(),
        store.clone(),
        mediastreams_functions::ApiConfig { media_base_url: "https://media.example".into(), ingest_base_url: String::new(), api_key: None },
    )
    .with_node_registry(registry.clone());
    let call = |method: &str, path: &str, body: &str| {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_owned()))
            .unwrap();
        let api = &api;
        async move {
            let r = api.handle(req).await;
            serde_json::from_slice::<Value>(r.body()).unwrap_or(Value::Null)
        }
    };
    let created = call("PUT", "/streams/drain", r#"{"outputs":[{"name":"s","format":"smooth"}]}"#).await;
    let pid = created["playbackId"].as_str().unwrap().to_owned();
    let started = call("POST", "/streams/drain/start-ingest", "").await;
    let (whip, token) = (started["ingest"]["url"].as_str().unwrap().to_owned(), started["ingest"]["token"].as_str().unwrap().to_owned());
    assert_eq!(whip, format!("http://{addr}/whip/drain"), "assigned to the one node");
    let dir = media();
    let http = reqwest::Client::new();
    let mut p = publisher().await;
    connect(&http, &whip, &token, &mut p).await;
    let sending = tokio::spawn(send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 10));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(repo.get("drain").await.unwrap().unwrap().stream.state, mediastreams_model::StreamState::Live);
    let ok = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let status = tokio::task::spawn_blocking(move || {
        let began = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if began.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("ingest-node did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    sending.abort();
    let _ = p.pc.close().await;
    assert!(status.success(), "a drained exit: {status:?}");
    assert_eq!(
        repo.get("drain").await.unwrap().unwrap().stream.state,
        mediastreams_model::StreamState::OnDemand,
        "finalized before exiting"
    );
    assert!(!registry.all().await.unwrap().iter().any(|n| n.id == "drained"), "deregistered");
    let key = ObjectKey::parse(&format!("{pid}/smooth.ism/Manifest")).unwrap();
    let xml = String::from_utf8(store.get(&key).await.unwrap().unwrap().body.to_vec()).unwrap();
    assert!(!xml.contains("IsLive=\"TRUE\""), "{xml}");
    let chunks = video_chunks(&xml);
    for w in chunks.windows(2) {
        assert_eq!(w[0].0 + w[0].1, w[1].0, "continuous: {chunks:?}");
    }
    let total = chunks.last().map(|(t, d)| t + d).unwrap_or(0) - chunks.first().map_or(0, |c| c.0);
    assert!(total >= 40_000_000, "the recording up to SIGTERM: {total}");
    eprintln!("ingest-node SIGTERM after 5 s: {:.1} s recorded, node deregistered", total as f64 / 1e7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_table_delays_neither_the_heartbeat_nor_fools_the_reaper() {
    use mediastreams_storage::{NodeRecord, NodeRegistry, StreamRepo};
    let f = fault_env().await;
    let env = &f.env;
    let node = env.node.clone().unwrap();
    let dir = media();
    let (pid, dash, whip, token) = started(env, "slow").await;
    // The stream is assigned to node "n1", which heartbeats every 200 ms.
    env.repo
        .update("slow", |s| {
            let mut next = s.clone();
            if let Some(i) = next.ingest.as_mut() {
                i.node_id = Some("n1".into());
            }
            Ok(Some(next))
        })
        .await
        .unwrap();
    let table: Arc<dyn Table> = f.table.clone();
    let registry = NodeRegistry::new(table.clone(), time::Duration::seconds(30));
    let template = NodeRecord {
        id: "n1".into(),
        whip_base_url: String::new(),
        capacity: 10,
        active_streams: 0,
        heartbeat_at: time::OffsetDateTime::now_utc(),
        internal_url: None,
    };
    let beat = node.heartbeat(registry.clone(), template, Duration::from_millis(200));
    let http = reqwest::Client::new();
    let mut p = publisher().await;
    connect(&http, &whip, &token, &mut p).await;
    let sending = tokio::spawn(send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 6));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Stream reads now take 40 s: the stream task's poll hangs, and so
    // does a publisher of another stream (its record is read).
    f.table.slow_streams.store(true, Ordering::SeqCst);
    let (_, _, other_whip, other_token) = {
        f.table.slow_streams.store(false, Ordering::SeqCst);
        let s = started(env, "slow-other").await;
        f.table.slow_streams.store(true, Ordering::SeqCst);
        s
    };
    let other = publisher().await;
    let pending_post = {
        let (http, offer) = (http.clone(), other.offer.clone());
        tokio::spawn(async move {
            http.post(&other_whip).bearer_auth(&other_token).header("content-type", "application/sdp").body(offer).send().await
        })
    };
    let mut beats = Vec::new();
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = registry.all().await.unwrap().into_iter().find(|n| n.id == "n1").expect("registered");
        beats.push((n.heartbeat_at, n.active_streams));
    }
    let fresh: std::collections::BTreeSet<_> = beats.iter().map(|b| b.0).collect();
    assert!(fresh.len() >= 10, "the heartbeat kept beating while the table was slow: {beats:?}");
    assert!(beats.iter().all(|b| b.1 == 1), "with its load: {beats:?}");
    // The reaper, a little later, sees a healthy node and leaves its
    // stream alone.
    let report = mediastreams_functions::reaper::reap(
        &StreamRepo::new(table.clone()),
        &registry,
        &env.media,
        time::OffsetDateTime::now_utc() + time::Duration::seconds(20),
    )
    .await
    .unwrap();
    assert!(report.finalized.is_empty(), "{report:?}");
    beat.abort();
    pending_post.abort();
    f.table.slow_streams.store(false, Ordering::SeqCst);
    sending.await.unwrap();
    assert_eq!(*p.state.borrow(), RTCPeerConnectionState::Connected, "the publisher stayed connected");
    // Media was packaged throughout: the recording is whole.
    stop_and_check_recording(env, "slow", &pid, &dash, 55_000_000, 9).await;
    let _ = p.pc.close().await;
}

/// A TCP proxy in front of the DynamoDB/S3-compatible server. While
/// `black_hole` is set, every connection open then (or opened then) goes
/// dead: what it sends is swallowed and nothing ever comes back, as with a
/// black-holed route or a server that hangs.
struct FaultProxy {
    endpoint: String,
    black_hole: Arc<AtomicBool>,
}

async fn fault_proxy(upstream: &str) -> FaultProxy {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let black_hole = Arc::new(AtomicBool::new(false));
    let hole = black_hole.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, hole) = (upstream.clone(), hole.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let dead = Arc::new(AtomicBool::new(false));
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let pump = |mut from: tokio::net::tcp::OwnedReadHalf,
                            mut to: tokio::net::tcp::OwnedWriteHalf,
                            hole: Arc<AtomicBool>,
                            dead: Arc<AtomicBool>| async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if hole.load(Ordering::SeqCst) {
                            dead.store(true, Ordering::SeqCst);
                        }
                        if dead.load(Ordering::SeqCst) {
                            continue;
                        }
                        if to.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    // The sender closed: close the other side too.
                    drop(to);
                };
                let a = tokio::spawn(pump(cr, sw, hole.clone(), dead.clone()));
                let _ = pump(sr, cw, hole, dead).await;
                let _ = a.await;
            });
        }
    });
    FaultProxy { endpoint, black_hole }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_and_s3_that_stop_answering_neither_hang_nor_lose_the_recording() {
    let proxy = fault_proxy(&mediastreams_tests::aws_endpoint()).await;
    let storage = StorageChoice::Aws {
        dynamodb_endpoint: Some(proxy.endpoint.clone()),
        table: mediastreams_tests::unique("hole"),
        s3_endpoint: Some(proxy.endpoint.clone()),
        bucket: mediastreams_tests::unique("hole-media"),
    };
    let backends = mediastreams_local::open_backends(&storage).await.unwrap();
    let spool = mediastreams_tests::scratch();
    let ingest = mediastreams_ingest_node::NodeConfig { spool_dir: Some(spool.path().to_owned()), ..Default::default() };
    let env = Env::local_with_backends(storage, backends, None, None, ingest, mediastreams_http::Limits::default()).await;
    let dir = media();
    let (pid, dash, whip, token) = started(&env, "hole").await;
    let http = reqwest::Client::new();
    let mut p = publisher().await;
    connect(&http, &whip, &token, &mut p).await;
    let sending = tokio::spawn(send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 20));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // 12 s of silence from both servers: longer than the SDK's read
    // timeout, so calls in flight must give up and be made again.
    proxy.black_hole.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(12)).await;
    proxy.black_hole.store(false, Ordering::SeqCst);
    sending.await.unwrap();
    assert_eq!(*p.state.borrow(), RTCPeerConnectionState::Connected, "the publisher stayed connected");
    // Stop completes, and every fragment made it.
    assert_eq!(env.call("POST", "/streams/hole/stop-ingest", None).await.status, 202);
    wait_for_state(&env, "hole", "OnDemand", Duration::from_secs(90)).await.expect("OnDemand: nothing hangs");
    let key = ObjectKey::parse(&format!("{pid}/smooth.ism/Manifest")).unwrap();
    let xml = String::from_utf8(env.media.get(&key).await.unwrap().unwrap().body.to_vec()).unwrap();
    let chunks = video_chunks(&xml);
    for w in chunks.windows(2) {
        assert_eq!(w[0].0 + w[0].1, w[1].0, "continuous: {chunks:?}");
    }
    let total = chunks.last().map(|(t, d)| t + d).unwrap_or(0) - chunks.first().map_or(0, |c| c.0);
    assert!(total >= 180_000_000, "the whole 20 s: {total}");
    assert!(decoded_frames(&dash) * 10 >= total * 30 / 10_000_000 * 9, "decodes");
    let _ = p.pc.close().await;
    eprintln!("12 s of silent DynamoDB and S3: {:.1} s recorded", total as f64 / 1e7);
}
