//! Which video layer of a simulcast publisher a recording takes. A
//! browser's simulcast sends one RTP stream per encoding (RFC 8853: one
//! SSRC per `rid`), each its own H.264 stream at its own resolution; the
//! recording has one video quality level, so it takes one layer: the
//! largest picture. Each layer counts from its first keyframe (its SPS
//! gives the size); the choice is made once every layer the offer
//! announced has had one, or [`CHOICE_WAIT`] after the first did (a layer
//! the publisher does not send, for bandwidth or CPU, does not hold the
//! stream back). What the chosen layer sent since its first keyframe is
//! recorded; the other layers are dropped.
//!
//! Browsers pause their largest layers when bandwidth or CPU runs short.
//! When the recorded layer has sent nothing for [`STALL`] while another
//! sends, the recording moves to the largest layer still sending, at its
//! next keyframe (asked for: [`LayerChoice::keyframe_wanted`]); when a
//! larger layer has sent again for [`STEADY`], it moves back up at that
//! layer's next keyframe. Each move is a change of picture size in the
//! recording, as when a publisher scales its one encoding. Pure: the
//! caller gives the time.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How long after a session's first keyframe the layers wait for each
/// other's. The node asks every layer for a keyframe at the start, and
/// they come together (Chromium: within one frame).
pub const CHOICE_WAIT: Duration = Duration::from_millis(500);
/// The most a layer holds while the choice waits (at 60 fps, 1 s).
const MAX_HELD: usize = 60;
/// How long the recorded layer may send nothing, while another sends,
/// before the recording moves to another layer.
pub const STALL: std::time::Duration = Duration::from_secs(1);
/// How long a larger layer must have been sending before the recording
/// moves back up to it.
pub const STEADY: std::time::Duration = Duration::from_secs(2);

/// What is known of a layer after the choice.
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

/// One publisher session's choice of layer (see the module documentation).
#[derive(Debug)]
pub struct LayerChoice<T> {
    /// Layers the offer announced (1 without simulcast).
    expected: usize,
    first_keyframe: Option<Instant>,
    chosen: Option<u8>,
    candidates: BTreeMap<u8, Candidate<T>>,
    /// Every layer's latest unit, once the choice is made.
    seen: BTreeMap<u8, Seen>,
}

impl<T> LayerChoice<T> {
    pub fn new(expected: usize) -> Self {
        LayerChoice { expected, first_keyframe: None, chosen: None, candidates: BTreeMap::new(), seen: BTreeMap::new() }
    }

    /// The layer recorded, once chosen.
    pub fn chosen(&self) -> Option<u8> {
        self.chosen
    }

    /// Takes an access unit of `layer` (`picture`: the size its SPS gives,
    /// when it is a keyframe that carries one); returns what to record
    /// now, in order: the unit itself once its layer is chosen, what the
    /// chosen layer held when the choice is made, else nothing.
    pub fn push(&mut self, layer: u8, item: T, picture: Option<(u32, u32)>, now: Instant) -> Vec<T> {
        if let Some(chosen) = self.chosen {
            self.saw(layer, picture, now);
            if layer != chosen && picture.is_some() && self.moves_to(layer, now) {
                self.chosen = Some(layer);
                return vec![item];
            }
            return if layer == chosen { vec![item] } else { Vec::new() };
        }
        if self.expected <= 1 {
            self.chosen = Some(layer);
            self.saw(layer, picture, now);
            return vec![item];
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
            return Vec::new();
        }
        self.choose(now)
    }

    /// Chooses now among the layers that have had a keyframe (the session
    /// ends before the choice was due); returns what the chosen one held.
    pub fn decide_now(&mut self, now: Instant) -> Vec<T> {
        if self.chosen.is_some() { Vec::new() } else { self.choose(now) }
    }

