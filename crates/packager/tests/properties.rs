//! Arbitrary sample sequences never panic and always give consistent
//! timelines.

mod common;

use bytes::Bytes;
use mediastreams_packager::{AudioFrame, VideoSample};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Video { delta: i64, keyframe: bool, size: usize },
    Audio { jitter: i64 },
    EndSession { gap: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (-400_000i64..3_000_000, any::<bool>(), 0usize..64).prop_map(|(delta, keyframe, size)| Step::Video { delta, keyframe, size }),
        8 => (-400_000i64..800_000).prop_map(|jitter| Step::Audio { jitter }),
        1 => (0i64..50_000_000).prop_map(|gap| Step::EndSession { gap }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn timelines_stay_consistent(steps in proptest::collection::vec(step(), 1..600), dash in any::<bool>(), hls in any::<bool>()) {
        let mut p = common::presentation(dash, hls);
        let mut vt: i64 = 0;
        let mut at: i64 = 0;
        for s in steps {
            match s {
                Step::Video { delta, keyframe, size } => {
                    vt += delta;
                    let _ = p.push_video(VideoSample { time: vt, keyframe, data: Bytes::from(vec![7u8; size]) });
                }
                Step::Audio { jitter } => {
                    at += 213_333;
                    let _ = p.push_audio(AudioFrame { time: at + jitter, data: Bytes::from_static(&[1, 2]) });
                }
                Step::EndSession { gap } => {
                    let _ = p.end_session();
                    let resume = p.end_time() as i64 + gap;
                    vt = vt.max(resume);
                    at = at.max(resume);
                }
            }
        }
        let out = p.finish();
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
    }
}
