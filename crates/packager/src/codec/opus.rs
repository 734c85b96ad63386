//! Opus: a packet's duration from its TOC byte and the checks of RFC 6716
//! §3.4 (R1-R7), and the decoder configuration of an `Opus` sample entry
//! (its `dOps` box, "Encapsulation of Opus in ISO Base Media File Format"
//! 0.8, §4.3.2), which MS-SSTR CodecPrivateData carries in hex here.
//!
//! WebRTC publishers send Opus; DASH players in browsers, GStreamer and
//! libavformat decode it from fragmented MP4, so a stream whose outputs are
//! all DASH can keep it as sent (Smooth Streaming players take AAC only,
//! and so do Apple's HLS players; hls.js would play the HLS view of it).

use bytes::Bytes;

use super::hex_upper;

/// Opus always decodes at 48 kHz; its durations count 48 kHz samples.
pub const SAMPLE_RATE: u32 = 48_000;
/// RFC 6716 §3.4 R5: no packet holds more than 120 ms.
pub const MAX_PACKET_SAMPLES: u32 = 5_760;
/// The RFC 6381 codecs parameter (DASH `@codecs`, HLS `CODECS`).
pub const CODECS: &str = "opus";
/// The sample entry's four-character code, also the Smooth index's FourCC.
pub const FOURCC: &str = "Opus";
/// [R2]: the longest frame.
const MAX_FRAME_BYTES: usize = 1275;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpusError {
    #[error("an Opus packet is empty")]
    Empty,
    #[error("an Opus packet breaks RFC 6716 §3.4 {0}")]
    Malformed(&'static str),
    #[error("{0} channels need an Opus channel mapping table (only mono and stereo are carried)")]
    UnsupportedChannels(u16),
    #[error("dOps: {0}")]
    BadConfig(&'static str),
}

/// The duration of one frame of TOC configuration `config` (RFC 6716
/// table 2), in 48 kHz samples.
fn frame_samples(config: u8) -> u32 {
    match config {
        // SILK-only: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT-only: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    }
}

/// A frame length (§3.2.1): one byte below 252, else two. Returns the
/// length and the bytes it took.
fn frame_length(b: &[u8]) -> Result<(usize, usize), OpusError> {
    match b {
        [l @ 0..=251, ..] => Ok((usize::from(*l), 1)),
        [l, m, ..] => Ok((usize::from(*m) * 4 + usize::from(*l), 2)),
        _ => Err(OpusError::Malformed("R4/R7 (a frame length is cut off)")),
    }
}

/// The duration of an Opus packet in 48 kHz samples, after checking that
/// its frames are laid out as RFC 6716 §3.2 requires (R1-R7). A decoder
/// would reject a packet that fails; it is concealed as lost instead.
pub fn packet_samples(packet: &[u8]) -> Result<u32, OpusError> {
    let (&toc, rest) = packet.split_first().ok_or(OpusError::Empty)?;
    let per_frame = frame_samples(toc >> 3);
    let frames = match toc & 3 {
        0 => {
            if rest.len() > MAX_FRAME_BYTES {
                return Err(OpusError::Malformed("R2"));
            }
            1
        }
        1 => {
            if rest.len() % 2 != 0 || rest.len() / 2 > MAX_FRAME_BYTES {
                return Err(OpusError::Malformed(if rest.len() % 2 != 0 { "R3" } else { "R2" }));
            }
            2
        }
        2 => {
            let (first, used) = frame_length(rest)?;
            let left = rest.len() - used;
            if first > left {
                return Err(OpusError::Malformed("R4"));
            }
            if left - first > MAX_FRAME_BYTES {
                return Err(OpusError::Malformed("R2"));
            }
            2
        }
        _ => {
            let (&count, mut rest) = rest.split_first().ok_or(OpusError::Malformed("R6 (no frame count)"))?;
            let (vbr, padded, m) = (count & 0x80 != 0, count & 0x40 != 0, usize::from(count & 0x3f));
            if m == 0 || m as u32 * per_frame > MAX_PACKET_SAMPLES {
                return Err(OpusError::Malformed("R5"));
            }
            let mut padding = 0usize;
            if padded {
                loop {
                    let (&p, r) = rest.split_first().ok_or(OpusError::Malformed("R6/R7 (padding length is cut off)"))?;
                    rest = r;
                    padding += if p == 255 { 254 } else { usize::from(p) };
                    if p != 255 {
                        break;
                    }
                }
            }
            let mut data = rest.len().checked_sub(padding).ok_or(OpusError::Malformed("R6/R7 (padding longer than the packet)"))?;
            if vbr {
                // M-1 lengths, then the frames; the last frame takes the rest.
                for _ in 1..m {
                    let (len, used) = frame_length(rest)?;
                    rest = &rest[used..];
                    data = data.checked_sub(used + len).ok_or(OpusError::Malformed("R7"))?;
                    if len > MAX_FRAME_BYTES {
                        return Err(OpusError::Malformed("R2"));
                    }
                }
                if data > MAX_FRAME_BYTES {
                    return Err(OpusError::Malformed("R2"));
                }
            } else if data % m != 0 || data / m > MAX_FRAME_BYTES {
                return Err(OpusError::Malformed("R6"));
            }
            m as u32
        }
    };
    Ok(frames * per_frame)
}

/// A packet that stands for `samples` of lost audio (a multiple of 120)
/// in the mode of a packet that came (`like`, or CELT at 20 ms when none
/// did): its TOC byte alone, code 0, whose empty frame every decoder
/// conceals (RFC 6716 §3.2.1: a zero-length frame is a lost one). Returns
/// the packets and their durations.
pub fn lost_packets(samples: u32, like: Option<u8>) -> Vec<(Bytes, u32)> {
    // Config 31: CELT fullband 20 ms; the stereo flag of `like`.
    let toc = like.map(|t| t & 0xfc).unwrap_or(31 << 3);
    let per = frame_samples(toc >> 3);
    let mut out = Vec::new();
    let mut left = samples;
    while left > 0 {
        // What is left that one frame of `toc` would overshoot: the
        // shortest CELT frame that fits (2.5 ms steps).
        let (toc, n) = if left >= per { (toc, per) } else { ((16 << 3) | (toc & 0x04), 120) };
        out.push((Bytes::copy_from_slice(&[toc]), n));
        left = left.saturating_sub(n);
    }
    out
}

/// An Opus track's decoder configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    /// The `dOps` OutputChannelCount: 1 or 2 (channel mapping family 0).
    pub channels: u16,
}

impl OpusConfig {
    pub fn new(channels: u16) -> Result<Self, OpusError> {
        if !(1..=2).contains(&channels) {
            return Err(OpusError::UnsupportedChannels(channels));
        }
        Ok(OpusConfig { channels })
    }

    /// The `dOps` payload (after the box header): Version 0,
    /// OutputChannelCount, PreSkip 0 (a WebRTC stream joined mid-way has
    /// no encoder delay to skip at its start, and none is cut from the
    /// recording's first packet), InputSampleRate 48000, OutputGain 0,
    /// ChannelMappingFamily 0. Big-endian, unlike the Ogg `OpusHead`.
    pub fn dops(&self) -> Bytes {
        let mut b = Vec::with_capacity(11);
        b.push(0);
        b.push(self.channels as u8);
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&SAMPLE_RATE.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.push(0);
        Bytes::from(b)
    }

    /// Reads a `dOps` payload back (a stored recording's Smooth index).
    pub fn parse_dops(b: &[u8]) -> Result<Self, OpusError> {
        match b {
            [0, channels, _, _, _, _, _, _, _, _, 0, ..] => Self::new(u16::from(*channels)),
            [0, ..] if b.len() >= 11 => Err(OpusError::BadConfig("only channel mapping family 0 is carried")),
            [0, ..] => Err(OpusError::BadConfig("shorter than 11 bytes")),
            _ => Err(OpusError::BadConfig("version is not 0")),
        }
    }

    /// MS-SSTR CodecPrivateData of the Smooth index: the `dOps` payload
    /// in hex.
    pub fn codec_private_data(&self) -> String {
        hex_upper(&self.dops())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_from_the_toc() {
        // Chromium's usual packet: SILK wideband 20 ms (config 9), mono, code 0.
        assert_eq!(packet_samples(&[9 << 3, 1, 2, 3]), Ok(960));
        // Hybrid fullband 20 ms, stereo.
        assert_eq!(packet_samples(&[(15 << 3) | 4, 0]), Ok(960));
        // CELT 2.5 ms, and SILK 60 ms.
        assert_eq!(packet_samples(&[16 << 3]), Ok(120));
        assert_eq!(packet_samples(&[11 << 3, 0]), Ok(2880));
        // Code 1: two equal frames.
        assert_eq!(packet_samples(&[(1 << 3) | 1, 1, 2]), Ok(1920));
        // Code 2: a 1-byte first frame, then 2 bytes.
        assert_eq!(packet_samples(&[(1 << 3) | 2, 1, 9, 8, 7]), Ok(1920));
        // Code 3 CBR: three 20 ms CELT frames of 2 bytes.
        assert_eq!(packet_samples(&[(31 << 3) | 3, 3, 1, 1, 2, 2, 3, 3]), Ok(2880));
        // Code 3 VBR with padding: two frames (1 byte, then the rest), 2 padding bytes.
        assert_eq!(packet_samples(&[(31 << 3) | 3, 0x80 | 0x40 | 2, 2, 1, 7, 8, 9, 0, 0]), Ok(1920));
        // A TOC alone (DTX or lost) is a valid packet.
        assert_eq!(packet_samples(&[9 << 3]), Ok(960));
    }

    #[test]
    fn malformed_packets_are_refused() {
        assert_eq!(packet_samples(&[]), Err(OpusError::Empty));
        // R3: code 1 with an odd payload.
        assert!(packet_samples(&[(1 << 3) | 1, 1, 2, 3]).is_err());
        // R4: code 2 whose first frame is longer than the packet.
        assert!(packet_samples(&[(1 << 3) | 2, 9, 1]).is_err());
        // R5: code 3 with no frames, or more than 120 ms (7 x 20 ms).
        assert!(packet_samples(&[(31 << 3) | 3, 0]).is_err());
        assert!(packet_samples(&[(31 << 3) | 3, 7]).is_err());
        assert!(packet_samples(&[(31 << 3) | 3]).is_err());
        // R6: CBR data not a multiple of the frame count.
        assert!(packet_samples(&[(31 << 3) | 3, 2, 1, 2, 3]).is_err());
        // R6/R7: padding longer than the packet.
        assert!(packet_samples(&[(31 << 3) | 3, 0x40 | 1, 200, 1]).is_err());
        // R7: VBR lengths past the end.
        assert!(packet_samples(&[(31 << 3) | 3, 0x80 | 2, 9, 1]).is_err());
        // R2: an implicit frame over 1275 bytes.
        let mut long = vec![9 << 3];
        long.resize(1277, 0);
        assert!(packet_samples(&long).is_err());
    }

    #[test]
    fn lost_audio_becomes_toc_only_packets_in_the_senders_mode() {
        // 40 ms after a mono SILK 20 ms packet: two of its TOC, code 0.
        let p = lost_packets(1920, Some((9 << 3) | 1));
        assert_eq!(p, vec![(Bytes::from_static(&[9 << 3]), 960), (Bytes::from_static(&[9 << 3]), 960)]);
        // Nothing came yet: CELT 20 ms; a remainder in 2.5 ms frames.
        let p = lost_packets(1200, None);
        assert_eq!(p.iter().map(|(_, n)| n).sum::<u32>(), 1200);
        assert_eq!(p[0].0.as_ref(), &[31 << 3]);
        assert!(p.iter().all(|(b, n)| packet_samples(b) == Ok(*n)));
        // Stereo stays stereo.
        assert_eq!(lost_packets(960, Some((15 << 3) | 4))[0].0.as_ref(), &[(15 << 3) | 4]);
        assert!(lost_packets(0, None).is_empty());
    }

    proptest::proptest! {
        // Any bytes: an answer, never a panic; an accepted packet is at
        // most 120 ms, and its duration a whole number of its frames.
        #[test]
        fn arbitrary_packets_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1600)) {
            if let Ok(n) = packet_samples(&data) {
                proptest::prop_assert!(n > 0 && n <= MAX_PACKET_SAMPLES);
                proptest::prop_assert_eq!(n % frame_samples(data[0] >> 3), 0);
            }
            let _ = OpusConfig::parse_dops(&data);
        }
    }

    #[test]
    fn dops_round_trips() {
        let c = OpusConfig::new(2).unwrap();
        assert_eq!(c.dops().as_ref(), &[0, 2, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]);
        assert_eq!(c.codec_private_data(), "000200000000BB80000000");
        assert_eq!(OpusConfig::parse_dops(&c.dops()), Ok(c));
        assert!(OpusConfig::parse_dops(&[1, 2, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]).is_err());
        assert!(OpusConfig::parse_dops(&[0, 2, 0]).is_err());
        assert!(OpusConfig::parse_dops(&[0, 6, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 1]).is_err());
        assert_eq!(OpusConfig::new(3), Err(OpusError::UnsupportedChannels(3)));
    }
}
