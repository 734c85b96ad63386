//! The ingest node: terminates WHIP (RFC 9725) publishers' WebRTC sessions
//! and writes Smooth Streaming fragments and manifests to object storage.
//!
//! Built so far: the offer checks of the WHIP endpoint ([`whip::offer`]),
//! the recorder that packages a stream's samples and drives its states
//! ([`recorder`]), and the uploader ([`uploader`]). The WebRTC termination
//! itself is not built yet (issue 4).
#![forbid(unsafe_code)]

pub mod recorder;
pub mod uploader;
pub mod whip;
