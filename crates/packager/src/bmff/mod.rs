//! ISO/IEC 14496-12 (ISO BMFF) boxes, written, never read: fragments
//! (`moof` + `mdat`) and initialization segments (`ftyp` + `moov`).

mod fragment;
mod init;
mod writer;

pub use fragment::{FragmentBoxes, FragmentSample, LiveLookahead, TFRF_UUID, TFXD_UUID, write_fragment};
pub use init::{TrackKind, write_init_segment};
pub use writer::BoxWriter;
