//! H.264 decoder configuration (ITU-T H.264 7.3.2.1.1 SPS; ISO/IEC 14496-15
//! 5.3.3.1 AVCDecoderConfigurationRecord).

use bytes::{BufMut, Bytes, BytesMut};

use super::hex_upper;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpsError {
    #[error("SPS ends early")]
    Truncated,
    #[error("not an SPS NAL unit")]
    NotSps,
    #[error("SPS value out of range: {0}")]
    OutOfRange(&'static str),
}

/// What players need from a sequence parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
}

impl SpsInfo {
    /// RFC 6381 codecs parameter, e.g. `avc1.42C01F`.
    pub fn codec_string(&self) -> String {
        format!("avc1.{}", hex_upper(&[self.profile_idc, self.constraint_flags, self.level_idc]))
    }
}

/// Removes emulation prevention bytes (7.4.1: 0x000003 -> 0x0000).
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Result<u32, SpsError> {
        let byte = self.data.get(self.pos / 8).ok_or(SpsError::Truncated)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(bit))
    }
    fn bits(&mut self, n: u32) -> Result<u32, SpsError> {
        (0..n).try_fold(0u32, |acc, _| Ok((acc << 1) | self.bit()?))
    }
    /// ue(v), 9.1.
    fn ue(&mut self) -> Result<u32, SpsError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::OutOfRange("exp-Golomb code"));
            }
        }
        Ok(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }
    /// se(v), 9.1.1.
    fn se(&mut self) -> Result<i32, SpsError> {
        let k = self.ue()?;
        Ok(if k % 2 == 1 { (k / 2 + 1) as i32 } else { -((k / 2) as i32) })
    }
}

fn skip_scaling_list(b: &mut Bits<'_>, size: usize) -> Result<(), SpsError> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = b.se()?;
            next = (last + delta + 256).rem_euclid(256);
        }
        last = if next == 0 { last } else { next };
    }
    Ok(())
}

