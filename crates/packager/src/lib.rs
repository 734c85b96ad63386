//! The media packager: timestamped encoded samples in, the objects players
//! read out: ISO BMFF fragments, Smooth Streaming manifests (MS-SSTR), and
//! DASH and HLS views over the same fragments. Pure: no I/O, no clock.
//!
//! [`Presentation`] is driven by the ingest node: it pushes H.264 access
//! units and AAC-LC frames on the 10 MHz timeline and gets back
//! [`PublishedObject`]s to write (fragments before the manifests that list
//! them) and requests for keyframes.
#![forbid(unsafe_code)]

pub mod bmff;
pub mod codec;
pub mod layout;
pub mod manifest;
pub mod presentation;
pub mod recovery;

pub use layout::PublishedObject;
pub use presentation::{
    AudioCodec, AudioFrame, AudioTrackConfig, MEASURED_BITRATE, Outputs, PackagerError, Presentation, PresentationConfig, PushOutput,
    START_ALIGNMENT, Stored, VideoSample, VideoTrackConfig,
};

/// The timescale of every timeline: 10 MHz (100 ns units), MS-SSTR's
/// default.
pub const TIMESCALE: i64 = 10_000_000;

/// The two tracks of a presentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackType {
    Video,
    Audio,
}

impl TrackType {
    /// The name in manifests and keys (`video`, `audio`).
    pub fn name(self) -> &'static str {
        match self {
            TrackType::Video => "video",
            TrackType::Audio => "audio",
        }
    }

    /// The track id in fragments and initialization segments.
    pub fn track_id(self) -> u32 {
        match self {
            TrackType::Video => 1,
            TrackType::Audio => 2,
        }
    }
}
