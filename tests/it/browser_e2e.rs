//! The product end to end in a real browser: headless Debian Chromium with
//! a fake camera publishes from the studio page over WHIP to
//! `mediastreams-local`; the stream goes Live within seconds; the player
//! page plays it live (position advancing, frames drawn); stop-ingest from
//! the studio makes it OnDemand and the player switches to the recording at
//! the same URL without reloading and plays it from start to end.
//! Screenshots land in target/test-artifacts/.

use std::process::Command;

use mediastreams_storage::ObjectKey;
use serde_json::Value;

use crate::api::harness::Env;

#[tokio::test(flavor = "multi_thread")]
async fn webcam_to_live_to_on_demand_in_chromium() {
    const SECONDS: u32 = 20;
    let env = Env::local_embedded(None).await;
    let origin = env.media_base.trim_end_matches("/media").to_owned();
    let root = mediastreams_tests::workspace_root();
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(root.join("web"))
            .args(["tests/e2e.mjs", "--origin", &origin, "--name", "webcam", "--seconds", &SECONDS.to_string(), "--artifacts"])
            .arg(&artifacts)
            .output()
            .expect("node is required (scripts/install-test-deps)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "e2e.mjs: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("report ({e}): {stdout}"));
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["studioMessage"], "", "the studio shows no error: {r}");

    let live_after = r["liveAfter"].as_f64().unwrap_or_else(|| panic!("never Live: {r}"));
    assert!(live_after <= 5.0, "Live {live_after} s after publishing");

    let live = r["live"].as_array().unwrap();
    let times: Vec<f64> = live.iter().map(|s| s["t"].as_f64().unwrap_or(0.0)).collect();
    let advanced = times.last().unwrap() - times.first().unwrap();
    assert!(advanced >= live.len() as f64 * 0.6, "live position advanced {advanced} s over {} s: {times:?}", live.len());
    assert!(live.iter().all(|s| s["errors"] == serde_json::json!([])), "player errors while live: {r}");
    assert!(live.iter().all(|s| s["mode"] == "live"), "the player stays live while the stream is: {r}");
    let last = live.last().unwrap();
    assert!(last["width"].as_u64().unwrap() > 0 && last["height"].as_u64().unwrap() > 0, "video has a size: {last}");
    assert!(live.iter().any(|s| s["colours"].as_i64().unwrap_or(0) > 4), "a drawn frame is not blank: {r}");

    assert_eq!(r["ingestStats"]["avSync"], "senderReports", "Chromium's sender reports align its audio and video: {}", r["ingestStats"]);
    let on_demand_after = r["onDemandAfter"].as_f64().unwrap_or_else(|| panic!("never OnDemand: {r}"));
    assert!(on_demand_after <= 15.0, "OnDemand {on_demand_after} s after stop");
    let vod = r["ondemand"].as_array().unwrap();
    assert!(vod.iter().any(|s| s["switched"] == true && s["mode"] == "ondemand"), "the player switched to on demand without a reload: {r}");
    assert!(vod.iter().all(|s| s["errors"] == serde_json::json!([])), "player errors on demand: {r}");
    let duration = vod.iter().filter_map(|s| s["duration"].as_f64()).filter(|d| d.is_finite()).fold(0.0, f64::max);
    let published = r["publishedSeconds"].as_f64().unwrap();
    let expected = published - live_after;
    assert!((duration - expected).abs() <= 2.0, "recording is {duration} s, published {expected} s (within one fragment)");
    // Played from the start to the end.
    let after_seek: Vec<f64> = vod.iter().skip_while(|s| s["t"].as_f64().unwrap_or(0.0) > 2.0).filter_map(|s| s["t"].as_f64()).collect();
    let furthest = after_seek.iter().cloned().fold(0.0, f64::max);
    // To the end: the player page keeps dash.js at the end when its own
    // end timer beats the element's `ended` (seekDurationBackoff 0).
    assert!(!after_seek.is_empty() && furthest >= duration - 0.05, "played {furthest} of {duration} s from the start: {r}");
    let recoveries = live.last().and_then(|s| s["recoveries"].as_u64()).unwrap_or(0);
    let player_live_after = r["playerLiveAfter"].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "browser e2e: player live {player_live_after:.1} s after opening, {recoveries} live stall recoveries, Live after {live_after:.2} s, live position +{advanced:.1} s, OnDemand {on_demand_after:.2} s after stop, recording {duration:.2} s of {expected:.2} s published, played to {furthest:.2} s"
    );
}

