//! End to end in Rust: a WHIP publisher built with the `webrtc` crate sends
//! real H.264 and Opus (encoded by Debian's ffmpeg) to `mediastreams-local`
//! on loopback. The stream goes Ready -> Live, fragments and live manifests
//! appear while it is live, and after stop-ingest it is OnDemand with a
//! complete on-demand Smooth manifest at the same URL.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediastreams_storage::ObjectKey;
use rtc::interceptor::Registry;
use rtc::media::Sample;
use rtc::media::io::h26x_reader::H26xSampleReader;
use rtc::media::io::ogg_reader::OggReader;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS, MediaEngine};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use serde_json::json;
use tokio::sync::mpsc;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder, register_default_interceptors,
};

use crate::api::harness::Env;

struct Events {
    gathered: mpsc::Sender<()>,
    connected: mpsc::Sender<()>,
    state: tokio::sync::watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.try_send(());
        }
    }
}

fn codec(kind: RtpCodecKind) -> RTCRtpCodecParameters {
    match kind {
        RtpCodecKind::Video => RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: 102,
        },
        _ => RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: 111,
        },
    }
}

pub(crate) struct Publisher {
    pub pc: Arc<dyn PeerConnection>,
    pub video: Arc<TrackLocalStaticSample>,
    pub audio: Arc<TrackLocalStaticSample>,
    pub offer: String,
    pub connected: mpsc::Receiver<()>,
    /// The connection's state, as the publisher sees it.
    pub state: tokio::sync::watch::Receiver<RTCPeerConnectionState>,
}

pub(crate) async fn publisher() -> Publisher {
    let mut me = MediaEngine::default();
    me.register_codec(codec(RtpCodecKind::Video), RtpCodecKind::Video).unwrap();
    me.register_codec(codec(RtpCodecKind::Audio), RtpCodecKind::Audio).unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut me).unwrap();
    let (gathered_tx, mut gathered_rx) = mpsc::channel(1);
    let (connected_tx, connected_rx) = mpsc::channel(1);
    let (state_tx, state_rx) = tokio::sync::watch::channel(RTCPeerConnectionState::New);
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(me)
        .with_setting_engine(SettingEngineBuilder::new().with_include_loopback_candidate(true).build())
        .with_interceptor_registry(registry)
        .with_handler(
            Arc::new(Events { gathered: gathered_tx, connected: connected_tx, state: state_tx }) as Arc<dyn PeerConnectionEventHandler>
        )
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await
        .unwrap();
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let mut tracks = Vec::new();
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        let track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    "publisher".to_owned(),
                    format!("{kind}"),
                    format!("{kind}"),
                    kind,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(rand_ssrc()), ..Default::default() },
                        codec: codec(kind).rtp_codec,
                        ..Default::default()
                    }],
                ),
            )
            .unwrap(),
        );
        pc.add_track(track.clone() as Arc<dyn TrackLocal>).await.unwrap();
        tracks.push(track);
    }
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered_rx.recv()).await;
    let offer = pc.local_description().await.unwrap().sdp;
    let audio = tracks.pop().unwrap();
    let video = tracks.pop().unwrap();
    Publisher { pc, video, audio, offer, connected: connected_rx, state: state_rx }
}

fn rand_ssrc() -> u32 {
    let mut b = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
    u32::from_be_bytes(b)
}

/// Sends the clip's H.264 and Opus in real time for `seconds`, looping.
pub(crate) async fn send_media(
    video: Arc<TrackLocalStaticSample>,
    audio: Arc<TrackLocalStaticSample>,
    dir: std::path::PathBuf,
    seconds: u64,
) {
    let h264 = dir.join("clip.h264");
    let ogg = dir.join("clip.ogg");
    let ssrc_v = *video.ssrcs().await.first().unwrap();
    let ssrc_a = *audio.ssrcs().await.first().unwrap();
    let v = tokio::spawn(async move {
        let start = Instant::now();
        let mut n = 0u64;
        'outer: loop {
            let mut reader = H26xSampleReader::new(BufReader::new(File::open(&h264).unwrap()), 1 << 20, false);
            while let Ok(s) = reader.next_sample() {
                if start.elapsed() >= Duration::from_secs(seconds) {
                    break 'outer;
                }
                let d = if s.timed { Duration::from_micros(33_333) } else { Duration::ZERO };
                let _ = video
                    .sample_writer(ssrc_v, 102)
                    .write_sample(&Sample { data: s.data, duration: d, ..Sample::new(Instant::now()) })
                    .await;
                if s.timed {
                    n += 1;
                    if let Some(w) = (Duration::from_micros(33_333) * n as u32).checked_sub(start.elapsed()) {
                        tokio::time::sleep(w).await;
                    }
                }
            }
        }
    });
    let a = tokio::spawn(async move {
        let start = Instant::now();
        let mut n = 0u64;
        'outer: loop {
            let (mut reader, _) = OggReader::new(BufReader::new(File::open(&ogg).unwrap()), true).unwrap();
            let mut last_granule = 0;
            while let Ok((page, header)) = reader.parse_next_page() {
                if start.elapsed() >= Duration::from_secs(seconds) {
                    break 'outer;
                }
                let samples = header.granule_position.saturating_sub(last_granule);
                last_granule = header.granule_position;
                if samples == 0 || samples > 5760 {
                    continue; // header pages
                }
                let d = Duration::from_micros(samples * 1_000_000 / 48_000);
                let _ = audio
                    .sample_writer(ssrc_a, 111)
                    .write_sample(&Sample { data: page.freeze(), duration: d, ..Sample::new(Instant::now()) })
                    .await;
                n += samples;
                if let Some(w) = Duration::from_micros(n * 1_000_000 / 48_000).checked_sub(start.elapsed()) {
                    tokio::time::sleep(w).await;
                }
            }
        }
    });
    let _ = v.await;
    let _ = a.await;
}

pub(crate) async fn manifest(env: &Env, pid: &str) -> Option<String> {
    let key = ObjectKey::parse(&format!("{pid}/smooth.ism/Manifest")).unwrap();
    env.media.get(&key).await.unwrap().map(|o| String::from_utf8(o.body.to_vec()).unwrap())
}

