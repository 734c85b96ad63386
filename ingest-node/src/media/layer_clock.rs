//! One publisher session's simulcast layers on one video clock. Each
//! layer (RFC 8853: its own SSRC) has its own RTP timestamp offset, while
//! a browser stamps every layer's picture of one capture with the same
//! capture time: mapped onto one clock (the first layer's), the layers'
//! pictures of one capture have one time, and a quality level may be fed
//! by another layer without a jump.
//!
//! A layer's offset to the first layer is learnt from arrival (the least
//! transit, arrival less RTP time, of each: what queueing adds falls away
//! as frames come), and made exact by the sender reports of both (one
//! NTP clock for every layer of a sender, RFC 3550 §6.4.1). A layer whose
//! RTP time strays [`MAX_CLOCK_JUMP`] from its arrival has jumped (a
//! restarted encoder): learnt anew. Pure: the caller gives the times.

use std::collections::BTreeMap;
use std::time::Instant;

use mediastreams_rtp::clock::extend_near;

/// The video RTP clock rate (RFC 6184).
const RATE: i128 = 90_000;
/// A layer whose transit moves this far (2 s) has jumped.
const MAX_CLOCK_JUMP: i64 = 2 * 90_000;
/// Added to every mapped time, so that a negative offset never takes it
/// below 0.
const BIAS: i64 = 1 << 40;

#[derive(Debug, Clone, Copy)]
struct Report {
    ntp: u64,
    rtp: u64,
}

#[derive(Debug, Default)]
struct LayerClock {
    /// The least transit seen (90 kHz ticks since the session's first unit).
    least_transit: Option<i64>,
    /// Offset to the first layer, once sender reports gave it exactly.
    exact: Option<i64>,
    last_rtp: Option<u64>,
    report: Option<Report>,
}

/// The session's layers' clocks (see the module documentation).
#[derive(Debug, Default)]
pub struct LayerClocks {
    first: Option<u8>,
    /// The layer whose reports serve lip sync until the first layer's.
    fallback: Option<u8>,
    epoch: Option<Instant>,
    layers: BTreeMap<u8, LayerClock>,
}

impl LayerClocks {
    /// The time of a unit of `layer` (extended RTP timestamp `rtp`) on the
    /// session's video clock (90 kHz).
    pub fn map(&mut self, layer: u8, rtp: u64, arrival: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(arrival);
        let since = i128::from(arrival.saturating_duration_since(epoch).as_micros() as u64) * RATE / 1_000_000;
        let transit = (since - i128::from(rtp)).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        let first = *self.first.get_or_insert(layer);
        let c = self.layers.entry(layer).or_default();
        let jumped = c.least_transit.is_some_and(|least| (transit - least).abs() > MAX_CLOCK_JUMP);
        if jumped {
            // Learnt anew, its reports too.
            c.least_transit = Some(transit);
            c.exact = None;
            c.report = None;
        } else {
            c.least_transit = Some(c.least_transit.map_or(transit, |least| least.min(transit)));
        }
        if jumped && layer == first {
            // The clock is the first layer's: the others' exact offsets
            // were to its old one.
            for o in self.layers.values_mut() {
                o.exact = None;
            }
        }
        if let Some(c) = self.layers.get_mut(&layer) {
            c.last_rtp = Some(rtp);
        }
        let offset = self.offset(layer).unwrap_or(0);
        (i128::from(rtp) + i128::from(offset) + i128::from(BIAS)).max(0) as u64
    }

    /// `layer`'s offset to the first layer (added to its RTP time).
    fn offset(&self, layer: u8) -> Option<i64> {
        let first = self.first?;
        if layer == first {
            return Some(0);
        }
        let c = self.layers.get(&layer)?;
        if let Some(exact) = c.exact {
            return Some(exact);
        }
        Some(c.least_transit? - self.layers.get(&first)?.least_transit?)
    }

