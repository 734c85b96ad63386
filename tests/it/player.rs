//! dash.js and hls.js (from npm) in headless Debian Chromium play what the packager
//! writes, served the way players read it (the media route of
//! `mediastreams-local`, like S3 behind CloudFront): the Smooth Streaming,
//! DASH and HLS on-demand outputs to the end, and a simulated live Smooth
//! stream, published in real time, followed without error.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediastreams_packager::{AudioTrackConfig, Presentation, PublishedObject, VideoTrackConfig};
use mediastreams_storage::{ObjectKey, ObjectMeta, ObjectStore};
use mediastreams_tests::media::{
    ClipSample, TestClip, all_outputs_config, encode_opus_test_clip, encode_sized_test_clip, encode_test_clip, package_levels,
};
use serde_json::{Value, json};

use crate::api::harness::Env;

fn presentation(clip: &TestClip) -> Presentation {
    Presentation::new(
        all_outputs_config(unix_ms()),
        VideoTrackConfig { bitrate: 500_000, sps: clip.sps.clone(), pps: clip.pps.clone() },
        AudioTrackConfig { codec: mediastreams_packager::AudioCodec::Aac, bitrate: 128_000, sample_rate: 48_000, channels: 2 },
    )
    .unwrap()
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn store_all(media: &Arc<dyn ObjectStore>, pid: &str, objects: Vec<PublishedObject>) {
    for o in objects {
        let key = ObjectKey::parse(&format!("{pid}/{}", o.key)).unwrap();
        media.put(&key, o.body, &ObjectMeta::new(o.content_type, Some(o.cache_control))).await.unwrap();
    }
}

/// Runs web/tests/play.mjs and returns its report.
pub(crate) fn play(origin: &str, url: &str, mode: &str, seconds: u32, screenshot: &str) -> Value {
    play_with("dashjs", origin, url, mode, seconds, screenshot)
}

pub(crate) fn play_with(player: &str, origin: &str, url: &str, mode: &str, seconds: u32, screenshot: &str) -> Value {
    play_args(player, origin, url, mode, seconds, screenshot, &[])
}

pub(crate) fn play_args(player: &str, origin: &str, url: &str, mode: &str, seconds: u32, screenshot: &str, extra: &[&str]) -> Value {
    let root = mediastreams_tests::workspace_root();
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = Command::new("node")
        .current_dir(root.join("web"))
        .arg("tests/play.mjs")
        .args(["--origin", origin, "--url", url, "--mode", mode, "--seconds", &seconds.to_string(), "--player", player])
        .args(extra)
        .arg("--screenshot")
        .arg(artifacts.join(screenshot))
        .output()
        .expect("node is required (scripts/install-test-deps)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "play.mjs failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("report ({e}): {stdout}"));
    if !extra.contains(&"--stock") {
        // No player request leaves our origin (dash.js's default time
        // server included).
        assert_eq!(report["foreignRequests"], json!([]), "{player} asked another origin: {report}");
        if player == "dashjs" && mode == "live" {
            // Its clock came from our origin's /time (the MPD's first
            // UTCTiming, the player page's source for Smooth), not from
            // the fallback, a manifest's Date, which is only to the second.
            let times = report["timeRequests"].as_array().cloned().unwrap_or_default();
            assert!(!times.is_empty() && times.iter().all(|s| s == 200), "dash.js read /time: {times:?} {report}");
        }
    }
    report
}

async fn stream(env: &Env, name: &str) -> Value {
    let r = env
        .call(
            "PUT",
            &format!("/streams/{name}"),
            Some(json!({"outputs":[{"name":"s","format":"smooth"},{"name":"d","format":"dash"},{"name":"h","format":"hls"}]})),
        )
        .await;
    assert_eq!(r.status, 201);
    r.json()
}

fn origin(env: &Env) -> String {
    env.media_base.trim_end_matches("/media").to_owned()
}

fn assert_played_to_the_end(report: &Value, expected_duration: f64, what: &str) {
    assert_eq!(report["errors"], json!([]), "{what}: player errors: {report}");
    let samples = report["samples"].as_array().unwrap();
    let last = samples.last().unwrap();
    let duration = last["duration"].as_f64().unwrap();
    assert!((duration - expected_duration).abs() < 0.1, "{what}: duration {duration}, expected {expected_duration}");
    // Playback reaches the end: the media element's `ended`, or dash.js's
    // own end with the playhead there (see play.mjs: dash.js 5.2 can end a
    // recording a few milliseconds before the element does).
    assert_eq!(last["atEnd"], true, "{what}: played to the end: {report}");
    assert!((last["t"].as_f64().unwrap_or(0.0) - expected_duration).abs() < 0.1, "{what}: ended at the end: {report}");
    // The position advanced at playback speed: sampled once a second.
    let moving = samples.windows(2).filter(|w| w[1]["t"].as_f64() > w[0]["t"].as_f64()).count();
    assert!(moving as f64 >= expected_duration - 2.0, "{what}: advanced in only {moving} samples");
    assert_eq!((last["width"].as_u64(), last["height"].as_u64()), (Some(320), Some(240)), "{what}");
    assert!(samples.iter().any(|s| s["colours"].as_i64().unwrap_or(0) > 8), "{what}: a drawn frame is not blank");
    assert_eq!(last["dynamic"], false, "{what}: on demand");
}

#[tokio::test(flavor = "multi_thread")]
async fn dash_js_plays_smooth_and_dash_on_demand() {
    let env = Env::local_embedded(None).await;
    let dir = mediastreams_tests::scratch();
    let clip = encode_test_clip(dir.path(), 6, 60);
    let s = stream(&env, "vod").await;
    let pid = s["playbackId"].as_str().unwrap();
    let mut p = presentation(&clip);
    let mut objects = Vec::new();
    for sample in clip.samples(1, 0) {
        objects.extend(match sample {
            ClipSample::Video(v) => p.push_video(v).unwrap().objects,
            ClipSample::Audio(a) => p.push_audio(a).unwrap().objects,
        });
    }
    objects.extend(p.finish().objects);
    store_all(&env.media, pid, objects).await;
    let origin = origin(&env);
    let smooth = play(&origin, s["outputs"][0]["url"].as_str().unwrap(), "vod", 6, "player-smooth-vod.png");
    assert_played_to_the_end(&smooth, 6.0, "Smooth on demand");
    let dash = play(&origin, s["outputs"][1]["url"].as_str().unwrap(), "vod", 6, "player-dash-vod.png");
    assert_played_to_the_end(&dash, 6.0, "DASH on demand");
    let hls = play_with("hlsjs", &origin, s["outputs"][2]["url"].as_str().unwrap(), "vod", 6, "player-hls-vod.png");
    assert_played_to_the_end(&hls, 6.0, "HLS on demand (hls.js)");
}

/// The packager's Opus track (what a stream whose outputs are all DASH
/// records): its DASH view plays in dash.js, and its HLS view in hls.js
/// (Chromium's MSE decodes Opus in MP4; the node transcodes streams with
/// an HLS output, for Apple's players, but the view carries Opus), to the
/// end with audio decoded; GStreamer plays both to end-of-stream decoding
/// every video frame and the audio; ffprobe reads the audio as Opus.
#[tokio::test(flavor = "multi_thread")]
async fn opus_audio_plays_in_dash_js_hls_js_and_gstreamer() {
    let env = Env::local_embedded(None).await;
    let dir = mediastreams_tests::scratch();
    let clip = encode_opus_test_clip(dir.path(), 6, 60);
    let r = env.call("PUT", "/streams/opus", Some(json!({"outputs":[{"name":"d","format":"dash"},{"name":"h","format":"hls"}]}))).await;
    assert_eq!(r.status, 201);
    let s = r.json();
    let pid = s["playbackId"].as_str().unwrap();
    store_all(&env.media, pid, package_levels(all_outputs_config(unix_ms()), &[(&clip, 500_000)])).await;
    let (dash_url, hls_url) = (s["outputs"][0]["url"].as_str().unwrap().to_owned(), s["outputs"][1]["url"].as_str().unwrap().to_owned());
    for url in [&dash_url, &hls_url] {
        let out = mediastreams_tests::media::tool("ffprobe")
            .args(["-v", "error", "-select_streams", "a:0", "-show_entries", "stream=codec_name", "-of", "csv=p=0"])
            .arg(url)
            .output()
            .unwrap();
        let codecs = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success() && codecs.lines().next() == Some("opus"), "{url}: {codecs}");
    }
    let origin = origin(&env);
    for (player, url, what) in [("dashjs", &dash_url, "DASH with Opus (dash.js)"), ("hlsjs", &hls_url, "HLS with Opus (hls.js)")] {
        let report = play_with(player, &origin, url, "vod", 6, &format!("player-opus-{player}.png"));
        assert_played_to_the_end(&report, 6.0, what);
        let audio = report["samples"].as_array().unwrap().last().unwrap()["audioBytes"].as_u64().unwrap_or(0);
        assert!(audio > 0, "{what}: audio decoded: {report}");
    }
    for (what, url) in [("DASH", dash_url), ("HLS", hls_url)] {
        let report = tokio::task::spawn_blocking(move || gst_play(&url)).await.unwrap();
        assert_eq!(report["errors"], json!([]), "GStreamer {what}: {report}");
        assert_eq!(report["eos"], true, "GStreamer {what} reached end-of-stream: {report}");
        assert_eq!(report["videoFrames"], json!(clip.video.len()), "GStreamer {what}: every frame decoded: {report}");
        assert!(report["audioBuffers"].as_u64().unwrap_or(0) > 0, "GStreamer {what}: Opus decoded: {report}");
    }
}

