//! Real media for tests: Debian's ffmpeg encodes an H.264 + AAC (or Opus)
//! test pattern; this module demuxes it into the samples the packager
//! takes.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use mediastreams_packager::{AudioCodec, AudioFrame, VideoSample};

/// A clip demuxed into samples.
#[derive(Clone)]
pub struct TestClip {
    pub sps: Bytes,
    pub pps: Bytes,
    /// (keyframe, AVCC access unit), 30 per second.
    pub video: Vec<(bool, Bytes)>,
    /// Raw AAC-LC frames or Opus packets (`audio_codec`), 48 kHz stereo.
    pub audio: Vec<Bytes>,
    pub audio_codec: AudioCodec,
}

/// One sample in presentation order.
pub enum ClipSample {
    Video(VideoSample),
    Audio(AudioFrame),
}

impl ClipSample {
    pub fn time(&self) -> i64 {
        match self {
            ClipSample::Video(v) => v.time,
            ClipSample::Audio(a) => a.time,
        }
    }
}

/// Runs a tool that the tests need, failing clearly when it is missing.
pub fn tool(name: &str) -> Command {
    let probe = Command::new(name).arg("-version").output();
    assert!(probe.is_ok_and(|o| o.status.success()), "{name} is required (Debian package ffmpeg; scripts/install-test-deps installs it)");
    Command::new(name)
}

/// Annex B byte stream to NAL units.
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let mut e = starts.get(k + 1).map(|n| n - 3).unwrap_or(data.len());
            while e > s && data[e - 1] == 0 {
                e -= 1;
            }
            &data[s..e]
        })
        .collect()
}

/// ADTS to raw AAC frames.
pub fn adts_frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 7 && data[0] == 0xff && data[1] & 0xf0 == 0xf0 {
        let protection_absent = data[1] & 1 == 1;
        let len = ((usize::from(data[3]) & 3) << 11) | (usize::from(data[4]) << 3) | (usize::from(data[5]) >> 5);
        let header = if protection_absent { 7 } else { 9 };
        if len < header || len > data.len() {
            break;
        }
        out.push(&data[header..len]);
        data = &data[len..];
    }
    out
}

/// Encodes `seconds` of 320x240 30 fps H.264 (a keyframe every
/// `gop_frames`) and 48 kHz stereo AAC-LC into `dir`, and demuxes them.
pub fn encode_test_clip(dir: &Path, seconds: u32, gop_frames: u32) -> TestClip {
    encode_sized_test_clip(dir, seconds, gop_frames, (320, 240))
}

/// [`encode_test_clip`] at another picture size: clips of several sizes
/// with the same `gop_frames` are the quality levels of one source, with
/// keyframes at the same times.
pub fn encode_sized_test_clip(dir: &Path, seconds: u32, gop_frames: u32, size: (u32, u32)) -> TestClip {
    encode_clip(dir, seconds, gop_frames, size, AudioCodec::Aac)
}

/// [`encode_test_clip`] with Opus audio (libopus, 20 ms packets, 64 kb/s
/// stereo), as a WebRTC publisher sends it.
pub fn encode_opus_test_clip(dir: &Path, seconds: u32, gop_frames: u32) -> TestClip {
    encode_clip(dir, seconds, gop_frames, (320, 240), AudioCodec::Opus)
}

