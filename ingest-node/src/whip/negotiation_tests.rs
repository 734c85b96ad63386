//! Every captured offer (`crates/webrtc-proto/testdata/offers`) through
//! the node's real negotiation: the answers carry what `check_offer`
//! accepted.

use mediastreams_webrtc_proto::offer::{OfferedCodec, check_offer, sections};

fn offer(name: &str) -> String {
    let path = format!("{}/../crates/webrtc-proto/testdata/offers/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn payload_types(codecs: &[OfferedCodec]) -> Vec<u8> {
    codecs.iter().map(|c| c.payload_type).collect()
}

/// Captured offers that the node's WebRTC stack (`webrtc`/`rtc` 0.21.1)
/// cannot answer although `check_offer` accepts them, with the error.
/// Firefox 46 still writes the pre-standard data channel section
/// `m=application 9 DTLS/SCTP 5000` (`a=sctpmap`); the stack reads its
/// format `5000` as an RTP payload type.
const UNANSWERABLE: &[(&str, &str)] = &[("firefox-46.0.1-unknown.sdp", "number too large to fit in target type")];

/// Captured offers the node refuses before negotiating (`check_offer`),
/// with a fragment of the error the publisher is given (WHIP: 422
/// `unsupported-offer`).
const REFUSED: &[(&str, &str)] = &[("firefox-152-simulcast.sdp", "does not include H.264")];

/// A node's media socket on loopback, as `session::start` takes it, with
/// its scratch directory (removed by the caller).
async fn node_on_loopback(name: &str) -> (std::path::PathBuf, std::sync::Arc<crate::ice::udp_mux::UdpMux>, crate::session::Announce) {
    use std::sync::Arc;

    use mediastreams_storage::{EmbeddedTable, LocalDirStore, StreamRepo};

    let dir = std::env::temp_dir().join(format!("ingest-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let table = Arc::new(EmbeddedTable::open(&dir.join("streams.redb")).unwrap());
    let store = Arc::new(LocalDirStore::open(dir.join("objects")).unwrap());
    let node = crate::IngestNode::new(StreamRepo::new(table), store, crate::NodeConfig::default());
    let mux = node.media_mux().await.unwrap();
    let announce = crate::session::Announce { media_ip: node.config.media_ip, public_ip: None };
    (dir, mux, announce)
}

/// `sdp` without its `m=application` section, which must be the last
/// one, and without that section's mid in the BUNDLE group.
fn without_data_channel(sdp: &str) -> String {
    let (media, data_channel) = sdp.split_at(sdp.find("m=application").unwrap());
    let mid = data_channel.lines().find_map(|l| l.strip_prefix("a=mid:")).unwrap().trim_end();
    media
        .lines()
        .map(|l| match l.strip_prefix("a=group:BUNDLE ") {
            Some(mids) => format!("a=group:BUNDLE {}\r\n", mids.split(' ').filter(|m| *m != mid).collect::<Vec<_>>().join(" ")),
            None => format!("{l}\r\n"),
        })
        .collect()
}

/// Every captured offer through the node's own negotiation path
/// (`session::start`: its media engine, interceptors, settings and
/// media socket on loopback), as the WHIP endpoint does after
/// `check_offer`. The answer must receive, and only receive, H.264 with
/// the payload types `check_offer` accepted and Opus with the offer's
/// payload type. An offer listed in `UNANSWERABLE` must fail with its
/// error, and must be answered once its data channel section is taken
/// out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_offers_are_answered_with_their_payload_types() {
    use tokio::sync::mpsc;

    let (dir, mux, announce) = node_on_loopback("offers").await;
    let sink = crate::media_input::MediaSink::new;

    let offers_dir = format!("{}/../crates/webrtc-proto/testdata/offers", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&offers_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sdp"))
        .filter(|n| !REFUSED.iter().any(|(r, _)| r == n))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    let mut cases: Vec<(String, String)> = Vec::new();
    for name in &names {
        let sdp = offer(name);
        match UNANSWERABLE.iter().find(|(n, _)| n == name) {
            Some(_) => cases.push((format!("{name} (without its data channel)"), without_data_channel(&sdp))),
            None => cases.push((name.clone(), sdp)),
        }
    }
    let mut session = 0;
    let mut failures = Vec::new();
    for (name, error) in UNANSWERABLE {
        assert!(names.iter().any(|n| n == name), "{name} is not in testdata/offers");
        let sdp = offer(name);
        check_offer(&sdp).unwrap_or_else(|e| panic!("{name}: {e}"));
        session += 1;
        let (input, _input_rx) = mpsc::channel(16);
        match crate::session::start(mux.clone(), &announce, session, sdp, crate::media::audio::Channels::Mono, 1, sink(input)).await {
            Ok((handle, _)) => {
                handle.close().await;
                failures.push(format!("{name}: answered; remove it from UNANSWERABLE"));
            }
            Err(e) if e.to_string().contains(error) => {}
            Err(e) => failures.push(format!("{name}: failed with \"{e}\", expected \"{error}\"")),
        }
    }
    for (name, sdp) in cases {
        let summary = check_offer(&sdp).unwrap_or_else(|e| panic!("{name}: {e}"));
        session += 1;
        let (input, _input_rx) = mpsc::channel(16);
        let (handle, answer) =
            match crate::session::start(mux.clone(), &announce, session, sdp, crate::media::audio::Channels::Mono, 1, sink(input)).await {
                Ok(x) => x,
                Err(e) => {
                    failures.push(format!("{name}: negotiation failed: {e}"));
                    continue;
                }
            };
        handle.close().await;
        let answered = sections(&answer).unwrap_or_else(|e| panic!("{name}: {e}: {answer}"));
        let payload_types_of = |kind: &str, codec: &str| -> Vec<u8> {
            let mut pts: Vec<u8> = answered
                .iter()
                .filter(|s| s.kind == kind)
                .flat_map(|s| &s.codecs)
                .filter(|c| c.name.eq_ignore_ascii_case(codec))
                .map(|c| c.payload_type)
                .collect();
            pts.sort();
            pts
        };
        let mut offered_h264 = payload_types(&summary.h264);
        offered_h264.sort();
        let h264 = payload_types_of("video", "H264");
        if h264 != offered_h264 {
            failures.push(format!("{name}: H.264 {h264:?} answered, {offered_h264:?} accepted\n{answer}"));
        }
        let opus = payload_types_of("audio", "opus");
        if opus != payload_types(&summary.opus) {
            failures.push(format!("{name}: Opus {opus:?} answered, {:?} offered\n{answer}", payload_types(&summary.opus)));
        }
        let directions: Vec<(&str, Option<&str>)> =
            answered.iter().filter(|s| s.kind == "video" || s.kind == "audio").map(|s| (s.kind.as_str(), s.direction.as_deref())).collect();
        if directions.len() != 2 || directions.iter().any(|(_, d)| *d != Some("recvonly")) {
            failures.push(format!("{name}: directions {directions:?}\n{answer}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Offers refused by the checks: the error names what is missing.
#[test]
fn refused_offers_are_refused_with_their_reason() {
    for (name, reason) in REFUSED {
        let e = check_offer(&offer(name)).expect_err(name).to_string();
        assert!(e.contains(reason) && e.contains("VP8/90000"), "{name}: {e}");
    }
}

/// Firefox's simulcast offer shape (per-layer `a=ssrc` lines and FID
/// groups, `extmap:N/sendonly` rid extensions, `a=msid:-`, a `sendrecv`
/// video section), with H.264 in place of its VP8: three layers, and the
/// answer receives them by rid in the offer's `a=simulcast` order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firefox_simulcast_offer_with_h264_is_answered_with_its_rids() {
    use tokio::sync::mpsc;

    let sdp = offer("firefox-152-simulcast.sdp")
        .replace("a=rtpmap:120 VP8/90000", "a=rtpmap:120 H264/90000")
        .replace("a=fmtp:120 max-fs=12288;max-fr=60", "a=fmtp:120 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1");
    let summary = check_offer(&sdp).unwrap();
    assert_eq!(summary.video_layers, 3);
    assert_eq!(payload_types(&summary.h264), vec![120]);
    let (dir, mux, announce) = node_on_loopback("firefox-simulcast").await;
    let (input, _input_rx) = mpsc::channel(16);
    let (handle, answer) = crate::session::start(
        mux,
        &announce,
        1,
        sdp,
        crate::media::audio::Channels::Stereo,
        summary.video_layers,
        crate::media_input::MediaSink::new(input),
    )
    .await
    .unwrap();
    handle.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(answer.contains("a=simulcast:recv h;m;l"), "{answer}");
    for rid in ["h", "m", "l"] {
        assert!(answer.contains(&format!("a=rid:{rid} recv")), "{rid}: {answer}");
    }
    let video = sections(&answer).unwrap().into_iter().find(|s| s.kind == "video").unwrap();
    assert_eq!(video.direction.as_deref(), Some("recvonly"));
    assert_eq!(payload_types(&video.codecs.iter().filter(|c| c.name.eq_ignore_ascii_case("H264")).cloned().collect::<Vec<_>>()), vec![120]);
}
