//! Checking a WHIP offer before negotiating it: the publisher must send
//! H.264 (packetization mode 1, Constrained Baseline, Baseline or Main
//! profile) and Opus. A missing codec is answered with an error that names
//! it, instead of a bare negotiation failure.

use std::collections::BTreeMap;

/// Largest offer accepted, in bytes (a browser's offer is a few KiB).
pub const MAX_OFFER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the offer is not an SDP session description (it must start with \"v=0\")")]
    NotSdp,
    #[error("the offer has no video section; send H.264 video")]
    NoVideo,
    #[error("the offer has no audio section; send Opus audio")]
    NoAudio,
    #[error(
        "the offer's video does not include H.264 with packetization-mode=1 in Constrained Baseline, Baseline or Main profile (offered: {offered})"
    )]
    NoH264 { offered: String },
    #[error("the offer's audio does not include Opus/48000/2 (offered: {offered})")]
    NoOpus { offered: String },
    #[error("the offer's {0} section is not sending (direction must be sendonly or sendrecv)")]
    NotSending(&'static str),
}

/// One codec offered in a media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedCodec {
    pub payload_type: u8,
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u32>,
    pub fmtp: BTreeMap<String, String>,
}

/// One media section (`m=`) of a session description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub kind: String,
    pub port: String,
    pub direction: Option<String>,
    pub codecs: Vec<OfferedCodec>,
    pub fmtp: BTreeMap<u8, BTreeMap<String, String>>,
    pub simulcast: bool,
    /// The RTP stream ids the section sends (`a=rid:<id> send`, RFC 8851).
    pub send_rids: Vec<String>,
}

/// What the node will receive, by payload type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSummary {
    pub h264: Vec<OfferedCodec>,
    pub opus: Vec<OfferedCodec>,
    /// The video section announces simulcast (`a=simulcast`).
    pub simulcast: bool,
    /// How many video encodings the publisher sends: its simulcast
    /// layers (`a=rid:<id> send` with `a=simulcast`), else 1.
    pub video_layers: usize,
    /// The publisher says it is likely to send stereo audio
    /// (`sprop-stereo=1` on an accepted Opus format, RFC 7587). Browsers
    /// sending a microphone do not; OBS does.
    pub stereo: bool,
}

/// Whether an H.264 format can be packaged: packetization mode 1 and a
/// profile every player decodes (profile_idc 0x42 Baseline/Constrained
/// Baseline, 0x4d Main).
pub fn h264_acceptable(c: &OfferedCodec) -> bool {
    let mode1 = c.fmtp.get("packetization-mode").map(String::as_str) == Some("1");
    let profile_ok = c
        .fmtp
        .get("profile-level-id")
        .and_then(|p| p.get(0..2))
        .is_some_and(|idc| idc.eq_ignore_ascii_case("42") || idc.eq_ignore_ascii_case("4d"));
    c.name.eq_ignore_ascii_case("H264") && c.clock_rate == 90_000 && mode1 && profile_ok
}

pub fn opus_acceptable(c: &OfferedCodec) -> bool {
    c.name.eq_ignore_ascii_case("opus") && c.clock_rate == 48_000 && c.channels == Some(2)
}

fn parse_fmtp(params: &str) -> BTreeMap<String, String> {
    params
        .split(';')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect()
}

