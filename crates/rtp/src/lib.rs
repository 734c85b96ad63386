//! RTP receive logic for the ingest node, free of sockets and clocks:
//!
//! * [`seq`]: extending 16-bit sequence numbers and 32-bit timestamps
//!   (RFC 3550 appendix A.1) so they never wrap;
//! * [`reorder`]: the reorder (jitter) buffer that turns arriving packets
//!   into an in-order stream with explicit gaps;
//! * [`codec::h264`]: RFC 6184 depacketizing (single NAL unit, STAP-A,
//!   FU-A) into access units, with parameter sets captured;
//! * [`codec::opus`]: RFC 6716 TOC parsing for packet durations;
//! * [`clock`]: RTP timestamps to the 10 MHz presentation timeline, aligned
//!   across tracks by RTCP sender reports, without drift;
//! * [`fuzz`]: the fuzz target's entry point (`fuzz/`), replayed on the
//!   stored corpus by the tests.
#![forbid(unsafe_code)]

pub mod clock;
pub mod codec;
pub mod fuzz;
pub mod reorder;
pub mod seq;

/// One received RTP packet, as the depacketizers need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: bytes::Bytes,
}
