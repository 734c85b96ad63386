//! H.264 over RTP (RFC 6184), packetization mode 1: single NAL unit
//! packets, STAP-A aggregation and FU-A fragmentation, into access units.
//!
//! Input is the in-order output of the reorder buffer, with losses marked.
//! An access unit is the NAL units sharing one RTP timestamp, complete at
//! the marker bit (or when the timestamp changes, for senders that do not
//! set it). After a loss, or a broken fragment, nothing is emitted until the
//! next IDR picture, and the caller is told a keyframe is needed: a
//! recording must never carry frames whose references are missing.

use bytes::{BufMut, Bytes, BytesMut};

use crate::RtpPacket;

/// NAL unit types (ITU-T H.264 table 7-1) this module cares about.
pub mod nal {
    pub const SLICE: u8 = 1;
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const AUD: u8 = 9;
    pub const FILLER: u8 = 12;
    pub const STAP_A: u8 = 24;
    pub const FU_A: u8 = 28;
}

/// Largest access unit accepted (a 4K IDR frame is well below this).
pub const MAX_ACCESS_UNIT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H264Error {
    #[error("empty RTP payload")]
    Empty,
    #[error("NAL unit type {0} is not allowed in packetization mode 1")]
    UnsupportedNalType(u8),
    #[error("STAP-A aggregate is truncated")]
    TruncatedStapA,
    #[error("FU-A packet is shorter than its two header bytes")]
    TruncatedFuA,
    #[error("FU-A continuation without a start")]
    FuAWithoutStart,
    #[error("access unit larger than {MAX_ACCESS_UNIT_BYTES} bytes")]
    TooLarge,
    #[error("forbidden_zero_bit set in NAL header")]
    ForbiddenBit,
}

/// One decoded-order picture's NAL units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// The RTP timestamp shared by its packets (90 kHz).
    pub rtp_timestamp: u32,
    /// NAL units without start codes or length prefixes, access unit
    /// delimiters and filler removed.
    pub nal_units: Vec<Bytes>,
    /// Contains an IDR slice.
    pub keyframe: bool,
}

impl AccessUnit {
    /// The sample as stored in MP4 (`avc1`): each NAL unit behind a 4-byte
    /// big-endian length.
    pub fn to_avcc(&self) -> Bytes {
        let len: usize = self.nal_units.iter().map(|n| n.len() + 4).sum();
        let mut out = BytesMut::with_capacity(len);
        for n in &self.nal_units {
            out.put_u32(n.len() as u32);
            out.put_slice(n);
        }
        out.freeze()
    }

    /// The SPS and PPS it carries, if any.
    pub fn parameter_sets(&self) -> (Option<&Bytes>, Option<&Bytes>) {
        let find = |t| self.nal_units.iter().find(|n| nal_type(n) == Some(t));
        (find(nal::SPS), find(nal::PPS))
    }
}

/// The `nal_unit_type` of a NAL unit.
pub fn nal_type(nal_unit: &[u8]) -> Option<u8> {
    nal_unit.first().map(|b| b & 0x1f)
}

/// What the depacketizer reports besides access units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    pub access_units: u64,
    pub dropped_access_units: u64,
    pub malformed_packets: u64,
}

/// Output of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Depacketized {
    AccessUnit(AccessUnit),
    /// Media was lost or broken: ask the sender for a keyframe (PLI).
    KeyframeNeeded,
}

#[derive(Debug, Default)]
pub struct H264Depacketizer {
    /// NAL units of the access unit being assembled, and its timestamp.
    current: Vec<Bytes>,
    current_ts: Option<u32>,
    current_bytes: usize,
    /// Whether the current access unit lost a packet.
    current_broken: bool,
    /// A fragmented NAL unit in progress.
    fragment: Option<BytesMut>,
    /// Until an IDR arrives after a loss, drop everything.
    waiting_for_keyframe: bool,
    stats: DepacketizerStats,
}

impl H264Depacketizer {
    pub fn new() -> Self {
        H264Depacketizer {
            // The stream may start mid-GOP: wait for the first IDR.
            waiting_for_keyframe: true,
            ..Default::default()
        }
    }

    pub fn stats(&self) -> &DepacketizerStats {
        &self.stats
    }

