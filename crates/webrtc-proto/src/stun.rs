//! The STUN (RFC 8489) the node does itself, besides what the `webrtc`
//! crate does for ICE:
//!
//! * which session a Binding request is for: ICE puts `"<receiver
//!   ufrag>:<sender ufrag>"` in the USERNAME attribute (RFC 8445 7.2.2), and
//!   the receiver's ufrag is ours, unique per session;
//! * the node's public address: a Binding request from the media socket to
//!   a STUN server, whose success response carries the address it came
//!   from (XOR-MAPPED-ADDRESS), as on cloud hosts behind a 1:1 NAT.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The STUN magic cookie (RFC 8489 5).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// The USERNAME attribute type (RFC 8489 14.3).
const USERNAME: u16 = 0x0006;
/// MAPPED-ADDRESS (14.1) and XOR-MAPPED-ADDRESS (14.2).
const MAPPED_ADDRESS: u16 = 0x0001;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// Binding request and Binding success response (5, 6).
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const HEADER_LEN: usize = 20;

/// A STUN transaction id (96 bits).
pub type TransactionId = [u8; 12];

/// A Binding request with no attributes.
pub fn binding_request(transaction: &TransactionId) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER_LEN);
    m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(&MAGIC_COOKIE);
    m.extend_from_slice(transaction);
    m
}

/// The transaction id of a Binding success response.
pub fn binding_success_transaction(datagram: &[u8]) -> Option<TransactionId> {
    if !is_stun(datagram) || u16::from_be_bytes([datagram[0], datagram[1]]) != BINDING_SUCCESS {
        return None;
    }
    datagram[8..20].try_into().ok()
}

/// The address a Binding success response reports: XOR-MAPPED-ADDRESS, or
/// MAPPED-ADDRESS from servers that only send that (RFC 3489 ones).
pub fn mapped_address(datagram: &[u8]) -> Option<SocketAddr> {
    binding_success_transaction(datagram)?;
    let mut plain = None;
    let mut xored = None;
    for (kind, value) in attributes(datagram) {
        match kind {
            XOR_MAPPED_ADDRESS => xored = xored.or_else(|| address(value, Some(&datagram[4..20]))),
            MAPPED_ADDRESS => plain = plain.or_else(|| address(value, None)),
            _ => {}
        }
    }
    xored.or(plain)
}

/// Decodes an address attribute's value; `xor` is the cookie and
/// transaction id the XOR form is masked with.
fn address(value: &[u8], xor: Option<&[u8]>) -> Option<SocketAddr> {
    let family = *value.get(1)?;
    let mut port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]);
    let mask = |bytes: &mut [u8]| {
        if let Some(x) = xor {
            for (b, m) in bytes.iter_mut().zip(x) {
                *b ^= m;
            }
        }
    };
    if xor.is_some() {
        port ^= u16::from_be_bytes([MAGIC_COOKIE[0], MAGIC_COOKIE[1]]);
    }
    let ip = match family {
        0x01 => {
            let mut b: [u8; 4] = value.get(4..8)?.try_into().ok()?;
            mask(&mut b);
            IpAddr::V4(Ipv4Addr::from(b))
        }
        0x02 => {
            let mut b: [u8; 16] = value.get(4..20)?.try_into().ok()?;
            mask(&mut b);
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// A STUN message's attributes, (type, value), as far as they are whole.
fn attributes(datagram: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let end = (HEADER_LEN + length).min(datagram.len());
    let mut at = HEADER_LEN;
    std::iter::from_fn(move || {
        if at + 4 > end {
            return None;
        }
        let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        let len = usize::from(u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]));
        let value = datagram.get(at + 4..at + 4 + len)?;
        // Attributes are padded to 4 bytes.
        at += 4 + len.div_ceil(4) * 4;
        Some((kind, value))
    })
}

/// Whether a datagram looks like a STUN message (RFC 7983 demultiplexing:
/// first byte 0..=3, then the magic cookie).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[0] & 0xc0 == 0 && datagram[4..8] == MAGIC_COOKIE
}

/// The local (receiver's) ufrag of a STUN message's USERNAME, if it has one.
pub fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) {
        return None;
    }
    let (_, value) = attributes(datagram).find(|(kind, _)| *kind == USERNAME)?;
    let username = std::str::from_utf8(value).ok()?;
    username.split(':').next().filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Binding request as Chromium sends it (RFC 8489 Appendix B
    /// layout): header, USERNAME "srvufrag:cli1" (13 bytes, padded to 16),
    /// then PRIORITY.
    fn ice_check(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff]);
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    /// RFC 5769 2.2, "Sample IPv4 Response": a Binding success response
    /// from "test vector" reporting 192.0.2.1:32853. (The
    /// MESSAGE-INTEGRITY and FINGERPRINT values are not read here; the
    /// integrity bytes are zeros instead of the RFC's HMAC.)
    const RFC5769_IPV4_RESPONSE: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22,
        0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47,
        0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x28, 0x00, 0x04,
        0xc0, 0x7d, 0x4c, 0x96,
    ];

    #[test]
    fn the_mapped_address_of_a_binding_response() {
        assert_eq!(mapped_address(&RFC5769_IPV4_RESPONSE), Some("192.0.2.1:32853".parse().unwrap()));
        assert_eq!(
            binding_success_transaction(&RFC5769_IPV4_RESPONSE),
            Some([0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae])
        );
        // A request is not a response; truncations never panic.
        let request = binding_request(&[9; 12]);
        assert_eq!(request.len(), 20);
        assert_eq!(&request[..8], &[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]);
        assert_eq!(mapped_address(&request), None);
        for cut in 0..RFC5769_IPV4_RESPONSE.len() {
            let _ = mapped_address(&RFC5769_IPV4_RESPONSE[..cut]);
        }
        // MAPPED-ADDRESS alone (an RFC 3489 server): not masked.
        let mut plain = RFC5769_IPV4_RESPONSE[..20].to_vec();
        plain[3] = 12;
        plain.extend_from_slice(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x1f, 0x90, 203, 0, 113, 7]);
        assert_eq!(mapped_address(&plain), Some("203.0.113.7:8080".parse().unwrap()));
    }

    #[test]
    fn the_receivers_ufrag_is_read() {
        assert_eq!(local_ufrag(&ice_check(b"srvufrag:cli1")), Some("srvufrag"));
        assert_eq!(local_ufrag(&ice_check(b"abcd:efgh")), Some("abcd"));
    }

    #[test]
    fn other_datagrams_have_none() {
        // DTLS (first byte 20..=63) and RTP (128..=191) are not STUN.
        assert_eq!(local_ufrag(&[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        let mut rtp = ice_check(b"a:b");
        rtp[0] = 0x80;
        assert_eq!(local_ufrag(&rtp), None);
        // No USERNAME, an empty one, truncated and lying lengths.
        assert_eq!(local_ufrag(&ice_check(b"")), None);
        let m = ice_check(b"srvufrag:cli1");
        for cut in 0..m.len() {
            let _ = local_ufrag(&m[..cut]);
        }
        let mut long = m.clone();
        long[26] = 0xff; // USERNAME length 0xff..
        assert_eq!(local_ufrag(&long), None);
        assert_eq!(local_ufrag(&[]), None);
    }
}
