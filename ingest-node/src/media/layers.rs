//! Which video layers of a simulcast publisher feed which quality levels
//! of the recording. A browser's simulcast sends one RTP stream per
//! encoding (RFC 8853: one SSRC per `rid`), each its own H.264 stream at
//! its own resolution; the recording has one video quality level per
//! layer (an ABR ladder: a Smooth `QualityLevel`, a DASH
//! `Representation`, an HLS variant), smallest picture first.
//!
//! Each layer counts from its first keyframe (its SPS gives the size). The
//! levels are settled once every layer the offer announced has had one,
//! or [`CHOICE_WAIT`] after the first did (a layer the publisher does not
//! send, for bandwidth or CPU, does not hold the stream back): a new
//! recording takes one level per layer that had a keyframe (layers of the
//! same size: the first); a recording that has levels (a reconnect, a
//! node restart) keeps them, and each is fed by the layer nearest its
//! picture size (one layer may feed several levels: a publisher without
//! simulcast continuing a simulcast recording feeds them all). What each
//! layer that feeds a level sent since its first keyframe is recorded; a
//! layer that first sends after the levels are settled feeds a level only
//! if it is the nearest to that level's size.
//!
//! Browsers pause their largest layers when bandwidth or CPU runs short.
//! When a level's layer has sent nothing for [`STALL`] while another
//! sends, the level is fed by the sending layer nearest its size, from
//! that layer's next keyframe (asked for: [`LayerMap::keyframe_wanted`]);
//! when a nearer layer has sent again for [`STEADY`], the level goes back
//! to it at its next keyframe. So every level goes on, and the smallest
//! (which cuts the fragments) never stops while any layer sends. Pure: the
//! caller gives the time.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How long after a session's first keyframe the layers wait for each
/// other's. The node asks every layer for a keyframe at the start; the
/// layers a browser sends from the start answer together (Chromium: within
/// one frame), but browsers may start their larger layers later, as their bandwidth
/// estimate allows (libwebrtc enables simulcast layers bottom up), so the
/// wait is long enough for that ramp; the recording starts (and the
/// stream goes `Live`) that much later only when a layer the offer
/// announced has not come, and nothing is lost meanwhile: each layer holds
/// what it sent.
pub const CHOICE_WAIT: Duration = Duration::from_secs(2);
/// The most a layer holds while the levels wait (at 60 fps, 3 s).
const MAX_HELD: usize = 180;
/// How long a level's layer may send nothing, while another sends,
/// before another layer feeds the level.
pub const STALL: std::time::Duration = Duration::from_secs(1);
/// How long a nearer layer must have been sending before a level goes
/// back to it.
pub const STEADY: std::time::Duration = Duration::from_secs(2);

/// What is known of a layer once the levels are settled.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Picture size of its latest keyframe (0 before one).
    area: u64,
    last: Instant,
    /// Since when it has sent without a pause of [`STALL`].
    since: Instant,
}

#[derive(Debug)]
struct Candidate<T> {
    /// Picture size (width × height) of its first keyframe.
    area: u64,
    /// Units since its first keyframe, each with whether it is one.
    held: VecDeque<(bool, T)>,
}

/// A quality level of the recording, and the layer that feeds it.
#[derive(Debug, Clone, Copy)]
struct Level {
    /// Its picture size (0: not known, a recording of one level).
    area: u64,
    source: Option<u8>,
}

/// What a push gives the caller.
#[derive(Debug)]
pub struct Routed<T> {
    /// Units to record now, in order, each with its level.
    pub units: Vec<(usize, T)>,
    /// The levels were settled for a new recording: the layer of each
    /// (its first unit in `units` carries its SPS and PPS).
    pub new_levels: Option<Vec<u8>>,
}

impl<T> Routed<T> {
    fn none() -> Self {
        Routed { units: Vec::new(), new_levels: None }
    }
}

/// How far apart two picture sizes are: the ratio of the larger to the
/// smaller (a layer of a quarter the pixels is as far below as one of four
/// times is above).
fn distance(a: u64, b: u64) -> f64 {
    let (a, b) = (a.max(1) as f64, b.max(1) as f64);
    if a > b { a / b } else { b / a }
}

