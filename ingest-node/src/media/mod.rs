//! Media processing between depacketizing and packaging.

pub mod audio;
pub mod layers;