/// Glass to glass: the studio publishes a picture stamped with the time it
/// was drawn (web/tests/latency.mjs), the player page shows it as Smooth
/// and DASH (dash.js) and HLS (hls.js), and the stamp read back from the
/// frame on screen gives the latency. Printed, not asserted (timings are
/// measured, never asserted); the test asserts that every format plays the
/// stamped picture live without error for the whole watch, with no stall
/// and no reload over the two minutes at the default fragment duration,
/// and that the stamps read are sane. The whole report is kept in
/// target/test-artifacts/latency-{fragment_ms}.json.
async fn glass_to_glass(fragment_ms: u32, seconds: u32) {
    let env = Env::local_embedded(None).await;
    let origin = env.media_base.trim_end_matches("/media").to_owned();
    let root = mediastreams_tests::workspace_root();
    let name = format!("latency-{fragment_ms}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(root.join("web"))
            .args([
                "tests/latency.mjs",
                "--origin",
                &origin,
                "--name",
                &name,
                "--fragment-ms",
                &fragment_ms.to_string(),
                "--seconds",
                &seconds.to_string(),
            ])
            .output()
            .expect("node is required (scripts/install-test-deps)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "latency.mjs: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("report ({e}): {stdout}"));
    // The whole report (every sample of every player) for a later look.
    let artifacts = mediastreams_tests::workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join(format!("latency-{fragment_ms}.json")), serde_json::to_string_pretty(&r).unwrap()).unwrap();
    // The whole report (every sample of every player) for a later look.
    let artifacts = mediastreams_tests::workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join(format!("latency-{fragment_ms}.json")), serde_json::to_string_pretty(&r).unwrap()).unwrap();
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["studioMessage"], "", "the studio shows no error: {r}");
    let mut line = format!("glass to glass, {fragment_ms} ms fragments (Live {} ms after publishing):", r["liveAfterMs"]);
    for format in ["smooth", "dash", "hls"] {
        let f = &r["formats"][format];
        assert_eq!(f["errors"], serde_json::json!([]), "{format}: player errors: {r}");
        let latencies: Vec<f64> = f["latencies"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
        // Twice a second: most frames on screen carry a whole
        // stamp (the encoder keeps 20-pixel blocks black or white).
        let samples = f["samples"].as_f64().unwrap_or(0.0);
        assert!(
            latencies.len() as f64 >= samples * 0.8 && samples >= f64::from(seconds) * 1.5,
            "{format}: read {} stamps of {samples}: {r}",
            latencies.len()
        );
        // The 2-minute session at the default fragment duration plays with
        // no stall and no reload (issue 15): the player page starts each
        // player a margin behind what is written (player.js, liveDelay).
        // Shorter runs print them only.
        if seconds >= 120 {
            assert_eq!((&f["stalls"], &f["recoveries"]), (&serde_json::json!(0), &serde_json::json!(0)), "{format}: stalls, reloads: {r}");
        }
        // What is shown was drawn before it is shown, and within the DVR
        // window: a misread stamp is neither.
        assert!(latencies.iter().all(|l| *l > 0.0 && *l < 120_000.0), "{format}: latencies {latencies:?}");
        line.push_str(&format!(
            " {format} p50 {:.2} s (min {:.2}, p90 {:.2}, max {:.2}; first frame {:.1} s after opening; {} stalled seconds, {} reloads; buffer ahead at least {:.2} s);",
            f["p50"].as_f64().unwrap_or(f64::NAN) / 1e3,
            f["min"].as_f64().unwrap_or(f64::NAN) / 1e3,
            f["p90"].as_f64().unwrap_or(f64::NAN) / 1e3,
            f["max"].as_f64().unwrap_or(f64::NAN) / 1e3,
            f["firstFrameMs"].as_f64().unwrap_or(f64::NAN) / 1e3,
            f["stalls"],
            f["recoveries"],
            f["ahead"].as_array().into_iter().flatten().filter_map(Value::as_f64).fold(f64::INFINITY, f64::min),
        ));
    }
    eprintln!("{line}");
    // Where media waited, every 5 s: the publisher's encoder and pacer,
    // then the node's transit, queue and store delays (the most in each
    // window). A later availability shows in one of these columns.
    let mut table = String::from("pipeline (s: encodeMs pacerMs | transitMs queueMs keyframeMs storeMs late):");
    for e in r["pipeline"].as_array().into_iter().flatten() {
        table.push_str(&format!(
            " {}: {} {} | {} {} {} {} {};",
            e["s"], e["encodeMs"], e["pacerMs"], e["transitMs"], e["queueMs"], e["keyframeMs"], e["storeMs"], e["late"]
        ));
    }
    eprintln!("{table}");
    eprintln!("live video fragments (ms): {}", r["videoFragmentsMs"]);
    // Each player's buffer ahead of the playhead, every 5 s.
    for format in ["smooth", "dash", "hls"] {
        let ahead: Vec<String> =
            r["formats"][format]["ahead"].as_array().into_iter().flatten().step_by(10).map(|a| a.to_string()).collect();
        eprintln!("{format} buffer ahead (s, every 5 s): {}", ahead.join(" "));
    }
    let reported = r["pipeline"].as_array().map_or(0, |p| p.iter().filter(|e| e["transitMs"].is_u64()).count());
    assert!(reported >= (seconds / 5 / 2) as usize, "the stream reports its delays while live: {}", r["pipeline"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn glass_to_glass_latency_at_2_s_fragments_over_a_2_minute_live_session() {
    glass_to_glass(2000, 120).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn glass_to_glass_latency_at_1_s_fragments() {
    glass_to_glass(1000, 20).await;
}

/// What a simulcast publish gave: the driver's report, the playback id,
/// the three output URLs (Smooth, DASH, HLS) and the video levels each
/// output's live manifests listed while the stream was `Live` (the most
/// seen).
struct SimulcastRun {
    report: Value,
    pid: String,
    smooth_url: String,
    dash_url: String,
    hls_url: String,
    live_levels: [Vec<(u64, u64, u64)>; 3],
}

/// The video levels a Smooth manifest lists: (bitrate, width, height).
fn smooth_video_levels(xml: &str) -> Vec<(u64, u64, u64)> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("StreamIndex") && n.attribute("Type") == Some("video"))
        .flat_map(|si| si.children().filter(|c| c.has_tag_name("QualityLevel")).collect::<Vec<_>>())
        .map(|q| {
            let a = |k: &str| q.attribute(k).and_then(|v| v.parse().ok()).unwrap_or(0);
            (a("Bitrate"), a("MaxWidth"), a("MaxHeight"))
        })
        .collect()
}

/// The video Representations a DASH manifest lists: (bandwidth, width, height).
fn dash_video_levels(xml: &str) -> Vec<(u64, u64, u64)> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("Representation") && n.attribute("width").is_some())
        .map(|r| {
            let a = |k: &str| r.attribute(k).and_then(|v| v.parse().ok()).unwrap_or(0);
            (a("bandwidth"), a("width"), a("height"))
        })
        .collect()
}

