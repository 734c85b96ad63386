//! The pre-encoded media every publisher sends: H.264 access units and
//! Opus packets, read once into memory (no encoding at run time, so the
//! generator leaves the CPU to the node).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;

/// What to encode (once, with Debian's ffmpeg) when the clip is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipSpec {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_kbps: u32,
    /// Frames between keyframes.
    pub gop_frames: u32,
    pub seconds: u32,
}

impl ClipSpec {
    /// The clip's file stem: one file per spec, reused across runs.
    pub fn stem(&self) -> String {
        format!("{}x{}-{}fps-{}k-g{}-{}s-noise8", self.width, self.height, self.fps, self.video_kbps, self.gop_frames, self.seconds)
    }

    pub fn frame_duration(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.fps.max(1)))
    }
}

/// One H.264 access unit in Annex B (start codes), as the packetizer takes it.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    pub keyframe: bool,
    pub data: Bytes,
}

#[derive(Debug, Clone)]
pub struct Clip {
    pub video: Vec<AccessUnit>,
    /// Opus packets of 20 ms.
    pub audio: Vec<Bytes>,
    pub frame_duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("ffmpeg ({0}): {1}")]
    Encode(&'static str, String),
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the H.264 stream has no access unit")]
    NoVideo,
    #[error("the H.264 stream does not start with a keyframe")]
    NoKeyframeFirst,
    #[error("the Ogg stream: {0}")]
    Ogg(String),
}

impl Clip {
    /// Loads `{dir}/{stem}.h264` and `.ogg`, encoding them first if missing.
    pub fn load_or_make(dir: &Path, spec: &ClipSpec) -> Result<Clip, ClipError> {
        std::fs::create_dir_all(dir).map_err(|e| ClipError::Read(dir.to_owned(), e))?;
        let h264 = dir.join(format!("{}.h264", spec.stem()));
        let ogg = dir.join(format!("opus-speech-mono-20ms-{}s.ogg", spec.seconds));
        if !h264.exists() {
            encode_video(spec, &h264)?;
        }
        if !ogg.exists() {
            encode_audio(spec.seconds, &ogg)?;
        }
        let video = std::fs::read(&h264).map_err(|e| ClipError::Read(h264.clone(), e))?;
        let audio = std::fs::read(&ogg).map_err(|e| ClipError::Read(ogg.clone(), e))?;
        Ok(Clip { video: access_units(&video)?, audio: opus_packets(&audio)?, frame_duration: spec.frame_duration() })
    }

    /// Media bytes per second, as sent (payloads, before RTP and SRTP).
    pub fn bitrate_bps(&self) -> f64 {
        let video: usize = self.video.iter().map(|u| u.data.len()).sum();
        let audio: usize = self.audio.iter().map(Bytes::len).sum();
        let video_s = self.frame_duration.as_secs_f64() * self.video.len() as f64;
        let audio_s = 0.020 * self.audio.len() as f64;
        video as f64 * 8.0 / video_s.max(1e-3) + audio as f64 * 8.0 / audio_s.max(1e-3)
    }

    /// The index of the first keyframe after `i` (wrapping), where a
    /// publisher asked for a keyframe jumps to.
    pub fn next_keyframe(&self, i: usize) -> usize {
        let n = self.video.len();
        (1..=n).map(|k| (i + k) % n).find(|&k| self.video[k].keyframe).unwrap_or(0)
    }
}

fn run(what: &'static str, cmd: &mut Command) -> Result<(), ClipError> {
    let out = cmd.output().map_err(|e| ClipError::Encode(what, e.to_string()))?;
    if out.status.success() { Ok(()) } else { Err(ClipError::Encode(what, String::from_utf8_lossy(&out.stderr).into_owned())) }
}

fn encode_video(spec: &ClipSpec, out: &Path) -> Result<(), ClipError> {
    let kbps = spec.video_kbps;
    run(
        "video",
        Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi"])
            .arg("-i")
            .arg(format!("testsrc2=size={}x{}:rate={}:duration={}", spec.width, spec.height, spec.fps, spec.seconds))
            // Noise, so that the encoder spends the bitrate (the test
            // pattern alone compresses to half of it).
            .args(["-vf", "noise=alls=8:allf=t"])
            // What a browser sends: constrained baseline, one slice, no
            // B-frames, a fixed GOP, about constant bitrate.
            .args(["-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-tune", "zerolatency"])
            .args(["-g", &spec.gop_frames.to_string(), "-keyint_min", &spec.gop_frames.to_string(), "-sc_threshold", "0", "-bf", "0"])
            .args(["-b:v", &format!("{kbps}k"), "-maxrate", &format!("{kbps}k"), "-bufsize", &format!("{}k", kbps / 2)])
            .args(["-x264-params", "slices=1:repeat-headers=1", "-bsf:v", "h264_mp4toannexb", "-f", "h264"])
            .arg(out),
    )
}

/// What the clip's voice says.
const SPEECH: &str = "Live streaming from a web browser to the cloud. Create a media stream through an HTTP API, start browser ingest, and players read Smooth Streaming straight from object storage, live and then on demand";

