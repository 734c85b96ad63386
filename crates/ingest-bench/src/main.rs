//! `ingest-bench`: N concurrent WHIP publishers against a running ingest
//! node (or `mediastreams-local`), through the stream API, and a JSON
//! report of what the node did with them: CPU and memory (given the node's
//! pid), fragments stored and late, time to `Live` and to `OnDemand`, and
//! whether every recording is whole. `scripts/bench-ingest` builds,
//! pins and runs it; see docs/performance.md.

mod clip;
mod janus;
mod publisher;
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::clip::{Clip, ClipSpec};
use crate::publisher::Publisher;
use crate::report::{Report, percentile};

#[derive(Parser, Debug)]
#[command(about = "N concurrent WHIP publishers of pre-encoded H.264 and Opus, and a JSON report")]
struct Args {
    /// The stream API's base URL (the local runner's origin).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    #[arg(long, env = "MEDIASTREAMS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Seconds of media each publisher sends.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 2000)]
    fragment_ms: u32,
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    #[arg(long, default_value_t = 2500)]
    video_kbps: u32,
    /// Where the encoded clip is kept between runs.
    #[arg(long, default_value = "target/bench/media")]
    media_dir: PathBuf,
    /// The node's pid, for its CPU time and memory from /proc.
    #[arg(long)]
    node_pid: Option<u32>,
    /// The JSON report (also printed as the last line of standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start every publisher at the same moment, their keyframes (and so
    /// every stream's fragments) together: the worst case. By default
    /// their starts are spread over one fragment, as publishers who
    /// connect at different times are.
    #[arg(long)]
    synchronized: bool,
    /// Publish to this Janus HTTP API (its VideoRoom, recording on)
    /// instead of the stream API: the peer compared against.
    #[arg(long)]
    janus: Option<String>,
    /// Where that Janus writes its recordings (counted at the end).
    #[arg(long)]
    janus_rec_dir: Option<PathBuf>,
    /// Stream names start with this (a run's streams are new).
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// The streams' output format: `smooth` (the audio is transcoded to
    /// AAC), `hls` (AAC too: Apple's players), or `dash` (the publisher's
    /// Opus is kept, where the node has passthrough on, as the local
    /// runner has).
    #[arg(long, default_value = "smooth", value_parser = ["smooth", "dash", "hls"])]
    output: String,
}

/// One publisher's stream, as the run sees it.
struct Stream {
    name: String,
    smooth_url: String,
    publisher: Arc<Publisher>,
    /// When its first sample went out.
    first_media: Arc<std::sync::Mutex<Option<Instant>>>,
    /// Its Janus session, when publishing to Janus.
    janus: Option<janus::JanusPublisher>,
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    async fn stream(&self, name: &str) -> Option<Value> {
        match self.call(reqwest::Method::GET, &format!("/streams/{name}"), None).await {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }
}

/// Creates the stream, starts ingest and connects its publisher.
async fn open_stream(api: &Api, name: String, fragment_ms: u32, format: &str) -> anyhow::Result<Stream> {
    let (status, created) = api
        .call(
            reqwest::Method::PUT,
            &format!("/streams/{name}"),
            Some(json!({ "outputs": [{ "name": "out", "format": format }], "fragmentDurationMs": fragment_ms })),
        )
        .await?;
    if status != 201 {
        bail!("creating {name}: {status} {created}");
    }
    // The Smooth manifest is every presentation's index, whatever its
    // outputs (docs/storage-layout.md): the recording is checked there.
    let media = format!("/{}/", created["playbackId"].as_str().context("the playback id")?);
    let output = created["outputs"][0]["url"].as_str().context("the output's URL")?;
    let smooth_url = match output.find(media.as_str()) {
        Some(at) => format!("{}{}", &output[..at + media.len()], mediastreams_packager::layout::SMOOTH_MANIFEST),
        None => bail!("{name}: the output URL {output} is not under its playback id"),
    };
    let (status, started) = api.call(reqwest::Method::POST, &format!("/streams/{name}/start-ingest"), None).await?;
    if status != 200 {
        bail!("starting ingest of {name}: {status} {started}");
    }
    let (Some(whip), Some(token)) = (started["ingest"]["url"].as_str(), started["ingest"]["token"].as_str()) else {
        bail!("start-ingest of {name} gave no WHIP URL and token: {started}");
    };
    let publisher = Publisher::connect(&api.http, whip, token).await.with_context(|| format!("publishing {name}"))?;
    Ok(Stream { name, smooth_url, publisher: Arc::new(publisher), first_media: Arc::default(), janus: None })
}

/// Joins the Janus VideoRoom as publisher `name`.
async fn open_janus(http: &reqwest::Client, url: &str, name: String) -> anyhow::Result<Stream> {
    let handle = Arc::new(std::sync::Mutex::new(None));
    let (slot, display) = (handle.clone(), name.clone());
    // Janus gathers no loopback candidates: media goes to the host's own
    // address (still on this machine).
    let publisher = Publisher::connect_with(&format!("{}:0", host_ip()), |offer| async move {
        let (j, answer) = janus::JanusPublisher::join(http, url, &display, offer).await?;
        if let Ok(mut h) = slot.lock() {
            *h = Some(j);
        }
        Ok(answer)
    })
    .await
    .with_context(|| format!("publishing {name} to Janus"))?;
    let janus = handle.lock().ok().and_then(|mut h| h.take());
    Ok(Stream { name, smooth_url: String::new(), publisher: Arc::new(publisher), first_media: Arc::default(), janus })
}

/// This host's address on its default route (what Janus announces).
fn host_ip() -> std::net::IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
}

