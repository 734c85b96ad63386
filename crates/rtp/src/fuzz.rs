//! Fuzz entry point: arbitrary bytes in, no panic out. The fuzz target
//! (`fuzz/`, `cargo afl`) calls it; `tests/corpus.rs` replays the stored
//! corpus through it on every test run.

use std::time::Duration;

use bytes::Bytes;

use crate::RtpPacket;
use crate::codec::h264::{Depacketized, H264Depacketizer};
use crate::codec::opus;
use crate::reorder::{ReorderBuffer, Reordered};

/// An RTP packet's header fields and payload (RFC 3550 5.1: CSRCs, an
/// extension and padding skipped); `None` when it is not one.
pub fn parse_rtp(d: &[u8]) -> Option<RtpPacket> {
    let (&b0, &b1) = (d.first()?, d.get(1)?);
    if b0 >> 6 != 2 {
        return None;
    }
    let mut at = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let words = u16::from_be_bytes([*d.get(at + 2)?, *d.get(at + 3)?]);
        at += 4 + 4 * usize::from(words);
    }
    let mut end = d.len();
    if b0 & 0x20 != 0 {
        end = end.checked_sub(usize::from(*d.last()?))?;
    }
    let payload = d.get(at..end)?;
    Some(RtpPacket {
        sequence: u16::from_be_bytes([*d.get(2)?, *d.get(3)?]),
        timestamp: u32::from_be_bytes(d.get(4..8)?.try_into().ok()?),
        marker: b1 & 0x80 != 0,
        payload: Bytes::copy_from_slice(payload),
    })
}

/// Packets as the input holds them: length-prefixed (2 bytes, big endian)
/// while that parses, else the whole input as one.
fn packets(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let Some(p) = rest.get(2..2 + n) else { break };
        out.push(p);
        rest = &rest[2 + n..];
    }
    if out.is_empty() || !rest.is_empty() {
        return vec![data];
    }
    out
}

/// RTP packets through the reorder buffer and the H.264 depacketizer, as
/// the node's video reader runs them (and each payload through Opus TOC
/// parsing, as the audio reader would).
pub fn rtp(data: &[u8]) {
    let mut reorder = ReorderBuffer::new(64, Duration::from_millis(150));
    let mut h264 = H264Depacketizer::new();
    let take = |out: Reordered, h264: &mut H264Depacketizer| {
        let produced = match out {
            Reordered::Packet(p) => {
                let _ = opus::packet_samples(&p.payload);
                h264.push(&p)
            }
            Reordered::Lost { .. } => h264.lost(),
        };
        for d in produced {
            if let Depacketized::AccessUnit(unit) = d {
                let _ = unit.to_avcc();
                let _ = unit.parameter_sets();
            }
        }
    };
    for (i, p) in packets(data).into_iter().enumerate() {
        let Some(packet) = parse_rtp(p) else { continue };
        let now = Duration::from_millis(40 * i as u64);
        reorder.push(packet, now);
        while let Some(out) = reorder.pop(now) {
            take(out, &mut h264);
        }
    }
    for out in reorder.flush() {
        take(out, &mut h264);
    }
}
