//! Media processing between depacketizing and packaging.

pub mod audio;
pub mod layer_clock;
pub mod layers;