fn encode_audio(seconds: u32, out: &Path) -> Result<(), ClipError> {
    run(
        "audio",
        Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi"])
            .arg("-i")
            // Speech, as a webcam's microphone gives (Debian's ffmpeg has
            // libflite): what the node's AAC encoder costs depends on the
            // sound (docs/ingest.md), and a pure tone is no guide.
            .arg(format!("flite=text='{SPEECH}',aresample=48000,apad,atrim=0:{seconds}"))
            // Mono Opus at a browser's rate.
            .args(["-ac", "1", "-c:a", "libopus", "-b:a", "32k", "-frame_duration", "20", "-page_duration", "20000", "-f", "ogg"])
            .arg(out),
    )
}

/// Annex B NAL units (without start codes).
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
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
            let mut e = starts.get(k + 1).map_or(data.len(), |n| n - 3);
            while e > s && data[e - 1] == 0 {
                e -= 1;
            }
            &data[s..e]
        })
        .collect()
}

/// Groups an Annex B stream into access units: the parameter sets and SEI
/// go with the picture they precede; one slice per picture.
pub fn access_units(data: &[u8]) -> Result<Vec<AccessUnit>, ClipError> {
    let mut units = Vec::new();
    let mut pending: Vec<&[u8]> = Vec::new();
    for nal in nal_units(data) {
        let Some(&header) = nal.first() else { continue };
        match header & 0x1f {
            9 => {} // access unit delimiters are not sent
            t @ (1 | 5) => {
                pending.push(nal);
                let mut au = Vec::new();
                for n in pending.drain(..) {
                    au.extend_from_slice(&[0, 0, 0, 1]);
                    au.extend_from_slice(n);
                }
                units.push(AccessUnit { keyframe: t == 5, data: Bytes::from(au) });
            }
            _ => pending.push(nal),
        }
    }
    match units.first() {
        None => Err(ClipError::NoVideo),
        Some(u) if !u.keyframe => Err(ClipError::NoKeyframeFirst),
        Some(_) => Ok(units),
    }
}

/// The Opus packets of an Ogg stream made with one packet per page (the
/// two header pages skipped).
pub fn opus_packets(data: &[u8]) -> Result<Vec<Bytes>, ClipError> {
    let mut packets = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // RFC 3533: "OggS", version, flags, granule (8), serial (4),
        // sequence (4), CRC (4), segment count, segment table.
        if rest.len() < 27 || &rest[..4] != b"OggS" {
            return Err(ClipError::Ogg("not an Ogg page".into()));
        }
        let segments = usize::from(rest[26]);
        let table = rest.get(27..27 + segments).ok_or_else(|| ClipError::Ogg("truncated segment table".into()))?;
        let len: usize = table.iter().map(|&b| usize::from(b)).sum();
        let body = rest.get(27 + segments..27 + segments + len).ok_or_else(|| ClipError::Ogg("truncated page".into()))?;
        if !body.starts_with(b"OpusHead") && !body.starts_with(b"OpusTags") && !body.is_empty() {
            packets.push(Bytes::copy_from_slice(body));
        }
        rest = &rest[27 + segments + len..];
    }
    if packets.is_empty() {
        return Err(ClipError::Ogg("no Opus packets".into()));
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_units_carry_their_parameter_sets_and_start_at_a_keyframe() {
        let stream = [
            &[0, 0, 0, 1, 0x09, 0xf0][..], // AUD
            &[0, 0, 0, 1, 0x67, 1, 2][..], // SPS
            &[0, 0, 1, 0x68, 3][..],       // PPS
            &[0, 0, 1, 0x65, 4, 5, 0][..], // IDR (trailing zero)
            &[0, 0, 1, 0x41, 6][..],       // P
        ]
        .concat();
        let units = access_units(&stream).unwrap();
        assert_eq!(units.len(), 2);
        assert!(units[0].keyframe && !units[1].keyframe);
        assert_eq!(&units[0].data[..], &[0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5][..]);
        assert!(matches!(access_units(&[0, 0, 1, 0x41, 6]), Err(ClipError::NoKeyframeFirst)));
        assert!(matches!(access_units(&[1, 2, 3]), Err(ClipError::NoVideo)));
    }

    #[test]
    fn the_next_keyframe_wraps_around_the_clip() {
        let unit = |keyframe| AccessUnit { keyframe, data: Bytes::new() };
        let clip = Clip { video: vec![unit(true), unit(false), unit(true), unit(false)], audio: vec![], frame_duration: Duration::ZERO };
        assert_eq!(clip.next_keyframe(0), 2);
        assert_eq!(clip.next_keyframe(2), 0);
        assert_eq!(clip.next_keyframe(3), 0);
    }

    fn page(body: &[u8]) -> Vec<u8> {
        let mut p = b"OggS".to_vec();
        p.extend_from_slice(&[0; 22]);
        let mut table = vec![255u8; body.len() / 255];
        table.push((body.len() % 255) as u8);
        p.push(table.len() as u8);
        p.extend_from_slice(&table);
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn opus_packets_skip_the_header_pages_and_reject_damage() {
        let long = vec![7u8; 300];
        let data = [page(b"OpusHead...."), page(b"OpusTags...."), page(&[1, 2, 3]), page(&long)].concat();
        let packets = opus_packets(&data).unwrap();
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[1].len(), 300);
        assert!(opus_packets(&data[..data.len() - 1]).is_err());
        assert!(opus_packets(b"nope").is_err());
    }
}
