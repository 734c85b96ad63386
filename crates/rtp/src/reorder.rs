//! The reorder (jitter) buffer: arriving packets in, packets in sequence
//! order out, with losses made explicit.
//!
//! A missing packet is waited for up to `max_wait` (time for a NACK and its
//! retransmission) measured from the arrival of the packet after the hole,
//! or until `capacity` packets are held; then the hole is declared lost and
//! the stream continues after it. The buffer holds at most `capacity`
//! packets, so a publisher cannot grow it without bound.
//!
//! The start is waited for the same way: the first packets of a stream may
//! arrive out of order (the first keyframe's packets leave the sender in a
//! burst), so nothing is released until `max_wait` after the first arrival,
//! and an earlier packet that arrives in that time moves the start back
//! instead of being late. Without this, a first keyframe whose first packet
//! came second was broken, and the recording lost its whole first GOP.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::RtpPacket;
use crate::seq::SeqExtender;

/// What comes out of the buffer, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reordered {
    /// The next packet in sequence.
    Packet(RtpPacket),
    /// `count` packets before the next one were given up on.
    Lost { count: u64 },
}

/// Counters for ingest statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReorderStats {
    pub received: u64,
    pub duplicates: u64,
    pub late: u64,
    pub lost: u64,
    pub reordered: u64,
}

#[derive(Debug)]
pub struct ReorderBuffer {
    seq: SeqExtender,
    next: Option<u64>,
    held: BTreeMap<u64, (Duration, RtpPacket)>,
    /// When the first packet arrived; `None` once the start is settled
    /// (something was released).
    start_wait: Option<Duration>,
    capacity: usize,
    max_wait: Duration,
    stats: ReorderStats,
}

impl ReorderBuffer {
    pub fn new(capacity: usize, max_wait: Duration) -> Self {
        ReorderBuffer {
            seq: SeqExtender::new(),
            next: None,
            held: BTreeMap::new(),
            start_wait: None,
            capacity: capacity.max(1),
            max_wait,
            stats: ReorderStats::default(),
        }
    }

    pub fn stats(&self) -> ReorderStats {
        self.stats
    }

    /// Takes in a packet that arrived at `now` (any monotonic clock).
    pub fn push(&mut self, packet: RtpPacket, now: Duration) {
        let ext = self.seq.extend(packet.sequence);
        let next = *self.next.get_or_insert_with(|| {
            self.start_wait = Some(now);
            ext
        });
        if ext < next {
            if self.start_wait.is_some() && next - ext <= self.capacity as u64 {
                // Still settling the start: this packet came before the first.
                self.next = Some(ext);
            } else {
                self.stats.late += 1;
                return;
            }
        }
        if self.held.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        if self.held.keys().next_back().is_some_and(|&last| ext < last) {
            self.stats.reordered += 1;
        }
        self.stats.received += 1;
        self.held.insert(ext, (now, packet));
    }

    /// The next output, if one is due at `now`.
    pub fn pop(&mut self, now: Duration) -> Option<Reordered> {
        let next = self.next?;
        if let Some(first_arrival) = self.start_wait {
            if now.saturating_sub(first_arrival) < self.max_wait && self.held.len() <= self.capacity {
                return None;
            }
            self.start_wait = None;
        }
        let (&first, (arrived, _)) = self.held.iter().next()?;
        if first == next {
            let (_, packet) = self.held.remove(&first)?;
            self.next = Some(next + 1);
            return Some(Reordered::Packet(packet));
        }
        // A hole before `first`: wait for it, within limits.
        let waited = now.saturating_sub(*arrived);
        if waited >= self.max_wait || self.held.len() > self.capacity {
            let count = first - next;
            self.stats.lost += count;
            self.next = Some(first);
            return Some(Reordered::Lost { count });
        }
        None
    }

    /// Everything held, in order, holes given up on: the stream ended, and
    /// no missing packet will come any more.
    pub fn flush(&mut self) -> Vec<Reordered> {
        let mut out = Vec::new();
        self.start_wait = None;
        while let Some(first) = self.held.keys().next().copied() {
            let Some(next) = self.next else { break };
            if first > next {
                let count = first - next;
                self.stats.lost += count;
                out.push(Reordered::Lost { count });
            }
            if let Some((_, packet)) = self.held.remove(&first) {
                out.push(Reordered::Packet(packet));
            }
            self.next = Some(first + 1);
        }
        out
    }