/// The variants an HLS multivariant playlist lists: (bandwidth, width,
/// height, URI).
fn hls_variants(m3u8: &str) -> Vec<(u64, u64, u64, String)> {
    let lines: Vec<&str> = m3u8.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let attrs = l.strip_prefix("#EXT-X-STREAM-INF:")?;
            let get = |k: &str| attrs.split(',').find_map(|a| a.strip_prefix(k)).unwrap_or("");
            let (w, h) = get("RESOLUTION=").split_once('x').unwrap_or(("0", "0"));
            Some((get("BANDWIDTH=").parse().unwrap_or(0), w.parse().unwrap_or(0), h.parse().unwrap_or(0), lines.get(i + 1)?.to_string()))
        })
        .collect()
}

async fn media_text(env: &Env, key: &str) -> Option<String> {
    let key = ObjectKey::parse(key).unwrap();
    env.media.get(&key).await.ok().flatten().map(|o| String::from_utf8_lossy(&o.body).into_owned())
}

/// The video levels each output's manifests list now (Smooth, DASH, HLS).
async fn output_levels(env: &Env, pid: &str) -> [Vec<(u64, u64, u64)>; 3] {
    let smooth = media_text(env, &format!("{pid}/smooth.ism/Manifest")).await.map(|x| smooth_video_levels(&x)).unwrap_or_default();
    let dash = media_text(env, &format!("{pid}/dash/manifest.mpd")).await.map(|x| dash_video_levels(&x)).unwrap_or_default();
    let hls = media_text(env, &format!("{pid}/hls/main.m3u8"))
        .await
        .map(|x| hls_variants(&x).into_iter().map(|(b, w, h, _)| (b, w, h)).collect())
        .unwrap_or_default();
    [smooth, dash, hls]
}

