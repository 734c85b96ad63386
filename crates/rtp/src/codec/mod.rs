//! Payload formats, one file per codec.

pub mod h264;
pub mod opus;
