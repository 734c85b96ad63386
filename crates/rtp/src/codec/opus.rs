//! Opus over RTP (RFC 7587): one Opus packet per RTP packet, 48 kHz RTP
//! clock. The packet's duration comes from its TOC byte (RFC 6716 3.1).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpusError {
    #[error("empty Opus packet")]
    Empty,
    #[error("code 3 Opus packet without its frame count byte")]
    MissingFrameCount,
    #[error("Opus packet with zero frames")]
    NoFrames,
    #[error("Opus packet longer than 120 ms")]
    TooLong,
}

/// Samples per channel at 48 kHz of one frame, by TOC configuration.
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

/// The duration of an Opus packet in 48 kHz samples.
pub fn packet_samples(packet: &[u8]) -> Result<u32, OpusError> {
    let toc = *packet.first().ok_or(OpusError::Empty)?;
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(packet.get(1).ok_or(OpusError::MissingFrameCount)? & 0x3f),
    };
    if frames == 0 {
        return Err(OpusError::NoFrames);
    }
    let samples = frames * frame_samples(toc >> 3);
    if samples > 5760 {
        return Err(OpusError::TooLong);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_from_the_toc() {
        // Config 31 (CELT FB 20 ms), one frame: what browsers send.
        assert_eq!(packet_samples(&[0xf8, 1, 2]), Ok(960));
        // Config 1 (SILK NB 20 ms), two frames (code 1).
        assert_eq!(packet_samples(&[(1 << 3) | 1]), Ok(1920));
        // Config 16 (CELT NB 2.5 ms), code 3 with 4 frames.
        assert_eq!(packet_samples(&[(16 << 3) | 3, 4]), Ok(480));
        // Config 15 (hybrid FB 20 ms).
        assert_eq!(packet_samples(&[15 << 3]), Ok(960));
        // Config 11 (SILK WB 60 ms), code 3 with 2 frames = 120 ms.
        assert_eq!(packet_samples(&[(11 << 3) | 3, 2]), Ok(5760));
    }

    #[test]
    fn bad_packets() {
        assert_eq!(packet_samples(&[]), Err(OpusError::Empty));
        assert_eq!(packet_samples(&[0x03]), Err(OpusError::MissingFrameCount));
        assert_eq!(packet_samples(&[0x03, 0]), Err(OpusError::NoFrames));
        assert_eq!(packet_samples(&[(11 << 3) | 3, 3]), Err(OpusError::TooLong));
    }
}