/// One publisher session's map of layers to levels (see the module
/// documentation).
#[derive(Debug)]
pub struct LayerMap<T> {
    /// Layers the offer announced (1 without simulcast).
    expected: usize,
    first_keyframe: Option<Instant>,
    settled: bool,
    candidates: BTreeMap<u8, Candidate<T>>,
    levels: Vec<Level>,
    /// Every layer's latest unit, once the levels are settled.
    seen: BTreeMap<u8, Seen>,
}

impl<T: Clone> LayerMap<T> {
    pub fn new(expected: usize) -> Self {
        LayerMap { expected, first_keyframe: None, settled: false, candidates: BTreeMap::new(), levels: Vec::new(), seen: BTreeMap::new() }
    }

    /// Whether the levels are settled.
    pub fn settled(&self) -> bool {
        self.settled
    }

    /// Whether `layer` feeds a level.
    pub fn feeds(&self, layer: u8) -> bool {
        self.levels.iter().any(|l| l.source == Some(layer))
    }

    /// The layer that feeds each level.
    pub fn sources(&self) -> Vec<Option<u8>> {
        self.levels.iter().map(|l| l.source).collect()
    }

    /// Takes an access unit of `layer` (`picture`: the size its SPS gives,
    /// when it is a keyframe that carries one); returns what to record
    /// now. `levels` gives the picture sizes of the recording's levels,
    /// if it has any yet; it is asked once, when the levels are settled.
    pub fn push(
        &mut self,
        layer: u8,
        item: T,
        picture: Option<(u32, u32)>,
        now: Instant,
        levels: impl FnOnce() -> Option<Vec<(u32, u32)>>,
    ) -> Routed<T> {
        if self.settled {
            self.saw(layer, picture, now);
            if picture.is_some() {
                for i in 0..self.levels.len() {
                    if self.levels[i].source != Some(layer) && self.preferred(i, now) == Some(layer) {
                        self.levels[i].source = Some(layer);
                    }
                }
            }
            return Routed { units: self.route(layer, &item), new_levels: None };
        }
        if self.expected <= 1 {
            // One layer: every level takes it, from its first unit.
            self.settled = true;
            self.levels = match levels() {
                Some(sizes) if !sizes.is_empty() => {
                    sizes.iter().map(|(w, h)| Level { area: u64::from(*w) * u64::from(*h), source: Some(layer) }).collect()
                }
                _ => vec![Level { area: 0, source: Some(layer) }],
            };
            self.saw(layer, picture, now);
            return Routed { units: self.route(layer, &item), new_levels: None };
        }
        match (self.candidates.get_mut(&layer), picture) {
            (Some(c), _) => {
                if c.held.len() >= MAX_HELD {
                    // Whole pictures from a keyframe on: up to the next
                    // keyframe held, or else the oldest unit.
                    let next_key = c.held.iter().skip(1).position(|(k, _)| *k).map_or(1, |i| i + 1);
                    c.held.drain(..next_key);
                }
                c.held.push_back((picture.is_some(), item));
            }
            (None, Some((w, h))) => {
                self.first_keyframe.get_or_insert(now);
                self.candidates.insert(layer, Candidate { area: u64::from(w) * u64::from(h), held: VecDeque::from([(true, item)]) });
            }
            // Nothing of a layer counts before its first keyframe.
            (None, None) => {}
        }
        let waited = self.first_keyframe.is_some_and(|t| now.saturating_duration_since(t) >= CHOICE_WAIT);
        if self.candidates.len() < self.expected && !waited {
            return Routed::none();
        }
        self.settle(now, levels)
    }

    /// Settles the levels now among the layers that have had a keyframe
    /// (the session ends before they were due); returns what they held.
    pub fn settle_now(&mut self, now: Instant, levels: impl FnOnce() -> Option<Vec<(u32, u32)>>) -> Routed<T> {
        if self.settled { Routed::none() } else { self.settle(now, levels) }
    }

