//! The media stream resource: names, outputs, settings, the ingest state
//! machine and the secrets that guard ingest.
//!
//! Everything here is pure: no I/O, no clocks except where a caller passes
//! a time in. The storage and HTTP layers build on these types.
#![forbid(unsafe_code)]

pub mod name;
pub mod output;
pub mod secret;
pub mod state;
pub mod stream;

pub use name::{NameError, StreamName};
pub use output::{Output, OutputFormat, OutputSpec};
pub use secret::{IngestToken, PlaybackId, TokenHash};
pub use state::{StreamState, Transition, TransitionError};
pub use stream::{
    AvSync, CreateStreamRequest, IngestDelays, IngestSession, IngestStats, LiveInfo, Settings, SettingsError, Stream, StreamView,
    VideoLayerStats,
};
