//! What a publisher's session hands its stream task: media after
//! depacketizing, reception counters, sender reports and its end; and
//! where the stream task's keyframe requests go back to. The session and
//! the node meet here, and neither imports the other.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use mediastreams_rtp::codec::h264::AccessUnit;
use tokio::sync::mpsc;

/// What sessions send their stream task.
#[derive(Debug)]
pub enum StreamInput {
    Video { unit: AccessUnit, rtp_ext: u64, arrival: Instant, session: u64 },
    Audio { opus: Bytes, rtp_ext: u64, arrival: Instant, session: u64 },
    /// Audio packets of `session` that never came (20 ms each).
    AudioLost { samples: usize, session: u64 },
    /// A reader's cumulative reception counters.
    Reception { video: bool, received: u64, lost: u64 },
    SessionEnded { session: u64 },
    /// An RTCP sender report of the session's video or audio track.
    SenderReport { video: bool, ntp: u64, rtp: u32, session: u64 },
}

/// Capacity of a stream task's input queue (about 10 s of media).
pub const STREAM_QUEUE: usize = 1024;

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
}