/// Runs tests/players/gst_play.py (GStreamer playbin3) and returns its report.
fn gst_play(url: &str) -> Value {
    gst_play_for(url, None)
}

/// [`gst_play`], stopping the player after `play_for` if it has not ended.
fn gst_play_for(url: &str, play_for: Option<Duration>) -> Value {
    let root = mediastreams_tests::workspace_root();
    // The demuxers' log of every run, kept for a run that fails.
    let artifacts = root.join("target/test-artifacts");
    let _ = std::fs::create_dir_all(&artifacts);
    let name: String =
        url.rsplit('/').take(3).collect::<Vec<_>>().join("-").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let out = Command::new("/usr/bin/python3")
        .arg(root.join("tests/players/gst_play.py"))
        .arg(url)
        .args(["--timeout", "60"])
        .args(play_for.map(|d| format!("--for={}", d.as_secs_f64())))
        .env("GST_DEBUG", "adaptivedemux2:5,dashdemux2:5,hlsdemux2:4")
        .env("GST_DEBUG_NO_COLOR", "1")
        .env("GST_DEBUG_FILE", artifacts.join(format!("gst-{name}.log")))
        .output()
        .expect("Debian's python3 with GStreamer (scripts/install-test-deps)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "gst_play.py failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("report ({e}): {stdout}"))
}

