//! The ingest node: terminates WHIP (RFC 9725) publishers' WebRTC sessions
//! and writes Smooth Streaming fragments and manifests to object storage.
#![forbid(unsafe_code)]

pub mod whip;