/// Parses an SPS NAL unit (with its one-byte header).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, SpsError> {
    if nal.first().map(|h| h & 0x1f) != Some(7) {
        return Err(SpsError::NotSps);
    }
    let data = rbsp(&nal[1..]);
    let mut b = Bits { data: &data, pos: 0 };
    let profile_idc = b.bits(8)? as u8;
    let constraint_flags = b.bits(8)? as u8;
    let level_idc = b.bits(8)? as u8;
    b.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = b.ue()?;
        if chroma_format_idc > 3 {
            return Err(SpsError::OutOfRange("chroma_format_idc"));
        }
        if chroma_format_idc == 3 {
            b.bit()?; // separate_colour_plane_flag
        }
        b.ue()?; // bit_depth_luma_minus8
        b.ue()?; // bit_depth_chroma_minus8
        b.bit()?; // qpprime_y_zero_transform_bypass_flag
        if b.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bit()? == 1 {
                    skip_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    match b.ue()? {
        0 => {
            b.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            b.bit()?;
            b.se()?;
            b.se()?;
            let cycle = b.ue()?;
            if cycle > 255 {
                return Err(SpsError::OutOfRange("num_ref_frames_in_pic_order_cnt_cycle"));
            }
            for _ in 0..cycle {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?; // max_num_ref_frames
    b.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(b.ue()?) + 1;
    let height_map_units = u64::from(b.ue()?) + 1;
    let frame_mbs_only = u64::from(b.bit()?);
    if frame_mbs_only == 0 {
        b.bit()?; // mb_adaptive_frame_field_flag
    }
    b.bit()?; // direct_8x8_inference_flag
    let (mut cl, mut cr, mut ct, mut cb) = (0u64, 0u64, 0u64, 0u64);
    if b.bit()? == 1 {
        cl = u64::from(b.ue()?);
        cr = u64::from(b.ue()?);
        ct = u64::from(b.ue()?);
        cb = u64::from(b.ue()?);
    }
    let (sub_w, sub_h) = match chroma_format_idc {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let (crop_x, crop_y) = if chroma_format_idc == 0 { (1, 2 - frame_mbs_only) } else { (sub_w, sub_h * (2 - frame_mbs_only)) };
    let width = (width_mbs * 16).checked_sub((cl + cr) * crop_x);
    let height = ((2 - frame_mbs_only) * height_map_units * 16).checked_sub((ct + cb) * crop_y);
    match (width, height) {
        (Some(w), Some(h)) if w > 0 && h > 0 && w <= 16_384 && h <= 16_384 => {
            Ok(SpsInfo { profile_idc, constraint_flags, level_idc, width: w as u32, height: h as u32 })
        }
        _ => Err(SpsError::OutOfRange("picture size")),
    }
}

/// AVCDecoderConfigurationRecord for one SPS and one PPS.
pub fn avc_decoder_configuration(sps: &[u8], pps: &[u8]) -> Result<Bytes, SpsError> {
    let info = parse_sps(sps)?;
    let sps_len = u16::try_from(sps.len()).map_err(|_| SpsError::OutOfRange("SPS size"))?;
    let pps_len = u16::try_from(pps.len()).map_err(|_| SpsError::OutOfRange("PPS size"))?;
    let mut b = BytesMut::new();
    b.put_u8(1); // configurationVersion
    b.put_u8(info.profile_idc);
    b.put_u8(info.constraint_flags);
    b.put_u8(info.level_idc);
    b.put_u8(0xfc | 3); // lengthSizeMinusOne = 3
    b.put_u8(0xe0 | 1); // one SPS
    b.put_u16(sps_len);
    b.put_slice(sps);
    b.put_u8(1); // one PPS
    b.put_u16(pps_len);
    b.put_slice(pps);
    if !matches!(info.profile_idc, 66 | 77 | 88) {
        // 14496-15 5.3.3.1.2: chroma format, bit depths, no SPS extensions.
        b.put_u8(0xfc | 1);
        b.put_u8(0xf8);
        b.put_u8(0xf8);
        b.put_u8(0);
    }
    Ok(b.freeze())
}

/// MS-SSTR 2.2.2.5 CodecPrivateData for AVC1: `00000001 SPS 00000001 PPS`
/// in uppercase hex.
pub fn codec_private_data(sps: &[u8], pps: &[u8]) -> String {
    let mut v = Vec::with_capacity(sps.len() + pps.len() + 8);
    v.extend_from_slice(&[0, 0, 0, 1]);
    v.extend_from_slice(sps);
    v.extend_from_slice(&[0, 0, 0, 1]);
    v.extend_from_slice(pps);
    hex_upper(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Debian ffmpeg/libx264 baseline 320x240 SPS (testdata/h264-320x240-baseline.sps.hex).
    fn x264_320x240() -> Vec<u8> {
        hex(include_str!("../../testdata/h264-320x240-baseline.sps.hex"))
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.lines().filter(|l| !l.starts_with('#')).flat_map(|l| l.chars()).filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn parses_a_real_sps() {
        let info = parse_sps(&x264_320x240()).unwrap();
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(info.profile_idc, 66);
    }

    #[test]
    fn cropping_is_applied() {
        // 1920x1080: 120x68 macroblocks (1088 lines) cropped by 8 (4 units of 2).
        // Hand-assembled: profile 66, level 40, sps_id 0, log2_max_frame_num-4 0,
        // poc type 0, log2_max_poc_lsb-4 0, refs 1, gaps 0, w-1 119, h-1 67,
        // frame_mbs_only 1, direct_8x8 1, cropping 1 (0,0,0,4), vui 0.
        let mut bits = String::new();
        let ue = |v: u32| {
            let x = v + 1;
            let n = 32 - x.leading_zeros();
            format!("{}{:0width$b}", "0".repeat((n - 1) as usize), x, width = n as usize)
        };
        bits += &format!("{:08b}{:08b}{:08b}", 66, 0xc0, 40);
        for v in [0, 0, 0, 0, 1] {
            bits += &ue(v);
        }
        bits += "0";
        bits += &ue(119);
        bits += &ue(67);
        bits += "11";
        bits += "1";
        for v in [0, 0, 0, 4] {
            bits += &ue(v);
        }
        bits += "0"; // vui_parameters_present_flag
        bits += "1"; // rbsp_stop_one_bit
        while !bits.len().is_multiple_of(8) {
            bits.push('0');
        }
        let mut nal = vec![0x67];
        nal.extend((0..bits.len() / 8).map(|i| u8::from_str_radix(&bits[i * 8..i * 8 + 8], 2).unwrap()));
        let info = parse_sps(&nal).unwrap();
        assert_eq!((info.width, info.height), (1920, 1080));
        assert_eq!(info.codec_string(), "avc1.42C028");
    }

    #[test]
    fn avcc_layout() {
        let sps = x264_320x240();
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let c = avc_decoder_configuration(&sps, &pps).unwrap();
        assert_eq!(c[0], 1);
        assert_eq!(&c[1..4], &sps[1..4], "profile, compatibility, level copied from the SPS");
        assert_eq!(c[4], 0xff, "6 reserved bits + lengthSizeMinusOne 3");
        assert_eq!(c[5], 0xe1, "3 reserved bits + one SPS");
        assert_eq!(u16::from_be_bytes([c[6], c[7]]) as usize, sps.len());
        assert_eq!(&c[8..8 + sps.len()], sps.as_slice());
        assert_eq!(c[8 + sps.len()], 1);
        assert_eq!(&c[11 + sps.len()..], &pps);
        assert_eq!(codec_private_data(&[0x67, 0x42], &[0x68, 0xce]), "00000001674200000001".to_owned() + "68CE");
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(parse_sps(&[]), Err(SpsError::NotSps));
        assert_eq!(parse_sps(&[0x68, 1, 2]), Err(SpsError::NotSps));
        assert_eq!(parse_sps(&[0x67, 0x42]), Err(SpsError::Truncated));
        assert!(parse_sps(&[0x67, 0x42, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    proptest! {
        #[test]
        // Up to 1 KiB: longer than any SPS (scaling lists, VUI, HRD).
        fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..1024)) {
            if let Some(first) = data.first_mut() { *first = 0x67; }
            let _ = parse_sps(&data);
            let _ = avc_decoder_configuration(&data, &[0x68]);
        }

        // A real SPS with bytes changed, cut short or lengthened: inputs
        // that get past the header into every field.
        fn a_damaged_real_sps_never_panics(
            changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut data = x264_320x240();
            for (at, byte) in changes {
                let i = at.index(data.len() - 1) + 1;
                data[i] = byte;
            }
            data.truncate(cut.index(data.len()) + 1);
            data.extend(tail);
            let _ = parse_sps(&data);
            let _ = avc_decoder_configuration(&data, &[0x68]);
        }
    }
}
