//! The one STUN fact the UDP mux needs (RFC 8489): which session a Binding
//! request is for. ICE puts `"<receiver ufrag>:<sender ufrag>"` in the
//! USERNAME attribute (RFC 8445 7.2.2), and the receiver's ufrag is ours,
//! unique per session.

/// The STUN magic cookie (RFC 8489 5).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// The USERNAME attribute type (RFC 8489 14.3).
const USERNAME: u16 = 0x0006;
const HEADER_LEN: usize = 20;

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
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let end = (HEADER_LEN + length).min(datagram.len());
    let mut at = HEADER_LEN;
    while at + 4 <= end {
        let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        let len = usize::from(u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]));
        let value = datagram.get(at + 4..at + 4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next().filter(|u| !u.is_empty());
        }
        // Attributes are padded to 4 bytes.
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Binding request as Chromium sends it (RFC 8489 Appendix B
    /// layout): header, USERNAME "srvufrag:cli1" (13 bytes, padded to 16),
    /// then PRIORITY.
    fn binding_request(username: &[u8]) -> Vec<u8> {
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

    #[test]
    fn the_receivers_ufrag_is_read() {
        assert_eq!(local_ufrag(&binding_request(b"srvufrag:cli1")), Some("srvufrag"));
        assert_eq!(local_ufrag(&binding_request(b"abcd:efgh")), Some("abcd"));
    }

    #[test]
    fn other_datagrams_have_none() {
        // DTLS (first byte 20..=63) and RTP (128..=191) are not STUN.
        assert_eq!(local_ufrag(&[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        let mut rtp = binding_request(b"a:b");
        rtp[0] = 0x80;
        assert_eq!(local_ufrag(&rtp), None);
        // No USERNAME, an empty one, truncated and lying lengths.
        assert_eq!(local_ufrag(&binding_request(b"")), None);
        let m = binding_request(b"srvufrag:cli1");
        for cut in 0..m.len() {
            let _ = local_ufrag(&m[..cut]);
        }
        let mut long = m.clone();
        long[26] = 0xff; // USERNAME length 0xff..
        assert_eq!(local_ufrag(&long), None);
        assert_eq!(local_ufrag(&[]), None);
    }
}
