//! What goes into a presentation and what comes out: its configuration,
//! the samples pushed, the objects produced, and its errors.

use bytes::Bytes;

use crate::codec::aac::AacError;
use crate::codec::h264::SpsError;
use crate::codec::opus::OpusError;
use crate::layout::PublishedObject;
use crate::manifest::Chunk;

/// Tracks whose first samples are this close start at the earlier one's
/// time, as a publisher's first audio and first keyframe arrive apart: a
/// later video start moves the first frame back (up to 1 s; only its
/// display time changes), a later audio start moves the audio back (up to
/// 200 ms, a sync change within what arrival-time alignment gives anyway).
pub const START_ALIGNMENT: u64 = 10_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackagerError {
    #[error("{track} sample at {time} is not after the previous one at {last}")]
    NonMonotonic { track: &'static str, time: i64, last: i64 },
    #[error("{track} sample at negative time {time}")]
    NegativeTime { track: &'static str, time: i64 },
    #[error("video configuration: {0}")]
    Sps(#[from] SpsError),
    #[error("audio configuration: {0}")]
    Aac(#[from] AacError),
    #[error("{0}")]
    Opus(#[from] OpusError),
    #[error("the presentation is finished")]
    Finished,
    #[error("a presentation needs at least one video quality level")]
    NoVideoLevel,
    #[error("two video quality levels have the same bitrate {0} (it names their objects)")]
    DuplicateBitrate(u32),
    #[error("no video quality level {0}")]
    NoSuchLevel(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationConfig {
    /// Target fragment duration, timescale units.
    pub fragment_duration: u64,
    /// Live DVR window, timescale units.
    pub dvr_window: u64,
    /// Write the DASH and HLS views. The Smooth manifest is always written:
    /// it is the presentation's index, which recovery and a continuing
    /// presentation read back ([`crate::recovery`]).
    pub dash: bool,
    pub hls: bool,
    /// Unix time (ms) of timeline position 0 (DASH availabilityStartTime).
    pub availability_start_unix_ms: i64,
}

impl PresentationConfig {
    pub(crate) fn max_fragment(&self) -> u64 {
        self.fragment_duration.saturating_mul(3)
    }
    /// A keyframe this close before a boundary counts as at it: encoders
    /// whose keyframe interval equals the target drift around it by a few
    /// milliseconds, and must not make every other fragment twice as long.
    pub(crate) fn cut_tolerance(&self) -> u64 {
        self.fragment_duration / 10
    }
    /// How long to wait for a requested keyframe before asking again.
    pub(crate) fn keyframe_retry(&self) -> u64 {
        10_000_000
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrackConfig {
    /// What the level's manifests give and its object keys are named by
    /// (`QualityLevels({bitrate})`); [`MEASURED_BITRATE`]: measured over
    /// the level's first fragment (see [`crate::Presentation`]).
    pub bitrate: u32,
    pub sps: Bytes,
    pub pps: Bytes,
}

/// A video level's bitrate is measured over its first fragment: the
/// bits of its samples over its duration, to 1 kb/s, above every level of
/// a smaller picture and unlike any other level's (its keys are named by
/// it, so it is fixed then).
pub const MEASURED_BITRATE: u32 = 0;

/// What the audio track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioCodec {
    /// AAC-LC (`mp4a`, Smooth FourCC `AACL`): what Smooth Streaming
    /// players take.
    #[default]
    Aac,
    /// Opus as the publisher sent it (`Opus` with `dOps`; `opus` in DASH
    /// and HLS): for streams whose outputs are all DASH.
    Opus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTrackConfig {
    pub codec: AudioCodec,
    pub bitrate: u32,
    pub sample_rate: u32,
    pub channels: u16,
}

impl AudioTrackConfig {
    /// Samples per channel in `frame` (its duration in 1/`sample_rate`
    /// units): 1024 for AAC-LC, read from the TOC for Opus (which also
    /// checks the packet's layout).
    pub fn frame_samples(&self, frame: &[u8]) -> Result<u32, PackagerError> {
        match self.codec {
            AudioCodec::Aac => Ok(crate::codec::aac::SAMPLES_PER_FRAME),
            AudioCodec::Opus => Ok(crate::codec::opus::packet_samples(frame)?),
        }
    }
}

/// One H.264 access unit, AVCC (4-byte length prefixed NAL units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSample {
    /// Decode (= presentation, no B-frames) time, timescale units.
    pub time: i64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// One raw AAC-LC frame (1024 samples per channel), or one Opus packet
/// (its TOC says how long), as the track's codec is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    pub time: i64,
    pub data: Bytes,
}

/// What one push produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutput {
    /// Objects to write, in order (fragments before manifests).
    pub objects: Vec<PublishedObject>,
    /// Ask the publisher for a keyframe now.
    pub keyframe_needed: bool,
}

/// The fragments a stored presentation holds, per track, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub video: Vec<Chunk>,
    pub audio: Vec<Chunk>,
}

/// The objects of a finished presentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    pub objects: Vec<PublishedObject>,
}
