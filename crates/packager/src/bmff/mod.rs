//! ISO/IEC 14496-12 (ISO BMFF) boxes, written, never read: fragments
//! (`moof` + `mdat`) and initialization segments (`ftyp` + `moov`).

mod fragment;
mod init;
mod writer;

pub use fragment::{FragmentBoxes, FragmentSample, LiveLookahead, write_fragment, TFRF_UUID, TFXD_UUID};
pub use init::{TrackKind, write_init_segment};
pub use writer::BoxWriter;
