//! A video level after the first: cut at the leader's fragment times.

use std::collections::VecDeque;

use bytes::Bytes;

use super::track::{LAST_LOOKAHEAD, LevelOutput};
use super::types::{PackagerError, VideoSample};
use crate::bmff::{FragmentSample, LiveLookahead};
use crate::layout::PublishedObject;
use crate::manifest::Chunk;

/// A sample of a following level, not yet placed in a fragment.
#[derive(Debug)]
pub(super) struct PendingSample {
    pub(super) time: u64,
    pub(super) keyframe: bool,
    pub(super) data: Bytes,
}

/// How many of the leader's fragments a following level may fall behind
/// before they are built with what it has (a level the publisher paused
/// must not hold back the others, nor pile up memory).
pub(super) const MAX_FOLLOWER_LAG: usize = 3;

/// A video level other than the first: it is cut at the leader's fragment
/// times (see the module documentation).
#[derive(Debug)]
pub(super) struct Follower {
    pub(super) level: LevelOutput,
    pub(super) pending: VecDeque<PendingSample>,
    pub(super) last_time: Option<u64>,
    /// The leader's closed fragments this level has yet to fill, each with
    /// its successor's start when the leader knew it at the cut.
    pub(super) to_build: VecDeque<(Chunk, Option<u64>)>,
    /// Built fragments waiting for their successor's start (their `tfrf`);
    /// no samples: the level had none in that span, nor a keyframe before
    /// it, and writes nothing.
    pub(super) built: VecDeque<(Chunk, Option<u64>, Vec<FragmentSample>)>,
    /// The level's latest keyframe (an IDR access unit): what a span in
    /// which the level sent nothing (the publisher paused it) shows.
    pub(super) last_keyframe: Option<Bytes>,
    /// The time its first sample had (before it was placed at its
    /// fragment's start), once it has had one: a level measured over its
    /// first fragment is measured from there.
    pub(super) first_sample_time: Option<u64>,
    /// The last span built had no samples of its own: the decoder's
    /// picture is then the repeated keyframe, not what the level's next
    /// predicted frames refer to.
    pub(super) paused: bool,
    /// How many of the leader's fragments this level has published (or
    /// skipped, having no samples in them).
    pub(super) published: usize,
    pub(super) keyframe_needed: bool,
}

impl Follower {
    pub(super) fn new(level: LevelOutput) -> Self {
        Follower {
            level,
            pending: VecDeque::new(),
            last_time: None,
            to_build: VecDeque::new(),
            built: VecDeque::new(),
            published: 0,
            keyframe_needed: false,
            last_keyframe: None,
            first_sample_time: None,
            paused: false,
        }
    }

    pub(super) fn push(&mut self, s: VideoSample) -> Result<(), PackagerError> {
        if s.time < 0 {
            return Err(PackagerError::NegativeTime { track: "video", time: s.time });
        }
        let time = s.time as u64;
        if let Some(last) = self.last_time
            && time <= last
        {
            return Err(PackagerError::NonMonotonic { track: "video", time: s.time, last: last as i64 });
        }
        self.last_time = Some(time);
        self.pending.push_back(PendingSample { time, keyframe: s.keyframe, data: s.data });
        Ok(())
    }

    /// Drops samples that no fragment can take any more: those before
    /// `floor` (the start of the earliest fragment still to come).
    pub(super) fn drop_before(&mut self, floor: u64, tolerance: u64) {
        let floor = self.to_build.front().map_or(floor, |(c, _)| c.start).saturating_sub(tolerance);
        while self.pending.front().is_some_and(|p| p.time < floor) {
            self.pending.pop_front();
        }
    }

