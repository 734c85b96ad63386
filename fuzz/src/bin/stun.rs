//! `cargo afl fuzz` target: see fuzz/README.md.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mediastreams_webrtc_proto::fuzz::stun(data);
    });
}