/// Runs web/tests/simulcast.mjs (the studio page, its simulcast box
/// ticked) against `env` for stream `name` (made here with a Smooth, a
/// DASH and an HLS output; the studio's own create finds it), reading the
/// live manifests while it publishes, and `while_live` (given the run's
/// URLs once the stream is live: live players) beside it.
async fn publish_simulcast<F, Fut>(env: &Env, name: &str, seconds: u32, extra: &[&str], while_live: F) -> SimulcastRun
where
    F: FnOnce(String, String, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let origin = env.media_base.trim_end_matches("/media").to_owned();
    let created = env
        .call(
            "PUT",
            &format!("/streams/{name}"),
            Some(serde_json::json!({"outputs":[
                {"name":"s","format":"smooth"},{"name":"d","format":"dash"},{"name":"h","format":"hls"}
            ]})),
        )
        .await
        .json();
    let pid = created["playbackId"].as_str().unwrap().to_owned();
    let url = |i: usize| created["outputs"][i]["url"].as_str().unwrap().to_owned();
    let (smooth_url, dash_url, hls_url) = (url(0), url(1), url(2));
    let root = mediastreams_tests::workspace_root();
    let mut args = vec![
        "tests/simulcast.mjs".to_owned(),
        "--origin".into(),
        origin,
        "--name".into(),
        name.into(),
        "--seconds".into(),
        seconds.to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let single_at_end = extra.contains(&"--reconnect-single");
    let publisher = tokio::task::spawn_blocking(move || {
        Command::new("node").current_dir(root.join("web")).args(&args).output().expect("node is required (scripts/install-test-deps)")
    });
    // The live manifests while it publishes; then what runs beside it.
    let mut live_levels: [Vec<(u64, u64, u64)>; 3] = Default::default();
    let watch = async {
        let began = std::time::Instant::now();
        while !publisher.is_finished() && began.elapsed() < std::time::Duration::from_secs(u64::from(seconds) + 30) {
            if env.call("GET", &format!("/streams/{name}"), None).await.json()["state"] == "Live" {
                for (seen, now) in live_levels.iter_mut().zip(output_levels(env, &pid).await) {
                    if now.len() > seen.len() {
                        *seen = now;
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    let live = async {
        let began = std::time::Instant::now();
        while env.call("GET", &format!("/streams/{name}"), None).await.json()["state"] != "Live" {
            assert!(began.elapsed() < std::time::Duration::from_secs(20), "the stream never went live");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        while_live(smooth_url.clone(), dash_url.clone(), hls_url.clone()).await;
    };
    tokio::join!(watch, live);
    let out = publisher.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "simulcast.mjs: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("report ({e}): {stdout}"));
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["studioMessage"], "", "the studio shows no error: {r}");
    assert_eq!(r["answerSimulcast"], serde_json::json!(["a=simulcast:recv q;h;f"]), "{r}");
    // The studio shows each layer it sends.
    let shown = r["studioStats"].as_str().unwrap_or("");
    if !single_at_end {
        assert!(["f: ", "h: ", "q: "].iter().all(|l| shown.contains(l)) && shown.contains("1280×720"), "studio statistics: {shown}");
    }
    crate::whip::wait_for_state(env, name, "OnDemand", std::time::Duration::from_secs(15)).await.expect("OnDemand after stop");
    SimulcastRun { report: r, pid, smooth_url, dash_url, hls_url, live_levels }
}

/// The three sizes of the studio's layers, smallest first.
const LADDER: [(u64, u64); 3] = [(320, 180), (640, 360), (1280, 720)];

/// Each output lists three video levels, the studio's three sizes,
/// smallest first, at increasing measured bitrates.
fn assert_ladder(levels: &[Vec<(u64, u64, u64)>; 3], when: &str) {
    for (output, l) in ["Smooth", "DASH", "HLS"].iter().zip(levels) {
        let sizes: Vec<(u64, u64)> = l.iter().map(|(_, w, h)| (*w, *h)).collect();
        assert_eq!(sizes, LADDER, "{when}: {output} lists a level per layer: {l:?}");
        // HLS's BANDWIDTH adds the audio's.
        assert!(l.windows(2).all(|w| w[0].0 < w[1].0) && l[0].0 > 0, "{when}: {output}'s bitrates increase with the size: {l:?}");
    }
}

/// A player's report with `--switch-levels` (the top level, the bottom one
/// asked for at a third, the top again at two thirds): it listed the three
/// levels, showed the top level's picture, then the bottom one's, and
/// ended on the top level showing its picture, with no stall and no
/// error. `top` is what the recording's top level holds (its sizes, as
/// ffprobe decodes it): 1280x720, and 640x360 too where the publisher
/// paused its full layer and the half one fed the level (a browser does,
/// when its bandwidth estimate drops, as under a loaded CPU).
fn assert_switched_down_and_up(report: &Value, what: &str, top: &[String]) {
    assert_eq!(report["errors"], serde_json::json!([]), "{what}: {report}");
    assert_eq!(report["errorEvents"], 0, "{what}: player errors: {}", report["errorEventDetails"]);
    assert_eq!(report["stalls"], 0, "{what}: stalled at {}: {report}", report["stallsAt"]);
    let levels: Vec<(u64, u64)> = report["levels"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: levels: {report}"))
        .iter()
        .map(|l| (l["width"].as_u64().unwrap_or(0), l["height"].as_u64().unwrap_or(0)))
        .collect();
    let mut sorted = levels.clone();
    sorted.sort();
    assert_eq!(sorted, LADDER, "{what}: the player's levels: {report}");
    let top_index = levels.iter().position(|l| *l == (1280, 720));
    let samples = report["samples"].as_array().cloned().unwrap_or_default();
    let level_of = |s: Option<&Value>| s.and_then(|s| s["level"].as_u64()).map(|l| l as usize);
    assert_eq!(level_of(samples.first()), top_index, "{what}: on the top level at the start: {report}");
    assert_eq!(level_of(samples.last()), top_index, "{what}: on the top level at the end: {report}");
    let sizes: Vec<&str> = report["sizesPlayed"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
    let on_top = |s: Option<&&str>| s.is_some_and(|s| *s != "320x180" && top.iter().any(|t| t == s));
    let low = sizes.iter().position(|s| *s == "320x180");
    assert!(
        on_top(sizes.first()) && low.is_some() && on_top(sizes.last()),
        "{what}: the top level's picture ({top:?}), the bottom's, the top's again: {sizes:?} {report}"
    );
}

/// Every fragment the Smooth manifest lists exists for every video level
/// (and so for the DASH and HLS outputs, which share the keys); returns
/// how many were checked.
async fn assert_every_listed_fragment_exists(env: &Env, pid: &str) -> usize {
    let smooth = crate::whip::manifest(env, pid).await.unwrap();
    let levels = smooth_video_levels(&smooth);
    let mut checked = 0;
    for (t, _) in crate::whip::video_chunks(&smooth) {
        for (bitrate, _, _) in &levels {
            let key = ObjectKey::parse(&format!("{pid}/smooth.ism/QualityLevels({bitrate})/Fragments(video={t})")).unwrap();
            assert!(env.media.get(&key).await.unwrap().is_some(), "{key:?} is listed but not stored");
            checked += 1;
        }
    }
    checked
}

/// The playback id in an output URL (`{media}/{pid}/...`).
fn smooth_pid(url: &str) -> String {
    url.split("/media/").nth(1).and_then(|r| r.split('/').next()).unwrap_or_default().to_owned()
}

/// The picture sizes the recording's top level holds ("WxH").
async fn top_level_sizes(env: &Env, run: &SimulcastRun) -> Vec<String> {
    let renditions = rendition_frames(env, run).await;
    let top = renditions.last().expect("renditions");
    let mut sizes: Vec<String> = top.iter().map(|((w, h), _)| format!("{w}x{h}")).collect();
    sizes.dedup();
    sizes
}

/// Every frame of each HLS variant (each rendition on its own), by size:
/// runs of equal sizes, in order.
async fn rendition_frames(env: &Env, run: &SimulcastRun) -> Vec<Vec<((u64, u64), usize)>> {
    let main = media_text(env, &format!("{}/hls/main.m3u8", run.pid)).await.expect("the HLS multivariant playlist");
    let base = run.hls_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
    let mut out = Vec::new();
    for (_, _, _, uri) in hls_variants(&main) {
        let url = format!("{base}/{uri}");
        let frames = tokio::task::spawn_blocking(move || decoded_sizes(&url)).await.unwrap();
        let mut runs: Vec<((u64, u64), usize)> = Vec::new();
        for f in &frames {
            match runs.last_mut() {
                Some((size, n)) if size == f => *n += 1,
                _ => runs.push((*f, 1)),
            }
        }
        out.push(runs);
    }
    out
}

/// The times (seconds, from the rendition's first packet) of the
/// keyframes of each HLS variant, as ffprobe reads its packets.
async fn rendition_keyframes(env: &Env, run: &SimulcastRun) -> Vec<Vec<f64>> {
    let main = media_text(env, &format!("{}/hls/main.m3u8", run.pid)).await.expect("the HLS multivariant playlist");
    let base = run.hls_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
    let mut out = Vec::new();
    for (_, _, _, uri) in hls_variants(&main) {
        let url = format!("{base}/{uri}");
        let probe = tokio::task::spawn_blocking(move || {
            mediastreams_tests::media::tool("ffprobe")
                .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
                .arg(url)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(probe.status.success(), "ffprobe: {}", String::from_utf8_lossy(&probe.stderr));
        let packets: Vec<(f64, bool)> = String::from_utf8_lossy(&probe.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.trim().split(',');
                Some((f.next()?.parse::<f64>().ok()?, f.next()?.contains('K')))
            })
            .collect();
        let first = packets.first().map_or(0.0, |p| p.0);
        out.push(packets.iter().filter(|p| p.1).map(|p| p.0 - first).collect());
    }
    out
}

/// The recording's video timeline, checked continuous; its length in seconds.
async fn continuous_video_seconds(env: &Env, pid: &str) -> f64 {
    let smooth = crate::whip::manifest(env, pid).await.unwrap();
    let chunks = crate::whip::video_chunks(&smooth);
    for w in chunks.windows(2) {
        assert_eq!(w[0].0 + w[0].1, w[1].0, "continuous: {chunks:?}");
    }
    (chunks.last().map(|(t, d)| t + d).unwrap_or(0) - chunks.first().map(|c| c.0).unwrap_or(0)) as f64 / 1e7
}

/// Every frame ffprobe decodes from `url`, as (width, height).
fn decoded_sizes(url: &str) -> Vec<(u64, u64)> {
    let probe = mediastreams_tests::media::tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=width,height", "-of", "csv=p=0"])
        .arg(url)
        .output()
        .unwrap();
    assert!(probe.status.success(), "ffprobe: {}", String::from_utf8_lossy(&probe.stderr));
    String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().trim_end_matches(',').split(',').map(|x| x.parse::<u64>().ok());
            Some((f.next()??, f.next()??))
        })
        .collect()
}

/// A simulcast publisher: the studio in Chromium sends its fake camera as
/// three H.264 encodings (320x180, 640x360 and 1280x720, one SSRC per
/// `rid`). The node answers the three, reads each layer on its own (its
/// SSRC, sequence numbers, RTP clock and H.264 stream) and records each as
/// a video quality level: every output lists three levels of the three
/// sizes at measured, increasing bitrates, live and on demand; each
/// rendition decodes on its own, every frame at its level's size; the
/// recording is continuous and as long as what was published.
#[tokio::test(flavor = "multi_thread")]
async fn a_chromium_simulcast_publisher_is_recorded_as_three_quality_levels() {
    const SECONDS: u32 = 8;
    let env = Env::local_embedded(None).await;
    let run = publish_simulcast(&env, "simulcast", SECONDS, &[], |_, _, _| async {}).await;
    let r = &run.report;
    // Chromium sent three layers of three sizes.
    let sizes: Vec<(u64, u64)> =
        r["layers"].as_array().unwrap().iter().map(|l| (l["width"].as_u64().unwrap_or(0), l["height"].as_u64().unwrap_or(0))).collect();
    assert_eq!(sizes, [(1280, 720), (640, 360), (320, 180)], "f, h, q: {r}");
    assert_ladder(&run.live_levels, "live");
    let on_demand = output_levels(&env, &run.pid).await;
    assert_ladder(&on_demand, "on demand");
    assert!(assert_every_listed_fragment_exists(&env, &run.pid).await >= 3 * 3);
    // The statistics name each layer, largest first, each recorded.
    let stats = env.call("GET", "/streams/simulcast", None).await.json()["stats"].clone();
    let layers = stats["videoLayers"].as_array().unwrap_or_else(|| panic!("videoLayers: {stats}"));
    let seen: Vec<(String, u64, u64, bool)> = layers
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_u64().unwrap_or(0);
            (l["rid"].as_str().unwrap_or("").to_owned(), s("width"), s("height"), l["recorded"] == true)
        })
        .collect();
    let expected = [("f", 1280, 720, true), ("h", 640, 360, true), ("q", 320, 180, true)];
    assert_eq!(seen, expected.map(|(r, w, h, rec)| (r.to_owned(), w, h, rec)), "{stats}");
    assert!(layers.iter().all(|l| l["bitrateBps"].as_u64().unwrap_or(0) > 0 && l["frameRate"].as_f64().unwrap_or(0.0) > 0.0), "{stats}");
    assert_eq!((stats["width"].as_u64(), stats["height"].as_u64()), (Some(1280), Some(720)), "the largest level's size: {stats}");
    let total = continuous_video_seconds(&env, &run.pid).await;
    let published = r["publishedSeconds"].as_f64().unwrap();
    assert!(total >= published - 2.0, "recorded {total} of {published} s");
    // Every fragment of every level begins with a keyframe (the keyframe
    // requests go to every layer together): a player switches levels at
    // any fragment.
    let smooth = crate::whip::manifest(&env, &run.pid).await.unwrap();
    let chunks = crate::whip::video_chunks(&smooth);
    let starts: Vec<f64> = chunks.iter().map(|(t, _)| (t - chunks[0].0) as f64 / 1e7).collect();
    for (level, keys) in rendition_keyframes(&env, &run).await.iter().enumerate() {
        for t in &starts {
            assert!(
                keys.iter().any(|k| (k - t).abs() < 0.002),
                "level {level}: no keyframe at the fragment start {t} s: keyframes {keys:?}, starts {starts:?}"
            );
        }
    }
    // Each rendition decodes on its own, every frame at its size.
    let renditions = rendition_frames(&env, &run).await;
    assert_eq!(renditions.len(), 3);
    for (runs, (size, layer)) in renditions.iter().zip(LADDER.iter().zip([2, 1, 0])) {
        let frames: usize = runs.iter().map(|(_, n)| n).sum();
        assert_eq!(runs.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [*size], "every frame {size:?}: {runs:?}");
        let sent = r["layers"][layer]["frames"].as_u64().unwrap_or(0);
        assert!(frames as u64 * 10 >= sent * 7, "{frames} frames decode of {sent} sent at {size:?}");
    }
    eprintln!(
        "simulcast: layers {sizes:?} sent; recorded {total:.2} s of {published:.2} s; levels live {:?}, on demand {:?}; frames per rendition: {renditions:?}; last statistics: {}; the studio showed: {}",
        run.live_levels, on_demand, stats["videoLayers"], r["studioStats"]
    );
}

/// A simulcast publisher whose full layer the browser pauses mid-stream
/// (`sendEncodings[f].active = false`, as under short bandwidth or CPU)
/// and resumes: the full level is fed by the half layer a second after the
/// pause, from its keyframe, and by the full layer again once it has sent
/// steadily; the other levels go on untouched. Every listed fragment of
/// every level exists, each rendition decodes (the full one: 1280x720,
/// then 640x360, then 1280x720), and dash.js plays the Smooth and DASH
/// outputs and hls.js the HLS output to the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_simulcast_layer_hands_over_and_the_recording_plays_through() {
    let env = Env::local_embedded(None).await;
    let run = publish_simulcast(&env, "paused", 14, &["--pause-at", "4", "--resume-at", "8"], |_, _, _| async {}).await;
    let r = &run.report;
    let total = continuous_video_seconds(&env, &run.pid).await;
    let published = r["publishedSeconds"].as_f64().unwrap();
    assert!(total >= published - 2.0, "recorded {total} of {published} s");
    assert_ladder(&output_levels(&env, &run.pid).await, "on demand");
    assert!(assert_every_listed_fragment_exists(&env, &run.pid).await >= 3 * 6);
    let renditions = rendition_frames(&env, &run).await;
    let order = |i: usize| renditions[i].iter().map(|(s, _)| *s).collect::<Vec<_>>();
    assert_eq!(order(0), [(320, 180)], "the quarter level: {renditions:?}");
    assert_eq!(order(1), [(640, 360)], "the half level: {renditions:?}");
    assert_eq!(order(2), [(1280, 720), (640, 360), (1280, 720)], "the full level: full, half while paused, full again: {renditions:?} {r}");
    // About 20 frames a second were sent: most of them are recorded.
    for runs in &renditions {
        let frames: usize = runs.iter().map(|(_, n)| n).sum();
        assert!(frames as f64 >= total * 10.0, "{frames} frames decode over {total} s: {runs:?}");
    }
    // On demand, each output played with a forced switch from the top
    // level down to the bottom one and back up.
    let top = top_level_sizes(&env, &run).await;
    let origin = env.media_base.trim_end_matches("/media").to_owned();
    let mut played = Vec::new();
    for (what, player, url) in
        [("Smooth", "dashjs", run.smooth_url.clone()), ("DASH", "dashjs", run.dash_url.clone()), ("HLS", "hlsjs", run.hls_url.clone())]
    {
        let o = origin.clone();
        let report = tokio::task::spawn_blocking(move || {
            crate::player::play_args(player, &o, &url, "vod", 14, &format!("player-simulcast-paused-{what}.png"), &["--switch-levels"])
        })
        .await
        .unwrap();
        let samples = report["samples"].as_array().unwrap();
        assert_eq!(samples.last().map(|s| &s["atEnd"]), Some(&serde_json::json!(true)), "{what}: played to the end: {report}");
        assert_switched_down_and_up(&report, what, &top);
        played.push((what, report["sizesPlayed"].clone()));
    }
    eprintln!(
        "simulcast, full layer paused 4-8 s: recorded {total:.2} s of {published:.2} s; frames by size per rendition: {renditions:?}; browser: {}; played on demand with a switch down and up: {played:?}",
        r["events"]
    );
}

/// Players switch between a simulcast publisher's levels while it is live:
/// dash.js on the Smooth and on the DASH output and hls.js on the HLS
/// output, one after the other, each follow the live stream from the top
/// level, are made to switch to the bottom level and back up (automatic
/// switching off), and show each level's picture, with no stall and no
/// error.
#[tokio::test(flavor = "multi_thread")]
async fn players_switch_between_simulcast_levels_while_live() {
    const WATCH: u32 = 18;
    let env = Env::local_embedded(None).await;
    let origin = env.media_base.trim_end_matches("/media").to_owned();
    let played = std::sync::Mutex::new(Vec::new());
    let env_ref = &env;
    let run = publish_simulcast(&env, "abr-live", 3 * (WATCH + 5) + 12, &[], |smooth, dash, hls| {
        let (origin, played) = (origin.clone(), &played);
        async move {
            // Joined as the player page joins (web/public/player.js,
            // whenReady): once the live manifest lists enough fragments
            // for the player's live delay (a player opened earlier starts
            // at the very beginning, at the edge of what exists, and waits
            // there for the next fragment: a stall this test is not about;
            // `player::a_stock_dash_js_starts_a_live_smooth_stream_joined_early`
            // is).
            let began = std::time::Instant::now();
            loop {
                let listed = media_text(env_ref, &format!("{}/smooth.ism/Manifest", smooth_pid(&smooth)))
                    .await
                    .map(|x| crate::whip::video_chunks(&x).len())
                    .unwrap_or(0);
                if listed >= 4 {
                    break;
                }
                assert!(began.elapsed() < std::time::Duration::from_secs(30), "four fragments listed within 30 s");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            for (what, player, url) in [("Smooth", "dashjs", smooth), ("DASH", "dashjs", dash), ("HLS", "hlsjs", hls)] {
                let o = origin.clone();
                let report = tokio::task::spawn_blocking(move || {
                    crate::player::play_args(
                        player,
                        &o,
                        &url,
                        "live",
                        WATCH,
                        &format!("player-simulcast-live-{what}.png"),
                        &["--switch-levels"],
                    )
                })
                .await
                .unwrap();
                played.lock().unwrap().push((what, report));
            }
        }
    })
    .await;
    assert_ladder(&run.live_levels, "live");
    // Judged against what the top level holds once recorded.
    let top = top_level_sizes(&env, &run).await;
    let played = played.into_inner().unwrap();
    assert_eq!(played.len(), 3);
    for (what, report) in &played {
        assert_switched_down_and_up(report, what, &top);
    }
    let summary: Vec<_> = played.iter().map(|(w, r)| (w, r["sizesPlayed"].clone(), r["switches"].clone())).collect();
    eprintln!("simulcast, players switching live (the top level holds {top:?}): {summary:?}");
}

/// A simulcast publisher reconnects without simulcast (one 1280x720
/// encoding) to its live stream: the recording keeps its three levels, each
/// fed by the one layer from then on (the same pictures in each), so every
/// rendition goes on; it is continuous, every rendition decodes through
/// the change, and dash.js plays the Smooth output to the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_simulcast_recording_continued_by_a_publisher_without_simulcast_keeps_every_level() {
    let env = Env::local_embedded(None).await;
    let run = publish_simulcast(&env, "reconnect", 10, &["--reconnect-at", "5", "--reconnect-single"], |_, _, _| async {}).await;
    let r = &run.report;
    assert_eq!(r["reconnect"]["answerSimulcast"], serde_json::json!([]), "the second session sends one encoding: {r}");
    // The sessions follow each other (the second starts when its first
    // picture came, a little after the first ended).
    let chunks = crate::whip::video_chunks(&crate::whip::manifest(&env, &run.pid).await.unwrap());
    for w in chunks.windows(2) {
        assert!(w[1].0 >= w[0].0 + w[0].1 && w[1].0 - (w[0].0 + w[0].1) < 10_000_000, "in order, any gap under 1 s: {chunks:?}");
    }
    let total = chunks.iter().map(|(_, d)| *d).sum::<u64>() as f64 / 1e7;
    let published = r["publishedSeconds"].as_f64().unwrap();
    assert!(total >= published - 2.0, "recorded {total} of {published} s");
    // Live, the ladder; on demand, the same three levels at the same
    // bitrates, each giving the largest picture it holds (the one layer's).
    assert_ladder(&run.live_levels, "live, first session");
    let on_demand = output_levels(&env, &run.pid).await;
    for (output, (live, now)) in ["Smooth", "DASH", "HLS"].iter().zip(run.live_levels.iter().zip(&on_demand)) {
        let bitrates = |l: &Vec<(u64, u64, u64)>| l.iter().map(|(b, _, _)| *b).collect::<Vec<_>>();
        assert_eq!(bitrates(now), bitrates(live), "{output}: the same levels: {now:?}");
        assert!(now.iter().all(|(_, w, h)| (*w, *h) == (1280, 720)), "{output}: each level's largest picture: {now:?}");
    }
    let renditions = rendition_frames(&env, &run).await;
    for (i, size) in LADDER.iter().enumerate() {
        let order: Vec<(u64, u64)> = renditions[i].iter().map(|(s, _)| *s).collect();
        let expected: Vec<(u64, u64)> = if *size == (1280, 720) { vec![*size] } else { vec![*size, (1280, 720)] };
        assert_eq!(order, expected, "level {i}: its layer, then the one layer: {renditions:?}");
        let frames: usize = renditions[i].iter().map(|(_, n)| n).sum();
        assert!(frames as f64 >= total * 10.0, "{frames} frames decode over {total} s: {renditions:?}");
    }
    let origin = env.media_base.trim_end_matches("/media").to_owned();
    let url = run.smooth_url.clone();
    let report =
        tokio::task::spawn_blocking(move || crate::player::play(&origin, &url, "vod", 10, "player-simulcast-reconnect.png")).await.unwrap();
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let samples = report["samples"].as_array().unwrap();
    assert_eq!(samples.last().map(|s| &s["atEnd"]), Some(&serde_json::json!(true)), "played to the end: {report}");
    eprintln!(
        "simulcast, then one encoding from 5 s: recorded {total:.2} s of {published:.2} s; frames by size per rendition: {renditions:?}; events: {}",
        r["events"]
    );
}