    /// Packets were lost before the next one.
    pub fn lost(&mut self) -> Vec<Depacketized> {
        self.fragment = None;
        self.current_broken = true;
        let mut out = Vec::new();
        if !self.waiting_for_keyframe {
            out.push(Depacketized::KeyframeNeeded);
        }
        self.waiting_for_keyframe = true;
        out
    }

    /// Takes the next in-order packet.
    pub fn push(&mut self, packet: &RtpPacket) -> Vec<Depacketized> {
        let mut out = Vec::new();
        if packet.payload.is_empty() {
            // Padding-only packets (bandwidth probing, RFC 3550 5.1) carry
            // no media; browsers send many.
            if packet.marker && self.current_ts == Some(packet.timestamp) {
                self.fragment = None;
                self.finish(&mut out);
            }
            return out;
        }
        if self.current_ts.is_some_and(|ts| ts != packet.timestamp) {
            // A new picture started without a marker on the last one.
            self.fragment = None;
            self.finish(&mut out);
        }
        self.current_ts = Some(packet.timestamp);
        if let Err(_e) = self.add_payload(&packet.payload) {
            self.stats.malformed_packets += 1;
            self.fragment = None;
            self.current_broken = true;
            if !self.waiting_for_keyframe {
                out.push(Depacketized::KeyframeNeeded);
                self.waiting_for_keyframe = true;
            }
        }
        if packet.marker {
            self.fragment = None;
            self.finish(&mut out);
        }
        out
    }

    fn add_nal(&mut self, nal_unit: Bytes) -> Result<(), H264Error> {
        let first = *nal_unit.first().ok_or(H264Error::Empty)?;
        if first & 0x80 != 0 {
            return Err(H264Error::ForbiddenBit);
        }
        if matches!(first & 0x1f, nal::AUD | nal::FILLER) {
            return Ok(());
        }
        self.current_bytes += nal_unit.len();
        if self.current_bytes > MAX_ACCESS_UNIT_BYTES {
            return Err(H264Error::TooLarge);
        }
        self.current.push(nal_unit);
        Ok(())
    }

    fn add_payload(&mut self, payload: &Bytes) -> Result<(), H264Error> {
        let header = *payload.first().ok_or(H264Error::Empty)?;
        match header & 0x1f {
            1..=23 => {
                self.fragment = None;
                self.add_nal(payload.clone())
            }
            nal::STAP_A => {
                self.fragment = None;
                let mut rest = payload.slice(1..);
                while !rest.is_empty() {
                    if rest.len() < 2 {
                        return Err(H264Error::TruncatedStapA);
                    }
                    let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    if size == 0 || rest.len() < 2 + size {
                        return Err(H264Error::TruncatedStapA);
                    }
                    self.add_nal(rest.slice(2..2 + size))?;
                    rest = rest.slice(2 + size..);
                }
                Ok(())
            }
            nal::FU_A => {
                if payload.len() < 2 {
                    return Err(H264Error::TruncatedFuA);
                }
                let fu_header = payload[1];
                let start = fu_header & 0x80 != 0;
                let end = fu_header & 0x40 != 0;
                let data = &payload[2..];
                if start {
                    let mut nal_unit = BytesMut::with_capacity(data.len() * 4 + 1);
                    nal_unit.put_u8((header & 0xe0) | (fu_header & 0x1f));
                    nal_unit.put_slice(data);
                    self.fragment = Some(nal_unit);
                } else {
                    let frag = self.fragment.as_mut().ok_or(H264Error::FuAWithoutStart)?;
                    if frag.len() + data.len() > MAX_ACCESS_UNIT_BYTES {
                        self.fragment = None;
                        return Err(H264Error::TooLarge);
                    }
                    frag.put_slice(data);
                }
                if end && let Some(f) = self.fragment.take() {
                    self.add_nal(f.freeze())?;
                }
                Ok(())
            }
            t => Err(H264Error::UnsupportedNalType(t)),
        }
    }

