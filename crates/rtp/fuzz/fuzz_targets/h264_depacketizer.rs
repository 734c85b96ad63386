//! Arbitrary packet sequences through the reorder buffer and the H.264
//! depacketizer: no panic, and every emitted access unit well formed.
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mediastreams_rtp::RtpPacket;
use mediastreams_rtp::codec::h264::{Depacketized, H264Depacketizer};
use mediastreams_rtp::reorder::{ReorderBuffer, Reordered};

fuzz_target!(|data: &[u8]| {
    let mut buffer = ReorderBuffer::new(64, Duration::from_millis(50));
    let mut depacketizer = H264Depacketizer::new();
    let mut rest = data;
    let mut now = Duration::ZERO;
    // Each packet: seq (2), ts (1, in frames), marker (1), len (1), payload.
    while rest.len() >= 5 {
        let seq = u16::from_be_bytes([rest[0], rest[1]]);
        let ts = u32::from(rest[2]) * 3000;
        let marker = rest[3] & 1 == 1;
        let len = usize::from(rest[4]).min(rest.len() - 5);
        let payload = Bytes::copy_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        now += Duration::from_millis(7);
        buffer.push(RtpPacket { sequence: seq, timestamp: ts, marker, payload }, now);
        while let Some(out) = buffer.pop(now) {
            let produced = match out {
                Reordered::Packet(p) => depacketizer.push(&p),
                Reordered::Lost { .. } => depacketizer.lost(),
            };
            for d in produced {
                if let Depacketized::AccessUnit(au) = d {
                    assert!(!au.nal_units.is_empty());
                    assert_eq!(au.to_avcc().len(), au.nal_units.iter().map(|n| n.len() + 4).sum::<usize>());
                }
            }
        }
    }
});