pub(crate) fn video_chunks(xml: &str) -> Vec<(u64, u64)> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("StreamIndex") && n.attribute("Type") == Some("video"))
        .flat_map(|si| si.children().filter(|c| c.has_tag_name("c")).collect::<Vec<_>>())
        .map(|c| (c.attribute("t").unwrap().parse().unwrap(), c.attribute("d").unwrap().parse().unwrap()))
        .collect()
}

/// H.264 (clip.h264) and Opus (clip.ogg) test media in a scratch dir.
pub(crate) fn media() -> tempfile::TempDir {
    let dir = mediastreams_tests::scratch();
    let _clip = mediastreams_tests::media::encode_test_clip(dir.path(), 4, 60);
    let ok = mediastreams_tests::media::tool("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4", "-ac", "2"])
        .args(["-c:a", "libopus", "-b:a", "64k", "-frame_duration", "20", "-page_duration", "20000", "-f", "ogg"])
        .arg(dir.path().join("clip.ogg"))
        .status()
        .unwrap();
    assert!(ok.success());
    dir
}

/// Posts a publisher's offer; returns the session URL once connected.
pub(crate) async fn connect(http: &reqwest::Client, whip: &str, token: &str, p: &mut Publisher) -> String {
    connect_with_answer(http, whip, token, p).await.0
}

/// [`connect`], also returning the answer.
pub(crate) async fn connect_with_answer(http: &reqwest::Client, whip: &str, token: &str, p: &mut Publisher) -> (String, String) {
    let r = http.post(whip).bearer_auth(token).header("content-type", "application/sdp").body(p.offer.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let answer = r.text().await.unwrap();
    p.pc.set_remote_description(RTCSessionDescription::answer(answer.clone()).unwrap()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), p.connected.recv()).await.expect("ICE/DTLS connects").unwrap();
    (format!("{}{}", whip.split("/whip/").next().unwrap(), location), answer)
}

