//! ICE transport around the `webrtc` crate: every session's media on one
//! UDP port ([`udp_mux`]), routed by the STUN USERNAME, and the answer's
//! candidates announcing that port and the public address (the pure parts:
//! `mediastreams_webrtc_proto::{stun, candidates}`).

pub mod udp_mux;
