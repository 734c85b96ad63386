//! Fuzz entry points: arbitrary bytes in, no panic out. The fuzz targets
//! (`fuzz/`, `cargo afl`) call them; `tests/corpus.rs` replays the stored
//! corpus through them on every test run.

/// An offer as a WHIP client could send it: checked, and its answer's
/// candidates rewritten.
pub fn offer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::offer::check_offer(&text);
    let _ = crate::offer::sections(&text);
    let _ = crate::candidates::announce(&text, 8189, Some("203.0.113.7"));
}

/// A datagram on the media socket, read as the mux reads it.
pub fn stun(data: &[u8]) {
    if crate::stun::is_stun(data) {
        let _ = crate::stun::local_ufrag(data);
        let _ = crate::stun::binding_success_transaction(data);
        let _ = crate::stun::mapped_address(data);
    }
}