/// The (address, port) of an answer's UDP host candidates.
pub(crate) fn udp_host_candidates(sdp: &str) -> Vec<(String, u16)> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.len() >= 8 && f[2].eq_ignore_ascii_case("udp") && f[7] == "host")
        .map(|f| (f[4].to_owned(), f[5].parse().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishers_share_the_nodes_one_media_port() {
    let env = Env::local_embedded(None).await;
    let dir = media();
    let http = reqwest::Client::new();
    let mut sessions = Vec::new();
    for name in ["mux-a", "mux-b"] {
        let created = env.call("PUT", &format!("/streams/{name}"), None).await.json();
        let started = env.call("POST", &format!("/streams/{name}/start-ingest"), None).await.json();
        let whip = started["ingest"]["url"].as_str().unwrap().to_owned();
        let token = started["ingest"]["token"].as_str().unwrap().to_owned();
        let mut p = publisher().await;
        let (_, answer) = connect_with_answer(&http, &whip, &token, &mut p).await;
        sessions.push((name, created["playbackId"].as_str().unwrap().to_owned(), p, answer));
    }
    let ports: Vec<Vec<(String, u16)>> = sessions.iter().map(|s| udp_host_candidates(&s.3)).collect();
    assert!(!ports[0].is_empty(), "the answer has a host candidate: {}", sessions[0].3);
    // The node is the DTLS server: it can decrypt the publisher's first
    // packets (see ingest-node's session.rs).
    assert!(
        sessions.iter().all(|s| s.3.lines().filter(|l| l.starts_with("a=setup:")).all(|l| l.trim() == "a=setup:passive")),
        "{}",
        sessions[0].3
    );
    assert!(ports[0].iter().all(|(ip, port)| ip == "127.0.0.1" && *port != 0), "{ports:?}");
    assert_eq!(ports[0], ports[1], "both sessions are reached on the same address and port");
    // Both publish at once through the one port.
    let sends: Vec<_> =
        sessions.iter().map(|s| tokio::spawn(send_media(s.2.video.clone(), s.2.audio.clone(), dir.path().to_owned(), 5))).collect();
    for s in sends {
        s.await.unwrap();
    }
    for (name, pid, p, _) in &sessions {
        assert_eq!(env.call("GET", &format!("/streams/{name}"), None).await.json()["state"], "Live", "{name}");
        assert_eq!(env.call("POST", &format!("/streams/{name}/stop-ingest"), None).await.status, 202);
        wait_for_state(&env, name, "OnDemand", Duration::from_secs(10)).await.expect("OnDemand after stop");
        let _ = p.pc.close().await;
        let chunks = video_chunks(&manifest(&env, pid).await.unwrap());
        let total = chunks.last().map(|(t, d)| t + d).unwrap_or(0) - chunks.first().map(|c| c.0).unwrap_or(0);
        assert!(total >= 30_000_000, "{name} recorded {total} of 5 s");
    }
}

/// A recording's audio has the channels its publisher said it sends: a
/// mono AAC track for an offer without `sprop-stereo=1` (browsers' and this
/// publisher's), a stereo one for an offer with it (OBS's). Encoding a mono
/// microphone as stereo cost nearly twice the CPU for the same sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_recordings_audio_has_the_channels_the_publisher_sends() {
    let env = Env::local_embedded(None).await;
    let dir = media();
    let http = reqwest::Client::new();
    let mut sessions = Vec::new();
    for (name, stereo) in [("mono", false), ("stereo", true)] {
        let outputs = json!({"outputs":[{"name":"smooth","format":"smooth"},{"name":"web","format":"dash"}]});
        let created = env.call("PUT", &format!("/streams/{name}"), Some(outputs)).await.json();
        let started = env.call("POST", &format!("/streams/{name}/start-ingest"), None).await.json();
        let whip = started["ingest"]["url"].as_str().unwrap().to_owned();
        let token = started["ingest"]["token"].as_str().unwrap().to_owned();
        let mut p = publisher().await;
        if stereo {
            p.offer = p.offer.replace("a=fmtp:111 minptime=10;useinbandfec=1", "a=fmtp:111 minptime=10;useinbandfec=1;sprop-stereo=1");
            assert!(p.offer.contains("sprop-stereo=1"), "{}", p.offer);
        }
        connect(&http, &whip, &token, &mut p).await;
        sessions.push((name, stereo, created, p));
    }
    let sends: Vec<_> =
        sessions.iter().map(|s| tokio::spawn(send_media(s.3.video.clone(), s.3.audio.clone(), dir.path().to_owned(), 4))).collect();
    for s in sends {
        s.await.unwrap();
    }
    for (name, stereo, created, p) in &sessions {
        assert_eq!(env.call("POST", &format!("/streams/{name}/stop-ingest"), None).await.status, 202);
        wait_for_state(&env, name, "OnDemand", Duration::from_secs(10)).await.expect("OnDemand after stop");
        let _ = p.pc.close().await;
        // 64 kb/s a channel.
        let (channels, bitrate) = if *stereo { (2, 128_000) } else { (1, 64_000) };
        let smooth = manifest(&env, created["playbackId"].as_str().unwrap()).await.unwrap();
        assert!(
            smooth.contains(&format!("Bitrate=\"{bitrate}\" FourCC=\"AACL\" SamplingRate=\"48000\" Channels=\"{channels}\"")),
            "{name}: {smooth}"
        );
        // What is stored decodes so (ffprobe reads the DASH view over HTTP).
        let out = mediastreams_tests::media::tool("ffprobe")
            .args(["-v", "error", "-select_streams", "a:0", "-show_entries", "stream=channels", "-of", "csv=p=0"])
            .arg(created["outputs"][1]["url"].as_str().unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
        // (One line per program the DASH view has; each says the same.)
        let read: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
        assert!(!read.is_empty() && read.iter().all(|c| *c == channels.to_string()), "{name}: {read:?}");
    }
}

/// A stream whose outputs are all DASH records the publisher's Opus as
/// it came (no transcoding): the index says FourCC `Opus`, ffprobe reads
/// Opus from the DASH output and decodes audio for as long as the video
/// lasts, and the recording is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_whose_outputs_are_all_dash_keeps_the_publishers_opus() {
    let env = Env::local_embedded(None).await;
    let dir = media();
    let http = reqwest::Client::new();
    let outputs = json!({"outputs":[{"name":"web","format":"dash"}]});
    let created = env.call("PUT", "/streams/opus", Some(outputs)).await.json();
    let pid = created["playbackId"].as_str().unwrap().to_owned();
    let started = env.call("POST", "/streams/opus/start-ingest", None).await.json();
    let whip = started["ingest"]["url"].as_str().unwrap().to_owned();
    let token = started["ingest"]["token"].as_str().unwrap().to_owned();
    let mut p = publisher().await;
    connect(&http, &whip, &token, &mut p).await;
    send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 6).await;
    let dash_url = created["outputs"][0]["url"].as_str().unwrap().to_owned();
    let (video, _) = stop_and_check_recording(&env, "opus", &pid, &dash_url, 40_000_000, 9).await;
    let _ = p.pc.close().await;
    let smooth = manifest(&env, &pid).await.unwrap();
    // Mono (this publisher's offer has no sprop-stereo), at the nominal
    // 48 kb/s a channel that names its objects.
    assert!(smooth.contains("Bitrate=\"48000\" FourCC=\"Opus\" SamplingRate=\"48000\" Channels=\"1\""), "{smooth}");
    {
        let url = dash_url;
        let out = mediastreams_tests::media::tool("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "a:0"])
            .args(["-show_entries", "stream=codec_name,channels,nb_read_frames", "-of", "csv=p=0"])
            .arg(&url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "ffprobe {url}: {}", String::from_utf8_lossy(&out.stderr));
        let (codec, channels, frames) = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').map(str::trim).collect();
                Some((f.first()?.to_string(), f.get(1)?.parse::<u32>().ok()?, f.get(2)?.parse::<u64>().ok()?))
            })
            .max_by_key(|(_, _, n)| *n)
            .unwrap_or_else(|| panic!("ffprobe said {text}"));
        assert_eq!((codec.as_str(), channels), ("opus", 1), "{url}: {text}");
        // 20 ms packets for as long as the video, within a fragment.
        let expected = video / 200_000;
        assert!(frames + 50 >= expected && frames <= expected + 50, "{url}: {frames} Opus packets for {video} of video: {text}");
        eprintln!("{url}: {frames} Opus packets decoded, {expected} for the video's length");
    }

    // A fleet that has not turned it on (`OPUS_PASSTHROUGH`, off by
    // default in the ingest node: older versions read Opus as AAC)
    // transcodes a DASH-only stream as before.
    let env = Env::local_embedded_with(None, mediastreams_ingest_node::NodeConfig { opus_passthrough: false, ..Default::default() }).await;
    let created = env.call("PUT", "/streams/aac", Some(json!({"outputs":[{"name":"web","format":"dash"}]}))).await.json();
    let pid = created["playbackId"].as_str().unwrap().to_owned();
    let started = env.call("POST", "/streams/aac/start-ingest", None).await.json();
    let mut p = publisher().await;
    connect(&http, started["ingest"]["url"].as_str().unwrap(), started["ingest"]["token"].as_str().unwrap(), &mut p).await;
    send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 3).await;
    assert_eq!(env.call("POST", "/streams/aac/stop-ingest", None).await.status, 202);
    wait_for_state(&env, "aac", "OnDemand", Duration::from_secs(10)).await.expect("OnDemand after stop");
    let _ = p.pc.close().await;
    let smooth = manifest(&env, &pid).await.unwrap();
    assert!(smooth.contains("Bitrate=\"64000\" FourCC=\"AACL\""), "passthrough off: AAC: {smooth}");
}