fn encode_clip(dir: &Path, seconds: u32, gop_frames: u32, (width, height): (u32, u32), audio_codec: AudioCodec) -> TestClip {
    // The default size keeps the plain names (tests publish clip.h264).
    let stem = if (width, height) == (320, 240) { "clip".to_owned() } else { format!("clip-{width}x{height}") };
    let h264 = dir.join(format!("{stem}.h264"));
    let (audio_file, audio_args): (_, &[&str]) = match audio_codec {
        AudioCodec::Aac => (dir.join(format!("{stem}.aac")), &["-c:a", "aac", "-b:a", "128k", "-f", "adts"]),
        AudioCodec::Opus => (
            dir.join(format!("{stem}-opus.ogg")),
            &["-c:a", "libopus", "-b:a", "64k", "-frame_duration", "20", "-page_duration", "20000", "-f", "ogg"],
        ),
    };
    let ok = tool("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &format!("testsrc2=size={width}x{height}:rate=30:duration={seconds}")])
        .args(["-c:v", "libx264", "-profile:v", "baseline", "-g", &gop_frames.to_string(), "-keyint_min", &gop_frames.to_string()])
        .args(["-sc_threshold", "0", "-bf", "0", "-bsf:v", "h264_mp4toannexb", "-f", "h264"])
        .arg(&h264)
        .status()
        .expect("run ffmpeg");
    assert!(ok.success(), "ffmpeg video");
    let ok = tool("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &format!("sine=frequency=440:sample_rate=48000:duration={seconds}")])
        .args(["-ac", "2"])
        .args(audio_args)
        .arg(&audio_file)
        .status()
        .expect("run ffmpeg");
    assert!(ok.success(), "ffmpeg audio");
    let video = std::fs::read(&h264).expect("read h264");
    let audio = std::fs::read(&audio_file).expect("read audio");
    let (mut sps, mut pps) = (None, None);
    let mut units = Vec::new();
    let mut pending: Vec<&[u8]> = Vec::new();
    for nal in nal_units(&video) {
        match nal.first().map(|b| b & 0x1f) {
            Some(7) => sps = Some(Bytes::copy_from_slice(nal)),
            Some(8) => pps = Some(Bytes::copy_from_slice(nal)),
            Some(9) | None => {}
            Some(t @ (1 | 5)) => {
                pending.push(nal);
                let mut data = Vec::new();
                for n in pending.drain(..) {
                    data.extend_from_slice(&(n.len() as u32).to_be_bytes());
                    data.extend_from_slice(n);
                }
                units.push((t == 5, Bytes::from(data)));
            }
            Some(_) => pending.push(nal),
        }
    }
    TestClip {
        sps: sps.expect("SPS in the clip"),
        pps: pps.expect("PPS in the clip"),
        video: units,
        audio: match audio_codec {
            AudioCodec::Aac => adts_frames(&audio).into_iter().map(Bytes::copy_from_slice).collect(),
            // The first two packets are the OpusHead and OpusTags headers.
            AudioCodec::Opus => ogg_packets(&audio).into_iter().skip(2).map(Bytes::from).collect(),
        },
        audio_codec,
    }
}

/// The packets of an Ogg stream (RFC 3533): each page's segments, joined
/// until a segment shorter than 255 bytes ends a packet.
pub fn ogg_packets(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut packet = Vec::new();
    while data.len() >= 27 && data.starts_with(b"OggS") {
        let segments = usize::from(data[26]);
        let table = &data[27..27 + segments];
        let mut body = &data[27 + segments..];
        for &len in table {
            let (seg, rest) = body.split_at(usize::from(len));
            packet.extend_from_slice(seg);
            body = rest;
            if len < 255 {
                packets.push(std::mem::take(&mut packet));
            }
        }
        data = body;
    }
    packets
}

impl TestClip {
    /// The clip played `loops` times back to back, in presentation order,
    /// times from `origin` (100 ns units). The clip loops at a keyframe, so
    /// the result is a valid stream.
    pub fn samples(&self, loops: u32, origin: i64) -> Vec<ClipSample> {
        let mut out = Vec::new();
        let frames = self.video.len() as u64;
        let samples: Vec<u64> = self
            .audio
            .iter()
            .map(|a| match self.audio_codec {
                AudioCodec::Aac => 1024,
                AudioCodec::Opus => u64::from(mediastreams_packager::codec::opus::packet_samples(a).expect("a valid Opus packet")),
            })
            .collect();
        let clip_samples: u64 = samples.iter().sum();
        for l in 0..u64::from(loops) {
            for (i, (key, data)) in self.video.iter().enumerate() {
                let n = l * frames + i as u64;
                out.push(ClipSample::Video(VideoSample {
                    time: origin + (n * 10_000_000 / 30) as i64,
                    keyframe: *key,
                    data: data.clone(),
                }));
            }
            let mut n = l * clip_samples;
            for (data, len) in self.audio.iter().zip(&samples) {
                out.push(ClipSample::Audio(AudioFrame { time: origin + (n * 10_000_000 / 48_000) as i64, data: data.clone() }));
                n += len;
            }
        }
        out.sort_by_key(ClipSample::time);
        out
    }
}

/// Clips of one source as the video levels of one presentation, played
/// `loops` times from `origin` ([`TestClip::samples`]): every level's
/// video and the first clip's audio, each with its level, in time order
/// (level 0 first at equal times).
pub fn level_samples(clips: &[&TestClip], loops: u32, origin: i64) -> Vec<(usize, ClipSample)> {
    let mut samples: Vec<(i64, usize, ClipSample)> = Vec::new();
    for (level, clip) in clips.iter().enumerate() {
        for s in clip.samples(loops, origin) {
            if level == 0 || matches!(s, ClipSample::Video(_)) {
                samples.push((s.time(), level, s));
            }
        }
    }
    samples.sort_by_key(|(t, level, _)| (*t, *level));
    samples.into_iter().map(|(_, level, s)| (level, s)).collect()
}

/// Packages clips of one source as the video levels of one presentation
/// (the first clip leads and gives the audio), pushing samples in time
/// order; returns every object in the order written.
pub fn package_levels(
    config: mediastreams_packager::PresentationConfig,
    levels: &[(&TestClip, u32)],
) -> Vec<mediastreams_packager::PublishedObject> {
    use mediastreams_packager::{AudioTrackConfig, Presentation, VideoTrackConfig};
    let videos =
        levels.iter().map(|(clip, bitrate)| VideoTrackConfig { bitrate: *bitrate, sps: clip.sps.clone(), pps: clip.pps.clone() }).collect();
    let codec = levels.first().map_or(AudioCodec::Aac, |(clip, _)| clip.audio_codec);
    let bitrate = if codec == AudioCodec::Aac { 128_000 } else { 64_000 };
    let audio = AudioTrackConfig { codec, bitrate, sample_rate: 48_000, channels: 2 };
    let mut p = Presentation::with_video_levels(config, videos, audio).expect("a valid presentation");
    let clips: Vec<&TestClip> = levels.iter().map(|(clip, _)| *clip).collect();
    let mut objects = Vec::new();
    for (level, s) in level_samples(&clips, 1, 0) {
        let out = match s {
            ClipSample::Video(v) => p.push_video_level(level, v).expect("video sample"),
            ClipSample::Audio(a) => p.push_audio(a).expect("audio frame"),
        };
        objects.extend(out.objects);
    }
    objects.extend(p.finish().objects);
    objects
}

/// The packaging the tests use: 2 s fragments, a 30 min DVR window, every
/// output, the timeline's origin at `availability_start_unix_ms`.
pub fn all_outputs_config(availability_start_unix_ms: i64) -> mediastreams_packager::PresentationConfig {
    mediastreams_packager::PresentationConfig {
        fragment_duration: 20_000_000,
        dvr_window: 18_000_000_000,
        dash: true,
        hls: true,
        availability_start_unix_ms,
    }
}
