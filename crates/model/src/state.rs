//! The ingest state machine of a media stream.
//!
//! ```text
//!            start-ingest            first media
//!  Created ───────────────▶ Ready ───────────────▶ Live
//!     ▲  ◀───────────────────┘                      │ stop-ingest, or the
//!     │      stop-ingest (no media ever arrived)    │ node's idle timeout
//!     │                                             ▼
//!     │                                          Stopping ── recording
//!     │ delete                                      │        finalized
//!     ▼                                             ▼
//!  Deleting ◀──────────── delete ───────────── OnDemand
//!     ▲
//!     │ delete            recording failed (from Ready, Live or Stopping:
//!     └────────── Failed ◀── the media store refuses writes)
//! ```
//!
//! `Failed` is where a recording ends that could not be completed: the
//! media store refused writes (access denied, no such bucket) or stayed
//! unreachable past the bound on finalizing. The stream's `failure` says
//! why; what was stored is kept.
//!
//! `Stopping` is transitional: the ingest node is writing the last fragments
//! and the on-demand manifests. `Deleting` is transitional too: the stream's
//! media is being removed, after which the record itself goes. Every
//! transition is applied by the storage layer as a conditional write on the
//! record's version, so concurrent callers never skip a state: exactly one
//! of them wins each transition and the others see a conflict.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StreamState {
    /// Exists; nobody may publish yet.
    Created,
    /// Ingest started: waiting for the publisher's first media.
    Ready,
    /// Media is arriving; players play live.
    Live,
    /// Ingest stopped; the node is finalizing the recording.
    Stopping,
    /// The recording is complete; the same URLs play it on demand.
    OnDemand,
    /// The stream and its media are being removed.
    Deleting,
    /// The recording could not be completed (see the module documentation).
    Failed,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Created => "Created",
            StreamState::Ready => "Ready",
            StreamState::Live => "Live",
            StreamState::Stopping => "Stopping",
            StreamState::OnDemand => "OnDemand",
            StreamState::Deleting => "Deleting",
            StreamState::Failed => "Failed",
        }
    }

    /// Whether an ingest node may accept a publisher in this state.
    pub fn accepts_publisher(self) -> bool {
        matches!(self, StreamState::Ready | StreamState::Live)
    }
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that moves a stream from one state to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `POST /streams/{name}/start-ingest`.
    StartIngest,
    /// `POST /streams/{name}/stop-ingest`, or the node's idle timeout.
    StopIngest,
    /// The ingest node received the first media.
    MediaArrived,
    /// The ingest node wrote the on-demand presentation.
    RecordingFinalized,
    /// `DELETE /streams/{name}`.
    Delete,
    /// The ingest node could not write the recording.
    RecordingFailed,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::StartIngest => "start-ingest",
            Transition::StopIngest => "stop-ingest",
            Transition::MediaArrived => "media-arrived",
            Transition::RecordingFinalized => "recording-finalized",
            Transition::Delete => "delete",
            Transition::RecordingFailed => "recording-failed",
        }
    }

    /// The state this transition leads to from `from`, or why it cannot be
    /// taken.
    pub fn apply(self, from: StreamState) -> Result<StreamState, TransitionError> {
        use StreamState::*;
        let to = match (self, from) {
            (Transition::StartIngest, Created) => Ready,
            (Transition::StopIngest, Ready) => Created,
            (Transition::StopIngest, Live) => Stopping,
            (Transition::MediaArrived, Ready) => Live,
            (Transition::RecordingFinalized, Stopping) => OnDemand,
            // Deleting again resumes an interrupted deletion.
            (Transition::Delete, Created | OnDemand | Deleting | Failed) => Deleting,
            (Transition::RecordingFailed, Ready | Live | Stopping) => Failed,
            _ => {
                return Err(TransitionError { transition: self, from });
            }
        };
        Ok(to)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a stream in state {from}", transition.as_str())]
pub struct TransitionError {
    pub transition: Transition,
    pub from: StreamState,
}

#[cfg(test)]
mod tests {
    use super::*;
    use StreamState::*;
    use Transition::*;

    const STATES: [StreamState; 7] = [Created, Ready, Live, Stopping, OnDemand, Deleting, Failed];
    const TRANSITIONS: [Transition; 6] = [StartIngest, StopIngest, MediaArrived, RecordingFinalized, Delete, RecordingFailed];

    #[test]
    fn the_whole_table() {
        let allowed = [
            (StartIngest, Created, Ready),
            (StopIngest, Ready, Created),
            (StopIngest, Live, Stopping),
            (MediaArrived, Ready, Live),
            (RecordingFinalized, Stopping, OnDemand),
            (Delete, Created, Deleting),
            (Delete, OnDemand, Deleting),
            (Delete, Deleting, Deleting),
            (Delete, Failed, Deleting),
            (RecordingFailed, Ready, Failed),
            (RecordingFailed, Live, Failed),
            (RecordingFailed, Stopping, Failed),
        ];
        for t in TRANSITIONS {
            for s in STATES {
                let expected = allowed.iter().find(|(at, af, _)| *at == t && *af == s).map(|(_, _, to)| *to);
                assert_eq!(t.apply(s).ok(), expected, "{t:?} from {s:?}");
            }
        }
    }

    #[test]
    fn errors_name_the_transition_and_state() {
        let e = StartIngest.apply(Live).unwrap_err();
        assert_eq!(e.to_string(), "cannot start-ingest a stream in state Live");
    }
}
