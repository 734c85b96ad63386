//! Arbitrary sample sequences never panic and always give consistent
//! timelines.

mod common;

use bytes::Bytes;
use mediastreams_packager::bmff::TFRF_UUID;
use mediastreams_packager::{AudioFrame, PackagerError, VideoSample};
use proptest::prelude::*;
use std::collections::HashSet;

/// `…/Fragments(video=123)` → (`…/Fragments(video`, 123).
fn split_key(key: &str) -> Option<(&str, u64)> {
    let (level, time) = key.rsplit_once('=')?;
    Some((level, time.strip_suffix(')')?.parse().ok()?))
}

/// The starts a fragment's `tfrf` announces (MS-SSTR 2.2.4.5, version 1).
fn tfrf_starts(body: &[u8]) -> Vec<u64> {
    let Some(at) = body.windows(16).position(|w| w == TFRF_UUID) else {
        return Vec::new();
    };
    let p = &body[at + 16..];
    assert_eq!(p[0], 1, "tfrf version 1");
    (0..usize::from(p[4])).map(|i| u64::from_be_bytes(p[5 + 16 * i..13 + 16 * i].try_into().unwrap())).collect()
}

#[derive(Debug, Clone)]
enum Step {
    Video {
        delta: i64,
        keyframe: bool,
        size: usize,
    },
    Audio {
        jitter: i64,
    },
    /// A sample of the second video level.
    Video2 {
        delta: i64,
        keyframe: bool,
    },
    EndSession {
        gap: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (-400_000i64..3_000_000, any::<bool>(), 0usize..64).prop_map(|(delta, keyframe, size)| Step::Video { delta, keyframe, size }),
        8 => (-400_000i64..800_000).prop_map(|jitter| Step::Audio { jitter }),
        6 => (-400_000i64..3_000_000, any::<bool>()).prop_map(|(delta, keyframe)| Step::Video2 { delta, keyframe }),
        // The publisher's video stops for a while (around the longest
        // fragment, 6 s) and resumes in the same session.
        1 => (15_000_000i64..80_000_000, any::<bool>()).prop_map(|(delta, keyframe)| Step::Video { delta, keyframe, size: 8 }),
        1 => (0i64..50_000_000).prop_map(|gap| Step::EndSession { gap }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn timelines_stay_consistent(steps in proptest::collection::vec(step(), 1..600), dash in any::<bool>(), hls in any::<bool>(), levels in any::<bool>()) {
        let mut p = if levels { common::two_level_presentation() } else { common::presentation(dash, hls) };
        let mut vt2: i64 = 0;
        let mut all = Vec::new();
        let mut vt: i64 = 0;
        let mut at: i64 = 0;
        for s in steps {
            match s {
                Step::Video { delta, keyframe, size } => {
                    vt += delta;
                    if let Ok(o) = p.push_video(VideoSample { time: vt, keyframe, data: Bytes::from(vec![7u8; size]) }) {
                        all.extend(o.objects);
                    }
                }
                Step::Audio { jitter } => {
                    at += 213_333;
                    if let Ok(o) = p.push_audio(AudioFrame { time: at + jitter, data: Bytes::from_static(&[1, 2]) }) {
                        all.extend(o.objects);
                    }
                }
                Step::Video2 { delta, keyframe } => {
                    vt2 += delta;
                    match p.push_video_level(1, VideoSample { time: vt2, keyframe, data: Bytes::from_static(&[0, 0, 0, 1, 0x41]) }) {
                        Ok(o) => all.extend(o.objects),
                        Err(e) => prop_assert!(!levels || matches!(e, PackagerError::NonMonotonic { .. } | PackagerError::NegativeTime { .. }), "{e}"),
                    }
                }
                Step::EndSession { gap } => {
                    all.extend(p.end_session().objects);
                    let resume = p.end_time() as i64 + gap;
                    vt = vt.max(resume);
                    at = at.max(resume);
                }
            }
        }
        all.extend(p.finish().objects);
        let out = mediastreams_packager::Outputs { objects: all };
        prop_assert!(p.finish().objects.is_empty(), "finishing twice writes nothing");
        let (video, audio) = p.published();
        for w in video.windows(2) {
            prop_assert!(w[0].start + w[0].duration <= w[1].start, "video never overlaps");
        }
        for w in audio.windows(2) {
            prop_assert!(w[0].start + w[0].duration <= w[1].start, "audio never overlaps");
        }
        for c in video.iter().chain(audio) {
            prop_assert!(c.duration > 0);
        }
        // Every fragment key is written once.
        let keys: Vec<&str> = out.objects.iter().filter(|o| o.key.contains("Fragments")).map(|o| o.key.as_str()).collect();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        prop_assert_eq!(unique.len(), keys.len());
        // Every start a live fragment announces (`tfrf`) is written, in its
        // track and level: dash.js learns of live Smooth fragments from
        // `tfrf` alone. A following level writes nothing for a span before
        // its first keyframe (nothing to show): its announcements are on
        // the leader's timeline.
        let written: HashSet<(&str, u64)> = keys.iter().filter_map(|k| split_key(k)).collect();
        let starts: HashSet<u64> = video.iter().map(|c| c.start).collect();
        for o in out.objects.iter().filter(|o| o.key.contains("Fragments")) {
            let (level, _) = split_key(&o.key).expect("a fragment key ends in its time");
            let follower = o.key.starts_with("smooth.ism/QualityLevels(300000)/");
            for next in tfrf_starts(&o.body) {
                if follower {
                    prop_assert!(starts.contains(&next), "{} announces {}, not on the leader's timeline", o.key, next);
                } else {
                    prop_assert!(written.contains(&(level, next)), "{} announces {}, which is never written", o.key, next);
                }
            }
        }
        // From its first keyframe on, the second level has every span the
        // leader has: a span it sent nothing for (a paused simulcast layer)
        // shows its last keyframe, so a player on that level never asks
        // for a fragment that does not exist.
        let second: Vec<(u64, &Bytes)> = out
            .objects
            .iter()
            .filter(|o| o.key.starts_with("smooth.ism/QualityLevels(300000)/Fragments"))
            .map(|o| (o.key.rsplit('=').next().unwrap().trim_end_matches(')').parse::<u64>().unwrap(), &o.body))
            .collect();
        let has_keyframe = |body: &Bytes| {
            let at = body.windows(4).position(|w| w == b"trun").unwrap();
            let n = u32::from_be_bytes(body[at + 8..at + 12].try_into().unwrap()) as usize;
            // Entries: duration, size, flags; sample_is_non_sync_sample is bit 16.
            (0..n).any(|i| u32::from_be_bytes(body[at + 24 + 12 * i..at + 28 + 12 * i].try_into().unwrap()) & 0x0001_0000 == 0)
        };
        if let Some(first_key) = second.iter().filter(|(_, b)| has_keyframe(b)).map(|(t, _)| *t).min() {
            let written2: HashSet<u64> = second.iter().map(|(t, _)| *t).collect();
            for c in video.iter().filter(|c| c.start > first_key) {
                prop_assert!(written2.contains(&c.start), "the second level has no fragment at {} (first keyframe at {})", c.start, first_key);
            }
        }
        // The second level writes only fragments of the leader's timeline,
        // each filling its span exactly.
        for o in out.objects.iter().filter(|o| o.key.starts_with("smooth.ism/QualityLevels(300000)/Fragments")) {
            let t: u64 = o.key.rsplit('=').next().unwrap().trim_end_matches(')').parse().unwrap();
            let c = video.iter().find(|c| c.start == t);
            prop_assert!(c.is_some(), "{} is on the leader's timeline", o.key);
            let body = &o.body;
            let at = body.windows(4).position(|w| w == b"trun").unwrap();
            let n = u32::from_be_bytes(body[at + 8..at + 12].try_into().unwrap()) as usize;
            let total: u64 = (0..n).map(|i| u64::from(u32::from_be_bytes(body[at + 16 + 12 * i..at + 20 + 12 * i].try_into().unwrap()))).sum();
            prop_assert_eq!(total, c.unwrap().duration, "{} fills its span", o.key);
        }
    }
}
