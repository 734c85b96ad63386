//! Media fragments: `moof` + `mdat` (ISO/IEC 14496-12 8.8), with the
//! Smooth Streaming extensions of MS-SSTR 2.2.4: `tfxd` (the fragment's
//! absolute time and duration) and, while live, `tfrf` (the fragments that
//! follow, which is how players that never re-read a live manifest learn
//! about new fragments).
//!
//! One fragment carries one track. `tfhd` sets default-base-is-moof and
//! `tfdt` carries the decode time, so DASH and HLS players read the same
//! fragments with an initialization segment.

use bytes::Bytes;

use super::writer::BoxWriter;

/// MS-SSTR 2.2.4.4 TfxdBox extended type.
pub const TFXD_UUID: [u8; 16] = [0x6d, 0x1d, 0x9b, 0x05, 0x42, 0xd5, 0x44, 0xe6, 0x80, 0xe2, 0x14, 0x1d, 0xaf, 0xf7, 0x57, 0xb2];
/// MS-SSTR 2.2.4.5 TfrfBox extended type.
pub const TFRF_UUID: [u8; 16] = [0xd4, 0x80, 0x7e, 0xf2, 0xca, 0x39, 0x46, 0x95, 0x8e, 0x54, 0x26, 0xcb, 0x9e, 0x46, 0xa7, 0x9f];

/// `trun` flags (14496-12 8.8.8.1).
const TRUN_DATA_OFFSET: u32 = 0x000001;
const TRUN_DURATION: u32 = 0x000100;
const TRUN_SIZE: u32 = 0x000200;
const TRUN_FLAGS: u32 = 0x000400;
const TRUN_CTO: u32 = 0x000800;
/// `tfhd` default-base-is-moof (8.8.7.1).
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x020000;

/// Sample flags (8.8.3.1): a sync sample depends on no other
/// (sample_depends_on = 2); others depend on earlier samples
/// (sample_depends_on = 1) and are not sync samples.
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentSample {
    /// In timescale units.
    pub duration: u32,
    pub keyframe: bool,
    pub composition_offset: i32,
    pub data: Bytes,
}

/// A following fragment announced in `tfrf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveLookahead {
    pub time: u64,
    pub duration: u64,
}

#[derive(Debug, Clone)]
pub struct FragmentBoxes<'a> {
    pub sequence_number: u32,
    pub track_id: u32,
    /// The fragment's start on the track's timeline (timescale units).
    pub start: u64,
    pub duration: u64,
    pub samples: &'a [FragmentSample],
    /// `Some` while live: the fragments announced after this one.
    pub lookahead: Option<&'a [LiveLookahead]>,
}

