//! The WHIP endpoint (RFC 9725).

pub mod endpoint;
pub mod fleet;
pub mod offer;