/// Files and megabytes under `dir` (Janus's recordings).
fn recordings(dir: &std::path::Path) -> (u64, f64) {
    let (mut files, mut bytes) = (0u64, 0u64);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(m) = e.metadata()
            && m.is_file()
        {
            files += 1;
            bytes += m.len();
        }
    }
    (files, bytes as f64 / 1e6)
}

/// A process's CPU ticks and RSS (MB), when they can be read.
type ProcessSample = Option<(u64, f64)>;

/// A process's CPU ticks and RSS, if it can be read.
fn sample_process(pid: Option<u32>) -> ProcessSample {
    let path = |f: &str| match pid {
        Some(p) => format!("/proc/{p}/{f}"),
        None => format!("/proc/self/{f}"),
    };
    let ticks = report::cpu_ticks(&std::fs::read_to_string(path("stat")).ok()?)?;
    let rss = report::rss_mb(&std::fs::read_to_string(path("status")).ok()?)?;
    Some((ticks, rss))
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn cpu_percent(before: ProcessSample, after: ProcessSample, wall: Duration) -> Option<f64> {
    let (b, a) = (before?.0, after?.0);
    Some(a.saturating_sub(b) as f64 / clock_ticks_per_second() / wall.as_secs_f64().max(1e-3) * 100.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mediastreams_http::init_logging(mediastreams_http::LogFormat::Human);
    let args = Args::parse();
    let spec = ClipSpec {
        width: args.width,
        height: args.height,
        fps: args.fps,
        video_kbps: args.video_kbps,
        // One GOP per fragment: cuts need no keyframe request.
        gop_frames: (args.fps * args.fragment_ms / 1000).max(1),
        seconds: 10,
    };
    let clip = Arc::new(Clip::load_or_make(&args.media_dir, &spec).context("the clip")?);
    let api = Arc::new(Api {
        http: reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?,
        base: args.api.trim_end_matches('/').to_owned(),
        key: args.api_key.clone(),
    });
    let mut report = Report {
        publishers: args.publishers,
        fragment_ms: args.fragment_ms,
        synchronized: args.synchronized,
        peer: "mediastreams".to_owned(),
        output: if args.janus.is_some() { None } else { Some(args.output.clone()) },
        ..Default::default()
    };
    let idle = sample_process(args.node_pid);
    report.node_idle_rss_mb = idle.map(|s| s.1);

    // Connect every publisher, a few at a time.
    let run = format!("{}-{}", args.prefix, std::process::id());
    let gate = Arc::new(Semaphore::new(4));
    let mut opening = Vec::new();
    for i in 0..args.publishers {
        let (api, gate, name, janus, output) = (api.clone(), gate.clone(), format!("{run}-{i}"), args.janus.clone(), args.output.clone());
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            match janus {
                Some(url) => open_janus(&api.http, &url, name).await,
                None => open_stream(&api, name, args.fragment_ms, &output).await,
            }
        }));
    }
    let mut streams = Vec::new();
    for o in opening {
        streams.push(o.await??);
    }
    tracing::info!(publishers = streams.len(), "every publisher is connected; sending");

    // Send (each publisher starting a share of a fragment after the one
    // before, unless synchronized); watch for Live; sample the node.
    let seconds = Duration::from_secs(args.seconds);
    let began = Instant::now();
    let mut sending = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let (publisher, first, clip) = (s.publisher.clone(), s.first_media.clone(), clip.clone());
        let offset = if args.synchronized {
            Duration::ZERO
        } else {
            Duration::from_millis(u64::from(args.fragment_ms)) * i as u32 / args.publishers.max(1) as u32
        };
        sending.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            publisher
                .send(&clip, seconds, || {
                    if let Ok(mut f) = first.lock() {
                        *f = Some(Instant::now());
                    }
                })
                .await;
        }));
    }
    let names: Vec<String> = streams.iter().map(|s| s.name.clone()).collect();
    let mut live_after: Vec<Option<Duration>> = vec![None; names.len()];
    let mut steady: Option<(Instant, ProcessSample, ProcessSample)> = None;
    while began.elapsed() < seconds {
        // Live: polled every 50 ms until every stream is.
        for (i, name) in names.iter().enumerate() {
            if live_after[i].is_none()
                && let Some(first) = streams[i].first_media.lock().ok().and_then(|f| *f)
                // (Janus has no such state: live at the first media.)
                && (streams[i].janus.is_some() || api.stream(name).await.is_some_and(|s| s["state"] == "Live"))
            {
                live_after[i] = Some(first.elapsed());
            }
        }
        if steady.is_none() && live_after.iter().all(Option::is_some) {
            // The steady state starts a fragment after the last went Live.
            tokio::time::sleep(Duration::from_millis(u64::from(args.fragment_ms))).await;
            steady = Some((Instant::now(), sample_process(args.node_pid), sample_process(None)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loaded = sample_process(args.node_pid);
    let generator = sample_process(None);
    if let Some((at, node_before, gen_before)) = steady {
        let wall = at.elapsed();
        report.node_cpu_percent = cpu_percent(node_before, loaded, wall);
        report.generator_cpu_percent = cpu_percent(gen_before, generator, wall);
    }
    report.node_rss_mb = loaded.map(|s| s.1);
    if let (Some(l), Some(i)) = (report.node_rss_mb, report.node_idle_rss_mb) {
        report.rss_per_stream_mb = Some((l - i) / args.publishers.max(1) as f64);
    }
    for t in sending {
        let _ = t.await;
    }
    let sent_s = began.elapsed().as_secs_f64().min(seconds.as_secs_f64());
    report.seconds = seconds.as_secs_f64();
    report.sent_seconds = sent_s;
    report.bitrate_kbps = clip.bitrate_bps() / 1000.0;
    if args.janus.is_some() {
        // The peer: its sessions end (Janus closes the recordings); what
        // it recorded is counted.
        for s in &streams {
            if let Some(j) = &s.janus {
                j.destroy().await;
            }
            s.publisher.close().await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        report.peer = "janus".to_owned();
        if let Some(dir) = &args.janus_rec_dir {
            let (files, mb) = recordings(dir);
            report.peer_recordings = Some(files);
            report.peer_recorded_mb = Some(mb);
        }
        return finish_report(&report, args.out.as_deref());
    }
    // Stop every stream at once; time each to OnDemand.
    let stopped = Instant::now();
    for name in &names {
        let (status, body) = api.call(reqwest::Method::POST, &format!("/streams/{name}/stop-ingest"), None).await?;
        if !(200..300).contains(&status) {
            report.problems.push(format!("{name}: stop-ingest answered {status}: {body}"));
        }
    }
    let mut on_demand_after: Vec<Option<Duration>> = vec![None; names.len()];
    while stopped.elapsed() < Duration::from_secs(60) && on_demand_after.iter().any(Option::is_none) {
        for (i, name) in names.iter().enumerate() {
            if on_demand_after[i].is_none()
                && let Some(s) = api.stream(name).await
                && (s["state"] == "OnDemand" || s["state"] == "Failed")
            {
                on_demand_after[i] = Some(stopped.elapsed());
                if s["state"] == "Failed" {
                    report.problems.push(format!("{name}: Failed: {}", s["failure"]));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // What was stored.
    let fragment_s = f64::from(args.fragment_ms) / 1000.0;
    let mut recorded = Vec::new();
    let mut all_on_demand = true;
    let mut store_p99 = Vec::new();
    for s in &streams {
        // A finished recording's statistics carry its totals.
        let record = api.stream(&s.name).await.unwrap_or(Value::Null);
        let (state, stats) = (&record["state"], &record["stats"]);
        if state != "OnDemand" {
            all_on_demand = false;
            report.problems.push(format!("{}: {state} {:?} after stop-ingest", s.name, stopped.elapsed()));
        }
        match api.http.get(&s.smooth_url).send().await.and_then(reqwest::Response::error_for_status) {
            Ok(r) => match report::smooth_recording(&r.text().await.unwrap_or_default()) {
                Ok(rec) => {
                    report.fragments_stored += rec.fragments;
                    if rec.live || rec.seconds < sent_s - fragment_s {
                        all_on_demand = false;
                        report
                            .problems
                            .push(format!("{}: recorded {:.2} s of {sent_s:.2} s (live manifest: {})", s.name, rec.seconds, rec.live));
                    }
                    recorded.push(rec.seconds);
                }
                Err(e) => {
                    all_on_demand = false;
                    report.problems.push(format!("{}: the manifest: {e}", s.name));
                }
            },
            Err(e) => {
                all_on_demand = false;
                report.problems.push(format!("{}: the manifest: {e}", s.name));
            }
        }
        match (stats["fragmentsLate"].as_u64(), stats["fragmentStoreMsP99"].as_f64()) {
            (Some(late), Some(p99)) => {
                report.fragments_late += late;
                store_p99.push(p99);
            }
            _ => report.problems.push(format!("{}: no fragment statistics in {stats}", s.name)),
        }
        report.rtp_packets_lost += stats["packetsLost"].as_u64().unwrap_or(0);
        report.keyframe_requests += s.publisher.counters.keyframe_requests.load(Ordering::Relaxed);
        let errors = s.publisher.counters.write_errors.load(Ordering::Relaxed);
        if errors > 0 || !s.publisher.connected() {
            report.problems.push(format!("{}: {errors} samples not written; connected at the end: {}", s.name, s.publisher.connected()));
        }
        s.publisher.close().await;
    }
    let ms = |v: &[Option<Duration>]| v.iter().map(|d| d.map_or(f64::INFINITY, |d| d.as_secs_f64() * 1000.0)).collect::<Vec<_>>();
    let live_ms = ms(&live_after);
    let on_demand_ms = ms(&on_demand_after);
    if live_after.iter().any(Option::is_none) {
        all_on_demand = false;
        report.problems.push(format!("{} streams never went Live", live_after.iter().filter(|l| l.is_none()).count()));
    }
    report.fragments_expected = 2 * (sent_s / fragment_s).ceil() as u64 * args.publishers as u64;
    report.live_after_first_media_ms_p50 = percentile(&live_ms, 50.0);
    report.live_after_first_media_ms_max = live_ms.iter().copied().filter(|v| v.is_finite()).reduce(f64::max);
    report.stored_after_close_ms_p99 = store_p99.iter().copied().reduce(f64::max);
    report.on_demand_after_stop_ms_p50 = percentile(&on_demand_ms, 50.0);
    report.on_demand_after_stop_ms_max = on_demand_ms.iter().copied().filter(|v| v.is_finite()).reduce(f64::max);
    report.recorded_seconds_min = recorded.iter().copied().reduce(f64::min);
    report.all_on_demand = all_on_demand && recorded.len() == args.publishers;

    finish_report(&report, args.out.as_deref())
}

/// Writes the report (`out`, and the last line of standard output) and
/// prints its summary.
fn finish_report(report: &Report, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    if let Some(out) = out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, &json)?;
    }
    eprintln!("{}", report.summary());
    for p in &report.problems {
        eprintln!("  {p}");
    }
    println!("{}", serde_json::to_string(report)?);
    Ok(())
}