    /// Builds the fragments whose samples have all arrived (a later sample
    /// came), or all of them when `force`.
    pub(super) fn build(&mut self, tolerance: u64, force: bool) {
        while let Some(&(chunk, next_start)) = self.to_build.front() {
            let edge = chunk.end().saturating_sub(tolerance);
            let complete = self.pending.back().is_some_and(|p| p.time >= edge);
            if !(force || complete || self.to_build.len() > MAX_FOLLOWER_LAG) {
                break;
            }
            self.to_build.pop_front();
            let from = chunk.start.saturating_sub(tolerance);
            while self.pending.front().is_some_and(|p| p.time < from) {
                self.pending.pop_front();
            }
            // Decode times: the first at the fragment's start, each later
            // one at its own time (kept increasing), the last one lasting
            // until the fragment's end.
            let mut placed: Vec<(u64, PendingSample)> = Vec::new();
            while self.pending.front().is_some_and(|p| p.time < edge) {
                let Some(p) = self.pending.pop_front() else { break };
                let at = match placed.last() {
                    None => chunk.start,
                    Some((prev, _)) => p.time.max(prev + 1),
                };
                if at >= chunk.end() {
                    break;
                }
                placed.push((at, p));
            }
            // After a pause, predicted frames before the level's next
            // keyframe refer to pictures the decoder never had: the
            // repeated keyframe stands in for them too.
            if self.paused && self.last_keyframe.is_some() {
                let first_key = placed.iter().position(|(_, p)| p.keyframe).unwrap_or(placed.len());
                if first_key > 0 {
                    // It sends again: a keyframe lets it be shown.
                    self.keyframe_needed = true;
                }
                placed.drain(..first_key);
                if let Some((at, _)) = placed.first_mut() {
                    *at = (*at).max(chunk.start);
                }
            }
            let mut samples = Vec::with_capacity(placed.len() + 1);
            // A span the level has nothing for (it was paused) shows its
            // latest keyframe until its first picture, so that every
            // fragment the manifests list exists for every level and
            // decodes on its own.
            let first_at = placed.first().map_or(chunk.end(), |(at, _)| *at);
            if first_at > chunk.start
                && let Some(key) = self.last_keyframe.clone()
            {
                let duration = u32::try_from(first_at - chunk.start).unwrap_or(u32::MAX);
                samples.push(FragmentSample { duration, keyframe: true, composition_offset: 0, data: key });
            }
            for (i, (at, p)) in placed.iter().enumerate() {
                let next = placed.get(i + 1).map_or(chunk.end(), |(n, _)| *n);
                let duration = u32::try_from(next - at).unwrap_or(u32::MAX);
                samples.push(FragmentSample { duration, keyframe: p.keyframe, composition_offset: 0, data: p.data.clone() });
                if p.keyframe {
                    self.last_keyframe = Some(p.data.clone());
                }
            }
            if self.first_sample_time.is_none() {
                self.first_sample_time = placed.first().map(|(_, p)| p.time);
            }
            self.paused = placed.is_empty();
            if samples.first().is_some_and(|s| !s.keyframe) {
                self.keyframe_needed = true;
            }
            self.built.push_back((chunk, next_start, samples));
        }
    }

    /// Publishes built fragments whose successor's start is known, as the
    /// leader does (`finished`: all of them, the last without `tfrf`).
    pub(super) fn publish(&mut self, out: &mut Vec<PublishedObject>, with_init: bool, finished: bool) {
        while let Some((chunk, next_start, samples)) = self.built.pop_front() {
            let following = self.built.front().map(|(c, _, _)| *c).or_else(|| self.to_build.front().map(|(c, _)| *c));
            let next = match (following, next_start) {
                (Some(n), _) => Some(LiveLookahead { time: n.start, duration: n.duration }),
                (None, Some(time)) => Some(LiveLookahead { time, duration: chunk.duration }),
                (None, None) => None,
            };
            if next.is_none() && !finished {
                self.built.push_front((chunk, next_start, samples));
                break;
            }
            if !samples.is_empty() {
                self.level.init_object(out, with_init);
                let lookahead = next.map(|n| [n]);
                out.push(self.level.fragment_object(chunk, &samples, Some(lookahead.as_ref().map_or(LAST_LOOKAHEAD, |l| &l[..]))));
            }
            self.published += 1;
        }
    }
}