    fn settle(&mut self, now: Instant, levels: impl FnOnce() -> Option<Vec<(u32, u32)>>) -> Routed<T> {
        if self.candidates.is_empty() {
            return Routed::none();
        }
        self.settled = true;
        let mut new_levels = None;
        self.levels = match levels() {
            Some(sizes) if !sizes.is_empty() => {
                sizes.iter().map(|(w, h)| Level { area: u64::from(*w) * u64::from(*h), source: None }).collect()
            }
            _ => {
                // One level per size, smallest first; of layers of the same
                // size, the first.
                let mut layers: Vec<(u64, u8)> = Vec::new();
                for (&i, c) in &self.candidates {
                    if !layers.iter().any(|(a, _)| *a == c.area) {
                        layers.push((c.area, i));
                    }
                }
                layers.sort();
                new_levels = Some(layers.iter().map(|(_, i)| *i).collect());
                layers.iter().map(|(area, i)| Level { area: *area, source: Some(*i) }).collect()
            }
        };
        // Each level: the layer nearest its size (of two as near, the larger).
        for level in &mut self.levels {
            if level.source.is_none() {
                level.source = self
                    .candidates
                    .iter()
                    .min_by(|(a, x), (b, y)| {
                        distance(x.area, level.area).total_cmp(&distance(y.area, level.area)).then(y.area.cmp(&x.area)).then(a.cmp(b))
                    })
                    .map(|(i, _)| *i);
            }
        }
        for (&i, c) in &self.candidates {
            self.seen.insert(i, Seen { area: c.area, last: now, since: now });
        }
        let candidates = std::mem::take(&mut self.candidates);
        let mut units = Vec::new();
        for (l, level) in self.levels.iter().enumerate() {
            if let Some(c) = level.source.and_then(|s| candidates.get(&s)) {
                units.extend(c.held.iter().map(|(_, t)| (l, t.clone())));
            }
        }
        Routed { units, new_levels }
    }

    /// The unit of `layer` for every level it feeds.
    fn route(&self, layer: u8, item: &T) -> Vec<(usize, T)> {
        self.levels.iter().enumerate().filter(|(_, l)| l.source == Some(layer)).map(|(i, _)| (i, item.clone())).collect()
    }

    fn saw(&mut self, layer: u8, picture: Option<(u32, u32)>, now: Instant) {
        let s = self.seen.entry(layer).or_insert(Seen { area: 0, last: now, since: now });
        if now.saturating_duration_since(s.last) >= STALL {
            s.since = now;
        }
        s.last = now;
        if let Some((w, h)) = picture {
            s.area = u64::from(w) * u64::from(h);
        }
    }

    /// The layer level `i` should be fed by now, when not its current
    /// one. If its layer stalled: the sending layer nearest its size (by
    /// the ratio of the pictures), among those that kept sending across
    /// the silence or have sent steadily since they came back (after an
    /// outage of every layer, the first keyframe back is no reason to
    /// move). Else a nearer layer that has sent steadily. (A layer that
    /// came after the levels were settled feeds a level only as the
    /// nearest: the levels' bitrates were measured on their own layers.)
    fn preferred(&self, i: usize, now: Instant) -> Option<u8> {
        let level = self.levels.get(i)?;
        let current_layer = level.source?;
        let current = self.seen.get(&current_layer)?;
        let sending = |s: &Seen| now.saturating_duration_since(s.last) < STALL && s.area > 0;
        let steady = |s: &Seen, d: Duration| now.saturating_duration_since(s.since) >= d;
        let fit = |s: &Seen| distance(s.area, level.area);
        let stalled = !sending(current);
        let here = fit(current);
        self.seen
            .iter()
            .filter(|(j, s)| **j != current_layer && sending(s))
            .filter(|(_, s)| if stalled { s.since <= current.last || steady(s, STALL) } else { fit(s) < here && steady(s, STEADY) })
            .min_by(|(a, x), (b, y)| fit(x).total_cmp(&fit(y)).then(y.area.cmp(&x.area)).then(a.cmp(b)))
            .map(|(j, _)| *j)
    }