/// A third player family: GStreamer's playbin3 (hlsdemux2, dashdemux2,
/// libav decoders) plays the HLS and DASH recordings to end-of-stream and
/// decodes every frame.
#[tokio::test(flavor = "multi_thread")]
async fn gstreamer_plays_hls_and_dash_on_demand_to_the_end() {
    let env = Env::local_embedded(None).await;
    let dir = mediastreams_tests::scratch();
    let clip = encode_test_clip(dir.path(), 6, 60);
    let s = stream(&env, "gst-vod").await;
    let pid = s["playbackId"].as_str().unwrap();
    let mut p = presentation(&clip);
    let mut objects = Vec::new();
    for sample in clip.samples(1, 0) {
        objects.extend(match sample {
            ClipSample::Video(v) => p.push_video(v).unwrap().objects,
            ClipSample::Audio(a) => p.push_audio(a).unwrap().objects,
        });
    }
    objects.extend(p.finish().objects);
    store_all(&env.media, pid, objects).await;
    for (what, url) in
        [("DASH", s["outputs"][1]["url"].as_str().unwrap().to_owned()), ("HLS", s["outputs"][2]["url"].as_str().unwrap().to_owned())]
    {
        let report = tokio::task::spawn_blocking(move || gst_play(&url)).await.unwrap();
        assert_eq!(report["errors"], json!([]), "GStreamer {what}: {report}");
        assert_eq!(report["eos"], true, "GStreamer {what} reached end-of-stream: {report}");
        assert_eq!(report["videoFrames"], json!(clip.video.len()), "GStreamer {what}: every frame decoded: {report}");
        assert_eq!(report["videoCaps"], json!({"width": 320, "height": 240}), "GStreamer {what}: {report}");
        assert!(report["audioBuffers"].as_u64().unwrap_or(0) > 0, "GStreamer {what}: audio decoded: {report}");
        eprintln!("GStreamer {what}: {} frames, {} audio buffers, end-of-stream", report["videoFrames"], report["audioBuffers"]);
    }
}

