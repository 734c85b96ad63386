#![allow(dead_code)] // shared by several test binaries, each using a part
//! A simulated publisher for the packager tests.

use bytes::Bytes;
use mediastreams_packager::*;

pub const SPS_HEX: &str = "6742c00dd90141fb0110000003001000000303c0f142a480";
pub const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

pub fn sps() -> Bytes {
    Bytes::from((0..SPS_HEX.len() / 2).map(|i| u8::from_str_radix(&SPS_HEX[2 * i..2 * i + 2], 16).unwrap()).collect::<Vec<u8>>())
}

pub fn config(dash: bool, hls: bool) -> PresentationConfig {
    PresentationConfig {
        fragment_duration: 20_000_000,
        dvr_window: 300_000_000,
        smooth: true,
        dash,
        hls,
        availability_start_unix_ms: 1_795_478_400_000,
    }
}

pub fn presentation(dash: bool, hls: bool) -> Presentation {
    Presentation::new(
        config(dash, hls),
        VideoTrackConfig { bitrate: 1_000_000, sps: sps(), pps: Bytes::from_static(PPS) },
        AudioTrackConfig { bitrate: 128_000, sample_rate: 48_000, channels: 2 },
    )
    .unwrap()
}

/// Every object in the order it was produced.
pub struct Run {
    pub objects: Vec<PublishedObject>,
    pub keyframe_requests: usize,
}

/// Feeds `seconds` of 30 fps video (keyframes only at the start, every
/// `gop_seconds`, and 100 ms after each request, as a browser does) and
/// 48 kHz AAC frames, interleaved by time, then finishes.
pub fn run(p: &mut Presentation, seconds: u64, gop_seconds: u64, finish: bool) -> Run {
    let mut objects = Vec::new();
    let mut requests = 0;
    let frames = seconds * 30;
    let audio_frames = seconds * 48_000 / 1024;
    let (mut v, mut a) = (0u64, 0u64);
    let mut keyframe_due: Option<u64> = Some(0);
    while v < frames || a < audio_frames {
        let vt = (v * 10_000_000 / 30) as i64;
        let at = 120_000 + (a * 1024 * 10_000_000 / 48_000) as i64;
        if v < frames && (a >= audio_frames || vt <= at) {
            let natural = gop_seconds > 0 && v % (gop_seconds * 30) == 0;
            let keyframe = natural || keyframe_due.is_some_and(|d| v >= d);
            if keyframe {
                keyframe_due = None;
            }
            let data = Bytes::from(vec![0u8, 0, 0, 4, if keyframe { 0x65 } else { 0x41 }, v as u8, 1, 2]);
            let out = p.push_video(VideoSample { time: vt, keyframe, data }).unwrap();
            if out.keyframe_needed {
                requests += 1;
                keyframe_due.get_or_insert(v + 3);
            }
            objects.extend(out.objects);
            v += 1;
        } else {
            let out = p.push_audio(AudioFrame { time: at, data: Bytes::from(vec![0x21, a as u8, 3]) }).unwrap();
            assert!(!out.keyframe_needed);
            objects.extend(out.objects);
            a += 1;
        }
    }
    if finish {
        objects.extend(p.finish().objects);
    }
    Run { objects, keyframe_requests: requests }
}
