//! Announcing a node's public address (NAT 1:1, as on cloud hosts with an
//! elastic IP): the answer's host candidates carry the local address the
//! sockets are bound to; they are rewritten to the public one. (The
//! `webrtc` crate's own `with_nat_1to1_ips` setting is not applied by
//! version 0.21.1.)

/// Replaces `local` by `public` in the candidate (`a=candidate`) and
/// connection (`c=`) lines of an SDP.
pub fn announce_public_ip(sdp: &str, local: &str, public: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        let rewritten = if let Some(rest) = body.strip_prefix("a=candidate:") {
            // foundation component transport priority ADDRESS port typ ...
            let mut fields: Vec<&str> = rest.split(' ').collect();
            if fields.get(4) == Some(&local) {
                fields[4] = public;
            }
            format!("a=candidate:{}", fields.join(" "))
        } else if let Some(rest) = body.strip_prefix("c=IN IP4 ") {
            if rest == local { format!("c=IN IP4 {public}") } else { body.to_owned() }
        } else {
            body.to_owned()
        };
        out.push_str(&rewritten);
        out.push_str(ending);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_candidates_get_the_public_address() {
        let sdp = "v=0\r\nc=IN IP4 10.0.0.5\r\na=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\na=candidate:2 1 udp 2130706431 10.0.0.6 40001 typ host\r\na=mid:0\r\n";
        let out = announce_public_ip(sdp, "10.0.0.5", "203.0.113.7");
        assert_eq!(
            out,
            "v=0\r\nc=IN IP4 203.0.113.7\r\na=candidate:1 1 udp 2130706431 203.0.113.7 40000 typ host\r\na=candidate:2 1 udp 2130706431 10.0.0.6 40001 typ host\r\na=mid:0\r\n"
        );
        assert_eq!(announce_public_ip("a=candidate:x\n", "1.1.1.1", "2.2.2.2"), "a=candidate:x\n", "short lines are kept");
    }
}
