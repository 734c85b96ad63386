//! The WHIP endpoint (RFC 9725).

pub mod endpoint;
pub mod fleet;
#[cfg(test)]
mod negotiation_tests;
