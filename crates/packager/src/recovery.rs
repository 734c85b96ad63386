//! Finishing a presentation whose packager is gone (its ingest node died):
//! the final manifests are rebuilt from what storage holds. The last live
//! Smooth manifest gives the quality levels (bitrates, CodecPrivateData,
//! sizes, sampling) and the exact times of the fragments in its DVR window;
//! the fragment keys give every fragment's start; the last fragment's
//! `tfxd` gives its duration. A fragment older than the live window that
//! was followed by a reconnect gap is given the gap as well (its duration
//! is taken to the next start), which players skip over.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::TrackType;
use crate::layout::{self, PublishedObject};
use crate::manifest::dash::DashClock;
use crate::manifest::{Chunk, LevelDetail, LevelInfo, ManifestMode, TrackManifest};
use crate::presentation::AudioCodec;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    #[error("the live manifest is not XML: {0}")]
    NotXml(String),
    #[error("the live manifest has no {0} quality level")]
    NoLevel(&'static str),
    #[error("the live manifest's {0} quality level is malformed")]
    BadLevel(&'static str),
}

/// What a stored presentation holds, per track.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredTrack {
    /// The start times of the first quality level's fragments (any order).
    pub starts: Vec<u64>,
    /// The duration of the last fragment, from its `tfxd`, if read.
    pub last_duration: Option<u64>,
}

/// Which manifests to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    pub dash: bool,
    pub hls: bool,
}

/// The quality levels a live Smooth manifest declares, in order, and the
/// fragments it lists, per track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveManifest {
    pub video: Vec<LevelInfo>,
    pub audio: Vec<LevelInfo>,
    pub video_chunks: Vec<Chunk>,
    pub audio_chunks: Vec<Chunk>,
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The SPS in a video level's CodecPrivateData (`00000001 SPS 00000001 PPS`).
fn sps_of(codec_private_data: &[u8]) -> Option<&[u8]> {
    let rest = codec_private_data.strip_prefix(&[0, 0, 0, 1])?;
    let end = rest.windows(4).position(|w| w == [0, 0, 0, 1]).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Reads a live Smooth manifest written by [`crate::Presentation`].
pub fn parse_live_manifest(xml: &str) -> Result<LiveManifest, RecoveryError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| RecoveryError::NotXml(e.to_string()))?;
    let mut out = LiveManifest { video: Vec::new(), audio: Vec::new(), video_chunks: Vec::new(), audio_chunks: Vec::new() };
    for si in doc.descendants().filter(|n| n.has_tag_name("StreamIndex")) {
        let (kind, name) = match si.attribute("Type") {
            Some("video") => (TrackType::Video, "video"),
            Some("audio") => (TrackType::Audio, "audio"),
            _ => continue,
        };
        let mut levels = Vec::new();
        for q in si.children().filter(|n| n.has_tag_name("QualityLevel")) {
            let num = |a: &str| q.attribute(a).and_then(|v| v.parse::<u32>().ok());
            let cpd = q.attribute("CodecPrivateData").unwrap_or("").to_owned();
            let bitrate = num("Bitrate").ok_or(RecoveryError::BadLevel(name))?;
            let level = match kind {
                TrackType::Video => {
                    let bytes = hex(&cpd).ok_or(RecoveryError::BadLevel(name))?;
                    let sps = sps_of(&bytes).ok_or(RecoveryError::BadLevel(name))?;
                    let info = crate::codec::h264::parse_sps(sps).map_err(|_| RecoveryError::BadLevel(name))?;
                    LevelInfo {
                        bitrate,
                        codecs: info.codec_string(),
                        codec_private_data: cpd,
                        detail: LevelDetail::Video {
                            width: num("MaxWidth").unwrap_or(info.width),
                            height: num("MaxHeight").unwrap_or(info.height),
                        },
                    }
                }
                TrackType::Audio => {
                    let sample_rate = num("SamplingRate").ok_or(RecoveryError::BadLevel(name))?;
                    let channels = num("Channels").and_then(|c| u16::try_from(c).ok()).ok_or(RecoveryError::BadLevel(name))?;
                    // Recordings before Opus was carried have AACL.
                    let (codec, codecs) = match q.attribute("FourCC").unwrap_or("AACL") {
                        "AACL" => (
                            AudioCodec::Aac,
                            crate::codec::aac::AudioConfig::aac_lc(sample_rate, channels)
                                .map_err(|_| RecoveryError::BadLevel(name))?
                                .codec_string(),
                        ),
                        crate::codec::opus::FOURCC => {
                            let dops = hex(&cpd).ok_or(RecoveryError::BadLevel(name))?;
                            let config = crate::codec::opus::OpusConfig::parse_dops(&dops).map_err(|_| RecoveryError::BadLevel(name))?;
                            if config.channels != channels || sample_rate != crate::codec::opus::SAMPLE_RATE {
                                return Err(RecoveryError::BadLevel(name));
                            }
                            (AudioCodec::Opus, crate::codec::opus::CODECS.to_owned())
                        }
                        _ => return Err(RecoveryError::BadLevel(name)),
                    };
                    LevelInfo { bitrate, codecs, codec_private_data: cpd, detail: LevelDetail::Audio { sample_rate, channels, codec } }
                }
            };
            levels.push(level);
        }
        let chunks: Vec<Chunk> = si
            .children()
            .filter(|n| n.has_tag_name("c"))
            .filter_map(|c| Some(Chunk { start: c.attribute("t")?.parse().ok()?, duration: c.attribute("d")?.parse().ok()? }))
            .collect();
        match kind {
            TrackType::Video => (out.video, out.video_chunks) = (levels, chunks),
            TrackType::Audio => (out.audio, out.audio_chunks) = (levels, chunks),
        }
    }
    if out.video.is_empty() {
        return Err(RecoveryError::NoLevel("video"));
    }
    // No audio track: the publisher sent no audio (the packager leaves the
    // track out); the recording is video only.
    Ok(out)
}

