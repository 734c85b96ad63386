//! The candidates a WHIP answer announces. The `webrtc` crate advertises
//! the address of the socket it bound for the session; with the UDP mux
//! every session is reached on the mux's one port instead, and on cloud
//! hosts with a 1:1 NAT (an elastic IP) at the public address. (The crate's
//! own `with_nat_1to1_ips` setting is not applied by version 0.21.1.)

use std::collections::HashSet;

/// Rewrites the UDP host candidates (`a=candidate`) of an SDP to `port`
/// and, when given, the `public` address (also in `c=` lines). Candidates
/// that become identical within a media section are written once.
pub fn announce(sdp: &str, port: u16, public: Option<&str>) -> String {
    let mut out = String::with_capacity(sdp.len());
    let mut seen: HashSet<String> = HashSet::new();
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        if body.starts_with("m=") {
            seen.clear();
        }
        let rewritten = if let Some(rest) = body.strip_prefix("a=candidate:") {
            // foundation component transport priority address port typ type ...
            let mut fields: Vec<String> = rest.split(' ').map(str::to_owned).collect();
            let host_udp = fields.len() >= 8 && fields[2].eq_ignore_ascii_case("udp") && fields[6] == "typ" && fields[7] == "host";
            if host_udp {
                fields[5] = port.to_string();
                if let Some(public) = public {
                    fields[4] = public.to_owned();
                }
            }
            let line = format!("a=candidate:{}", fields.join(" "));
            // The foundation differs per original socket; the rest decides
            // whether two candidates are the same.
            if host_udp && !seen.insert(fields[1..].join(" ")) {
                continue;
            }
            line
        } else if let (Some(public), true) = (public, body.starts_with("c=IN IP4 ")) {
            format!("c=IN IP4 {public}")
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

    const ANSWER: &str = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\na=candidate:2 1 udp 2130706431 10.0.0.6 40001 typ host\r\na=candidate:3 1 tcp 1671430143 10.0.0.5 9 typ host tcptype passive\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\na=mid:1\r\n";

    #[test]
    fn host_candidates_get_the_mux_port() {
        let out = announce(ANSWER, 8189, None);
        assert_eq!(
            out,
            "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 2130706431 10.0.0.5 8189 typ host\r\na=candidate:2 1 udp 2130706431 10.0.0.6 8189 typ host\r\na=candidate:3 1 tcp 1671430143 10.0.0.5 9 typ host tcptype passive\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=candidate:1 1 udp 2130706431 10.0.0.5 8189 typ host\r\na=mid:1\r\n"
        );
    }

    #[test]
    fn and_the_public_address_once() {
        let out = announce(ANSWER, 8189, Some("203.0.113.7"));
        assert_eq!(
            out,
            "v=0\r\nc=IN IP4 203.0.113.7\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 2130706431 203.0.113.7 8189 typ host\r\na=candidate:3 1 tcp 1671430143 10.0.0.5 9 typ host tcptype passive\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=candidate:1 1 udp 2130706431 203.0.113.7 8189 typ host\r\na=mid:1\r\n"
        );
    }

    #[test]
    fn odd_lines_are_kept() {
        assert_eq!(announce("a=candidate:x\n", 1, Some("2.2.2.2")), "a=candidate:x\n");
        assert_eq!(announce("", 1, None), "");
        assert_eq!(announce("a=candidate:1 1 udp 1 h 5 typ host", 7, None), "a=candidate:1 1 udp 1 h 7 typ host");
    }
}
