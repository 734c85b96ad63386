//! A track's leading (or only) level: it cuts the fragment timeline and
//! publishes each fragment as it closes, its `tfrf` announcing the next.

use crate::bmff::{FragmentBoxes, FragmentSample, LiveLookahead, TrackKind, write_fragment, write_init_segment};
use crate::layout::{self, PublishedObject};
use crate::manifest::{Chunk, LevelInfo};
use crate::{TIMESCALE, TrackType};

/// The `tfrf` of the last fragments, written when ingest stops: it
/// announces nothing. A live player that the previous fragment's `tfrf`
/// sent to the last one fetches it before it learns that the stream is on
/// demand, and dash.js rejects a live fragment without `tfrf` ("Missing
/// tfrf in live media segment"); on-demand players ignore the box.
pub(super) const LAST_LOOKAHEAD: &[LiveLookahead] = &[];

#[derive(Debug)]
pub(super) struct Closed {
    pub(super) chunk: Chunk,
    pub(super) samples: Vec<FragmentSample>,
}

/// What a measured level's bitrate may be, given the levels already
/// measured: above every smaller picture's, below every larger one's (a
/// ladder ordered by size), unlike any.
#[derive(Debug, Clone, Default)]
pub(super) struct BitrateBounds {
    pub(super) floor: u32,
    pub(super) cap: u32,
    pub(super) taken: Vec<u32>,
}

/// One quality level's output: its description, initialization segment
/// and fragment sequence numbers.
#[derive(Debug)]
pub(super) struct LevelOutput {
    pub(super) kind: TrackType,
    pub(super) info: LevelInfo,
    pub(super) init: TrackKind,
    pub(super) init_published: bool,
    pub(super) sequence: u32,
}

impl LevelOutput {
    pub(super) fn new(kind: TrackType, info: LevelInfo, init: TrackKind) -> Self {
        LevelOutput { kind, info, init, init_published: false, sequence: 0 }
    }

    /// The picture area of the level's initialization segment.
    pub(super) fn init_area(&self) -> u64 {
        match &self.init {
            crate::bmff::TrackKind::Video { width, height, .. } => u64::from(*width) * u64::from(*height),
            _ => 0,
        }
    }

    /// Whether the level's bitrate is still to be measured.
    pub(super) fn measuring(&self) -> bool {
        self.info.bitrate == super::types::MEASURED_BITRATE
    }

    /// Fixes a measured level's bitrate from its first fragment, `bytes`
    /// over `span` (see [`super::types::MEASURED_BITRATE`]), within
    /// `bounds` (above the smaller pictures' levels, below the larger
    /// ones'), not one of `taken`.
    pub(super) fn fix_bitrate(&mut self, bytes: u64, span: u64, bounds: BitrateBounds) {
        if !self.measuring() {
            return;
        }
        let bps = (u128::from(bytes) * 8 * TIMESCALE as u128 / u128::from(span.max(1))) as u64;
        let measured = u32::try_from(bps.div_ceil(1000) * 1000).unwrap_or(u32::MAX - 999_999);
        let mut bitrate = measured.min(bounds.cap).max(bounds.floor).max(1000);
        while bounds.taken.contains(&bitrate) {
            bitrate = bitrate.saturating_add(1000);
        }
        self.info.bitrate = bitrate;
    }

    pub(super) fn init_object(&mut self, out: &mut Vec<PublishedObject>, with_init: bool) {
        if with_init && !self.init_published {
            self.init_published = true;
            out.push(PublishedObject {
                key: layout::init_key(self.kind, self.info.bitrate),
                content_type: layout::fragment_content_type(self.kind),
                cache_control: layout::CACHE_IMMUTABLE,
                body: write_init_segment(self.kind.track_id(), TIMESCALE as u32, &self.init),
            });
        }
    }

    pub(super) fn fragment_object(
        &mut self,
        chunk: Chunk,
        samples: &[FragmentSample],
        lookahead: Option<&[LiveLookahead]>,
    ) -> PublishedObject {
        self.sequence += 1;
        let body = write_fragment(&FragmentBoxes {
            sequence_number: self.sequence,
            track_id: self.kind.track_id(),
            start: chunk.start,
            duration: chunk.duration,
            samples,
            lookahead,
        });
        PublishedObject {
            key: layout::fragment_key(self.kind, self.info.bitrate, chunk.start),
            content_type: layout::fragment_content_type(self.kind),
            cache_control: layout::CACHE_IMMUTABLE,
            body,
        }
    }
}

/// A track's leading (or only) level: it decides the fragment timeline.
#[derive(Debug)]
pub(super) struct Track {
    pub(super) level: LevelOutput,
    pub(super) frag_start: Option<u64>,
    pub(super) samples: Vec<FragmentSample>,
    /// Sum of `samples` durations.
    pub(super) frag_len: u64,
    pub(super) held: Option<Closed>,
    pub(super) published: Vec<Chunk>,
}

impl Track {
    pub(super) fn new(kind: TrackType, level: LevelInfo, init: TrackKind) -> Self {
        Track {
            level: LevelOutput::new(kind, level, init),
            frag_start: None,
            samples: Vec::new(),
            frag_len: 0,
            held: None,
            published: Vec::new(),
        }
    }

    pub(super) fn end(&self) -> Option<u64> {
        self.frag_start
            .map(|s| s + self.frag_len)
            .or_else(|| self.held.as_ref().map(|h| h.chunk.end()))
            .or_else(|| self.published.last().map(Chunk::end))
    }

    pub(super) fn close(&mut self) -> Option<Closed> {
        let start = self.frag_start?;
        if self.samples.is_empty() {
            return None;
        }
        let chunk = Chunk { start, duration: self.frag_len };
        self.frag_start = Some(chunk.end());
        self.frag_len = 0;
        Some(Closed { chunk, samples: std::mem::take(&mut self.samples) })
    }

    /// A fragment closed. When the next one's start is known (`next_start`:
    /// a sample of it has arrived, which is what closes a fragment while a
    /// session goes on), it is published at once, its `tfrf` announcing
    /// that start with this fragment's duration as the next one's expected
    /// duration. Otherwise (the session ended) it is held until the next
    /// fragment closes, which it then announces exactly, or until the
    /// presentation ends (an empty `tfrf`, [`Track::flush_held`]).
    pub(super) fn on_closed(&mut self, closed: Closed, next_start: Option<u64>, out: &mut Vec<PublishedObject>, with_init: bool) {
        self.level.init_object(out, with_init);
        if let Some(held) = self.held.take() {
            let next = [LiveLookahead { time: closed.chunk.start, duration: closed.chunk.duration }];
            out.push(self.level.fragment_object(held.chunk, &held.samples, Some(&next)));
            self.published.push(held.chunk);
        }
        match next_start {
            Some(time) => {
                let next = [LiveLookahead { time, duration: closed.chunk.duration }];
                out.push(self.level.fragment_object(closed.chunk, &closed.samples, Some(&next)));
                self.published.push(closed.chunk);
            }
            None => self.held = Some(closed),
        }
    }

    /// Publishes the held fragment as the last one, with an empty `tfrf`
    /// (see [`LAST_LOOKAHEAD`]).
    pub(super) fn flush_held(&mut self, out: &mut Vec<PublishedObject>) {
        if let Some(held) = self.held.take() {
            out.push(self.level.fragment_object(held.chunk, &held.samples, Some(LAST_LOOKAHEAD)));
            self.published.push(held.chunk);
        }
    }
}
