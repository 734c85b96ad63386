//! Initialization segments: `ftyp` + `moov` with one track and `mvex`
//! (ISO/IEC 14496-12 8.2-8.8), for DASH and HLS players. Smooth Streaming
//! players build their own from the manifest's CodecPrivateData.

use bytes::Bytes;

use super::writer::BoxWriter;

/// What a track carries, for its sample entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackKind {
    /// `avc1` with an `avcC` (ISO/IEC 14496-15 5.3).
    Video { width: u16, height: u16, avcc: Bytes },
    /// `mp4a` with an `esds` (ISO/IEC 14496-14) carrying the
    /// AudioSpecificConfig.
    Aac { sample_rate: u32, channels: u16, audio_specific_config: Bytes, bitrate: u32 },
    /// `Opus` with a `dOps` (Encapsulation of Opus in ISO BMFF, 4.3),
    /// always 48 kHz.
    Opus { channels: u16, dops: Bytes },
}

impl TrackKind {
    fn is_audio(&self) -> bool {
        !matches!(self, TrackKind::Video { .. })
    }
}

/// The 3x3 unity matrix of `mvhd` and `tkhd` (8.2.2, 8.3.2).
const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

pub fn write_init_segment(track_id: u32, timescale: u32, kind: &TrackKind) -> Bytes {
    let mut w = BoxWriter::new();
    w.begin(b"ftyp").bytes(b"iso6").u32(0).bytes(b"iso6").bytes(b"isom").bytes(b"dash").bytes(b"avc1");
    if matches!(kind, TrackKind::Opus { .. }) {
        // Encapsulation of Opus in ISO BMFF 4.1: files with Opus list it.
        w.bytes(b"Opus");
    }
    w.end();
    w.begin(b"moov");
    // mvhd version 0: times 0, timescale, duration 0 (fragmented).
    w.begin_full(b"mvhd", 0, 0).u32(0).u32(0).u32(timescale).u32(0);
    w.u32(0x0001_0000).u16(0x0100).zeros(10);
    for m in UNITY_MATRIX {
        w.u32(m);
    }
    w.zeros(24).u32(track_id + 1).end();
    w.begin(b"trak");
    // tkhd: enabled | in movie | in preview.
    w.begin_full(b"tkhd", 0, 0x000007).u32(0).u32(0).u32(track_id).u32(0).u32(0);
    w.zeros(8).u16(0).u16(0);
    w.u16(if kind.is_audio() { 0x0100 } else { 0 }).u16(0);
    for m in UNITY_MATRIX {
        w.u32(m);
    }
    match kind {
        TrackKind::Video { width, height, .. } => w.u32(u32::from(*width) << 16).u32(u32::from(*height) << 16),
        TrackKind::Aac { .. } | TrackKind::Opus { .. } => w.u32(0).u32(0),
    };
    w.end();
    w.begin(b"mdia");
    // mdhd: language "und" packed as 5-bit letters.
    w.begin_full(b"mdhd", 0, 0).u32(0).u32(0).u32(timescale).u32(0).u16(0x55c4).u16(0).end();
    let (handler, name): (&[u8; 4], &[u8]) = match kind {
        TrackKind::Video { .. } => (b"vide", b"VideoHandler\0"),
        TrackKind::Aac { .. } | TrackKind::Opus { .. } => (b"soun", b"SoundHandler\0"),
    };
    w.begin_full(b"hdlr", 0, 0).u32(0).bytes(handler).zeros(12).bytes(name).end();
    w.begin(b"minf");
    match kind {
        TrackKind::Video { .. } => w.begin_full(b"vmhd", 0, 1).zeros(8).end(),
        TrackKind::Aac { .. } | TrackKind::Opus { .. } => w.begin_full(b"smhd", 0, 0).zeros(4).end(),
    };
    w.begin(b"dinf").begin_full(b"dref", 0, 0).u32(1).begin_full(b"url ", 0, 1).end().end().end();
    w.begin(b"stbl");
    w.begin_full(b"stsd", 0, 0).u32(1);
    match kind {
        TrackKind::Video { width, height, avcc } => {
            w.begin(b"avc1").zeros(6).u16(1).zeros(16).u16(*width).u16(*height);
            w.u32(0x0048_0000).u32(0x0048_0000).u32(0).u16(1).zeros(32).u16(0x0018).u16(0xffff);
            w.begin(b"avcC").bytes(avcc).end();
            w.end();
        }
        TrackKind::Aac { sample_rate, channels, audio_specific_config, bitrate } => {
            w.begin(b"mp4a").zeros(6).u16(1).zeros(8).u16(*channels).u16(16).u16(0).u16(0);
            w.u32((*sample_rate).min(0xffff) << 16);
            write_esds(&mut w, audio_specific_config, *bitrate);
            w.end();
        }
        TrackKind::Opus { channels, dops } => {
            // AudioSampleEntry (14496-12 12.2.3): samplesize 16, samplerate
            // 48000 in 16.16.
            w.begin(b"Opus").zeros(6).u16(1).zeros(8).u16(*channels).u16(16).u16(0).u16(0);
            w.u32(crate::codec::opus::SAMPLE_RATE << 16);
            w.begin(b"dOps").bytes(dops).end();
            w.end();
        }
    }
    w.end(); // stsd
    w.begin_full(b"stts", 0, 0).u32(0).end();
    w.begin_full(b"stsc", 0, 0).u32(0).end();
    w.begin_full(b"stsz", 0, 0).u32(0).u32(0).end();
    w.begin_full(b"stco", 0, 0).u32(0).end();
    w.end(); // stbl
    w.end(); // minf
    w.end(); // mdia
    w.end(); // trak
    w.begin(b"mvex");
    w.begin_full(b"trex", 0, 0).u32(track_id).u32(1).u32(0).u32(0).u32(0).end();
    w.end();
    w.end(); // moov
    w.finish()
}