/// A track's fragments: every stored start, with the live manifest's exact
/// durations where it lists them.
fn chunks(stored: &StoredTrack, listed: &[Chunk], fallback: u64) -> Vec<Chunk> {
    let exact: BTreeMap<u64, u64> = listed.iter().map(|c| (c.start, c.duration)).collect();
    let mut starts = stored.starts.clone();
    starts.sort_unstable();
    starts.dedup();
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let duration = exact.get(&start).copied().unwrap_or_else(|| match starts.get(i + 1) {
                Some(next) => next - start,
                None => stored.last_duration.unwrap_or(fallback),
            });
            Chunk { start, duration }
        })
        .collect()
}

/// The final (on-demand) manifests of a stored presentation.
pub fn final_manifests(
    live: &LiveManifest,
    video: &StoredTrack,
    audio: &StoredTrack,
    formats: Formats,
    fragment_duration: u64,
) -> Vec<PublishedObject> {
    // As the packager writes them: a track without levels or fragments (a
    // publisher whose audio never came) is not listed.
    let tracks: Vec<TrackManifest> = [
        TrackManifest { track: TrackType::Video, levels: live.video.clone(), chunks: chunks(video, &live.video_chunks, fragment_duration) },
        TrackManifest { track: TrackType::Audio, levels: live.audio.clone(), chunks: chunks(audio, &live.audio_chunks, fragment_duration) },
    ]
    .into_iter()
    .filter(|t| !t.levels.is_empty() && !t.chunks.is_empty())
    .collect();
    let mode = ManifestMode::Final;
    let cache = layout::CACHE_FINAL_MANIFEST;
    let mut out = Vec::new();
    // The Smooth manifest is always written: it is the index.
    out.push(PublishedObject {
        key: layout::SMOOTH_MANIFEST.to_owned(),
        content_type: layout::CT_SMOOTH_MANIFEST,
        cache_control: cache,
        body: Bytes::from(crate::manifest::smooth::write(&tracks, mode)),
    });
    if formats.dash {
        let clock = DashClock { availability_start_unix_ms: 0, publish_unix_ms: 0, fragment_duration };
        out.push(PublishedObject {
            key: layout::DASH_MANIFEST.to_owned(),
            content_type: layout::CT_DASH_MANIFEST,
            cache_control: cache,
            body: Bytes::from(crate::manifest::dash::write(&tracks, mode, clock)),
        });
    }
    if formats.hls {
        for (key, body) in crate::manifest::hls::write(&tracks, mode) {
            out.push(PublishedObject { key, content_type: layout::CT_HLS_PLAYLIST, cache_control: cache, body: Bytes::from(body) });
        }
    }
    out
}

/// What a presentation that continues a stored one starts from: every
/// stored fragment of each track's first level ([`StoredTrack`]), with the
/// live manifest's exact durations where it lists them.
pub fn stored_chunks(live: &LiveManifest, video: &StoredTrack, audio: &StoredTrack, fragment_duration: u64) -> crate::Stored {
    crate::Stored {
        video: chunks(video, &live.video_chunks, fragment_duration),
        audio: if live.audio.is_empty() { Vec::new() } else { chunks(audio, &live.audio_chunks, fragment_duration) },
    }
}