    /// Whether a keyframe of every layer should be asked for: a level
    /// waits for one of another layer to be fed by it.
    pub fn keyframe_wanted(&self, now: Instant) -> bool {
        (0..self.levels.len()).any(|i| self.preferred(i, now).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units<T: Clone>(r: &Routed<T>) -> Vec<(usize, T)> {
        r.units.clone()
    }

    #[test]
    fn without_simulcast_the_one_layer_feeds_every_level_at_once() {
        let t = Instant::now();
        let mut c = LayerMap::new(1);
        assert_eq!(units(&c.push(0, "a", None, t, || None)), vec![(0, "a")]);
        assert_eq!(units(&c.push(0, "b", None, t, || unreachable!())), vec![(0, "b")]);
        // A recording of three levels continued without simulcast.
        let mut c = LayerMap::new(1);
        let r = c.push(0, "a", None, t, || Some(vec![(320, 180), (640, 360), (1280, 720)]));
        assert_eq!(units(&r), vec![(0, "a"), (1, "a"), (2, "a")]);
        assert!(r.new_levels.is_none());
    }

    #[test]
    fn a_new_recording_takes_a_level_per_layer_smallest_first() {
        let t = Instant::now();
        let mut c = LayerMap::new(3);
        // Layer 1 sends a delta frame first: it does not count.
        assert!(c.push(1, "h0", None, t, || None).units.is_empty());
        assert!(c.push(2, "f1", Some((1280, 720)), t, || None).units.is_empty());
        assert!(c.push(0, "q1", Some((320, 180)), t, || None).units.is_empty());
        assert!(c.push(2, "f2", None, t, || None).units.is_empty());
        // The third layer's keyframe: the levels, with what each held.
        let r = c.push(1, "h1", Some((640, 360)), t, || None);
        assert_eq!(r.new_levels, Some(vec![0, 1, 2]));
        assert_eq!(units(&r), vec![(0, "q1"), (1, "h1"), (2, "f1"), (2, "f2")]);
        assert_eq!(c.sources(), vec![Some(0), Some(1), Some(2)]);
        assert_eq!(units(&c.push(2, "f3", None, t, || None)), vec![(2, "f3")]);
        assert_eq!(units(&c.push(0, "q2", None, t, || None)), vec![(0, "q2")]);
    }

    #[test]
    fn layers_of_one_size_make_one_level() {
        let t = Instant::now();
        let mut c = LayerMap::new(2);
        assert!(c.push(0, "a", Some((640, 360)), t, || None).units.is_empty());
        let r = c.push(1, "b", Some((640, 360)), t, || None);
        assert_eq!(r.new_levels, Some(vec![0]));
        assert_eq!(units(&r), vec![(0, "a")]);
        assert!(c.push(1, "b2", None, t, || None).units.is_empty());
    }

    #[test]
    fn a_continued_recording_feeds_each_level_from_the_nearest_layer() {
        let t = Instant::now();
        let mut c = LayerMap::new(2);
        let sizes = || Some(vec![(320, 180), (640, 360), (1280, 720)]);
        assert!(c.push(0, "q", Some((320, 180)), t, sizes).units.is_empty());
        let r = c.push(1, "h", Some((640, 360)), t, sizes);
        assert!(r.new_levels.is_none());
        assert_eq!(units(&r), vec![(0, "q"), (1, "h"), (2, "h")]);
        assert_eq!(units(&c.push(1, "h2", None, t, sizes)), vec![(1, "h2"), (2, "h2")]);
    }

    #[test]
    fn a_layer_that_never_comes_does_not_hold_the_others_back() {
        let t = Instant::now();
        let mut c = LayerMap::new(3);
        assert!(c.push(0, "q1", Some((320, 180)), t, || None).units.is_empty());
        assert!(c.push(1, "h1", Some((640, 360)), t + Duration::from_millis(10), || None).units.is_empty());
        assert!(c.push(1, "h2", None, t + Duration::from_millis(400), || None).units.is_empty());
        assert!(c.push(0, "q2", None, t + Duration::from_millis(1900), || None).units.is_empty(), "a later layer is waited for");
        let r = c.push(0, "q3", None, t + CHOICE_WAIT, || None);
        assert_eq!(r.new_levels, Some(vec![0, 1]));
        assert_eq!(units(&r), vec![(0, "q1"), (0, "q2"), (0, "q3"), (1, "h1"), (1, "h2")]);
    }

    #[test]
    fn a_paused_layer_hands_its_level_over_to_the_nearest_sending_and_back() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut c = LayerMap::new(3);
        c.push(0, "q", Some((320, 180)), t, || None);
        c.push(1, "h", Some((640, 360)), t, || None);
        assert_eq!(c.push(2, "f", Some((1280, 720)), t, || None).units.len(), 3);
        for n in 1..30u64 {
            for l in 0..3u8 {
                assert_eq!(units(&c.push(l, "x", None, ms(n * 33), || None)), vec![(usize::from(l), "x")]);
            }
        }
        assert!(!c.keyframe_wanted(ms(990)));
        // The full layer pauses at 1 s; the others go on. After STALL a
        // keyframe is wanted, and the full level is fed by the half
        // layer from its keyframe on (not the quarter's).
        for n in 30..62u64 {
            assert_eq!(c.push(0, "q", None, ms(n * 33), || None).units.len(), 1);
            assert_eq!(c.push(1, "h", None, ms(n * 33), || None).units.len(), 1);
        }
        assert!(c.keyframe_wanted(ms(2046)));
        assert_eq!(units(&c.push(0, "qk", Some((320, 180)), ms(2050), || None)), vec![(0, "qk")]);
        assert_eq!(units(&c.push(1, "hk", Some((640, 360)), ms(2050), || None)), vec![(1, "hk"), (2, "hk")]);
        assert!(!c.keyframe_wanted(ms(2060)));
        // The full layer comes back at 3 s with a keyframe: too soon.
        assert!(c.push(2, "fk", Some((1280, 720)), ms(3000), || None).units.is_empty());
        for n in 0..60u64 {
            assert!(c.push(2, "f", None, ms(3000 + n * 33), || None).units.is_empty());
            assert_eq!(c.push(1, "h", None, ms(3000 + n * 33), || None).units.len(), 2);
        }
        // Steady for STEADY: a keyframe is wanted, and the level goes back at it.
        assert!(c.keyframe_wanted(ms(5000)));
        assert_eq!(units(&c.push(2, "fk2", Some((1280, 720)), ms(5010), || None)), vec![(2, "fk2")]);
        assert_eq!(c.sources(), vec![Some(0), Some(1), Some(2)]);
        assert_eq!(units(&c.push(1, "h", None, ms(5020), || None)), vec![(1, "h")]);
    }

    #[test]
    fn the_smallest_level_goes_on_when_its_layer_pauses() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut c = LayerMap::new(2);
        c.push(0, "q", Some((320, 180)), t, || None);
        c.push(1, "f", Some((1280, 720)), t, || None);
        for n in 1..70u64 {
            if n < 30 {
                c.push(0, "q", None, ms(n * 33), || None);
            }
            c.push(1, "f", None, ms(n * 33), || None);
        }
        assert!(c.keyframe_wanted(ms(2300)));
        assert_eq!(units(&c.push(1, "fk", Some((1280, 720)), ms(2310), || None)), vec![(0, "fk"), (1, "fk")]);
    }

