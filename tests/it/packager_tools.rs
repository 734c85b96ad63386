//! The packager's output read by independent tools on real media: Debian's
//! ffmpeg encodes an H.264 + AAC test pattern, the clip is demuxed and
//! packaged, and ffprobe reads the DASH and HLS outputs back and reports the
//! right duration and frame count.

use mediastreams_packager::{AudioTrackConfig, Presentation, VideoTrackConfig};
use mediastreams_tests::FileServer;
use mediastreams_tests::media::{ClipSample, all_outputs_config, encode_sized_test_clip, encode_test_clip, package_levels, tool};

#[derive(Debug, Default)]
struct Stream {
    kind: String,
    codec: String,
    frames: u64,
    packets: u64,
    width: u32,
    height: u32,
}

#[derive(Debug, Default)]
struct Probe {
    streams: Vec<Stream>,
    duration: f64,
}

impl Probe {
    fn stream(&self, kind: &str) -> &Stream {
        self.streams.iter().find(|s| s.kind == kind).unwrap_or_else(|| panic!("no {kind} stream in {self:?}"))
    }
}

/// ffprobe with its default options (what every libavformat player uses) on
/// a URL or a file.
fn probe(input: &str) -> Probe {
    let out = tool("ffprobe")
        .args(["-v", "error", "-count_frames", "-count_packets"])
        .args(["-show_entries", "format=duration:stream=codec_type,codec_name,nb_read_frames,nb_read_packets,width,height"])
        .arg(input)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed on {input}: {}", String::from_utf8_lossy(&out.stderr));
    let mut p = Probe::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line == "[STREAM]" {
            p.streams.push(Stream::default());
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        match (k, p.streams.last_mut()) {
            ("codec_type", Some(s)) => s.kind = v.into(),
            ("codec_name", Some(s)) => s.codec = v.into(),
            ("nb_read_frames", Some(s)) => s.frames = v.parse().unwrap_or(0),
            ("nb_read_packets", Some(s)) => s.packets = v.parse().unwrap_or(0),
            ("width", Some(s)) => s.width = v.parse().unwrap_or(0),
            ("height", Some(s)) => s.height = v.parse().unwrap_or(0),
            ("duration", _) => p.duration = v.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    p
}

#[test]
fn ffprobe_reads_dash_and_hls_made_from_real_media() {
    // See the end: also the fragments as one fMP4 file, as MSE sees them.
    const SECONDS: u32 = 8;
    let dir = mediastreams_tests::scratch();
    let clip = encode_test_clip(dir.path(), SECONDS, 60);
    assert_eq!(clip.video.len() as u32, SECONDS * 30);
    let mut p = Presentation::new(
        all_outputs_config(0),
        VideoTrackConfig { bitrate: 500_000, sps: clip.sps.clone(), pps: clip.pps.clone() },
        AudioTrackConfig { codec: mediastreams_packager::AudioCodec::Aac, bitrate: 128_000, sample_rate: 48_000, channels: 2 },
    )
    .unwrap();
    let mut objects = Vec::new();
    for s in clip.samples(1, 0) {
        let out = match s {
            ClipSample::Video(v) => p.push_video(v).unwrap(),
            ClipSample::Audio(a) => p.push_audio(a).unwrap(),
        };
        objects.extend(out.objects);
    }
    objects.extend(p.finish().objects);
    // Every sample is in exactly one fragment: trun sample_count sits at a
    // fixed offset (moof 8 + mfhd 16 + traf 8 + tfhd 16 + tfdt 20 + trun header 12).
    let count = |kind: &str| -> u64 {
        objects
            .iter()
            .filter(|o| o.key.contains(&format!("Fragments({kind}=")))
            .map(|o| u64::from(u32::from_be_bytes(o.body[80..84].try_into().unwrap())))
            .sum()
    };
    assert_eq!(count("video"), clip.video.len() as u64);
    assert_eq!(count("audio"), clip.audio.len() as u64);
    let out = dir.path().join("media");
    for o in &objects {
        let path = out.join(&o.key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &o.body).unwrap();
    }
    let audio_frames = clip.audio.len() as u64;
    let expected = f64::from(SECONDS);
    // Read over HTTP, as players read the media store.
    let server = FileServer::start(out.clone());
    let results: Vec<(&str, Probe)> = ["dash/manifest.mpd", "hls/main.m3u8"].into_iter().map(|m| (m, probe(&server.url(m)))).collect();
    for (manifest, r) in results {
        assert!((r.duration - expected).abs() < 0.1, "{manifest}: duration {} (expected {expected})", r.duration);
        let v = r.stream("video");
        assert_eq!((v.codec.as_str(), v.width, v.height), ("h264", 320, 240), "{manifest}");
        assert_eq!(v.packets, u64::from(SECONDS) * 30, "{manifest}: every video frame is in the output");
        assert_eq!(v.frames, u64::from(SECONDS) * 30, "{manifest}: every video frame decodes");
        let a = r.stream("audio");
        assert_eq!(a.codec, "aac", "{manifest}");
        if manifest.ends_with(".mpd") {
            // ffmpeg 5.1's DASH demuxer stops one AAC frame short of the end
            // (the frame that starts where the video ends); the same
            // fragments concatenated, below, and the HLS view give all.
            assert!(a.packets + 1 >= audio_frames, "{manifest}: {} of {audio_frames} AAC frames", a.packets);
        } else {
            assert_eq!(a.packets, audio_frames, "{manifest}: every AAC frame is in the output");
        }
        // The decoder holds back the encoder's priming frame at most.
        assert!(a.frames + 1 >= audio_frames, "{manifest}: {} of {audio_frames} AAC frames decode", a.frames);
    }
    // The init segment and the audio fragments in timeline order, as one
    // fragmented MP4 (what a player appends to its SourceBuffer): every
    // frame is there.
    let mut keys: Vec<(u64, &str)> = objects
        .iter()
        .filter_map(|o| {
            let t = o.key.strip_prefix("smooth.ism/QualityLevels(128000)/Fragments(audio=")?;
            Some((t.trim_end_matches(')').parse().ok()?, o.key.as_str()))
        })
        .collect();
    keys.sort();
    let mut mp4 = std::fs::read(out.join("smooth.ism/QualityLevels(128000)/init-audio.mp4")).unwrap();
    for (_, k) in keys {
        mp4.extend(std::fs::read(out.join(k)).unwrap());
    }
    let file = dir.path().join("audio.mp4");
    std::fs::write(&file, mp4).unwrap();
    let r = probe(&file.to_string_lossy());
    assert_eq!(r.stream("audio").packets, audio_frames, "all AAC frames in the concatenated fragments");
    assert!((r.duration - f64::from(SECONDS) - 0.0213).abs() < 0.01, "audio duration {}", r.duration);
}

#[test]
fn ffprobe_reads_every_video_level() {
    const SECONDS: u32 = 6;
    let dir = mediastreams_tests::scratch();
    let high = encode_test_clip(dir.path(), SECONDS, 60);
    let low = encode_sized_test_clip(dir.path(), SECONDS, 60, (160, 120));
    let config = all_outputs_config(0);
    let objects = package_levels(config, &[(&high, 500_000), (&low, 150_000)]);
    let out = dir.path().join("media");
    for o in &objects {
        let path = out.join(&o.key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &o.body).unwrap();
    }
    let server = FileServer::start(out.clone());
    // DASH: one video stream per Representation, each complete.
    let r = probe(&server.url("dash/manifest.mpd"));
    let mut videos: Vec<(u32, u32, u64, u64)> =
        r.streams.iter().filter(|s| s.kind == "video").map(|s| (s.width, s.height, s.packets, s.frames)).collect();
    videos.sort();
    // ffprobe lists each stream under its program too.
    videos.dedup();
    let frames = u64::from(SECONDS) * 30;
    assert_eq!(videos, vec![(160, 120, frames, frames), (320, 240, frames, frames)], "{r:?}");
    // HLS: each level's media playlist is complete on its own.
    for (b, size) in [(500_000, (320, 240)), (150_000, (160, 120))] {
        let r = probe(&server.url(&format!("hls/video-{b}.m3u8")));
        let v = r.stream("video");
        assert_eq!((v.width, v.height, v.packets, v.frames), (size.0, size.1, frames, frames), "level {b}");
    }
}