    /// An RTCP sender report of `layer` (`ntp`: 32.32 fixed point, `rtp`:
    /// its RTP time then). Returns the report on the video clock, for lip
    /// sync: the first layer's, or before the first layer has reported,
    /// one other layer's (the first other to report) mapped by its offset; another layer's makes its offset
    /// exact once the first layer has reported.
    pub fn report(&mut self, layer: u8, ntp: u64, rtp: u32) -> Option<(u64, u64)> {
        let first = self.first?;
        let c = self.layers.get_mut(&layer)?;
        let report = Report { ntp, rtp: extend_near(rtp, c.last_rtp?) };
        c.report = Some(report);
        if layer == first {
            // Every other layer that has reported: exact now.
            let others: Vec<u8> = self.layers.iter().filter(|(i, c)| **i != first && c.report.is_some()).map(|(i, _)| *i).collect();
            for i in others {
                self.make_exact(i);
            }
            return Some((ntp, (i128::from(report.rtp) + i128::from(BIAS)).max(0) as u64));
        }
        self.make_exact(layer);
        // Until the first layer has reported (it may be paused), one other
        // layer's reports, mapped by its offset, serve lip sync.
        if self.layers.get(&first).and_then(|c| c.report).is_some() || *self.fallback.get_or_insert(layer) != layer {
            return None;
        }
        let offset = self.offset(layer)?;
        Some((ntp, (i128::from(report.rtp) + i128::from(offset) + i128::from(BIAS)).max(0) as u64))
    }

    fn make_exact(&mut self, layer: u8) {
        let Some(first) = self.first.and_then(|f| self.layers.get(&f)).and_then(|c| c.report) else { return };
        let Some(c) = self.layers.get_mut(&layer) else { return };
        let Some(own) = c.report else { return };
        // The first layer's RTP time at this layer's report.
        let since = (i128::from(own.ntp) - i128::from(first.ntp)) * RATE;
        let first_rtp = i128::from(first.rtp) + since.div_euclid(1 << 32);
        let exact = first_rtp - i128::from(own.rtp);
        if let Ok(exact) = i64::try_from(exact) {
            c.exact = Some(exact);
        }
    }

    /// Whether `layer`'s offset came from sender reports.
    pub fn exact(&self, layer: u8) -> bool {
        self.first == Some(layer) || self.layers.get(&layer).is_some_and(|c| c.exact.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Two layers of one capture: RTP offsets 1000 and 4_000_000_000.
    #[test]
    fn layers_of_one_capture_map_to_one_time() {
        let t = Instant::now();
        let mut c = LayerClocks::default();
        let mut last = None;
        for n in 0..60u64 {
            let at = t + Duration::from_millis(n * 33);
            let a = c.map(0, 1000 + n * 2970, at);
            // The second layer's units arrive 0-9 ms later (queueing).
            let b = c.map(1, 4_000_000_000 + n * 2970, at + Duration::from_millis(n % 10));
            if n > 0 {
                // Learnt by arrival: within the least queueing seen.
                assert!(b.abs_diff(a) <= 90, "frame {n}: {a} vs {b}");
            }
            last = Some((a, b));
        }
        assert!(!c.exact(1));
        // Sender reports (NTP 32.32) at one wallclock instant make it exact.
        let ntp = 10u64 << 32;
        assert!(c.report(1, ntp, (4_000_000_000u64 + 60 * 2970) as u32).is_some(), "the first layer has not reported: this one serves");
        let (_, first) = c.report(0, ntp, 1000 + 60 * 2970).expect("the first layer's report, mapped");
        assert!(c.exact(1));
        let a = c.map(0, 1000 + 61 * 2970, t + Duration::from_millis(61 * 33));
        let b = c.map(1, 4_000_000_000 + 61 * 2970, t + Duration::from_millis(61 * 33 + 40));
        assert_eq!(a, b);
        assert_eq!(first + 2970, a);
        let (a0, _) = last.unwrap();
        assert_eq!(a - a0, 2 * 2970);
    }

    #[test]
    fn reports_a_second_apart_give_the_same_offset() {
        let t = Instant::now();
        let mut c = LayerClocks::default();
        c.map(0, 500, t);
        c.map(1, 90_500, t);
        // The second layer reports 1 s (90 000 ticks) after the first.
        c.report(0, 100u64 << 32, 500);
        assert!(c.report(1, 101u64 << 32, 90_500 + 90_000).is_none(), "the first layer's reports serve");
        assert_eq!(c.map(1, 90_500 + 3000, t + Duration::from_millis(33)), c.map(0, 500 + 3000, t + Duration::from_millis(33)));
    }

    #[test]
    fn a_layer_that_jumps_is_learnt_anew() {
        let t = Instant::now();
        let mut c = LayerClocks::default();
        for n in 0..10u64 {
            let at = t + Duration::from_millis(n * 33);
            c.map(0, n * 2970, at);
            c.map(1, 50_000 + n * 2970, at);
        }
        let at = t + Duration::from_millis(10 * 33);
        let a = c.map(0, 10 * 3000, at);
        // The second layer's encoder restarts with another offset.
        let b = c.map(1, 9_000_000 + 10 * 3000, at);
        assert_eq!(a, b);
    }
}
