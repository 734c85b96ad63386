//! Codec configuration, one file per codec: what the manifests and sample
//! entries say about the streams.

pub mod aac;
pub mod h264;
pub mod opus;

/// Uppercase hex, as MS-SSTR CodecPrivateData.
pub fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}