/// The media sections of `sdp`, in order.
pub fn sections(sdp: &str) -> Result<Vec<Section>, OfferError> {
    let mut lines = sdp.lines().map(str::trim_end);
    if lines.next().map(str::trim) != Some("v=0") {
        return Err(OfferError::NotSdp);
    }
    let mut out: Vec<Section> = Vec::new();
    for line in lines {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            out.push(Section {
                kind: parts.next().unwrap_or("").to_owned(),
                port: parts.next().unwrap_or("").to_owned(),
                ..Default::default()
            });
            continue;
        }
        let Some(section) = out.last_mut() else {
            continue;
        };
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let (name, value) = attr.split_once(':').unwrap_or((attr, ""));
        match name {
            "sendonly" | "sendrecv" | "recvonly" | "inactive" => section.direction = Some(name.to_owned()),
            "simulcast" => section.simulcast = true,
            "rid" => {
                let mut parts = value.split_whitespace();
                if let (Some(id), Some("send")) = (parts.next(), parts.next())
                    && !section.send_rids.iter().any(|r| r == id)
                {
                    section.send_rids.push(id.to_owned());
                }
            }
            "rtpmap" => {
                let Some((pt, codec)) = value.split_once(' ') else {
                    continue;
                };
                let Ok(payload_type) = pt.parse::<u8>() else {
                    continue;
                };
                let mut c = codec.split('/');
                let name = c.next().unwrap_or("").to_owned();
                let Some(clock_rate) = c.next().and_then(|r| r.parse().ok()) else {
                    continue;
                };
                let channels = c.next().and_then(|ch| ch.parse().ok());
                section.codecs.push(OfferedCodec { payload_type, name, clock_rate, channels, fmtp: BTreeMap::new() });
            }
            "fmtp" => {
                if let Some((pt, params)) = value.split_once(' ')
                    && let Ok(pt) = pt.parse::<u8>()
                {
                    section.fmtp.insert(pt, parse_fmtp(params));
                }
            }
            _ => {}
        }
    }
    for s in &mut out {
        let fmtp = std::mem::take(&mut s.fmtp);
        for c in &mut s.codecs {
            if let Some(f) = fmtp.get(&c.payload_type) {
                c.fmtp = f.clone();
            }
        }
    }
    Ok(out)
}

fn describe(codecs: &[&OfferedCodec]) -> String {
    let mut names: Vec<String> = codecs
        .iter()
        .filter(|c| !matches!(c.name.to_ascii_lowercase().as_str(), "rtx" | "red" | "ulpfec" | "flexfec-03" | "cn" | "telephone-event"))
        .map(|c| {
            let mut s = format!("{}/{}", c.name, c.clock_rate);
            if let Some(m) = c.fmtp.get("packetization-mode") {
                s.push_str(&format!(" mode {m}"));
            }
            if let Some(p) = c.fmtp.get("profile-level-id") {
                s.push_str(&format!(" {p}"));
            }
            s
        })
        .collect();
    names.dedup();
    if names.is_empty() { "nothing".to_owned() } else { names.join(", ") }
}

