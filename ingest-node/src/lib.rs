//! The ingest node: terminates WHIP (RFC 9725) publishers' WebRTC sessions
//! and writes Smooth Streaming fragments and manifests to object storage.
//!
//! * [`whip`]: the HTTP endpoint and the offer checks;
//! * [`ice`]: every session's media on one UDP port, and the candidates
//!   the answers announce;
//! * [`session`]: one publisher's WebRTC session (the `webrtc` crate) and
//!   its RTP readers (depacketizing in `mediastreams-rtp`);
//! * [`node`]: the stream tasks that own the recorders and watch the
//!   streams' states;
//! * [`media`]: Opus to AAC;
//! * [`recorder`], [`uploader`]: packaging, state transitions, writing.
#![forbid(unsafe_code)]

pub mod ice;
pub mod media;
pub mod node;
pub mod recorder;
pub mod sender_reports;
pub mod session;
pub mod uploader;
pub mod whip;

pub use node::{IngestNode, NodeConfig};