pub(crate) async fn wait_for_state(env: &Env, name: &str, state: &str, within: Duration) -> Option<Duration> {
    let began = Instant::now();
    while began.elapsed() < within {
        if env.call("GET", &format!("/streams/{name}"), None).await.json()["state"] == state {
            return Some(began.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Stops ingest, waits for OnDemand and checks the recording: a continuous
/// video timeline at least `min` long (100 ns units), whose DASH view
/// ffmpeg decodes over HTTP, as players read it, at 320x240 with at least
/// `tenths`/10 of the frames its duration holds at 30 fps. Returns the
/// recorded duration and the decoded frames.
pub(crate) async fn stop_and_check_recording(env: &Env, name: &str, pid: &str, dash_url: &str, min: u64, tenths: u64) -> (u64, u64) {
    assert_eq!(env.call("POST", &format!("/streams/{name}/stop-ingest"), None).await.status, 202);
    wait_for_state(env, name, "OnDemand", Duration::from_secs(10)).await.expect("OnDemand after stop");
    let chunks = video_chunks(&manifest(env, pid).await.unwrap());
    for w in chunks.windows(2) {
        assert_eq!(w[0].0 + w[0].1, w[1].0, "{name}: continuous: {chunks:?}");
    }
    let total = chunks.last().map(|(t, d)| t + d).unwrap_or(0) - chunks.first().map(|c| c.0).unwrap_or(0);
    assert!(total >= min, "{name}: recorded {total}, expected at least {min}: {chunks:?}");
    let out = mediastreams_tests::media::tool("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(dash_url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // One line per listing of the stream (under its program too).
    let (size, frames) = text
        .lines()
        .filter_map(|l| {
            let f: Vec<u64> = l.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            (f.len() == 3).then(|| ((f[0], f[1]), f[2]))
        })
        .max_by_key(|(_, n)| *n)
        .unwrap_or_else(|| panic!("{name}: ffprobe said {text}"));
    assert_eq!(size, (320, 240), "{name}: {text}");
    let expected = total * 30 / 10_000_000;
    assert!(frames * 10 >= expected * tenths, "{name}: {frames} of about {expected} frames decode: {text}");
    (total, frames)
}

/// Counts the video frames ffprobe, with its default options (as every
/// libavformat player opens a URL), decodes from a DASH or HLS URL.
pub(crate) fn decoded_frames(url: &str) -> u64 {
    let out = mediastreams_tests::media::tool("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_that_reconnects_continues_the_presentation() {
    let env = Env::local_embedded(None).await;
    let dir = media();
    let created = env.call("PUT", "/streams/re", None).await.json();
    let pid = created["playbackId"].as_str().unwrap().to_owned();
    let started = env.call("POST", "/streams/re/start-ingest", None).await.json();
    let whip = started["ingest"]["url"].as_str().unwrap().to_owned();
    let token = started["ingest"]["token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();

    let mut first = publisher().await;
    let session = connect(&http, &whip, &token, &mut first).await;
    send_media(first.video.clone(), first.audio.clone(), dir.path().to_owned(), 6).await;
    let r = http.delete(&session).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "the publisher ends its session");
    let _ = first.pc.close().await;
    assert_eq!(env.call("GET", "/streams/re", None).await.json()["state"], "Live", "leaving does not end the stream");
    let r = http.delete(&session).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 404, "an ended session is gone");

    let mut second = publisher().await;
    connect(&http, &whip, &token, &mut second).await;
    send_media(second.video.clone(), second.audio.clone(), dir.path().to_owned(), 6).await;
    assert_eq!(env.call("POST", "/streams/re/stop-ingest", None).await.status, 202);
    wait_for_state(&env, "re", "OnDemand", Duration::from_secs(10)).await.expect("OnDemand after stop");
    let _ = second.pc.close().await;
    let vod = manifest(&env, &pid).await.unwrap();
    let chunks = video_chunks(&vod);
    for w in chunks.windows(2) {
        assert_eq!(w[0].0 + w[0].1, w[1].0, "one timeline across both sessions, nothing overwritten: {chunks:?}");
    }
    let total = chunks.last().map(|(t, d)| t + d).unwrap() - chunks[0].0;
    assert!(total >= 90_000_000, "both sessions recorded: {total}");
    eprintln!("two sessions: {:.1} s in {} video fragments", total as f64 / 1e7, chunks.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webrtc_publisher_goes_live_then_on_demand() {
    publish_and_record(Env::local_embedded(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webrtc_publisher_goes_live_then_on_demand_on_dynamodb_and_s3() {
    publish_and_record(Env::local_aws().await).await;
}

async fn publish_and_record(env: Env) {
    let dir = media();

    let created = env.call("PUT", "/streams/cam", Some(json!({"outputs":[{"name":"smooth","format":"smooth"}]}))).await.json();
    let pid = created["playbackId"].as_str().unwrap().to_owned();
    let started = env.call("POST", "/streams/cam/start-ingest", None).await.json();
    let whip = started["ingest"]["url"].as_str().unwrap().to_owned();
    let token = started["ingest"]["token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();

    let p = publisher().await;
    // Bad requests first: clear errors, nothing started.
    let r = http.post(&whip).header("content-type", "application/sdp").body(p.offer.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token");
    let r = http.post(&whip).bearer_auth("wrong").header("content-type", "application/sdp").body(p.offer.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401, "wrong token");
    let r = http.post(&whip).bearer_auth(&token).header("content-type", "text/plain").body(p.offer.clone()).send().await.unwrap();
    assert_eq!(r.status(), 415);
    let r = http.post(&whip).bearer_auth(&token).header("content-type", "application/sdp").body("garbage").send().await.unwrap();
    assert_eq!(r.status(), 422);
    let no_h264: String = p.offer.lines().filter(|l| !l.contains("H264")).map(|l| format!("{l}\r\n")).collect();
    let r = http.post(&whip).bearer_auth(&token).header("content-type", "application/sdp").body(no_h264).send().await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("H.264"), "the error names the missing codec");
    // Firefox's simulcast offer (VP8, VP9, AV1: no H.264) is refused as clearly.
    let firefox =
        std::fs::read_to_string(mediastreams_tests::workspace_root().join("crates/webrtc-proto/testdata/offers/firefox-152-simulcast.sdp"))
            .unwrap();
    let r = http.post(&whip).bearer_auth(&token).header("content-type", "application/sdp").body(firefox).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "unsupported-offer", "{problem}");
    assert!(problem["detail"].as_str().unwrap_or("").contains("H.264"), "{problem}");
    let r = http.post(&whip).bearer_auth(&token).header("content-type", "application/sdp").body(vec![b'v'; 100_000]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let r = http.request(reqwest::Method::OPTIONS, &whip).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(env.call("GET", "/streams/cam", None).await.json()["state"], "Ready");

    // The real offer.
    let r = http.post(&whip).bearer_auth(&token).header("content-type", "application/sdp").body(p.offer.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(r.headers().contains_key("etag"));
    assert_eq!(r.headers()["content-type"], "application/sdp");
    let answer = r.text().await.unwrap();
    p.pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap()).await.unwrap();
    let mut connected = p.connected;
    tokio::time::timeout(Duration::from_secs(10), connected.recv()).await.expect("ICE/DTLS connects").unwrap();

    // A second publisher is refused while the first is connected.
    let second = publisher().await;
    let r = http.post(&whip).bearer_auth(&token).header("content-type", "application/sdp").body(second.offer.clone()).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let _ = second.pc.close().await;
    let session_url = format!("{}{}", whip.split("/whip/").next().unwrap(), location);
    let r = http.patch(&session_url).bearer_auth(&token).body("a=candidate").send().await.unwrap();
    assert_eq!(r.status(), 405, "trickle ICE is not supported");

    const SECONDS: u64 = 12;
    let sending = tokio::spawn(send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), SECONDS));
    let began = Instant::now();
    let mut live_after = None;
    while began.elapsed() < Duration::from_secs(8) {
        if env.call("GET", "/streams/cam", None).await.json()["state"] == "Live" {
            live_after = Some(began.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let live_after = live_after.expect("the stream goes Live within a few seconds of media");
    sending.await.unwrap();
    // What the node sees is in the stream resource.
    let stats = env.call("GET", "/streams/cam", None).await.json()["stats"].clone();
    assert_eq!((stats["width"].as_u64(), stats["height"].as_u64()), (Some(320), Some(240)), "{stats}");
    let fps = stats["frameRate"].as_f64().unwrap();
    assert!((20.0..=35.0).contains(&fps), "frame rate {fps}");
    assert!(stats["videoBitrateBps"].as_u64().unwrap() > 10_000, "{stats}");
    assert!(stats["audioBitrateBps"].as_u64().unwrap() > 10_000, "{stats}");
    assert!(stats["packetsReceived"].as_u64().unwrap() > 100, "{stats}");
    assert!(stats["lastMediaAt"].is_string());
    assert_eq!(stats["avSync"], "senderReports", "the publisher's sender reports align audio and video: {stats}");
    // Where media waited: reported, not judged (timings are for benches).
    for key in ["videoTransitMs", "queueMs", "storeMs"] {
        assert!(stats["delays"][key].is_u64(), "stats.delays.{key}: {stats}");
    }
    let live = manifest(&env, &pid).await.expect("a live manifest");
    assert!(live.contains("IsLive=\"TRUE\""));
    let live_chunks = video_chunks(&live);
    assert!(live_chunks.len() >= 2, "fragments while live: {live_chunks:?}");

    let stop = env.call("POST", "/streams/cam/stop-ingest", None).await;
    assert_eq!(stop.status, 202);
    let mut on_demand = false;
    for _ in 0..100 {
        if env.call("GET", "/streams/cam", None).await.json()["state"] == "OnDemand" {
            on_demand = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(on_demand, "the stream becomes OnDemand after stop-ingest");
    let vod = manifest(&env, &pid).await.unwrap();
    assert!(!vod.contains("IsLive"));
    let chunks = video_chunks(&vod);
    for w in chunks.windows(2) {
        assert_eq!(w[0].0 + w[0].1, w[1].0, "contiguous timeline");
    }
    let total = chunks.last().map(|(t, d)| t + d).unwrap() - chunks[0].0;
    assert!(total >= (SECONDS - 4) * 10_000_000, "recorded {total} of {SECONDS} s");
    assert!(chunks.starts_with(&live_chunks[..1]), "the recording starts where live did");
    eprintln!("live after {live_after:?}; recorded {:.1} s in {} video fragments", total as f64 / 1e7, chunks.len());
    let _ = p.pc.close().await;
}

/// What the lossy relay did.
#[derive(Debug, Default)]
pub(crate) struct RelayCounters {
    pub rtp: std::sync::atomic::AtomicU64,
    pub dropped: std::sync::atomic::AtomicU64,
    pub reordered: std::sync::atomic::AtomicU64,
}

/// A UDP relay between a publisher and the node that drops every
/// `drop_every`-th RTP packet and swaps every `swap_every`-th with the one
/// after it (a deterministic loss and reordering pattern). STUN, DTLS and
/// RTCP pass untouched. The publisher is pointed at the relay by rewriting
/// the answer's candidates. With `only_payload_type`, only RTP packets of
/// that payload type count (and suffer).
pub(crate) async fn lossy_relay(
    node: std::net::SocketAddr,
    drop_every: u64,
    swap_every: u64,
    only_payload_type: Option<u8>,
) -> (std::net::SocketAddr, Arc<RelayCounters>) {
    use std::sync::atomic::Ordering::Relaxed;
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(node).await.unwrap();
    let addr = front.local_addr().unwrap();
    let counters = Arc::new(RelayCounters::default());
    let publisher: Arc<std::sync::Mutex<Option<std::net::SocketAddr>>> = Arc::default();
    {
        let (front, back, counters, publisher) = (front.clone(), back.clone(), counters.clone(), publisher.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut held: Option<Vec<u8>> = None;
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *publisher.lock().unwrap() = Some(from);
                let d = &buf[..n];
                // RFC 7983: 128..=191 is RTP or RTCP; RTCP packet types 192..=223.
                let rtp = n > 12 && (128..=191).contains(&d[0]) && !(192..=223).contains(&d[1]);
                if !rtp || only_payload_type.is_some_and(|pt| d[1] & 0x7f != pt) {
                    let _ = back.send(d).await;
                    continue;
                }
                let k = counters.rtp.fetch_add(1, Relaxed) + 1;
                if k % drop_every == 0 {
                    counters.dropped.fetch_add(1, Relaxed);
                    continue;
                }
                if k % swap_every == 0 && held.is_none() {
                    counters.reordered.fetch_add(1, Relaxed);
                    held = Some(d.to_vec());
                    continue;
                }
                let _ = back.send(d).await;
                if let Some(h) = held.take() {
                    let _ = back.send(&h).await;
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok(n) = back.recv(&mut buf).await {
            let to = *publisher.lock().unwrap();
            if let Some(to) = to {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    (addr, counters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loss_and_reordering_still_give_a_continuous_playable_recording() {
    use std::sync::atomic::Ordering::Relaxed;
    let env = Env::local_embedded(None).await;
    let dir = media();
    let created = env
        .call(
            "PUT",
            "/streams/lossy",
            Some(json!({"outputs":[{"name":"s","format":"smooth"},{"name":"d","format":"dash"},{"name":"h","format":"hls"}]})),
        )
        .await
        .json();
    let pid = created["playbackId"].as_str().unwrap().to_owned();
    let dash_url = created["outputs"][1]["url"].as_str().unwrap().to_owned();
    let hls_url = created["outputs"][2]["url"].as_str().unwrap().to_owned();
    let started = env.call("POST", "/streams/lossy/start-ingest", None).await.json();
    let whip = started["ingest"]["url"].as_str().unwrap().to_owned();
    let token = started["ingest"]["token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let mut p = publisher().await;
    let r = http.post(&whip).bearer_auth(&token).header("content-type", "application/sdp").body(p.offer.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let answer = r.text().await.unwrap();
    let (ip, port) = udp_host_candidates(&answer).first().cloned().expect("a host candidate");
    // 1 RTP packet in 25 lost, 1 in 10 arriving after its successor.
    let (relay, counters) = lossy_relay(format!("{ip}:{port}").parse().unwrap(), 25, 10, None).await;
    let answer = answer.replace(&format!(" {ip} {port} typ host"), &format!(" {} {} typ host", relay.ip(), relay.port()));
    p.pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), p.connected.recv()).await.expect("ICE/DTLS connects through the relay").unwrap();
    send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 10).await;
    // A continuous, playable recording of 10 s.
    let (total, frames) = stop_and_check_recording(&env, "lossy", &pid, &dash_url, 80_000_000, 9).await;
    let _ = p.pc.close().await;
    // The HLS view of the same fragments, read as a libavformat player
    // reads it (no `-allowed_extensions`, no `-extension_picky 0`).
    assert_eq!(decoded_frames(&hls_url), frames, "HLS and DASH decode the same frames");
    let (rtp, dropped, reordered) = (counters.rtp.load(Relaxed), counters.dropped.load(Relaxed), counters.reordered.load(Relaxed));
    assert!(
        rtp > 500 && dropped >= rtp / 30 && reordered >= rtp / 15,
        "the relay dropped {dropped} and reordered {reordered} of {rtp} RTP packets"
    );
    let stats = env.call("GET", "/streams/lossy", None).await.json()["stats"].clone();
    eprintln!(
        "lossy relay: dropped {dropped}, reordered {reordered} of {rtp} RTP packets; recorded {:.1} s, {frames} frames decode; node stats {stats}",
        total as f64 / 1e7
    );
}

/// Serves a node's WHIP endpoint on a loopback port; returns its base URL.
async fn serve_node(node: Arc<mediastreams_ingest_node::IngestNode>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, mediastreams_ingest_node::whip::endpoint::router(node)).await;
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_hands_a_publisher_to_the_node_the_stream_is_assigned_to() {
    use mediastreams_ingest_node::{IngestNode, NodeConfig};
    use mediastreams_storage::{NodeRecord, NodeRegistry, StreamRepo};
    let dir = media();
    let data = mediastreams_tests::scratch();
    let table = mediastreams_tests::embedded_table(&data);
    let store = mediastreams_tests::local_store(&data);
    let registry = NodeRegistry::new(table.clone(), time::Duration::seconds(30));
    let repo = StreamRepo::new(table.clone());
    // Two nodes behind one "load balancer" (its URL is node a's): every
    // WHIP request reaches node a.
    let a = IngestNode::new(repo.clone(), store.clone(), NodeConfig::default());
    let b = IngestNode::new(repo.clone(), store.clone(), NodeConfig::default());
    a.join_fleet("a".into(), registry.clone());
    b.join_fleet("b".into(), registry.clone());
    let (a_url, b_url) = (serve_node(a.clone()).await, serve_node(b.clone()).await);
    let b_media = b.bind_media().await.unwrap();
    let a_media = a.bind_media().await.unwrap();
    let beat = |id: &str, load: u32, internal: &str, at: time::OffsetDateTime| NodeRecord {
        id: id.into(),
        whip_base_url: a_url.clone(),
        capacity: 10,
        active_streams: load,
        heartbeat_at: at,
        internal_url: Some(internal.to_owned()),
    };
    let now = time::OffsetDateTime::now_utc();
    registry.heartbeat(&beat("a", 5, &a_url, now)).await.unwrap();
    registry.heartbeat(&beat("b", 0, &b_url, now)).await.unwrap();
    let api = mediastreams_functions::Api::new(
        repo.clone(),
        store.clone(),
        mediastreams_functions::ApiConfig { media_base_url: "https://media.example".into(), ingest_base_url: String::new(), api_key: None },
    )
    .with_node_registry(registry.clone());
    let call = |method: &str, path: &str| {
        let req = http::Request::builder().method(method).uri(path).body(bytes::Bytes::new()).unwrap();
        let api = api.clone();
        async move {
            let res = api.handle(req).await;
            let status = res.status().as_u16();
            let body = res.into_body();
            (status, if body.is_empty() { serde_json::Value::Null } else { serde_json::from_slice::<serde_json::Value>(&body).unwrap() })
        }
    };
    assert_eq!(call("PUT", "/streams/fleet").await.0, 201);
    let (status, started) = call("POST", "/streams/fleet/start-ingest").await;
    assert_eq!(status, 200);
    let whip = started["ingest"]["url"].as_str().unwrap().to_owned();
    let token = started["ingest"]["token"].as_str().unwrap().to_owned();
    assert!(whip.starts_with(&a_url), "the publisher is sent to the load balancer: {whip}");
    assert_eq!(repo.get("fleet").await.unwrap().unwrap().stream.ingest.unwrap().node_id.as_deref(), Some("b"));

    // Node a hands the offer to node b: the answer names b's media port.
    let http = reqwest::Client::new();
    let mut p = publisher().await;
    let (session, answer) = connect_with_answer(&http, &whip, &token, &mut p).await;
    let ports: Vec<u16> = udp_host_candidates(&answer).into_iter().map(|(_, port)| port).collect();
    assert!(
        !ports.is_empty() && ports.iter().all(|&port| port == b_media.port()),
        "answered by node b ({b_media}), not a ({a_media}): {ports:?}"
    );
    send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 4).await;
    assert_eq!(repo.get("fleet").await.unwrap().unwrap().stream.state, mediastreams_model::StreamState::Live);
    assert_eq!((a.active_streams(), b.active_streams()), (0, 1), "node b records the stream");
    // The session URL also reaches b through a.
    assert!(session.starts_with(&a_url), "{session}");
    let r = http.delete(&session).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let _ = p.pc.close().await;
    // Stop: b finalizes.
    assert_eq!(call("POST", "/streams/fleet/stop-ingest").await.0, 202);
    let began = Instant::now();
    while repo.get("fleet").await.unwrap().unwrap().stream.state != mediastreams_model::StreamState::OnDemand {
        assert!(began.elapsed() < Duration::from_secs(10), "OnDemand after stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A node whose heartbeat stopped cannot be handed anything: a clear 503.
    assert_eq!(call("PUT", "/streams/fleet2").await.0, 201);
    let (_, started) = call("POST", "/streams/fleet2/start-ingest").await;
    assert_eq!(repo.get("fleet2").await.unwrap().unwrap().stream.ingest.unwrap().node_id.as_deref(), Some("b"));
    let (whip, token) = (started["ingest"]["url"].as_str().unwrap().to_owned(), started["ingest"]["token"].as_str().unwrap().to_owned());
    // A request marked as handed over that reaches a node other than the
    // stream's is refused: only the owner terminates a stream's media.
    let r = http
        .post(&whip)
        .bearer_auth(&token)
        .header("content-type", "application/sdp")
        .header(mediastreams_ingest_node::whip::fleet::FORWARDED, "elsewhere")
        .body(p.offer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421, "{:?}", r.text().await);
    registry.heartbeat(&beat("b", 0, &b_url, now - time::Duration::seconds(60))).await.unwrap();
    let r = http.post(&whip).bearer_auth(&token).header("content-type", "application/sdp").body(p.offer.clone()).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "node-unavailable", "{problem}");
}

/// A third-party WebRTC stack publishes: aiortc (Python, PyPI) sends a
/// looping file as H.264 + Opus through `tests/whip-client/aiortc_whip.py`.
/// Its video RTP clock jumps back each time the file loops, which the
/// node follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_third_party_publisher_aiortc_goes_live_then_on_demand() {
    let env = Env::local_embedded(None).await;
    let dir = mediastreams_tests::scratch();
    let clip = dir.path().join("clip.mp4");
    let ok = mediastreams_tests::media::tool("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30:duration=4",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=4",
        ])
        .args(["-c:v", "libx264", "-profile:v", "baseline", "-g", "60", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(ok.success());
    let created = env
        .call("PUT", "/streams/aiortc", Some(json!({"outputs":[{"name":"s","format":"smooth"},{"name":"d","format":"dash"}]})))
        .await
        .json();
    let pid = created["playbackId"].as_str().unwrap().to_owned();
    let dash_url = created["outputs"][1]["url"].as_str().unwrap().to_owned();
    let started = env.call("POST", "/streams/aiortc/start-ingest", None).await.json();
    let whip = started["ingest"]["url"].as_str().unwrap().to_owned();
    let token = started["ingest"]["token"].as_str().unwrap().to_owned();
    let root = mediastreams_tests::workspace_root();
    let python = root.join(".tools/venv/bin/python");
    let script = root.join("tests/whip-client/aiortc_whip.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg(script)
            .args(["--url", &whip, "--token", &token, "--seconds", "10", "--media"])
            .arg(&clip)
            .output()
            .unwrap_or_else(|e| panic!("{} (scripts/install-test-deps installs aiortc): {e}", python.display()))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "aiortc_whip.py: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["post"], 201, "{report}");
    assert!(report["states"].as_array().unwrap().iter().any(|s| s == "connected"), "{report}");
    assert_eq!(report["delete"], 200, "{report}");
    assert_eq!(env.call("GET", "/streams/aiortc", None).await.json()["state"], "Live");
    // Continuous across the publisher's clock jumps.
    let (total, frames) = stop_and_check_recording(&env, "aiortc", &pid, &dash_url, 80_000_000, 8).await;
    eprintln!("aiortc: {report}; recorded {:.1} s, {frames} frames decode", total as f64 / 1e7);
}

/// The publisher's picture size changes mid-stream (a browser adapting to
/// its bandwidth sends a new SPS): the recording keeps every frame, and
/// dash.js plays the Smooth recording through the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resolution_change_mid_stream_plays_through() {
    let env = Env::local_embedded(None).await;
    let dir = media();
    // 4 s at 320x240, then 4 s at 160x120 (an IDR with its new SPS first).
    let _small = mediastreams_tests::media::encode_sized_test_clip(dir.path(), 4, 60, (160, 120));
    let mut both = std::fs::read(dir.path().join("clip.h264")).unwrap();
    both.extend(std::fs::read(dir.path().join("clip-160x120.h264")).unwrap());
    std::fs::write(dir.path().join("clip.h264"), both).unwrap();
    let created = env
        .call("PUT", "/streams/resize", Some(json!({"outputs":[{"name":"s","format":"smooth"},{"name":"d","format":"dash"}]})))
        .await
        .json();
    let smooth_url = created["outputs"][0]["url"].as_str().unwrap().to_owned();
    let dash_url = created["outputs"][1]["url"].as_str().unwrap().to_owned();
    let started = env.call("POST", "/streams/resize/start-ingest", None).await.json();
    let whip = started["ingest"]["url"].as_str().unwrap().to_owned();
    let token = started["ingest"]["token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let mut p = publisher().await;
    connect(&http, &whip, &token, &mut p).await;
    send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 8).await;
    assert_eq!(env.call("POST", "/streams/resize/stop-ingest", None).await.status, 202);
    wait_for_state(&env, "resize", "OnDemand", Duration::from_secs(10)).await.expect("OnDemand after stop");
    let _ = p.pc.close().await;
    // ffmpeg decodes every frame, at both sizes.
    let out = mediastreams_tests::media::tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=width", "-of", "csv=p=0"])
        .arg(&dash_url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let widths: Vec<u32> = text.lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).collect();
    let (large, small) = (widths.iter().filter(|&&w| w == 320).count(), widths.iter().filter(|&&w| w == 160).count());
    // Every frame sent is recorded, the first GOP included (the node is the
    // DTLS server, so the first packets are never dropped undecrypted).
    assert_eq!((large, small), (120, 120), "frames at 320 and 160 wide, of {}", widths.len());
    assert!(widths.iter().skip_while(|&&w| w == 320).all(|&w| w == 160), "the large frames come first: {widths:?}");
    // dash.js plays the recording through the change.
    let origin = env.media_base.trim_end_matches("/media").to_owned();
    let report = tokio::task::spawn_blocking(move || crate::player::play(&origin, &smooth_url, "vod", 8, "player-resolution-change.png"))
        .await
        .unwrap();
    assert_eq!(report["errors"], json!([]), "{report}");
    let samples = report["samples"].as_array().unwrap();
    let furthest = samples.last().and_then(|s| s["t"].as_f64()).unwrap_or(0.0);
    assert_eq!(samples.last().map(|s| &s["atEnd"]), Some(&json!(true)), "played to the end: {report}");
    let seen: Vec<u64> = samples.iter().filter_map(|s| s["width"].as_u64()).collect();
    assert!(seen.contains(&320) && seen.contains(&160), "the picture changed size while playing: {seen:?}");
    eprintln!("resolution change: {large} frames at 320x240, {small} at 160x120; dash.js played to {furthest:.1} s, sizes seen {seen:?}");
}

/// GStreamer publishes: webrtcbin (Debian's GStreamer 1.22, libnice) sends
/// H.264 from x264enc and Opus through `tests/whip-client/gst_whip.py`.
/// libnice gathers no loopback candidates, so the node listens on every
/// interface (media IP 0.0.0.0) and both meet on the machine's own address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gstreamer_publisher_goes_live_then_on_demand() {
    let ingest = mediastreams_ingest_node::NodeConfig { media_ip: std::net::IpAddr::from([0, 0, 0, 0]), ..Default::default() };
    let env = Env::local_embedded_with(None, ingest).await;
    let created = env
        .call("PUT", "/streams/gst", Some(json!({"outputs":[{"name":"s","format":"smooth"},{"name":"d","format":"dash"}]})))
        .await
        .json();
    let pid = created["playbackId"].as_str().unwrap().to_owned();
    let dash_url = created["outputs"][1]["url"].as_str().unwrap().to_owned();
    let started = env.call("POST", "/streams/gst/start-ingest", None).await.json();
    let whip = started["ingest"]["url"].as_str().unwrap().to_owned();
    let token = started["ingest"]["token"].as_str().unwrap().to_owned();
    let script = mediastreams_tests::workspace_root().join("tests/whip-client/gst_whip.py");
    let out = tokio::task::spawn_blocking(move || {
        // Debian's Python: GStreamer's introspection data is installed for it.
        std::process::Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--url", &whip, "--token", &token, "--seconds", "8"])
            .output()
            .expect("Debian's python3 with python3-gst-1.0 (scripts/install-test-deps installs it)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "gst_whip.py: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["post"], 201, "{report}");
    assert!(report["states"].as_array().unwrap().iter().any(|s| s == "connected"), "{report}");
    assert_eq!(report["delete"], 200, "{report}");
    let stats = env.call("GET", "/streams/gst", None).await.json();
    assert_eq!(stats["state"], "Live", "{stats}");
    assert_eq!((stats["stats"]["width"].as_u64(), stats["stats"]["height"].as_u64()), (Some(320), Some(240)), "{stats}");
    let (total, frames) = stop_and_check_recording(&env, "gst", &pid, &dash_url, 60_000_000, 8).await;
    eprintln!("gstreamer: {report}; recorded {:.1} s, {frames} frames decode", total as f64 / 1e7);
}

/// Sessions leave nothing behind (webrtc#906 was a per-connection leak in
/// the crate): after publishers connect and leave one after another, the
/// node's media socket routes to no session and remembers no address,
/// which holds only once each connection and its socket are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_are_released_when_publishers_leave() {
    use mediastreams_ingest_node::{IngestNode, NodeConfig};
    use mediastreams_storage::StreamRepo;
    let dir = media();
    let data = mediastreams_tests::scratch();
    let table = mediastreams_tests::embedded_table(&data);
    let store = mediastreams_tests::local_store(&data);
    let repo = StreamRepo::new(table.clone());
    let node = IngestNode::new(repo.clone(), store.clone(), NodeConfig::default());
    let url = serve_node(node.clone()).await;
    let api = mediastreams_functions::Api::new(
        repo.clone(),
        store.clone(),
        mediastreams_functions::ApiConfig { media_base_url: "https://media.example".into(), ingest_base_url: url.clone(), api_key: None },
    );
    let call = |method: &str, path: String| {
        let req = http::Request::builder().method(method).uri(path).body(bytes::Bytes::new()).unwrap();
        let api = api.clone();
        async move { serde_json::from_slice::<serde_json::Value>(&api.handle(req).await.into_body()).unwrap_or_default() }
    };
    let http = reqwest::Client::new();
    const SESSIONS: usize = 5;
    for i in 0..SESSIONS {
        let name = format!("leak{i}");
        call("PUT", format!("/streams/{name}")).await;
        let started = call("POST", format!("/streams/{name}/start-ingest")).await;
        let (whip, token) =
            (started["ingest"]["url"].as_str().unwrap().to_owned(), started["ingest"]["token"].as_str().unwrap().to_owned());
        let mut p = publisher().await;
        let session = connect(&http, &whip, &token, &mut p).await;
        send_media(p.video.clone(), p.audio.clone(), dir.path().to_owned(), 1).await;
        assert_eq!(node.media_stats().unwrap().sessions, 1, "one session at a time");
        assert_eq!(http.delete(&session).bearer_auth(&token).send().await.unwrap().status(), 200);
        let _ = p.pc.close().await;
    }
    let began = Instant::now();
    loop {
        let stats = node.media_stats().unwrap();
        if stats.sessions == 0 && stats.remote_addresses == 0 {
            eprintln!("{SESSIONS} sessions released: {stats:?}");
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(10), "sessions still held after their publishers left: {stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