/// Checks an offer and says what the node will receive.
pub fn check_offer(sdp: &str) -> Result<OfferSummary, OfferError> {
    let all = sections(sdp)?;
    // A port of 0 rejects a section, unless it is bundled (bundle-only).
    let live = |s: &&Section| s.port != "0" || sdp.contains("a=bundle-only");
    let video: Vec<&Section> = all.iter().filter(|s| s.kind == "video").filter(live).collect();
    let audio: Vec<&Section> = all.iter().filter(|s| s.kind == "audio").filter(live).collect();
    if video.is_empty() {
        return Err(OfferError::NoVideo);
    }
    if audio.is_empty() {
        return Err(OfferError::NoAudio);
    }
    let sending = |s: &&&Section| matches!(s.direction.as_deref(), None | Some("sendonly" | "sendrecv"));
    let video_sending: Vec<&&Section> = video.iter().filter(sending).collect();
    let audio_sending: Vec<&&Section> = audio.iter().filter(sending).collect();
    if video_sending.is_empty() {
        return Err(OfferError::NotSending("video"));
    }
    if audio_sending.is_empty() {
        return Err(OfferError::NotSending("audio"));
    }
    let video_codecs: Vec<&OfferedCodec> = video_sending.iter().flat_map(|s| &s.codecs).collect();
    let audio_codecs: Vec<&OfferedCodec> = audio_sending.iter().flat_map(|s| &s.codecs).collect();
    let h264: Vec<OfferedCodec> = video_codecs.iter().filter(|c| h264_acceptable(c)).map(|c| (*c).clone()).collect();
    if h264.is_empty() {
        return Err(OfferError::NoH264 { offered: describe(&video_codecs) });
    }
    let opus: Vec<OfferedCodec> = audio_codecs.iter().filter(|c| opus_acceptable(c)).map(|c| (*c).clone()).collect();
    if opus.is_empty() {
        return Err(OfferError::NoOpus { offered: describe(&audio_codecs) });
    }
    let stereo = opus.iter().any(|c| c.fmtp.get("sprop-stereo").map(String::as_str) == Some("1"));
    let simulcast = video_sending.iter().any(|s| s.simulcast);
    let video_layers = video_sending.iter().find(|s| s.simulcast).map_or(1, |s| s.send_rids.len().max(1));
    Ok(OfferSummary { h264, opus, simulcast, video_layers, stereo })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(name: &str) -> String {
        let path = format!("{}/testdata/offers/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Chromium with three `sendEncodings` (rids q, h, f: quarter, half
    /// and full resolution) on its H.264 video.
    #[test]
    fn a_chromium_simulcast_offer_says_how_many_layers_it_sends() {
        let s = check_offer(&offer("chromium-156-linux-simulcast.sdp")).unwrap();
        assert!(s.simulcast);
        assert_eq!(s.video_layers, 3);
        assert!(!s.h264.is_empty());
        let v = sections(&offer("chromium-156-linux-simulcast.sdp")).unwrap().into_iter().find(|s| s.kind == "video").unwrap();
        assert_eq!(v.send_rids, ["q", "h", "f"]);
        assert_eq!(check_offer(&offer("chromium-156-linux.sdp")).unwrap().video_layers, 1);
    }

    #[test]
    fn chromium_offer_is_accepted() {
        let s = check_offer(&offer("chromium-156-linux.sdp")).unwrap();
        let pts: Vec<u8> = s.h264.iter().map(|c| c.payload_type).collect();
        // Mode 1 only: 102 (42001f), 108 (42e01f), 116 (4d001f); 104 is mode 0.
        assert_eq!(pts, vec![102, 108, 116]);
        assert_eq!(s.opus.len(), 1);
        assert_eq!(s.opus[0].payload_type, 111);
        assert!(!s.simulcast);
        assert!(!s.stereo, "a browser's microphone is mono");
    }

    #[test]
    fn stereo_is_what_the_publisher_says_it_sends() {
        for (name, stereo) in [
            ("chromium-156-linux.sdp", false),
            ("safari-unknown-unknown.sdp", false),
            ("gstreamer-1.22.0-linux.sdp", false),
            ("obs-studio-unknown-unknown.sdp", true),
        ] {
            assert_eq!(check_offer(&offer(name)).map(|s| s.stereo).ok(), Some(stereo), "{name}");
        }
    }

    #[test]
    fn missing_codecs_are_named() {
        let chromium = offer("chromium-156-linux.sdp");
        let no_h264: String = chromium.lines().filter(|l| !l.contains("H264")).map(|l| format!("{l}\r\n")).collect();
        let err = check_offer(&no_h264).unwrap_err();
        assert!(matches!(err, OfferError::NoH264 { .. }));
        let msg = err.to_string();
        assert!(msg.contains("H.264") && msg.contains("VP8/90000"), "{msg}");
        let no_opus: String = chromium.lines().filter(|l| !l.contains("opus")).map(|l| format!("{l}\r\n")).collect();
        let err = check_offer(&no_opus).unwrap_err().to_string();
        assert!(err.contains("Opus") && err.contains("PCMU/8000"), "{err}");
        let video_only: String = chromium.split("m=audio").next().unwrap().to_owned() + &chromium[chromium.find("m=video").unwrap()..];
        assert_eq!(check_offer(&video_only), Err(OfferError::NoAudio));
        let recvonly = chromium.replace("a=sendonly", "a=recvonly");
        assert_eq!(check_offer(&recvonly), Err(OfferError::NotSending("video")));
    }

    #[test]
    fn garbage_is_not_sdp() {
        for g in ["", "hello", "\0\0\0", "v=1\r\n", "{\"sdp\":\"v=0\"}"] {
            assert_eq!(check_offer(g), Err(OfferError::NotSdp), "{g:?}");
        }
        // SDP-shaped but empty.
        assert_eq!(check_offer("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"), Err(OfferError::NoVideo));
        // Broken attribute lines do not panic.
        let weird =
            "v=0\r\nm=video\r\na=rtpmap:\r\na=rtpmap:x y\r\na=rtpmap:96 H264\r\na=fmtp:96\r\nm=audio 9\r\na=rtpmap:300 opus/48000/2\r\n";
        assert!(check_offer(weird).is_err());
    }

    #[test]
    fn high_profile_only_is_refused() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=640c1f\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n";
        let err = check_offer(sdp).unwrap_err().to_string();
        assert!(err.contains("640c1f"), "{err}");
    }

    fn payload_types(codecs: &[OfferedCodec]) -> Vec<u8> {
        codecs.iter().map(|c| c.payload_type).collect()
    }

    /// Firefox 46.0.1 (testdata/offers/README.md): sendrecv audio and video,
    /// H.264 126 in mode 1 and 97 without packetization-mode (mode 0).
    #[test]
    fn firefox_46_offer_is_accepted() {
        let s = check_offer(&offer("firefox-46.0.1-unknown.sdp")).unwrap();
        assert_eq!(payload_types(&s.h264), vec![126]);
        assert_eq!(s.h264[0].fmtp.get("profile-level-id").map(String::as_str), Some("42e01f"));
        assert_eq!(payload_types(&s.opus), vec![109]);
        assert!(!s.simulcast);
    }

    /// Firefox, o= line "99.0": audio sendonly, video sendrecv on a
    /// `bundle-only` section with port 0; H.264 126 (42e01f) and 105
    /// (42001f) in mode 1, 97 and 103 without packetization-mode.
    #[test]
    fn firefox_99_offer_is_accepted() {
        let sdp = offer("firefox-99.0-unknown.sdp");
        let s = check_offer(&sdp).unwrap();
        assert_eq!(payload_types(&s.h264), vec![126, 105]);
        assert_eq!(payload_types(&s.opus), vec![109]);
        assert!(!s.simulcast);
        // Its video section is live only because it is bundle-only.
        assert_eq!(check_offer(&sdp.replace("a=bundle-only\r\n", "")), Err(OfferError::NoVideo));
    }

    /// Safari: H.264 96 is Constrained High (640c1f), 100 and 102 are
    /// mode 0; only 98 (42e01f, mode 1) is accepted. 63 is RED, not Opus.
    #[test]
    fn safari_offer_is_accepted() {
        let s = check_offer(&offer("safari-unknown-unknown.sdp")).unwrap();
        assert_eq!(payload_types(&s.h264), vec![98]);
        assert_eq!(s.h264[0].fmtp.get("profile-level-id").map(String::as_str), Some("42e01f"));
        assert_eq!(payload_types(&s.opus), vec![111]);
        assert!(!s.simulcast);
    }

    /// OBS Studio's WHIP output (libdatachannel): one codec per section,
    /// H.264 96 (42e01f, mode 1) and Opus 111, both sendonly.
    #[test]
    fn obs_offer_is_accepted() {
        let s = check_offer(&offer("obs-studio-unknown-unknown.sdp")).unwrap();
        assert_eq!(payload_types(&s.h264), vec![96]);
        assert_eq!(payload_types(&s.opus), vec![111]);
        assert_eq!(s.opus[0].fmtp.get("stereo").map(String::as_str), Some("1"));
        assert!(!s.simulcast);
    }
}
