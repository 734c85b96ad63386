//! Node registration, heartbeats, assignment and expiry, on the embedded
//! table and on DynamoDB (moto).

use std::sync::Arc;

use mediastreams_storage::{NodeRecord, NodeRegistry, Table};
use time::{Duration, OffsetDateTime};

fn node(id: &str, active: u32, capacity: u32, at: OffsetDateTime) -> NodeRecord {
    NodeRecord {
        id: id.into(),
        whip_base_url: format!("https://{id}.example"),
        capacity,
        active_streams: active,
        heartbeat_at: at,
        internal_url: None,
    }
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
    // Port 0: the node binds a free port itself and, without
    // --whip-base-url, registers `http://{bound address}`; the test learns
    // the address from the registry, as the API does.
    let mut child = std::process::Command::new(mediastreams_tests::workspace_binary("ingest-node"))
        .args(["--listen", "127.0.0.1:0", "--table", table.table_name(), "--bucket", &bucket, "--endpoint", &endpoint])
        .args(["--node-id", "node-1", "--media-ip", "127.0.0.1", "--media-port", "0"])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start ingest-node");
    let registry = NodeRegistry::new(table.clone(), Duration::seconds(30));
    let mut registered = None;
    for _ in 0..100 {
        if let Some(n) = registry.all().await.unwrap().into_iter().find(|n| n.id == "node-1") {
            registered = Some(n);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let base = registered.as_ref().map(|n| n.whip_base_url.clone()).unwrap_or_default();
    let health = reqwest::get(format!("{base}/healthz")).await.map(|r| r.status().as_u16());
    let whip = reqwest::Client::new().post(format!("{base}/whip/nope")).body("v=0").send().await.map(|r| r.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();
    let n = registered.expect("the node registered itself");
    assert!(n.whip_base_url.starts_with("http://127.0.0.1:") && !n.whip_base_url.ends_with(":0"), "{}", n.whip_base_url);
    assert_eq!(n.active_streams, 0);
    assert_eq!(health.unwrap(), 200);
    assert_eq!(whip.unwrap(), 401, "the WHIP endpoint answers (no token)");
}

/// A node dies while recording: its heartbeat stops, and the reaper
/// finalizes its stream as on demand from what the store holds; a stream
/// on a healthy node is left alone.
async fn a_dead_nodes_stream_becomes_on_demand(
    table: Arc<dyn Table>,
    media: Arc<dyn mediastreams_storage::ObjectStore>,
    media_root: Option<std::path::PathBuf>,
) {
    use mediastreams_model::Transition;
    use mediastreams_packager::{AudioTrackConfig, Presentation, PresentationConfig, VideoTrackConfig};
    use mediastreams_storage::{ObjectKey, ObjectMeta, StreamRepo};
    use mediastreams_tests::media::{ClipSample, encode_test_clip};

    let repo = StreamRepo::new(table.clone());
    let registry = NodeRegistry::new(table.clone(), Duration::seconds(30));
    let api = mediastreams_functions::Api::new(
        repo.clone(),
        media.clone(),
        mediastreams_functions::ApiConfig { media_base_url: "https://media.example".into(), ingest_base_url: String::new(), api_key: None },
    )
    .with_node_registry(registry.clone());
    let now = OffsetDateTime::now_utc();
    let orphan = mediastreams_tests::unique("orphan");
    let kept = mediastreams_tests::unique("kept");
    // The doomed node is the least loaded: it gets the first stream.
    registry.heartbeat(&node("doomed", 0, 10, now)).await.unwrap();
    registry.heartbeat(&node("alive", 5, 10, now)).await.unwrap();
    let req = |method: &str, path: String, body: &str| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(bytes::Bytes::from(body.to_owned()))
            .unwrap()
    };
    let outputs = r#"{"outputs":[{"name":"s","format":"smooth"},{"name":"d","format":"dash"},{"name":"h","format":"hls"}]}"#;
    assert_eq!(api.handle(req("PUT", format!("/streams/{orphan}"), outputs)).await.status(), 201);
    assert_eq!(api.handle(req("POST", format!("/streams/{orphan}/start-ingest"), "")).await.status(), 200);
    registry.heartbeat(&node("doomed", 9, 10, now)).await.unwrap();
    assert_eq!(api.handle(req("PUT", format!("/streams/{kept}"), outputs)).await.status(), 201);
    assert_eq!(api.handle(req("POST", format!("/streams/{kept}/start-ingest"), "")).await.status(), 200);
    for name in [&orphan, &kept] {
        repo.transition(name, Transition::MediaArrived, now, None).await.unwrap();
    }
    let s = repo.get(&orphan).await.unwrap().unwrap().stream;
    assert_eq!(s.ingest.as_ref().unwrap().node_id.as_deref(), Some("doomed"));
    assert_eq!(repo.get(&kept).await.unwrap().unwrap().stream.ingest.unwrap().node_id.as_deref(), Some("alive"));

    // The doomed node recorded 12 s of real media, then died: its
    // packager never finished.
    let dir = mediastreams_tests::scratch();
    let clip = encode_test_clip(dir.path(), 4, 60);
    let mut p = Presentation::new(
        PresentationConfig { fragment_duration: 20_000_000, dvr_window: 60_000_000, dash: true, hls: true, availability_start_unix_ms: 0 },
        VideoTrackConfig { bitrate: 1_500_000, sps: clip.sps.clone(), pps: clip.pps.clone() },
        AudioTrackConfig { codec: mediastreams_packager::AudioCodec::Aac, bitrate: 128_000, sample_rate: 48_000, channels: 2 },
    )
    .unwrap();
    let pid = s.playback_id.to_string();
    for sample in clip.samples(3, 0) {
        let out = match sample {
            ClipSample::Video(v) => p.push_video(v).unwrap(),
            ClipSample::Audio(a) => p.push_audio(a).unwrap(),
        };
        for o in out.objects {
            let key = ObjectKey::parse(&format!("{pid}/{}", o.key)).unwrap();
            media.put(&key, o.body, &ObjectMeta::new(o.content_type, Some(o.cache_control))).await.unwrap();
        }
    }
    let (video, audio) = (p.published().0.to_vec(), p.published().1.to_vec());
    assert!(video.len() >= 4, "{video:?}");
    // Its heartbeat stops; the other node keeps beating.
    let later = now + Duration::seconds(45);
    registry.heartbeat(&node("alive", 5, 10, later)).await.unwrap();

    let report = mediastreams_functions::reaper::reap(&repo, &registry, &media, later).await.unwrap();
    assert_eq!(report.finalized, vec![orphan.clone()], "{report:?}");
    let s = repo.get(&orphan).await.unwrap().unwrap().stream;
    assert_eq!(s.state, mediastreams_model::StreamState::OnDemand);
    assert!(s.live.as_ref().and_then(|l| l.ended_at).is_some(), "the recording has an end");
    assert_eq!(
        repo.get(&kept).await.unwrap().unwrap().stream.state,
        mediastreams_model::StreamState::Live,
        "a healthy node's stream is left alone"
    );

    // The final manifests list every fragment the node wrote, exactly.
    let get = |k: &str| {
        let media = media.clone();
        let key = ObjectKey::parse(&format!("{pid}/{k}")).unwrap();
        async move { String::from_utf8(media.get(&key).await.unwrap().expect("the object exists").body.to_vec()).unwrap() }
    };
    let smooth = get("smooth.ism/Manifest").await;
    assert!(!smooth.contains("IsLive") && smooth.contains("Duration=\""), "{smooth}");
    let doc = roxmltree::Document::parse(&smooth).unwrap();
    let listed = |kind: &str| -> Vec<(u64, u64)> {
        doc.descendants()
            .filter(|n| n.has_tag_name("StreamIndex") && n.attribute("Type") == Some(kind))
            .flat_map(|si| si.children().filter(|c| c.has_tag_name("c")).collect::<Vec<_>>())
            .map(|c| (c.attribute("t").unwrap().parse().unwrap(), c.attribute("d").unwrap().parse().unwrap()))
            .collect()
    };
    assert_eq!(listed("video"), video.iter().map(|c| (c.start, c.duration)).collect::<Vec<_>>());
    assert_eq!(listed("audio"), audio.iter().map(|c| (c.start, c.duration)).collect::<Vec<_>>());
    assert!(get("dash/manifest.mpd").await.contains("type=\"static\""));
    assert!(get("hls/video-1500000.m3u8").await.ends_with("#EXT-X-ENDLIST\n"));
    if let Some(root) = media_root {
        // ffprobe reads the recovered DASH presentation: every fragment's frames.
        let server = mediastreams_tests::FileServer::start(root.join("objects"));
        let out = mediastreams_tests::media::tool("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(server.url(&format!("{pid}/dash/manifest.mpd")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // One line per listing of the stream (under its program too).
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let frames: u64 =
            text.lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).max().unwrap_or_else(|| panic!("{text}"));
        let expected = video.iter().map(|c| c.duration).sum::<u64>() * 30 / 10_000_000;
        assert_eq!(frames, expected, "every published frame decodes");
    }
    // A second pass finds nothing to do.
    let again = mediastreams_functions::reaper::reap(&repo, &registry, &media, later).await.unwrap();
    assert!(again.finalized.is_empty() && again.skipped.is_empty(), "{again:?}");
}

#[tokio::test]
async fn embedded_dead_node_failover() {
    let dir = mediastreams_tests::scratch();
    let media = mediastreams_tests::local_store(&dir);
    a_dead_nodes_stream_becomes_on_demand(mediastreams_tests::embedded_table(&dir), media, Some(dir.path().join("media"))).await;
}

#[tokio::test]
async fn dynamodb_and_s3_dead_node_failover() {
    a_dead_nodes_stream_becomes_on_demand(mediastreams_tests::dynamo_table().await, mediastreams_tests::s3_store().await, None).await;
}
