//! Extending wrapping RTP counters (RFC 3550 appendix A.1).
//!
//! Sequence numbers are 16 bits and wrap every 65536 packets (about 20
//! minutes of video); timestamps are 32 bits and wrap every 13 hours at
//! 90 kHz. Both are extended to 64 bits by choosing, for each new value, the
//! candidate closest to the previous extended value.

/// Extends 16-bit sequence numbers.
#[derive(Debug, Clone, Default)]
pub struct SeqExtender {
    last: Option<u64>,
}

impl SeqExtender {
    pub fn new() -> Self {
        Self::default()
    }

    /// The extended value of `seq`: the one nearest the last extended value
    /// (so late, reordered packets map below it and new ones above).
    pub fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.last {
            None => (1u64 << 16) + u64::from(seq),
            Some(last) => nearest(last, u64::from(seq), 16),
        };
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }

    pub fn highest(&self) -> Option<u64> {
        self.last
    }
}

/// Extends 32-bit RTP timestamps.
#[derive(Debug, Clone, Default)]
pub struct TimestampExtender {
    last: Option<u64>,
}

impl TimestampExtender {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn extend(&mut self, ts: u32) -> u64 {
        let ext = match self.last {
            None => (1u64 << 32) + u64::from(ts),
            Some(last) => nearest(last, u64::from(ts), 32),
        };
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }
}

/// The value congruent to `value` modulo 2^bits nearest to `reference`.
fn nearest(reference: u64, value: u64, bits: u32) -> u64 {
    let modulus = 1u64 << bits;
    let half = modulus / 2;
    let base = reference & !(modulus - 1);
    let candidate = base | value;
    if candidate + half < reference {
        candidate + modulus
    } else if candidate > reference + half && candidate >= modulus {
        candidate - modulus
    } else {
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sequence_wraps_forward_and_tolerates_reordering() {
        let mut s = SeqExtender::new();
        let a = s.extend(65534);
        assert_eq!(s.extend(65535), a + 1);
        assert_eq!(s.extend(0), a + 2);
        assert_eq!(s.extend(65535), a + 1, "a late packet maps below");
        assert_eq!(s.extend(1), a + 3);
        assert_eq!(s.highest(), Some(a + 3));
    }

    #[test]
    fn first_value_leaves_room_below() {
        let mut s = SeqExtender::new();
        let a = s.extend(0);
        assert_eq!(s.extend(65535), a - 1, "reordered before the first packet");
    }

    #[test]
    fn timestamps_wrap() {
        let mut t = TimestampExtender::new();
        let a = t.extend(u32::MAX - 3000);
        assert_eq!(t.extend(3000), a + 6001);
        assert_eq!(t.extend(u32::MAX - 6000), a - 3000);
    }

    proptest! {
        #[test]
        fn steps_below_half_range_are_exact(start in any::<u16>(), steps in proptest::collection::vec(-1000i32..3000, 1..400)) {
            let mut s = SeqExtender::new();
            let mut truth: i64 = (1 << 16) + i64::from(start);
            prop_assert_eq!(s.extend(start) as i64, truth);
            for step in steps {
                let prev_high = s.highest().unwrap() as i64;
                truth += i64::from(step);
                // Only meaningful within half the range of the highest seen.
                prop_assume!((truth - prev_high).abs() < 30000 && truth > 0);
                let wire = truth.rem_euclid(65536) as u16;
                prop_assert_eq!(s.extend(wire) as i64, truth);
            }
        }
    }
}
