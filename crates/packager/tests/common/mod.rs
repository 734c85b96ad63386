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
    PresentationConfig { fragment_duration: 20_000_000, dvr_window: 300_000_000, dash, hls, availability_start_unix_ms: 1_795_478_400_000 }
}

pub fn presentation(dash: bool, hls: bool) -> Presentation {
    Presentation::new(
        config(dash, hls),
        VideoTrackConfig { bitrate: 1_000_000, sps: sps(), pps: Bytes::from_static(PPS) },
        AudioTrackConfig { codec: mediastreams_packager::AudioCodec::Aac, bitrate: 128_000, sample_rate: 48_000, channels: 2 },
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

/// A presentation with two video levels (1 Mb/s leading, 300 kb/s
/// following; the same SPS, as only bitrates name objects).
pub fn two_level_presentation() -> Presentation {
    Presentation::with_video_levels(
        config(true, true),
        vec![
            VideoTrackConfig { bitrate: 1_000_000, sps: sps(), pps: Bytes::from_static(PPS) },
            VideoTrackConfig { bitrate: 300_000, sps: sps(), pps: Bytes::from_static(PPS) },
        ],
        AudioTrackConfig { codec: mediastreams_packager::AudioCodec::Aac, bitrate: 128_000, sample_rate: 48_000, channels: 2 },
    )
    .unwrap()
}

/// Feeds `seconds` of a simulcast publisher: two encodings of the same
/// 30 fps capture (keyframes together, 100 ms after each request), the
/// second level's clock `offset` later and its samples arriving `lag`
/// later, and audio; then finishes.
pub fn run_two_levels(p: &mut Presentation, seconds: u64, offset: i64, lag: i64) -> Run {
    enum Push {
        Video(usize, i64, bool, u64),
        Audio(i64, u64),
    }
    let mut objects = Vec::new();
    let mut requests = 0;
    let frames = seconds * 30;
    let mut keyframe_due: Option<u64> = Some(0);
    // (arrival, push), in arrival order; keyframes decided at capture.
    let mut queue: Vec<(i64, Push)> = Vec::new();
    let audio_frames = seconds * 48_000 / 1024;
    for a in 0..audio_frames {
        let at = 120_000 + (a * 1024 * 10_000_000 / 48_000) as i64;
        queue.push((at, Push::Audio(at, a)));
    }
    let mut v = 0u64;
    let mut pending: std::collections::VecDeque<(i64, Push)> = queue.into_iter().collect();
    let mut later: Vec<(i64, Push)> = Vec::new();
    loop {
        // Next capture time.
        let vt = (v * 10_000_000 / 30) as i64;
        let next_audio = pending.front().map(|(t, _)| *t);
        later.sort_by_key(|(t, _)| *t);
        let next_late = later.first().map(|(t, _)| *t);
        let candidates = [if v < frames { Some(vt) } else { None }, next_audio, next_late];
        let Some(now) = candidates.iter().flatten().min().copied() else { break };
        let push = if v < frames && now == vt {
            let keyframe = keyframe_due.is_some_and(|d| v >= d);
            if keyframe {
                keyframe_due = None;
            }
            later.push((vt + offset + lag, Push::Video(1, vt + offset, keyframe, v)));
            v += 1;
            Push::Video(0, vt, keyframe, v - 1)
        } else if next_late == Some(now) {
            later.remove(0).1
        } else {
            pending.pop_front().unwrap().1
        };
        let out = match push {
            Push::Video(level, time, keyframe, n) => {
                let data = Bytes::from(vec![0u8, 0, 0, 4, if keyframe { 0x65 } else { 0x41 }, n as u8, level as u8, 2]);
                p.push_video_level(level, VideoSample { time, keyframe, data }).unwrap()
            }
            Push::Audio(time, a) => p.push_audio(AudioFrame { time, data: Bytes::from(vec![0x21, a as u8, 3]) }).unwrap(),
        };
        if out.keyframe_needed {
            requests += 1;
            keyframe_due.get_or_insert(v + 3);
        }
        objects.extend(out.objects);
    }
    objects.extend(p.finish().objects);
    Run { objects, keyframe_requests: requests }
}
