//! The WHIP endpoint (RFC 9725).

pub mod offer;
