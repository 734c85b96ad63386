//! ICE transport around the `webrtc` crate: every session's media on one
//! UDP port ([`udp_mux`]), routed by the STUN USERNAME ([`stun`]), and the
//! answer's candidates announcing that port and the public address
//! ([`candidates`]).

pub mod candidates;
pub mod stun;
pub mod udp_mux;
