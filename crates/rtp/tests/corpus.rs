//! The fuzz corpus (`fuzz/corpus/rtp`), replayed: every input a fuzzer
//! kept (and every crash it found, once fixed) stays a test.

#[test]
fn rtp_corpus() {
    let dir = format!("{}/../../fuzz/corpus/rtp", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        mediastreams_rtp::fuzz::rtp(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n > 0, "{dir} is empty");
}

#[test]
fn the_corpus_packets_parse() {
    let p = std::fs::read(format!("{}/../../fuzz/corpus/rtp/single-idr", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let rtp = mediastreams_rtp::fuzz::parse_rtp(&p).expect("an RTP packet");
    assert_eq!((rtp.sequence, rtp.timestamp, rtp.marker), (1, 3000, true));
    assert_eq!(&rtp.payload[..], &[0x65, 0x88, 0x84, 0x00, 0x33]);
}