/// The first video level's configuration, from its CodecPrivateData
/// (`00000001 SPS 00000001 PPS`): a continuing presentation writes the
/// same initialization segment and CodecPrivateData as the stored one.
pub fn video_config(live: &LiveManifest) -> Result<crate::VideoTrackConfig, RecoveryError> {
    level_config(live.video.first().ok_or(RecoveryError::NoLevel("video"))?)
}

/// Every video level's configuration, in the stored order (see
/// [`video_config`]): a continuing presentation keeps every level.
pub fn video_configs(live: &LiveManifest) -> Result<Vec<crate::VideoTrackConfig>, RecoveryError> {
    if live.video.is_empty() {
        return Err(RecoveryError::NoLevel("video"));
    }
    live.video.iter().map(level_config).collect()
}

fn level_config(level: &LevelInfo) -> Result<crate::VideoTrackConfig, RecoveryError> {
    let bytes = hex(&level.codec_private_data).ok_or(RecoveryError::BadLevel("video"))?;
    let rest = bytes.strip_prefix(&[0, 0, 0, 1]).ok_or(RecoveryError::BadLevel("video"))?;
    let split = rest.windows(4).position(|w| w == [0, 0, 0, 1]).ok_or(RecoveryError::BadLevel("video"))?;
    let (sps, pps) = (&rest[..split], &rest[split + 4..]);
    if sps.is_empty() || pps.is_empty() || level.bitrate == crate::MEASURED_BITRATE {
        return Err(RecoveryError::BadLevel("video"));
    }
    Ok(crate::VideoTrackConfig { bitrate: level.bitrate, sps: Bytes::copy_from_slice(sps), pps: Bytes::copy_from_slice(pps) })
}

/// A stored recording's audio track (its codec, bitrate, rate and
/// channels), if it has one: what a continued recording keeps.
pub fn audio_track(live: &LiveManifest) -> Option<crate::AudioTrackConfig> {
    live.audio.iter().find_map(|l| match l.detail {
        LevelDetail::Audio { sample_rate, channels, codec } => {
            Some(crate::AudioTrackConfig { codec, bitrate: l.bitrate, sample_rate, channels })
        }
        _ => None,
    })
}

/// A stored fragment key's track, bitrate and start time
/// (`smooth.ism/QualityLevels({bitrate})/Fragments({track}={time})`).
pub fn parse_fragment_key(key: &str) -> Option<(TrackType, u32, u64)> {
    let rest = key.strip_prefix("smooth.ism/QualityLevels(")?;
    let (bitrate, rest) = rest.split_once(")/Fragments(")?;
    let (track, time) = rest.strip_suffix(')')?.split_once('=')?;
    let track = match track {
        "video" => TrackType::Video,
        "audio" => TrackType::Audio,
        _ => return None,
    };
    Some((track, bitrate.parse().ok()?, time.parse().ok()?))
}

/// A fragment's start and duration, from its `tfxd` box.
pub fn fragment_times(fragment: &[u8]) -> Option<(u64, u64)> {
    let at = fragment.windows(16).position(|w| w == crate::bmff::TFXD_UUID)?;
    let body = fragment.get(at + 16..)?;
    let version = *body.first()?;
    if version == 1 {
        let t = u64::from_be_bytes(body.get(4..12)?.try_into().ok()?);
        let d = u64::from_be_bytes(body.get(12..20)?.try_into().ok()?);
        Some((t, d))
    } else {
        let t = u32::from_be_bytes(body.get(4..8)?.try_into().ok()?);
        let d = u32::from_be_bytes(body.get(8..12)?.try_into().ok()?);
        Some((u64::from(t), u64::from(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse() {
        assert_eq!(
            parse_fragment_key("smooth.ism/QualityLevels(128000)/Fragments(audio=20053333)"),
            Some((TrackType::Audio, 128_000, 20_053_333))
        );
        for bad in [
            "smooth.ism/QualityLevels(x)/Fragments(video=1)",
            "smooth.ism/QualityLevels(1)/init-video.mp4",
            "smooth.ism/Manifest",
            "smooth.ism/QualityLevels(1)/Fragments(text=1)",
        ] {
            assert_eq!(parse_fragment_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_come_from_the_manifest_then_the_next_start_then_tfxd() {
        let stored = StoredTrack { starts: vec![40, 0, 20, 60, 20], last_duration: Some(7) };
        let listed = [Chunk { start: 20, duration: 15 }];
        assert_eq!(
            chunks(&stored, &listed, 99),
            vec![
                Chunk { start: 0, duration: 20 },
                Chunk { start: 20, duration: 15 },
                Chunk { start: 40, duration: 20 },
                Chunk { start: 60, duration: 7 }
            ]
        );
        assert_eq!(chunks(&StoredTrack { starts: vec![5], last_duration: None }, &[], 99), vec![Chunk { start: 5, duration: 99 }]);
    }
}