    /// When `pop` may next have something without a new packet arriving:
    /// the time the oldest hole expires.
    pub fn deadline(&self) -> Option<Duration> {
        let next = self.next?;
        if let Some(first_arrival) = self.start_wait {
            return Some(first_arrival + self.max_wait);
        }
        let (&first, (arrived, _)) = self.held.iter().next()?;
        (first != next).then(|| *arrived + self.max_wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn flush_releases_what_waits_behind_a_hole() {
        let p = |sequence: u16| RtpPacket { sequence, timestamp: u32::from(sequence) * 960, marker: false, payload: Bytes::new() };
        let mut b = ReorderBuffer::new(64, Duration::from_millis(150));
        let t = Duration::from_secs(1);
        for s in [10, 11, 13, 14, 16] {
            b.push(p(s), t);
        }
        // Still settling the start: nothing is due yet.
        assert!(b.pop(t).is_none());
        let seqs: Vec<String> = b
            .flush()
            .into_iter()
            .map(|r| match r {
                Reordered::Packet(p) => p.sequence.to_string(),
                Reordered::Lost { count } => format!("lost {count}"),
            })
            .collect();
        assert_eq!(seqs, ["10", "11", "lost 1", "13", "14", "lost 1", "16"]);
        assert_eq!(b.stats().lost, 2);
        assert!(b.flush().is_empty() && b.pop(t * 10).is_none());
    }
    use proptest::prelude::*;

    fn pkt(seq: u16) -> RtpPacket {
        RtpPacket { sequence: seq, timestamp: u32::from(seq) * 3000, marker: true, payload: Bytes::from(vec![seq as u8]) }
    }

    fn drain(b: &mut ReorderBuffer, now: Duration) -> Vec<Reordered> {
        std::iter::from_fn(|| b.pop(now)).collect()
    }

    const MS: Duration = Duration::from_millis(1);

    /// A buffer whose start is settled: packet `first` was released.
    fn started(capacity: usize, max_wait: Duration, first: u16) -> ReorderBuffer {
        let mut b = ReorderBuffer::new(capacity, max_wait);
        b.push(pkt(first), Duration::ZERO);
        assert_eq!(drain(&mut b, max_wait), vec![Reordered::Packet(pkt(first))]);
        b
    }

    #[test]
    fn in_order_passes_straight_through_once_started() {
        let mut b = started(64, 100 * MS, 65533);
        for s in [65534, 65535, 0, 1] {
            b.push(pkt(s), 200 * MS);
            assert_eq!(drain(&mut b, 200 * MS), vec![Reordered::Packet(pkt(s))]);
        }
    }

    #[test]
    fn the_start_waits_for_packets_sent_before_the_first_to_arrive() {
        // The first keyframe's packets 10, 11, 12 arrive as 11, 12, 10.
        let mut b = ReorderBuffer::new(64, 100 * MS);
        b.push(pkt(11), Duration::ZERO);
        b.push(pkt(12), MS);
        assert_eq!(drain(&mut b, MS), vec![], "nothing leaves before the start is settled");
        assert_eq!(b.deadline(), Some(100 * MS));
        b.push(pkt(10), 5 * MS);
        assert_eq!(drain(&mut b, 99 * MS), vec![]);
        assert_eq!(drain(&mut b, 100 * MS), [10, 11, 12].map(|s| Reordered::Packet(pkt(s))));
        assert_eq!(b.stats().late, 0);
        // Once started, an earlier packet is late as before.
        b.push(pkt(9), 101 * MS);
        assert_eq!(drain(&mut b, 101 * MS), vec![]);
        assert_eq!(b.stats().late, 1);
    }

    #[test]
    fn reordered_packets_come_out_in_order() {
        let mut b = started(64, 100 * MS, 9);
        b.push(pkt(10), 100 * MS);
        b.push(pkt(12), 100 * MS);
        b.push(pkt(11), 101 * MS);
        let out = drain(&mut b, 101 * MS);
        assert_eq!(out, [10, 11, 12].map(|s| Reordered::Packet(pkt(s))));
        assert_eq!(b.stats().reordered, 1);
    }

    #[test]
    fn a_hole_is_waited_for_then_declared_lost() {
        let mut b = started(64, 100 * MS, 1);
        b.push(pkt(4), 110 * MS);
        assert_eq!(b.deadline(), Some(210 * MS));
        assert_eq!(drain(&mut b, 209 * MS), vec![]);
        assert_eq!(drain(&mut b, 210 * MS), vec![Reordered::Lost { count: 2 }, Reordered::Packet(pkt(4))]);
        // A retransmission arriving after the hole was given up is late.
        b.push(pkt(2), 220 * MS);
        assert_eq!(drain(&mut b, 220 * MS), vec![]);
        assert_eq!(b.stats().late, 1);
        assert_eq!(b.stats().lost, 2);
    }

    #[test]
    fn capacity_bounds_the_wait() {
        let mut b = started(4, Duration::from_secs(10), 0);
        let now = Duration::from_secs(10);
        for s in 2..=6 {
            b.push(pkt(s), now);
        }
        let out = drain(&mut b, now);
        assert_eq!(out[0], Reordered::Lost { count: 1 });
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn capacity_bounds_the_start_wait() {
        let mut b = ReorderBuffer::new(4, Duration::from_secs(10));
        for s in 0..=4 {
            b.push(pkt(s), MS);
        }
        assert_eq!(drain(&mut b, MS).len(), 5);
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut b = started(64, 100 * MS, 4);
        b.push(pkt(5), 100 * MS);
        b.push(pkt(6), 100 * MS);
        b.push(pkt(6), 100 * MS);
        assert_eq!(drain(&mut b, 100 * MS).len(), 2);
        b.push(pkt(6), 100 * MS);
        assert_eq!(drain(&mut b, 100 * MS).len(), 0);
        assert_eq!(b.stats().duplicates, 1);
        assert_eq!(b.stats().late, 1);
    }

    proptest! {
        /// Whatever the arrival order, drops and duplicates: output is
        /// strictly increasing, every packet at most once, and packets plus
        /// declared losses account for the whole range delivered.
        #[test]
        fn output_is_ordered_and_accounted(
            start in any::<u16>(),
            n in 1usize..300,
            swaps in proptest::collection::vec((0usize..300, 0usize..300), 0..100),
            drops in proptest::collection::vec(0usize..300, 0..40),
            dups in proptest::collection::vec(0usize..300, 0..20),
        ) {
            let mut order: Vec<u16> = (0..n).map(|i| start.wrapping_add(i as u16)).collect();
            for (a, b) in swaps {
                // Local reordering only (within 10 packets), as networks do.
                let (a, b) = (a % n, b % n);
                if a.abs_diff(b) <= 10 { order.swap(a, b); }
            }
            for d in &drops { let d = d % n; if d != 0 { order[d] = order[0]; } }
            for d in dups { let d = d % n; order.insert(d, order[d]); }
            let mut buf = ReorderBuffer::new(32, 50 * MS);
            let mut out = Vec::new();
            for (i, s) in order.iter().enumerate() {
                let now = (i as u32) * MS;
                buf.push(pkt(*s), now);
                out.extend(drain(&mut buf, now));
            }
            out.extend(drain(&mut buf, Duration::from_secs(100)));
            let mut ext = SeqExtender::new();
            let mut first: Option<u64> = None;
            let mut last: Option<u64> = None;
            let mut covered = 0u64;
            for o in &out {
                match o {
                    Reordered::Packet(p) => {
                        let e = ext.extend(p.sequence);
                        if let Some(l) = last { prop_assert!(e > l, "strictly increasing"); }
                        first.get_or_insert(e);
                        last = Some(e);
                        covered += 1;
                    }
                    Reordered::Lost { count } => {
                        prop_assert!(first.is_some(), "a loss is only declared after a packet");
                        covered += count;
                    }
                }
            }
            if let (Some(f), Some(l)) = (first, last) {
                prop_assert_eq!(covered, l - f + 1, "packets and losses cover the range exactly");
            }
            prop_assert!(buf.held.is_empty(), "everything is released eventually");
        }
    }
}
