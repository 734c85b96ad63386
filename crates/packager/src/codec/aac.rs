//! AAC-LC decoder configuration: the AudioSpecificConfig of ISO/IEC
//! 14496-3 1.6.2.1, as carried in `esds` and in MS-SSTR CodecPrivateData.

use bytes::Bytes;

use super::hex_upper;

/// Sampling frequencies by index (14496-3 table 1.18).
const FREQUENCIES: [u32; 13] = [96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000, 7_350];

/// AAC-LC audio object type.
pub const AOT_AAC_LC: u8 = 2;
/// Samples per channel in one AAC-LC frame.
pub const SAMPLES_PER_FRAME: u32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AacError {
    #[error("sampling frequency {0} Hz has no AAC index")]
    UnsupportedRate(u32),
    #[error("{0} channels cannot be described by a channel configuration")]
    UnsupportedChannels(u16),
    #[error("AudioSpecificConfig is shorter than 2 bytes")]
    Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioConfig {
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u16,
}

impl AudioConfig {
    pub fn aac_lc(sample_rate: u32, channels: u16) -> Result<Self, AacError> {
        let c = AudioConfig { object_type: AOT_AAC_LC, sample_rate, channels };
        c.audio_specific_config()?;
        Ok(c)
    }

    /// The two-byte AudioSpecificConfig: object type (5 bits), frequency
    /// index (4), channel configuration (4), GASpecificConfig zeros (3).
    pub fn audio_specific_config(&self) -> Result<Bytes, AacError> {
        let index = FREQUENCIES.iter().position(|&f| f == self.sample_rate).ok_or(AacError::UnsupportedRate(self.sample_rate))? as u16;
        if !(1..=7).contains(&self.channels) {
            return Err(AacError::UnsupportedChannels(self.channels));
        }
        let v: u16 = (u16::from(self.object_type & 0x1f) << 11) | (index << 7) | (self.channels << 3);
        Ok(Bytes::copy_from_slice(&v.to_be_bytes()))
    }

    pub fn parse(asc: &[u8]) -> Result<Self, AacError> {
        let (a, b) = match asc {
            [a, b, ..] => (*a, *b),
            _ => return Err(AacError::Truncated),
        };
        let v = u16::from_be_bytes([a, b]);
        let index = usize::from((v >> 7) & 0x0f);
        let sample_rate = *FREQUENCIES.get(index).ok_or(AacError::UnsupportedRate(0))?;
        Ok(AudioConfig { object_type: (v >> 11) as u8, sample_rate, channels: (v >> 3) & 0x0f })
    }

    /// MS-SSTR CodecPrivateData for AACL: the AudioSpecificConfig in hex.
    pub fn codec_private_data(&self) -> Result<String, AacError> {
        Ok(hex_upper(&self.audio_specific_config()?))
    }

    /// RFC 6381 codecs parameter.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_configs() {
        // 48 kHz stereo AAC-LC: 00010 0011 0010 000 = 0x1190.
        let c = AudioConfig::aac_lc(48_000, 2).unwrap();
        assert_eq!(c.audio_specific_config().unwrap().as_ref(), &[0x11, 0x90]);
        assert_eq!(c.codec_private_data().unwrap(), "1190");
        // 44.1 kHz stereo: 0x1210; 44.1 kHz mono: 0x1208.
        assert_eq!(AudioConfig::aac_lc(44_100, 2).unwrap().audio_specific_config().unwrap().as_ref(), &[0x12, 0x10]);
        assert_eq!(AudioConfig::aac_lc(44_100, 1).unwrap().audio_specific_config().unwrap().as_ref(), &[0x12, 0x08]);
        assert_eq!(AudioConfig::parse(&[0x11, 0x90]).unwrap(), c);
        assert_eq!(c.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn unsupported() {
        assert_eq!(AudioConfig::aac_lc(47_000, 2), Err(AacError::UnsupportedRate(47_000)));
        assert_eq!(AudioConfig::aac_lc(48_000, 0), Err(AacError::UnsupportedChannels(0)));
        assert_eq!(AudioConfig::parse(&[0x11]), Err(AacError::Truncated));
        assert!(AudioConfig::parse(&[0x17, 0x90]).is_err(), "frequency index 15 (escape) is not supported");
    }
}
