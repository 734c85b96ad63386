//! Packaging throughput: ten minutes of 30 fps video (6 KB frames,
//! keyframes every 2 s) and 48 kHz AAC (400 B frames), Smooth + DASH + HLS,
//! live then on demand. Prints wall time, media seconds per CPU second and
//! bytes produced. Run: `cargo bench -p mediastreams-packager`.

use std::time::Instant;

use bytes::Bytes;
use mediastreams_packager::*;

fn sps() -> Bytes {
    let hex = "6742c00dd90141fb0110000003001000000303c0f142a480";
    Bytes::from((0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0)).collect::<Vec<u8>>())
}

fn main() {
    const SECONDS: u64 = 600;
    let mut p = Presentation::new(
        PresentationConfig {
            fragment_duration: 20_000_000,
            dvr_window: 18_000_000_000,
            dash: true,
            hls: true,
            availability_start_unix_ms: 0,
        },
        VideoTrackConfig { bitrate: 1_500_000, sps: sps(), pps: Bytes::from_static(&[0x68, 0xcb, 0x83, 0xcb, 0x20]) },
        AudioTrackConfig { codec: mediastreams_packager::AudioCodec::Aac, bitrate: 128_000, sample_rate: 48_000, channels: 2 },
    )
    .expect("configuration");
    let frame = Bytes::from(vec![0u8; 6_000]);
    let aac = Bytes::from(vec![0u8; 400]);
    let (mut v, mut a) = (0u64, 0u64);
    let (mut objects, mut bytes, mut manifest_bytes) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    let mut count = |out: &[PublishedObject]| {
        for o in out {
            objects += 1;
            bytes += o.body.len();
            if !o.key.contains("Fragments") && !o.key.ends_with(".mp4") {
                manifest_bytes += o.body.len();
            }
        }
    };
    while v < SECONDS * 30 || a < SECONDS * 48_000 / 1024 {
        let vt = (v * 10_000_000 / 30) as i64;
        let at = (a * 1024 * 10_000_000 / 48_000) as i64;
        if v < SECONDS * 30 && vt <= at {
            let out = p.push_video(VideoSample { time: vt, keyframe: v % 60 == 0, data: frame.clone() }).expect("video");
            count(&out.objects);
            v += 1;
        } else {
            let out = p.push_audio(AudioFrame { time: at, data: aac.clone() }).expect("audio");
            count(&out.objects);
            a += 1;
        }
    }
    count(&p.finish().objects);
    let elapsed = started.elapsed().as_secs_f64();
    println!("packaged {SECONDS} s of media ({v} video frames, {a} AAC frames) in {elapsed:.3} s");
    println!("  {:.0} media seconds per second of packaging", SECONDS as f64 / elapsed);
    println!(
        "  {objects} objects, {:.1} MB, of which {:.1} MB manifests (rewritten per fragment)",
        bytes as f64 / 1e6,
        manifest_bytes as f64 / 1e6
    );
}
