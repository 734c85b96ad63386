//! The load generator (`ingest-bench`, issue 11) as CI runs it: one
//! publisher for a few seconds against the local runner, as a smoke test of
//! the generator and of the report `scripts/bench-ingest` writes. What it
//! measures (CPU, memory, delays) is printed, not judged: capacity is
//! measured by `scripts/bench-ingest` on release builds (docs/performance.md).

use std::process::Command;

use serde_json::Value;

use crate::api::harness::Env;

#[tokio::test(flavor = "multi_thread")]
async fn the_load_generator_publishes_to_on_demand_and_reports_what_the_node_did() {
    let env = Env::local_embedded(None).await;
    let api = env.media_base.trim_end_matches("/media").to_owned();
    let media = mediastreams_tests::scratch();
    let out = media.path().join("ingest-1.json");
    let bench = mediastreams_tests::workspace_binary("ingest-bench");
    let (media_dir, out_path) = (media.path().to_owned(), out.clone());
    let run = tokio::task::spawn_blocking(move || {
        Command::new(bench)
            .args(["--api", &api, "--publishers", "1", "--seconds", "5", "--width", "320", "--height", "240", "--video-kbps", "300"])
            .arg("--media-dir")
            .arg(&media_dir)
            .arg("--out")
            .arg(&out_path)
            .arg("--node-pid")
            .arg(std::process::id().to_string())
            .output()
            .expect("run ingest-bench")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "ingest-bench failed: {stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("the report is written")).unwrap();
    eprintln!("{}", stderr.lines().filter(|l| l.contains("publishers x")).collect::<Vec<_>>().join("\n"));
    // The keys scripts/bench-ingest and docs/performance.md rely on.
    for key in [
        "publishers",
        "seconds",
        "bitrate_kbps",
        "node_cpu_percent",
        "node_rss_mb",
        "rss_per_stream_mb",
        "fragments_expected",
        "fragments_stored",
        "fragments_late",
        "rtp_packets_lost",
        "live_after_first_media_ms_p50",
        "stored_after_close_ms_p99",
        "on_demand_after_stop_ms_p50",
        "all_on_demand",
    ] {
        assert!(report.get(key).is_some_and(|v| !v.is_null()), "{key} in {report}");
    }
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["all_on_demand"], true, "{report}");
    assert_eq!(report["publishers"], 1);
    // 5 s in 2 s fragments, video and audio: 3 each.
    assert!(report["fragments_stored"].as_u64() >= report["fragments_expected"].as_u64(), "{report}");
    assert!(report["recorded_seconds_min"].as_f64().unwrap() >= 5.0 - 2.0, "{report}");
    assert!(report["bitrate_kbps"].as_f64().unwrap() > 100.0, "the clip is sent: {report}");
}
