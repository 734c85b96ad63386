//! What a publisher's session hands its stream task: media after
//! depacketizing, reception counters, sender reports and its end; and
//! where the stream task's keyframe requests go back to. The session and
//! the node meet here, and neither imports the other.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use mediastreams_rtp::codec::h264::AccessUnit;
use tokio::sync::mpsc;

use crate::media::audio::Channels;

/// What sessions send their stream task.
#[derive(Debug)]
pub enum StreamInput {
    /// `held`: the unit's bytes of the stream's input budget, released
    /// when the stream task has packaged it.
    /// `layer`: which of the session's video encodings (simulcast
    /// layers, numbered as they first arrive; 0 without simulcast).
    Video {
        unit: AccessUnit,
        rtp_ext: u64,
        arrival: Instant,
        session: u64,
        layer: u8,
        held: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    Audio {
        opus: Bytes,
        rtp_ext: u64,
        arrival: Instant,
        session: u64,
    },
    /// Audio packets of `session` that never came (each as long as the
    /// last that did).
    AudioLost {
        packets: usize,
        session: u64,
    },
    /// A video layer (simulcast encoding) of `session` opened: its RTP
    /// stream id, for the statistics.
    VideoLayer {
        session: u64,
        layer: u8,
        rid: Option<String>,
    },
    /// A reader's cumulative reception counters.
    Reception {
        video: bool,
        received: u64,
        lost: u64,
    },
    /// A publisher session begins; its offer says how many audio
    /// channels and how many video layers (simulcast encodings) it sends.
    SessionStarted {
        session: u64,
        audio: Channels,
        video_layers: usize,
    },
    SessionEnded {
        session: u64,
    },
    /// A track reader of `session` starts: sent before the reader is, so
    /// it comes before any of the track's media.
    TrackStarted {
        session: u64,
        video: bool,
    },
    /// A track reader of `session` has sent all its track received (the
    /// track ended and its reorder buffer was flushed): after it, nothing
    /// more of that track comes.
    TrackEnded {
        session: u64,
        video: bool,
    },
    /// An RTCP sender report of the session's video (of its `layer`) or
    /// audio track.
    SenderReport {
        video: bool,
        layer: u8,
        ntp: u64,
        rtp: u32,
        session: u64,
    },
}

/// Capacity of a stream task's input queue, in items (about 10 s of
/// media).
pub const STREAM_QUEUE: usize = 1024;
/// And in video bytes: a session drops access units past it (the stream
/// task lags); 32 MiB is over 100 s of 2.5 Mbit/s video.
pub const STREAM_QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// Where keyframe requests go: the current session's video reader, which
/// answers each with a PLI. Never blocks.
#[derive(Clone, Default)]
pub struct KeyframeRequests(Arc<Mutex<Option<mpsc::Sender<()>>>>);

impl KeyframeRequests {
    /// The video reader of a new session takes the requests from now on.
    pub fn attach(&self, reader: mpsc::Sender<()>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(reader);
        }
    }

    /// Asks the publisher for a keyframe (dropped when one is pending).
    pub fn request(&self) {
        if let Ok(slot) = self.0.lock()
            && let Some(tx) = slot.as_ref()
        {
            let _ = tx.try_send(());
        }
    }
}

/// A session's way to its stream task.
#[derive(Clone)]
pub struct MediaSink {
    pub input: mpsc::Sender<StreamInput>,
    pub keyframes: KeyframeRequests,
    /// Video bytes queued ([`STREAM_QUEUE_BYTES`]).
    pub budget: Arc<tokio::sync::Semaphore>,
}

impl MediaSink {
    pub fn new(input: mpsc::Sender<StreamInput>) -> Self {
        MediaSink { input, keyframes: KeyframeRequests::default(), budget: Arc::new(tokio::sync::Semaphore::new(STREAM_QUEUE_BYTES)) }
    }

    /// Queues a video access unit if the stream's budget has room for it;
    /// `false` when it was dropped.
    pub fn send_video(&self, unit: AccessUnit, rtp_ext: u64, arrival: Instant, session: u64, layer: u8) -> bool {
        let size: usize = unit.nal_units.iter().map(|n| n.len()).sum();
        let Ok(held) = self.budget.clone().try_acquire_many_owned(size.clamp(1, STREAM_QUEUE_BYTES) as u32) else { return false };
        self.input.try_send(StreamInput::Video { unit, rtp_ext, arrival, session, layer, held: Some(held) }).is_ok()
    }
}
