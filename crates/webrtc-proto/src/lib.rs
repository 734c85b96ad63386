//! The WebRTC signalling the ingest node does itself, pure (no I/O, no
//! WebRTC stack), so that it is tested and fuzzed without sockets:
//!
//! * [`offer`]: what a WHIP offer (SDP, RFC 8866) asks for, and whether the
//!   node can take it (H.264 in packetization mode 1, Opus);
//! * [`candidates`]: the ICE candidates an answer announces (the node's one
//!   media port, a public address);
//! * [`stun`]: the STUN messages (RFC 8489) the node reads and writes on
//!   its media socket;
//! * [`fuzz`]: the entry points of the fuzz targets (`fuzz/`), replayed on
//!   the stored corpus by the tests.
//!
//! Real offers from browsers and publishers are kept in `testdata/offers`.
#![forbid(unsafe_code)]

pub mod candidates;
pub mod fuzz;
pub mod offer;
pub mod stun;