/// `esds` (ISO/IEC 14496-14 5.6): ES_Descriptor > DecoderConfigDescriptor
/// (MPEG-4 audio, object type 0x40) > DecoderSpecificInfo (the ASC), and an
/// SLConfigDescriptor. Descriptor sizes use one byte (all are < 128).
fn write_esds(w: &mut BoxWriter, asc: &[u8], bitrate: u32) {
    let asc = &asc[..asc.len().min(100)];
    let dsi_len = asc.len() as u8;
    let dcd_len = 13 + 2 + dsi_len;
    let es_len = 3 + 2 + dcd_len + 3;
    w.begin_full(b"esds", 0, 0);
    w.u8(0x03).u8(es_len).u16(0).u8(0);
    w.u8(0x04).u8(dcd_len).u8(0x40).u8(0x15).u24(0).u32(bitrate).u32(bitrate);
    w.u8(0x05).u8(dsi_len).bytes(asc);
    w.u8(0x06).u8(1).u8(0x02);
    w.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esds_layout() {
        let mut w = BoxWriter::new();
        write_esds(&mut w, &[0x11, 0x90], 128_000);
        let b = w.finish();
        let expected: &[u8] = &[
            0, 0, 0, 39, b'e', b's', b'd', b's', 0, 0, 0, 0, 0x03, 25, 0, 0, 0, // ES_Descriptor: ES_ID 0, flags 0
            0x04, 17, 0x40, 0x15, 0, 0, 0, // DecoderConfig: MPEG-4 audio, AudioStream|upstream=0|reserved=1, bufferSizeDB 0
            0, 1, 0xf4, 0, 0, 1, 0xf4, 0, // maxBitrate, avgBitrate 128000
            0x05, 2, 0x11, 0x90, // DecoderSpecificInfo: AAC-LC 48 kHz stereo
            0x06, 1, 0x02, // SLConfig: predefined 2 (MP4)
        ];
        assert_eq!(b.as_ref(), expected);
    }

    #[test]
    fn opus_sample_entry() {
        let dops = crate::codec::opus::OpusConfig::new(1).unwrap().dops();
        let b = write_init_segment(2, 10_000_000, &TrackKind::Opus { channels: 1, dops: dops.clone() });
        // (The last "Opus": the first is the ftyp's compatible brand.)
        let at = b.windows(4).rposition(|w| w == b"Opus").unwrap() - 4;
        let size = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
        // The entry: 8 header + 28 AudioSampleEntry + 19 dOps.
        assert_eq!(size, 8 + 28 + 8 + 11);
        let entry = &b[at + 8..at + size];
        assert_eq!(&entry[6..8], &[0, 1], "data_reference_index");
        assert_eq!(&entry[16..20], &[0, 1, 0, 16], "channelcount 1, samplesize 16");
        assert_eq!(&entry[24..28], &[0xbb, 0x80, 0, 0], "48000 in 16.16");
        assert_eq!(&entry[28..36], &[0, 0, 0, 19, b'd', b'O', b'p', b's']);
        assert_eq!(&entry[36..], dops.as_ref());
        // A sound track: smhd, and tkhd volume 1.0.
        assert!(b.windows(4).any(|w| w == b"smhd"));
    }

    #[test]
    fn video_init_segment_boxes_in_order() {
        let b = write_init_segment(
            1,
            10_000_000,
            &TrackKind::Video { width: 640, height: 480, avcc: Bytes::from_static(&[1, 0x42, 0xc0, 0x1e, 0xff, 0xe0, 0]) },
        );
        let types: Vec<&[u8]> = [
            b"ftyp", b"moov", b"mvhd", b"trak", b"tkhd", b"mdia", b"mdhd", b"hdlr", b"minf", b"vmhd", b"dinf", b"stbl", b"stsd", b"avc1",
            b"avcC", b"stts", b"mvex", b"trex",
        ]
        .iter()
        .map(|t| &t[..])
        .collect();
        let mut at = 0;
        for t in types {
            let pos = b[at..].windows(4).position(|w| w == t).unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(t)));
            at += pos;
        }
        // tkhd width/height as 16.16 fixed point.
        let tkhd = b.windows(4).position(|w| w == b"tkhd").unwrap();
        assert_eq!(&b[tkhd + 80..tkhd + 88], &[0x02, 0x80, 0, 0, 0x01, 0xe0, 0, 0]);
    }
}