/// GStreamer follows the live HLS and DASH outputs while the stream is
/// published: HLS to end-of-stream when it stops (`EXT-X-ENDLIST`), DASH
/// to the end of what was published, every frame from where it joined
/// decoded.
///
/// Live DASH is not required to reach end-of-stream: GStreamer 1.22's
/// adaptivedemux2 (Debian 12) wakes a stream waiting at the live edge
/// ("Live playlist EOS - waiting for manifest update") when it asks for an
/// update, not when the update has arrived; when the update is the MPD
/// turning static, the update task stops and that stream is never woken
/// (hung in about 1 run of 4; logs in target/test-artifacts/gst-*.log). It
/// is a player defect, fixed upstream in GStreamer 1.26.0 by commit
/// 1248e4c4622a ("adaptivedemux2: wake waiting streams upon completed
/// manifest download", MR 8587), and no form of the final MPD avoids it
/// (docs/storage-layout.md). So the DASH player is stopped a few seconds
/// after the publisher; it must have shown everything published, or when
/// it hung, everything up to the fragment only the static MPD lists.
#[tokio::test(flavor = "multi_thread")]
async fn gstreamer_follows_live_hls_and_dash() {
    const LIVE: u32 = 16;
    const JOIN: u64 = 8;
    let env = Env::local_embedded(None).await;
    let dir = mediastreams_tests::scratch();
    let clip = encode_test_clip(dir.path(), 4, 60);
    let s = stream(&env, "gst-live").await;
    let pid = s["playbackId"].as_str().unwrap().to_owned();
    let media = env.media.clone();
    let publisher = tokio::spawn(async move {
        let mut p = publish_live(media.clone(), pid.clone(), clip, LIVE).await;
        store_all(&media, &pid, p.finish().objects).await;
    });
    // Join once a few fragments are listed.
    tokio::time::sleep(Duration::from_secs(JOIN)).await;
    let players: Vec<_> = [("HLS", 2, None), ("DASH", 1, Some(Duration::from_secs(u64::from(LIVE) - JOIN + 8)))]
        .into_iter()
        .map(|(what, i, play_for)| {
            let url = s["outputs"][i]["url"].as_str().unwrap().to_owned();
            (what, play_for, tokio::task::spawn_blocking(move || gst_play_for(&url, play_for)))
        })
        .collect();
    publisher.await.unwrap();
    for (what, play_for, player) in players {
        let report = player.await.unwrap();
        assert_eq!(report["errors"], json!([]), "GStreamer live {what}: {report}");
        let frames = report["videoFrames"].as_u64().unwrap_or(0);
        // Joined about 8 s in, with at least the last 8 s still to come.
        assert!(frames >= 8 * 30, "GStreamer live {what}: {frames} frames: {report}");
        // To the last frame published (the clip's timestamps start at 0),
        // or, for a DASH player that hung at the end (above), the last frame
        // of the last fragment a live MPD listed: the one before the
        // fragment the publisher's end closed, which only the static MPD
        // lists.
        let last = report["lastVideoPts"].as_f64().unwrap_or(0.0);
        let reached = if report["eos"] == true { f64::from(LIVE) } else { f64::from(LIVE) - 2.0 };
        assert!(last >= reached - 0.1, "GStreamer live {what}: the last frame shown is at {last} s of {LIVE} s: {report}");
        match play_for {
            None => assert_eq!(report["eos"], true, "GStreamer live {what} reached end-of-stream when ingest stopped: {report}"),
            Some(_) => assert!(report["eos"] == true || report["stopped"] == true, "{report}"),
        }
        eprintln!("GStreamer live {what}: {frames} frames to {last:.2} s, end-of-stream: {}", report["eos"]);
    }
}

