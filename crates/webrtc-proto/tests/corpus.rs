//! The fuzz corpus (`fuzz/corpus/{offer,stun}`), replayed: every input a
//! fuzzer kept (and every crash it found, once fixed) stays a test.

fn replay(target: &str, run: fn(&[u8])) {
    let dir = format!("{}/../../fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = e.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "{dir} is empty");
}

#[test]
fn offer_corpus() {
    replay("offer", mediastreams_webrtc_proto::fuzz::offer);
}

#[test]
fn stun_corpus() {
    replay("stun", mediastreams_webrtc_proto::fuzz::stun);
}
