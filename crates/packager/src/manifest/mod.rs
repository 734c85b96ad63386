//! Manifests over the same fragments: Smooth Streaming (the product's
//! format), and DASH and HLS views.

pub mod dash;
pub mod hls;
pub mod smooth;

/// What a manifest needs to know of a track's quality level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelInfo {
    pub bitrate: u32,
    /// RFC 6381 codecs string.
    pub codecs: String,
    /// MS-SSTR CodecPrivateData.
    pub codec_private_data: String,
    pub detail: LevelDetail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelDetail {
    Video { width: u32, height: u32 },
    Audio { sample_rate: u32, channels: u16, codec: crate::presentation::AudioCodec },
}

/// A fragment on a track's timeline (timescale units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub start: u64,
    pub duration: u64,
}

impl Chunk {
    pub fn end(&self) -> u64 {
        self.start + self.duration
    }
}

/// A track as manifests list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackManifest {
    pub track: crate::TrackType,
    pub levels: Vec<LevelInfo>,
    pub chunks: Vec<Chunk>,
}

/// Live (growing, windowed) or final (on demand, complete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestMode {
    Live {
        /// DVR window in timescale units.
        dvr_window: u64,
    },
    Final,
}

/// The chunks a live manifest lists: those starting within the DVR window
/// before the end of the last one.
pub(crate) fn windowed(chunks: &[Chunk], mode: ManifestMode) -> &[Chunk] {
    match (mode, chunks.last()) {
        (ManifestMode::Live { dvr_window }, Some(last)) if dvr_window > 0 => {
            let from = last.end().saturating_sub(dvr_window);
            let first = chunks.partition_point(|c| c.start < from);
            &chunks[first.min(chunks.len() - 1)..]
        }
        _ => chunks,
    }
}

/// Seconds as an xs:duration (`PT12.345S`).
pub(crate) fn xs_duration(units: u64, timescale: u64) -> String {
    let ms = units * 1000 / timescale.max(1);
    format!("PT{}.{:03}S", ms / 1000, ms % 1000)
}