/// Publishes `clip` in a loop in real time, writing objects as the
/// packager produces them, like the ingest node does.
async fn publish_live(media: Arc<dyn ObjectStore>, pid: String, clip: TestClip, seconds: u32) -> Presentation {
    publish_live_joined_at(media, pid, clip, seconds, None).await
}

/// [`publish_live`]; with `Some(n)` the Smooth manifest stops being
/// rewritten once it lists `n` video fragments (the fragments go on), so a
/// player opened at any later time reads the manifest a viewer who joined
/// then would have read: dash.js never re-reads a live Smooth manifest.
async fn publish_live_joined_at(
    media: Arc<dyn ObjectStore>,
    pid: String,
    clip: TestClip,
    seconds: u32,
    listed: Option<usize>,
) -> Presentation {
    let mut p = presentation(&clip);
    let loops = seconds.div_ceil((clip.video.len() / 30) as u32);
    let started = Instant::now();
    let mut frozen = false;
    for sample in clip.samples(loops, 0) {
        let due = Duration::from_nanos(sample.time().max(0) as u64 * 100);
        if due > Duration::from_secs(u64::from(seconds)) {
            break;
        }
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let mut objects = match sample {
            ClipSample::Video(v) => p.push_video(v).unwrap().objects,
            ClipSample::Audio(a) => p.push_audio(a).unwrap().objects,
        };
        if let Some(n) = listed {
            if frozen {
                objects.retain(|o| o.key != mediastreams_packager::layout::SMOOTH_MANIFEST);
            }
            let wrote_manifest = objects.iter().any(|o| o.key == mediastreams_packager::layout::SMOOTH_MANIFEST);
            frozen = frozen || (wrote_manifest && p.published().0.len() >= n);
        }
        store_all(&media, &pid, objects).await;
    }
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn dash_js_follows_a_live_smooth_stream() {
    // CI watches 30 s; `MEDIASTREAMS_LIVE_SOAK_SECONDS=600 scripts/test -E
    // 'test(follows_a_live)'` is the 10-minute soak.
    let watch: u32 = std::env::var("MEDIASTREAMS_LIVE_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let live = watch + 20;
    let env = Env::local_embedded(None).await;
    let dir = mediastreams_tests::scratch();
    let clip = encode_test_clip(dir.path(), 4, 60);
    let s = stream(&env, "live").await;
    let pid = s["playbackId"].as_str().unwrap().to_owned();
    let url = s["outputs"][0]["url"].as_str().unwrap().to_owned();
    let publisher = tokio::spawn(publish_live(env.media.clone(), pid.clone(), clip, live));
    // Let a few fragments exist, as when a viewer joins a running stream.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let origin = origin(&env);
    let report = tokio::task::spawn_blocking(move || play(&origin, &url, "live", watch, "player-smooth-live.png")).await.unwrap();
    let mut p = publisher.await.unwrap();
    store_all(&env.media, &pid, p.finish().objects).await;

    assert_eq!(report["errors"], json!([]), "player errors while live: {report}");
    let samples = report["samples"].as_array().unwrap();
    assert!(samples.iter().all(|s| s["dynamic"] == true), "played as live");
    let times: Vec<f64> = samples.iter().map(|s| s["t"].as_f64().unwrap_or(0.0)).collect();
    // After a start-up allowance, the position advances every second: no stall.
    let steady = &times[8.min(times.len())..];
    for w in steady.windows(3) {
        assert!(w[2] > w[0] + 0.5, "stalled around {w:?} in {times:?}");
    }
    let advanced = times.last().unwrap() - times.iter().cloned().find(|t| *t > 0.0).unwrap_or(0.0);
    assert!(advanced >= f64::from(watch) - 12.0, "advanced {advanced} s in {watch} s: {times:?}");
    eprintln!("live: watched {watch} s, position advanced {advanced:.1} s, {} samples, no errors", times.len());
    assert!(samples.iter().any(|s| s["colours"].as_i64().unwrap_or(0) > 8), "frames are drawn");
}

/// A stock dash.js (no setting changed) starts a live Smooth stream
/// whatever the live manifest listed when it joined: one, two or three
/// fragments, as a viewer opening the stream in its first seconds reads
/// it. (With a finite `DVRWindowLength`, dash.js 5.2 never requested video
/// from two or three listed fragments: see `manifest::smooth`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_stock_dash_js_starts_a_live_smooth_stream_joined_early() {
    const WATCH: u32 = 12;
    let env = Env::local_embedded(None).await;
    let dir = mediastreams_tests::scratch();
    let clip = encode_test_clip(dir.path(), 4, 60);
    let origin = origin(&env);
    for listed in [1usize, 2, 3] {
        let s = stream(&env, &format!("join-{listed}")).await;
        let pid = s["playbackId"].as_str().unwrap().to_owned();
        let url = s["outputs"][0]["url"].as_str().unwrap().to_owned();
        let publisher = tokio::spawn(publish_live_joined_at(
            env.media.clone(),
            pid.clone(),
            clip.clone(),
            2 * listed as u32 + 2 * WATCH + 8,
            Some(listed),
        ));
        // Open the player once the frozen manifest exists.
        let key = ObjectKey::parse(&format!("{pid}/{}", mediastreams_packager::layout::SMOOTH_MANIFEST)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let video_listed = |xml: &str| xml.split("Type=\"audio\"").next().unwrap_or("").matches("<c ").count();
        while env.media.get(&key).await.unwrap().is_none_or(|m| video_listed(&String::from_utf8_lossy(&m.body)) < listed) {
            assert!(Instant::now() < deadline, "the live manifest lists {listed} fragments per track");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let o = origin.clone();
        let report = tokio::task::spawn_blocking(move || {
            play_args("dashjs", &o, &url, "live", WATCH, &format!("player-smooth-join-{listed}.png"), &["--stock"])
        })
        .await
        .unwrap();
        publisher.abort();
        assert_eq!(report["errors"], json!([]), "joined at {listed} fragments: player errors: {report}");
        let samples = report["samples"].as_array().unwrap();
        let times: Vec<f64> = samples.iter().map(|s| s["t"].as_f64().unwrap_or(0.0)).collect();
        let first = times.iter().cloned().find(|t| *t > 0.0).unwrap_or(0.0);
        let advanced = times.last().unwrap_or(&0.0) - first;
        assert!(advanced >= f64::from(WATCH) / 2.0, "joined at {listed} fragments: advanced {advanced} s in {WATCH} s: {times:?} {report}");
        assert!(
            samples.iter().any(|s| s["width"].as_u64() == Some(320) && s["colours"].as_i64().unwrap_or(0) > 8),
            "joined at {listed} fragments: video is drawn: {report}"
        );
        eprintln!("stock dash.js joined at {listed} listed fragments: advanced {advanced:.1} s in {WATCH} s");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dash_js_switches_between_video_levels_of_a_smooth_recording() {
    const SECONDS: u32 = 16;
    let env = Env::local_embedded(None).await;
    let dir = mediastreams_tests::scratch();
    let high = encode_test_clip(dir.path(), SECONDS, 60);
    let low = encode_sized_test_clip(dir.path(), SECONDS, 60, (160, 120));
    let s = stream(&env, "levels").await;
    let pid = s["playbackId"].as_str().unwrap();
    let config = all_outputs_config(unix_ms());
    store_all(&env.media, pid, package_levels(config, &[(&high, 500_000), (&low, 150_000)])).await;
    let url = s["outputs"][0]["url"].as_str().unwrap().to_owned();
    let origin = origin(&env);
    let report = tokio::task::spawn_blocking(move || {
        let root = mediastreams_tests::workspace_root();
        let out = Command::new("node")
            .current_dir(root.join("web"))
            .arg("tests/play.mjs")
            .args(["--origin", &origin, "--url", &url, "--mode", "vod", "--seconds", &SECONDS.to_string(), "--switch-levels"])
            .output()
            .expect("node is required (scripts/install-test-deps)");
        assert!(out.status.success(), "play.mjs: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str::<Value>(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("report ({e}): {stdout}"))
    })
    .await
    .unwrap();
    assert_eq!(report["errors"], json!([]), "player errors: {report}");
    let samples = report["samples"].as_array().unwrap();
    // Played to the end (the element's `ended`, or dash.js's own end at the
    // end: see play.mjs).
    let last = samples.last().unwrap();
    assert_eq!(last["atEnd"], true, "played to the end: {report}");
    assert!((last["t"].as_f64().unwrap_or(0.0) - last["duration"].as_f64().unwrap_or(0.0)).abs() < 0.034, "ended at the end: {report}");
    eprintln!("levels: ended at {} of {}; the element's `ended`: {}", last["t"], last["duration"], last["ended"]);
    assert_eq!(report["foreignRequests"], json!([]), "no request to another origin: {report}");
    // The picture comes from the 320x240 level, then from the 160x120 one.
    let sizes: Vec<(u64, u64)> = samples.iter().map(|s| (s["width"].as_u64().unwrap_or(0), s["height"].as_u64().unwrap_or(0))).collect();
    let first_high = sizes.iter().position(|&s| s == (320, 240));
    let first_low = sizes.iter().position(|&s| s == (160, 120));
    assert!(matches!((first_high, first_low), (Some(h), Some(l)) if h < l), "played the high level, then the low one: {sizes:?} {report}");
    let bandwidths: Vec<u64> = samples.iter().filter_map(|s| s["bandwidth"].as_u64()).collect();
    assert!(bandwidths.contains(&500_000) && bandwidths.contains(&150_000), "both levels were selected: {bandwidths:?}");
    assert!(samples.iter().any(|s| s["colours"].as_i64().unwrap_or(0) > 8), "frames are drawn");
}

/// Ingest stops while a live player follows the stream: the last fragments
/// (which the previous fragments' `tfrf` announced) are written with an
/// empty `tfrf`, and the live player reads them without an error.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_player_reads_the_last_fragments_of_a_stopped_stream_without_error() {
    let env = Env::local_embedded(None).await;
    let dir = mediastreams_tests::scratch();
    let clip = encode_test_clip(dir.path(), 4, 60);
    let s = stream(&env, "ending").await;
    let pid = s["playbackId"].as_str().unwrap().to_owned();
    let url = s["outputs"][0]["url"].as_str().unwrap().to_owned();
    let media = env.media.clone();
    let publisher = tokio::spawn(async move {
        let mut p = publish_live(media.clone(), pid.clone(), clip, 16).await;
        store_all(&media, &pid, p.finish().objects).await;
    });
    tokio::time::sleep(Duration::from_secs(9)).await;
    let origin = origin(&env);
    // Follows past the end: the player reaches the last fragments.
    let report = tokio::task::spawn_blocking(move || play(&origin, &url, "live", 20, "player-smooth-live-end.png")).await.unwrap();
    publisher.await.unwrap();
    assert_eq!(report["errors"], json!([]), "no player error at the end of the live stream: {report}");
    let furthest = report["samples"].as_array().unwrap().iter().filter_map(|s| s["t"].as_f64()).fold(0.0, f64::max);
    assert!(furthest >= 10.0, "the live player played on to {furthest} s: {report}");
}

/// DVR while live: a viewer seeks 12 s back into the live stream, watches
/// from there, and returns to the live edge. `output`: 0 Smooth, 1 DASH,
/// 2 HLS (see [`stream`]).
async fn seeks_back_and_returns_to_live(player: &'static str, output: usize, name: &str) {
    const WATCH: u32 = 33;
    const BACK: f64 = 12.0;
    let env = Env::local_embedded(None).await;
    let dir = mediastreams_tests::scratch();
    let clip = encode_test_clip(dir.path(), 4, 60);
    let s = stream(&env, name).await;
    let pid = s["playbackId"].as_str().unwrap().to_owned();
    let url = s["outputs"][output]["url"].as_str().unwrap().to_owned();
    let publisher = tokio::spawn(publish_live(env.media.clone(), pid.clone(), clip, WATCH + 25));
    // Enough recorded to go 12 s back from where the player plays.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let origin = origin(&env);
    let shot = format!("player-{name}.png");
    let report = tokio::task::spawn_blocking(move || play_args(player, &origin, &url, "live", WATCH, &shot, &["--dvr", &BACK.to_string()]))
        .await
        .unwrap();
    publisher.await.unwrap();
    assert_eq!(report["errors"], json!([]), "{name}: player errors: {report}");
    assert_eq!(report["failedRequests"], json!([]), "{name}: every request is answered: {report}");
    let dvr = report["dvr"].as_array().unwrap_or_else(|| panic!("{name}: no seeks: {report}"));
    assert_eq!(dvr.len(), 2, "{name}: {report}");
    let samples = report["samples"].as_array().unwrap();
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let (back, live) = (&dvr[0], &dvr[1]);
    // Live throughout (but while a Smooth player reloads the manifest to
    // find the live edge: see `goLive` in web/public/player.js).
    let reloading = |s: &&Value| f(s, "at") > f(live, "at") && f(s, "at") < f(live, "at") + 2.0;
    assert!(samples.iter().filter(|s| !reloading(s)).all(|s| s["dynamic"] == true), "{name}: live throughout: {report}");
    let between: Vec<&Value> = samples.iter().filter(|s| f(s, "at") > f(back, "at") + 2.5 && f(s, "at") <= f(live, "at")).collect();
    let after: Vec<&Value> = samples.iter().filter(|s| f(s, "at") > f(live, "at") + 4.5).collect();
    assert!(between.len() >= 6 && after.len() >= 4, "{name}: samples around the seeks: {report}");
    // Went back 12 s, and plays on from there.
    let first = f(between[0], "t");
    assert!(first < f(back, "t") - BACK + 5.0 && first > f(back, "t") - BACK - 2.0, "{name}: seeked back 12 s: {report}");
    for w in between.windows(3).chain(after.windows(3)) {
        assert!(f(w[2], "t") > f(w[0], "t") + 0.5, "{name}: stalled around {} s: {report}", f(w[0], "at"));
    }
    // Back at the live edge: where the player would be had it never left
    // (by the wall clock), within a fragment or two.
    let last = after[after.len() - 1];
    let unmoved = f(back, "t") + f(last, "at") - f(back, "at");
    assert!(
        (f(last, "t") - unmoved).abs() < 4.0,
        "{name}: at {:.1} s after returning to live, {unmoved:.1} s had it stayed: {report}",
        f(last, "t")
    );
    // The player's own latency: behind by the seek while there, and back
    // at about the original after returning.
    let (l0, l_back, l_live) = (f(back, "latency"), f(between[between.len() - 1], "latency"), f(after[after.len() - 1], "latency"));
    assert!((l_back - l0 - BACK).abs() < 4.0, "{name}: latency {l0:.1} s before, {l_back:.1} s after seeking back: {report}");
    assert!(l_live < l0 + 4.0, "{name}: latency {l_live:.1} s after returning to live ({l0:.1} s before): {report}");
    eprintln!(
        "{name}: live latency {l0:.1} s; {BACK} s back: {l_back:.1} s; back at the live edge: {l_live:.1} s; position {:.1} -> {first:.1} s",
        f(back, "t")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dash_js_seeks_back_in_a_live_smooth_stream_and_returns_to_live() {
    seeks_back_and_returns_to_live("dashjs", 0, "dvr-smooth").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dash_js_seeks_back_in_a_live_dash_stream_and_returns_to_live() {
    seeks_back_and_returns_to_live("dashjs", 1, "dvr-dash").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hls_js_seeks_back_in_a_live_hls_stream_and_returns_to_live() {
    seeks_back_and_returns_to_live("hlsjs", 2, "dvr-hls").await;
}