    fn choose(&mut self, now: Instant) -> Vec<T> {
        // The largest picture; of equal ones, the layer seen first.
        let Some((&best, _)) = self.candidates.iter().max_by(|(a, x), (b, y)| x.area.cmp(&y.area).then(b.cmp(a))) else {
            return Vec::new();
        };
        self.chosen = Some(best);
        for (&i, c) in &self.candidates {
            self.seen.insert(i, Seen { area: c.area, last: now, since: now });
        }
        let held = self.candidates.remove(&best).map(|c| c.held.into_iter().map(|(_, t)| t).collect()).unwrap_or_default();
        self.candidates.clear();
        held
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

    /// The layer the recording should be on now: the chosen one, unless it
    /// stalled (then the largest layer sending) or a larger layer has sent
    /// steadily (then that one).
    fn preferred(&self, now: Instant) -> Option<u8> {
        let chosen = self.chosen?;
        let current = self.seen.get(&chosen)?;
        let sending = |s: &Seen| now.saturating_duration_since(s.last) < STALL && s.area > 0;
        let stalled = !sending(current);
        self.seen
            .iter()
            .filter(|(i, s)| **i != chosen && sending(s))
            // Stalled: a layer that kept sending across the recorded one's
            // silence (after an outage of them all, the first keyframe back
            // is no reason to move); else a larger one, steady.
            .filter(|(_, s)| {
                if stalled { s.since <= current.last } else { s.area > current.area && now.saturating_duration_since(s.since) >= STEADY }
            })
            .max_by(|(a, x), (b, y)| x.area.cmp(&y.area).then(b.cmp(a)))
            .map(|(i, _)| *i)
    }

    fn moves_to(&self, layer: u8, now: Instant) -> bool {
        self.preferred(now) == Some(layer)
    }

    /// Whether a keyframe of every layer should be asked for: the
    /// recording waits for one of another layer to move to it.
    pub fn keyframe_wanted(&self, now: Instant) -> bool {
        self.preferred(now).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_simulcast_the_one_layer_passes_at_once() {
        let t = Instant::now();
        let mut c = LayerChoice::new(1);
        assert_eq!(c.push(0, "a", None, t), vec!["a"]);
        assert_eq!(c.push(0, "b", None, t), vec!["b"]);
        assert_eq!(c.chosen(), Some(0));
    }

    #[test]
    fn the_largest_layer_is_chosen_once_every_layer_has_a_keyframe() {
        let t = Instant::now();
        let mut c = LayerChoice::new(3);
        // Layer 1 sends a delta frame first: it does not count.
        assert!(c.push(1, "h0", None, t).is_empty());
        assert!(c.push(0, "q1", Some((320, 180)), t).is_empty());
        assert!(c.push(2, "f1", Some((1280, 720)), t).is_empty());
        assert!(c.push(2, "f2", None, t).is_empty());
        assert!(c.push(0, "q2", None, t).is_empty());
        // The third layer's keyframe: the choice, with what the full layer held.
        assert_eq!(c.push(1, "h1", Some((640, 360)), t), vec!["f1", "f2"]);
        assert_eq!(c.chosen(), Some(2));
        assert_eq!(c.push(2, "f3", None, t), vec!["f3"]);
        assert!(c.push(0, "q3", None, t).is_empty());
    }

    #[test]
    fn a_layer_that_never_comes_does_not_hold_the_others_back() {
        let t = Instant::now();
        let mut c = LayerChoice::new(3);
        assert!(c.push(0, "q1", Some((320, 180)), t).is_empty());
        assert!(c.push(1, "h1", Some((640, 360)), t + Duration::from_millis(10)).is_empty());
        assert!(c.push(1, "h2", None, t + Duration::from_millis(400)).is_empty());
        assert_eq!(c.push(0, "q2", None, t + CHOICE_WAIT), vec!["h1", "h2"]);
        assert_eq!(c.chosen(), Some(1));
    }

    #[test]
    fn a_paused_layer_hands_over_to_the_largest_sending_and_back() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut c = LayerChoice::new(3);
        assert!(c.push(0, "q", Some((320, 180)), t).is_empty());
        assert!(c.push(1, "h", Some((640, 360)), t).is_empty());
        assert_eq!(c.push(2, "f", Some((1280, 720)), t), vec!["f"]);
        // Every layer sends for a while; only the full one is recorded.
        for n in 1..30u64 {
            for l in 0..3 {
                let r = c.push(l, "x", None, ms(n * 33));
                assert_eq!(r.len(), usize::from(l == 2));
            }
        }
        assert!(!c.keyframe_wanted(ms(990)));
        // The full layer pauses at 1 s; the others go on. After STALL the
        // recording wants a keyframe, and moves at the half layer's.
        for n in 30..62u64 {
            assert!(c.push(0, "q", None, ms(n * 33)).is_empty());
            assert!(c.push(1, "h", None, ms(n * 33)).is_empty());
        }
        assert!(c.keyframe_wanted(ms(2046)));
        assert!(c.push(0, "qk", Some((320, 180)), ms(2050)).is_empty(), "not the smaller layer");
        assert_eq!(c.push(1, "hk", Some((640, 360)), ms(2050)), vec!["hk"]);
        assert_eq!(c.chosen(), Some(1));
        assert!(!c.keyframe_wanted(ms(2060)));
        // The full layer comes back at 3 s with a keyframe: too soon.
        assert!(c.push(2, "fk", Some((1280, 720)), ms(3000)).is_empty());
        for n in 0..60u64 {
            assert!(c.push(2, "f", None, ms(3000 + n * 33)).is_empty());
            assert_eq!(c.push(1, "h", None, ms(3000 + n * 33)), vec!["h"]);
        }
        // Steady for STEADY: a keyframe is wanted, and the move is at it.
        assert!(c.keyframe_wanted(ms(5000)));
        assert_eq!(c.push(2, "fk2", Some((1280, 720)), ms(5010)), vec!["fk2"]);
        assert_eq!(c.chosen(), Some(2));
        assert!(c.push(1, "h", None, ms(5020)).is_empty());
    }

    #[test]
    fn an_outage_of_every_layer_moves_nothing() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut c = LayerChoice::new(2);
        assert!(c.push(0, "q", Some((320, 180)), t).is_empty());
        assert_eq!(c.push(1, "f", Some((1280, 720)), t), vec!["f"]);
        for n in 1..30u64 {
            c.push(0, "q", None, ms(n * 33));
            c.push(1, "f", None, ms(n * 33));
        }
        // Nothing for 2 s, then the small layer's keyframe comes back first.
        assert!(c.push(0, "qk", Some((320, 180)), ms(3000)).is_empty());
        assert!(!c.keyframe_wanted(ms(3010)));
        assert_eq!(c.push(1, "fk", Some((1280, 720)), ms(3040)), vec!["fk"]);
        assert_eq!(c.chosen(), Some(1));
    }