    #[test]
    fn an_outage_of_every_layer_moves_nothing() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut c = LayerMap::new(2);
        c.push(0, "q", Some((320, 180)), t, || None);
        c.push(1, "f", Some((1280, 720)), t, || None);
        for n in 1..30u64 {
            c.push(0, "q", None, ms(n * 33), || None);
            c.push(1, "f", None, ms(n * 33), || None);
        }
        // Nothing for 2 s, then the small layer's keyframe comes back first.
        assert_eq!(units(&c.push(0, "qk", Some((320, 180)), ms(3000), || None)), vec![(0, "qk")]);
        assert!(!c.keyframe_wanted(ms(3010)));
        assert_eq!(units(&c.push(1, "fk", Some((1280, 720)), ms(3040), || None)), vec![(1, "fk")]);
    }

    #[test]
    fn without_another_layer_sending_the_level_stays() {
        let t = Instant::now();
        let mut c = LayerMap::new(1);
        assert_eq!(units(&c.push(0, "a", Some((640, 360)), t, || None)), vec![(0, "a")]);
        // A long pause of the only layer: nothing to move to.
        assert!(!c.keyframe_wanted(t + Duration::from_secs(10)));
        assert_eq!(units(&c.push(0, "b", None, t + Duration::from_secs(10), || None)), vec![(0, "b")]);
    }

    #[test]
    fn a_held_layer_keeps_its_newest_units_from_a_keyframe() {
        let t = Instant::now();
        let mut c = LayerMap::new(2);
        let n = MAX_HELD as i32 + 40;
        assert!(c.push(0, 0, Some((2, 2)), t, || None).units.is_empty());
        for i in 1..n {
            // A keyframe at 50.
            assert!(c.push(0, i, (i == 50).then_some((2, 2)), t, || None).units.is_empty());
        }
        let r = c.push(1, 1000, Some((1, 1)), t, || None);
        let of_0: Vec<i32> = r.units.iter().filter(|(l, _)| *l == 1).map(|(_, u)| *u).collect();
        assert_eq!(of_0.first(), Some(&50), "from its newest keyframe");
        assert_eq!(of_0.last(), Some(&(n - 1)));
    }

    #[test]
    fn a_session_that_ends_before_the_levels_records_what_was_held() {
        let t = Instant::now();
        let mut c = LayerMap::new(3);
        assert!(c.push(0, "q1", Some((320, 180)), t, || None).units.is_empty());
        assert!(c.push(1, "h1", Some((640, 360)), t, || None).units.is_empty());
        assert!(c.push(1, "h2", None, t, || None).units.is_empty());
        let r = c.settle_now(t, || None);
        assert_eq!(units(&r), vec![(0, "q1"), (1, "h1"), (1, "h2")]);
        assert!(c.settle_now(t, || None).units.is_empty());
        // Nothing had a keyframe: nothing to record.
        assert!(LayerMap::<u8>::new(2).settle_now(t, || None).units.is_empty());
    }

    #[test]
    fn after_an_outage_a_level_whose_layer_stays_off_is_fed_by_one_that_came_back() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut c = LayerMap::new(2);
        c.push(0, "q", Some((320, 180)), t, || None);
        c.push(1, "f", Some((1280, 720)), t, || None);
        for n in 1..30u64 {
            c.push(0, "q", None, ms(n * 33), || None);
            c.push(1, "f", None, ms(n * 33), || None);
        }
        // Nothing for 2 s; then only the small layer comes back.
        assert_eq!(units(&c.push(0, "qk", Some((320, 180)), ms(3000), || None)), vec![(0, "qk")]);
        for n in 1..31u64 {
            c.push(0, "q", None, ms(3000 + n * 33), || None);
        }
        assert!(!c.keyframe_wanted(ms(3500)), "not before it has sent steadily");
        assert!(c.keyframe_wanted(ms(4020)));
        assert_eq!(units(&c.push(0, "qk2", Some((320, 180)), ms(4030), || None)), vec![(0, "qk2"), (1, "qk2")]);
    }

    #[test]
    fn a_layer_that_comes_after_the_levels_feeds_none_of_another_size() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut c = LayerMap::new(3);
        c.push(0, "q", Some((320, 180)), t, || None);
        c.push(1, "h", Some((640, 360)), t, || None);
        // The full layer has not come when the levels are settled.
        let r = c.push(0, "q", None, ms(2000), || None);
        assert_eq!(r.new_levels, Some(vec![0, 1]));
        // It comes at 3 s and sends: the levels keep their own layers
        // (their bitrates were measured on them).
        for n in 0..90u64 {
            let at = ms(3000 + n * 33);
            c.push(0, "q", None, at, || None);
            c.push(1, "h", None, at, || None);
            assert!(c.push(2, "f", (n % 30 == 0).then_some((1280, 720)), at, || None).units.is_empty());
        }
        assert!(!c.keyframe_wanted(ms(6000)));
        assert_eq!(c.sources(), vec![Some(0), Some(1)]);
    }
}