/// Writes `moof` + `mdat`.
pub fn write_fragment(f: &FragmentBoxes<'_>) -> Bytes {
    let with_cto = f.samples.iter().any(|s| s.composition_offset != 0);
    let mut w = BoxWriter::new();
    w.begin(b"moof");
    w.begin_full(b"mfhd", 0, 0).u32(f.sequence_number).end();
    w.begin(b"traf");
    w.begin_full(b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF).u32(f.track_id).end();
    w.begin_full(b"tfdt", 1, 0).u64(f.start).end();
    let mut flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS;
    if with_cto {
        flags |= TRUN_CTO;
    }
    // Version 1: signed composition offsets.
    w.begin_full(b"trun", 1, flags).u32(f.samples.len() as u32);
    let data_offset_at = w.len();
    w.i32(0);
    for s in f.samples {
        w.u32(s.duration).u32(s.data.len() as u32).u32(if s.keyframe { SYNC_SAMPLE_FLAGS } else { NON_SYNC_SAMPLE_FLAGS });
        if with_cto {
            w.i32(s.composition_offset);
        }
    }
    w.end();
    w.begin_uuid(&TFXD_UUID, 1, 0).u64(f.start).u64(f.duration).end();
    if let Some(next) = f.lookahead {
        w.begin_uuid(&TFRF_UUID, 1, 0).u8(next.len().min(255) as u8);
        for n in next.iter().take(255) {
            w.u64(n.time).u64(n.duration);
        }
        w.end();
    }
    w.end(); // traf
    w.end(); // moof
    let moof_size = w.len();
    // The first sample's bytes follow the mdat header.
    w.patch_u32(data_offset_at, (moof_size + 8) as u32);
    w.begin(b"mdat");
    for s in f.samples {
        w.bytes(&s.data);
    }
    w.end();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fragment checked byte for byte against the layouts of ISO/IEC
    /// 14496-12 (mfhd 8.8.5, traf 8.8.6, tfhd 8.8.7, tfdt 8.8.12, trun
    /// 8.8.8) and MS-SSTR (tfxd 2.2.4.4, tfrf 2.2.4.5).
    #[test]
    fn layout_field_by_field() {
        let samples = [
            FragmentSample { duration: 333_333, keyframe: true, composition_offset: 0, data: Bytes::from_static(&[0xaa, 0xbb]) },
            FragmentSample { duration: 333_334, keyframe: false, composition_offset: 0, data: Bytes::from_static(&[0xcc]) },
        ];
        let next = [LiveLookahead { time: 20_666_667, duration: 20_000_000 }];
        let b = write_fragment(&FragmentBoxes {
            sequence_number: 3,
            track_id: 1,
            start: 20_000_000,
            duration: 666_667,
            samples: &samples,
            lookahead: Some(&next),
        });
        let mut expected: Vec<u8> = Vec::new();
        let mut put = |bytes: &[u8]| expected.extend_from_slice(bytes);
        // moof: 8 + mfhd 16 + traf (8 + tfhd 16 + tfdt 20 + trun 44 + tfxd 44 + tfrf 45) = 201
        put(&201u32.to_be_bytes());
        put(b"moof");
        // mfhd: size 16, version 0, flags 0, sequence_number 3
        put(&16u32.to_be_bytes());
        put(b"mfhd");
        put(&[0, 0, 0, 0]);
        put(&3u32.to_be_bytes());
        put(&177u32.to_be_bytes());
        put(b"traf");
        // tfhd: version 0, flags 0x020000 (default-base-is-moof), track_ID 1
        put(&16u32.to_be_bytes());
        put(b"tfhd");
        put(&[0, 0x02, 0, 0]);
        put(&1u32.to_be_bytes());
        // tfdt: version 1, baseMediaDecodeTime as 64 bits
        put(&20u32.to_be_bytes());
        put(b"tfdt");
        put(&[1, 0, 0, 0]);
        put(&20_000_000u64.to_be_bytes());
        // trun: version 1, flags data-offset|duration|size|flags = 0x000701
        put(&44u32.to_be_bytes());
        put(b"trun");
        put(&[1, 0, 0x07, 0x01]);
        put(&2u32.to_be_bytes()); // sample_count
        put(&(201u32 + 8).to_be_bytes()); // data_offset: moof size + mdat header
        put(&333_333u32.to_be_bytes());
        put(&2u32.to_be_bytes());
        put(&0x0200_0000u32.to_be_bytes());
        put(&333_334u32.to_be_bytes());
        put(&1u32.to_be_bytes());
        put(&0x0101_0000u32.to_be_bytes());
        // tfxd: uuid box, version 1, fragment_absolute_time and fragment_duration as 64 bits
        put(&44u32.to_be_bytes());
        put(b"uuid");
        put(&TFXD_UUID);
        put(&[1, 0, 0, 0]);
        put(&20_000_000u64.to_be_bytes());
        put(&666_667u64.to_be_bytes());
        // tfrf: uuid box, version 1, fragment_count 1, then (time, duration) as 64 bits
        put(&45u32.to_be_bytes());
        put(b"uuid");
        put(&TFRF_UUID);
        put(&[1, 0, 0, 0]);
        put(&[1]);
        put(&20_666_667u64.to_be_bytes());
        put(&20_000_000u64.to_be_bytes());
        // mdat
        put(&11u32.to_be_bytes());
        put(b"mdat");
        put(&[0xaa, 0xbb, 0xcc]);
        assert_eq!(b.as_ref(), expected.as_slice());
    }

    #[test]
    fn the_on_demand_form_has_no_tfrf_and_cto_when_needed() {
        let samples = [FragmentSample { duration: 10, keyframe: true, composition_offset: -5, data: Bytes::from_static(&[1]) }];
        let b =
            write_fragment(&FragmentBoxes { sequence_number: 1, track_id: 2, start: 0, duration: 10, samples: &samples, lookahead: None });
        assert!(!b.windows(16).any(|w| w == TFRF_UUID));
        assert!(b.windows(16).any(|w| w == TFXD_UUID));
        // trun flags include composition offsets (0x000f01), and the offset is -5.
        let trun = b.windows(4).position(|w| w == b"trun").unwrap();
        assert_eq!(&b[trun + 4..trun + 8], &[1, 0, 0x0f, 0x01]);
        assert_eq!(&b[trun + 28..trun + 32], &(-5i32).to_be_bytes());
    }
}
