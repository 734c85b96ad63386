//! Receive-path throughput: RTP packets through the reorder buffer and the
//! H.264 depacketizer (FU-A fragmented 6 KB frames, 30 fps, 1 % of packets
//! swapped with their neighbour). Prints packets per second.
//! Run: `cargo bench -p mediastreams-rtp`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mediastreams_rtp::RtpPacket;
use mediastreams_rtp::codec::h264::{Depacketized, H264Depacketizer};
use mediastreams_rtp::reorder::{ReorderBuffer, Reordered};

fn main() {
    const FRAMES: u32 = 54_000; // 30 minutes at 30 fps
    let mut packets = Vec::new();
    let mut seq: u16 = 0;
    for f in 0..FRAMES {
        let header: u8 = if f % 60 == 0 { 0x65 } else { 0x41 };
        let body = vec![0x5a_u8; 6_000];
        let chunks: Vec<&[u8]> = body.chunks(1_200).collect();
        for (i, c) in chunks.iter().enumerate() {
            let mut fu = vec![(header & 0xe0) | 28, header & 0x1f];
            if i == 0 {
                fu[1] |= 0x80;
            }
            if i == chunks.len() - 1 {
                fu[1] |= 0x40;
            }
            fu.extend_from_slice(c);
            packets.push(RtpPacket { sequence: seq, timestamp: f * 3000, marker: i == chunks.len() - 1, payload: Bytes::from(fu) });
            seq = seq.wrapping_add(1);
        }
    }
    for i in (0..packets.len() - 1).step_by(100) {
        packets.swap(i, i + 1);
    }
    let started = Instant::now();
    let mut buffer = ReorderBuffer::new(1024, Duration::from_millis(150));
    let mut depacketizer = H264Depacketizer::new();
    let mut units = 0u64;
    for (i, p) in packets.iter().enumerate() {
        let now = Duration::from_micros(i as u64 * 200);
        buffer.push(p.clone(), now);
        while let Some(out) = buffer.pop(now) {
            let produced = match out {
                Reordered::Packet(p) => depacketizer.push(&p),
                Reordered::Lost { .. } => depacketizer.lost(),
            };
            units += produced.iter().filter(|d| matches!(d, Depacketized::AccessUnit(_))).count() as u64;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("{} packets, {units} access units in {elapsed:.3} s", packets.len());
    println!(
        "  {:.0} packets per second ({:.0}x real time for one 30 fps stream)",
        packets.len() as f64 / elapsed,
        f64::from(FRAMES) / 30.0 / elapsed
    );
}