    fn finish(&mut self, out: &mut Vec<Depacketized>) {
        let nal_units = std::mem::take(&mut self.current);
        let unfinished_fragment = self.fragment.take().is_some();
        let broken = std::mem::take(&mut self.current_broken) || unfinished_fragment;
        self.current_bytes = 0;
        let Some(ts) = self.current_ts.take() else {
            return;
        };
        if nal_units.is_empty() {
            return;
        }
        let keyframe = nal_units.iter().any(|n| nal_type(n) == Some(nal::IDR));
        let has_slice = nal_units.iter().any(|n| matches!(nal_type(n), Some(nal::SLICE..=nal::IDR)));
        if broken || !has_slice {
            if broken || self.waiting_for_keyframe {
                self.stats.dropped_access_units += 1;
            }
            if self.waiting_for_keyframe && has_slice {
                // Still no decodable picture: ask again (the caller spaces
                // its requests; a request or its keyframe may be lost).
                out.push(Depacketized::KeyframeNeeded);
            }
            return;
        }
        if self.waiting_for_keyframe {
            if !keyframe {
                self.stats.dropped_access_units += 1;
                out.push(Depacketized::KeyframeNeeded);
                return;
            }
            self.waiting_for_keyframe = false;
        }
        self.stats.access_units += 1;
        out.push(Depacketized::AccessUnit(AccessUnit { rtp_timestamp: ts, nal_units, keyframe }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x02, 0x80, 0xbf, 0xe5];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn p(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
        RtpPacket { sequence: seq, timestamp: ts, marker, payload: Bytes::copy_from_slice(payload) }
    }

    fn idr(len: usize) -> Vec<u8> {
        let mut v = vec![0x65];
        v.extend((0..len).map(|i| (i % 251) as u8 | 1));
        v
    }

    fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![0x78]; // F=0 NRI=3 type=24
        for n in nals {
            v.extend_from_slice(&(n.len() as u16).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    fn fu_a(nal_unit: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let header = nal_unit[0];
        let body = &nal_unit[1..];
        let chunks: Vec<&[u8]> = body.chunks(chunk).collect();
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut fu = vec![(header & 0xe0) | 28];
                let mut h = header & 0x1f;
                if i == 0 {
                    h |= 0x80;
                }
                if i == chunks.len() - 1 {
                    h |= 0x40;
                }
                fu.push(h);
                fu.extend_from_slice(c);
                fu
            })
            .collect()
    }

    fn units(out: Vec<Depacketized>) -> Vec<AccessUnit> {
        out.into_iter()
            .filter_map(|d| match d {
                Depacketized::AccessUnit(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn stap_a_parameter_sets_and_fu_a_idr_make_one_keyframe() {
        let mut d = H264Depacketizer::new();
        let frame = idr(3000);
        let mut out = d.push(&p(1, 9000, false, &stap_a(&[SPS, PPS])));
        let frags = fu_a(&frame, 1100);
        assert_eq!(frags.len(), 3);
        for (i, f) in frags.iter().enumerate() {
            out.extend(d.push(&p(2 + i as u16, 9000, i == 2, f)));
        }
        let aus = units(out);
        assert_eq!(aus.len(), 1);
        let au = &aus[0];
        assert!(au.keyframe);
        assert_eq!(au.rtp_timestamp, 9000);
        assert_eq!(au.nal_units, vec![Bytes::from_static(SPS), Bytes::from_static(PPS), Bytes::from(frame.clone())]);
        assert_eq!(au.parameter_sets(), (Some(&Bytes::from_static(SPS)), Some(&Bytes::from_static(PPS))));
        let avcc = au.to_avcc();
        assert_eq!(&avcc[..4], &(SPS.len() as u32).to_be_bytes());
        assert_eq!(avcc.len(), SPS.len() + PPS.len() + frame.len() + 12);
    }

    #[test]
    fn p_frames_before_the_first_idr_are_dropped_and_a_keyframe_asked_for() {
        let mut d = H264Depacketizer::new();
        assert_eq!(d.push(&p(1, 0, true, &[0x41, 0x9a, 1, 2])), vec![Depacketized::KeyframeNeeded]);
        assert_eq!(units(d.push(&p(2, 3000, true, &idr(10)))).len(), 1);
        assert_eq!(units(d.push(&p(3, 6000, true, &[0x41, 0x9a, 1, 2]))).len(), 1);
        assert_eq!(d.stats().dropped_access_units, 1);
    }

    #[test]
    fn loss_drops_until_the_next_idr_and_asks_for_one() {
        let mut d = H264Depacketizer::new();
        d.push(&p(1, 0, true, &idr(10)));
        assert_eq!(d.lost(), vec![Depacketized::KeyframeNeeded]);
        assert_eq!(d.lost(), vec![], "asked once per loss");
        // Each picture that cannot be decoded asks again (the session
        // spaces the PLIs): a PLI, or the keyframe answering it, can be lost.
        assert_eq!(d.push(&p(5, 3000, true, &[0x41, 1])), vec![Depacketized::KeyframeNeeded]);
        let out = d.push(&p(6, 6000, true, &idr(10)));
        assert_eq!(units(out).len(), 1);
    }

    #[test]
    fn a_missing_middle_fragment_breaks_only_that_picture() {
        let mut d = H264Depacketizer::new();
        d.push(&p(1, 0, true, &idr(10)));
        let frags = fu_a(&idr(3000), 1000);
        d.push(&p(2, 3000, false, &frags[0]));
        // Packet 3 lost: the reorder buffer reports it.
        let out = d.lost();
        assert_eq!(out, vec![Depacketized::KeyframeNeeded]);
        let out = d.push(&p(4, 3000, true, &frags[2]));
        assert!(units(out).is_empty(), "the broken picture is not emitted");
    }

    #[test]
    fn timestamp_change_without_marker_closes_the_picture() {
        let mut d = H264Depacketizer::new();
        let a = units(d.push(&p(1, 0, false, &idr(10))));
        assert!(a.is_empty());
        let b = units(d.push(&p(2, 3000, false, &[0x41, 1])));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].rtp_timestamp, 0);
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let mut d = H264Depacketizer::new();
        d.push(&p(1, 0, true, &idr(10)));
        for bad in [
            &[0x78][..],               // STAP-A with nothing
            &[0x78, 0x00],             // truncated size
            &[0x78, 0x00, 0x05, 0x67], // size beyond payload
            &[0x78, 0x00, 0x00],       // zero-size NAL
            &[0x7c],                   // FU-A without header
            &[0x7c, 0x05, 1, 2],       // FU-A continuation without start
            &[0x79, 1, 2],             // STAP-B
            &[0x7d, 0x85, 1],          // FU-B
            &[0x60],                   // type 0
            &[0x7e],
            &[0x7f],       // reserved 30, 31
            &[0xe5, 1, 2], // forbidden bit
        ] {
            let out = d.push(&p(2, 3000, true, bad));
            assert!(units(out).is_empty(), "{bad:?}");
        }
        assert!(d.stats().malformed_packets >= 11);
        // It recovers at the next IDR.
        assert_eq!(units(d.push(&p(3, 6000, true, &idr(5)))).len(), 1);
    }

    #[test]
    fn padding_only_packets_are_ignored() {
        // Browsers probe bandwidth with padding-only packets between frames.
        let mut d = H264Depacketizer::new();
        assert_eq!(units(d.push(&p(1, 0, true, &idr(10)))).len(), 1);
        for seq in 2..10 {
            assert!(d.push(&p(seq, 0, false, &[])).is_empty());
        }
        assert_eq!(units(d.push(&p(10, 3000, true, &[0x41, 1]))).len(), 1, "no loss, no keyframe wait");
        assert_eq!(d.stats().malformed_packets, 0);
    }

    #[test]
    fn short_single_nal_packets_are_accepted() {
        // Some depacketizers reject payloads under a few bytes; one-byte
        // NAL units (e.g. end of sequence, type 10) are legal.
        let mut d = H264Depacketizer::new();
        let out = units(d.push(&p(1, 0, true, &[0x65, 0x88])));
        assert_eq!(out.len(), 1);
        let out = units(d.push(&p(2, 3000, true, &[0x41])));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn aud_and_filler_are_removed() {
        let mut d = H264Depacketizer::new();
        let out = units(d.push(&p(1, 0, true, &stap_a(&[&[0x09, 0xf0], &idr(4), &[0x0c, 0xff]]))));
        assert_eq!(out[0].nal_units.len(), 1);
    }

    proptest! {
        #[test]
        fn arbitrary_packets_never_panic_and_units_are_well_formed(
            packets in proptest::collection::vec(
                (any::<bool>(), 0u32..5, proptest::collection::vec(any::<u8>(), 0..64), any::<bool>()),
                0..200)
        ) {
            let mut d = H264Depacketizer::new();
            for (i, (marker, ts, payload, lose)) in packets.into_iter().enumerate() {
                if lose { d.lost(); }
                for o in d.push(&p(i as u16, ts * 3000, marker, &payload)) {
                    if let Depacketized::AccessUnit(au) = o {
                        prop_assert!(!au.nal_units.is_empty());
                        prop_assert!(au.nal_units.iter().all(|n| !n.is_empty() && n[0] & 0x80 == 0));
                    }
                }
            }
        }
    }
}