    #[test]
    fn without_another_layer_sending_the_recorded_one_stays() {
        let t = Instant::now();
        let mut c = LayerChoice::new(1);
        assert_eq!(c.push(0, "a", Some((640, 360)), t), vec!["a"]);
        // A long pause of the only layer: nothing to move to.
        assert!(!c.keyframe_wanted(t + Duration::from_secs(10)));
        assert_eq!(c.push(0, "b", None, t + Duration::from_secs(10)), vec!["b"]);
    }

    #[test]
    fn a_held_layer_keeps_its_newest_units_from_a_keyframe() {
        let t = Instant::now();
        let mut c = LayerChoice::new(2);
        assert!(c.push(0, 0, Some((2, 2)), t).is_empty());
        for i in 1..100 {
            // A keyframe at 50.
            assert!(c.push(0, i, (i == 50).then_some((2, 2)), t).is_empty());
        }
        let held = c.push(1, 1000, Some((1, 1)), t);
        assert_eq!(held.first(), Some(&50), "from its newest keyframe");
        assert_eq!(held.last(), Some(&99));
    }

    #[test]
    fn a_session_that_ends_before_the_choice_records_what_was_held() {
        let t = Instant::now();
        let mut c = LayerChoice::new(3);
        assert!(c.push(0, "q1", Some((320, 180)), t).is_empty());
        assert!(c.push(1, "h1", Some((640, 360)), t).is_empty());
        assert!(c.push(1, "h2", None, t).is_empty());
        assert_eq!(c.decide_now(t), vec!["h1", "h2"]);
        assert_eq!(c.chosen(), Some(1));
        assert!(c.decide_now(t).is_empty());
        // Nothing had a keyframe: nothing to record.
        assert!(LayerChoice::<u8>::new(2).decide_now(t).is_empty());
    }
}
