//! The presentation: one video and one audio track fragmented in step, and
//! the objects players read, live and then on demand.
//!
//! Fragmenting (video drives): a fragment is cut at the first video
//! keyframe at or after `fragment_duration` from its start (or within a
//! tenth of it before: keyframe intervals equal to the target drift). When the
//! boundary passes without a keyframe the caller is told one is needed (it
//! asks the publisher with a PLI; again each second until one comes), and a
//! fragment that reaches three times the target is cut anyway, on a
//! non-keyframe, so fragments stay bounded (such a fragment plays in
//! sequence but cannot be started from). Audio is cut at the first audio
//! frame at or after each video cut, so the two timelines line up within
//! one audio frame. Audio times come from the count of AAC frames since the
//! track's anchor, so the audio timeline is contiguous and exact.
//!
//! Publishing and `tfrf`: objects in S3 cannot be edited, so a live
//! fragment's `tfrf` (which announces the next fragment to players that
//! never re-read a live manifest) cannot be filled in later. A fragment is
//! therefore published when the next one has closed, and its `tfrf` carries
//! that fragment's exact time and duration. The cost is one fragment of
//! extra latency; the live manifest lists only published fragments.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::bmff::{FragmentBoxes, FragmentSample, LiveLookahead, TrackKind, write_fragment, write_init_segment};
use crate::codec::aac::{AacError, AudioConfig, SAMPLES_PER_FRAME};
use crate::codec::h264::{SpsError, avc_decoder_configuration, codec_private_data, parse_sps};
use crate::layout::{self, PublishedObject};
use crate::manifest::dash::DashClock;
use crate::manifest::{Chunk, LevelDetail, LevelInfo, ManifestMode, TrackManifest};
use crate::{TIMESCALE, TrackType};

/// Tracks whose first samples are this close start at the earlier one's
/// time, as a publisher's first audio and first keyframe arrive apart: a
/// later video start moves the first frame back (up to 1 s; only its
/// display time changes), a later audio start moves the audio back (up to
/// 200 ms, a sync change within what arrival-time alignment gives anyway).
const START_ALIGNMENT: u64 = 10_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackagerError {
    #[error("{track} sample at {time} is not after the previous one at {last}")]
    NonMonotonic { track: &'static str, time: i64, last: i64 },
    #[error("{track} sample at negative time {time}")]
    NegativeTime { track: &'static str, time: i64 },
    #[error("video configuration: {0}")]
    Sps(#[from] SpsError),
    #[error("audio configuration: {0}")]
    Aac(#[from] AacError),
    #[error("the presentation is finished")]
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationConfig {
    /// Target fragment duration, timescale units.
    pub fragment_duration: u64,
    /// Live DVR window, timescale units.
    pub dvr_window: u64,
    pub smooth: bool,
    pub dash: bool,
    pub hls: bool,
    /// Unix time (ms) of timeline position 0 (DASH availabilityStartTime).
    pub availability_start_unix_ms: i64,
}

impl PresentationConfig {
    fn max_fragment(&self) -> u64 {
        self.fragment_duration.saturating_mul(3)
    }
    /// A keyframe this close before a boundary counts as at it: encoders
    /// whose keyframe interval equals the target drift around it by a few
    /// milliseconds, and must not make every other fragment twice as long.
    fn cut_tolerance(&self) -> u64 {
        self.fragment_duration / 10
    }
    /// How long to wait for a requested keyframe before asking again.
    fn keyframe_retry(&self) -> u64 {
        10_000_000
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrackConfig {
    pub bitrate: u32,
    pub sps: Bytes,
    pub pps: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTrackConfig {
    pub bitrate: u32,
    pub sample_rate: u32,
    pub channels: u16,
}

/// One H.264 access unit, AVCC (4-byte length prefixed NAL units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSample {
    /// Decode (= presentation, no B-frames) time, timescale units.
    pub time: i64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// One raw AAC-LC frame (1024 samples per channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    pub time: i64,
    pub data: Bytes,
}

/// What one push produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutput {
    /// Objects to write, in order (fragments before manifests).
    pub objects: Vec<PublishedObject>,
    /// Ask the publisher for a keyframe now.
    pub keyframe_needed: bool,
}

/// The objects of a finished presentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    pub objects: Vec<PublishedObject>,
}

#[derive(Debug)]
struct Closed {
    chunk: Chunk,
    samples: Vec<FragmentSample>,
}

#[derive(Debug)]
struct Track {
    kind: TrackType,
    level: LevelInfo,
    init: TrackKind,
    init_published: bool,
    frag_start: Option<u64>,
    samples: Vec<FragmentSample>,
    /// Sum of `samples` durations.
    frag_len: u64,
    held: Option<Closed>,
    published: Vec<Chunk>,
    sequence: u32,
}

impl Track {
    fn new(kind: TrackType, level: LevelInfo, init: TrackKind) -> Self {
        Track {
            kind,
            level,
            init,
            init_published: false,
            frag_start: None,
            samples: Vec::new(),
            frag_len: 0,
            held: None,
            published: Vec::new(),
            sequence: 0,
        }
    }

    fn end(&self) -> Option<u64> {
        self.frag_start
            .map(|s| s + self.frag_len)
            .or_else(|| self.held.as_ref().map(|h| h.chunk.end()))
            .or_else(|| self.published.last().map(Chunk::end))
    }

    fn close(&mut self) -> Option<Closed> {
        let start = self.frag_start?;
        if self.samples.is_empty() {
            return None;
        }
        let chunk = Chunk { start, duration: self.frag_len };
        self.frag_start = Some(chunk.end());
        self.frag_len = 0;
        Some(Closed { chunk, samples: std::mem::take(&mut self.samples) })
    }

    fn fragment_object(&mut self, f: &Closed, lookahead: Option<&[LiveLookahead]>) -> PublishedObject {
        self.sequence += 1;
        let body = write_fragment(&FragmentBoxes {
            sequence_number: self.sequence,
            track_id: self.kind.track_id(),
            start: f.chunk.start,
            duration: f.chunk.duration,
            samples: &f.samples,
            lookahead,
        });
        PublishedObject {
            key: layout::fragment_key(self.kind, self.level.bitrate, f.chunk.start),
            content_type: layout::fragment_content_type(self.kind),
            cache_control: layout::CACHE_IMMUTABLE,
            body,
        }
    }

    /// A fragment closed: publish the held one (announcing this one in its
    /// `tfrf`) and hold this one.
    fn on_closed(&mut self, closed: Closed, out: &mut Vec<PublishedObject>, with_init: bool) -> bool {
        if with_init && !self.init_published {
            self.init_published = true;
            out.push(PublishedObject {
                key: layout::init_key(self.kind, self.level.bitrate),
                content_type: layout::fragment_content_type(self.kind),
                cache_control: layout::CACHE_IMMUTABLE,
                body: write_init_segment(self.kind.track_id(), TIMESCALE as u32, &self.init),
            });
        }
        let published = match self.held.take() {
            Some(held) => {
                let next = [LiveLookahead { time: closed.chunk.start, duration: closed.chunk.duration }];
                out.push(self.fragment_object(&held, Some(&next)));
                self.published.push(held.chunk);
                true
            }
            None => false,
        };
        self.held = Some(closed);
        published
    }

    /// Publishes the held fragment as the last one (no `tfrf`).
    fn flush_held(&mut self, out: &mut Vec<PublishedObject>) {
        if let Some(held) = self.held.take() {
            out.push(self.fragment_object(&held, None));
            self.published.push(held.chunk);
        }
    }

    fn manifest(&self) -> TrackManifest {
        TrackManifest { track: self.kind, levels: vec![self.level.clone()], chunks: self.published.clone() }
    }
}

#[derive(Debug)]
pub struct Presentation {
    config: PresentationConfig,
    video: Track,
    audio: Track,
    pending_video: Option<VideoSample>,
    last_video_duration: u32,
    /// When a keyframe was last requested in the current fragment.
    keyframe_requested: Option<u64>,
    /// Video cut times the audio track has yet to follow.
    audio_cuts: VecDeque<u64>,
    audio_rate: u32,
    audio_anchor: Option<u64>,
    audio_frames: u64,
    finished: bool,
}

impl Presentation {
    pub fn new(config: PresentationConfig, video: VideoTrackConfig, audio: AudioTrackConfig) -> Result<Self, PackagerError> {
        let sps = parse_sps(&video.sps)?;
        let avcc = avc_decoder_configuration(&video.sps, &video.pps)?;
        let aac = AudioConfig::aac_lc(audio.sample_rate, audio.channels)?;
        let asc = aac.audio_specific_config()?;
        let video_track = Track::new(
            TrackType::Video,
            LevelInfo {
                bitrate: video.bitrate,
                codecs: sps.codec_string(),
                codec_private_data: codec_private_data(&video.sps, &video.pps),
                detail: LevelDetail::Video { width: sps.width, height: sps.height },
            },
            TrackKind::Video { width: sps.width as u16, height: sps.height as u16, avcc },
        );
        let audio_track = Track::new(
            TrackType::Audio,
            LevelInfo {
                bitrate: audio.bitrate,
                codecs: aac.codec_string(),
                codec_private_data: aac.codec_private_data()?,
                detail: LevelDetail::Audio { sample_rate: audio.sample_rate, channels: audio.channels },
            },
            TrackKind::Audio {
                sample_rate: audio.sample_rate,
                channels: audio.channels,
                audio_specific_config: asc,
                bitrate: audio.bitrate,
            },
        );
        Ok(Presentation {
            config,
            video: video_track,
            audio: audio_track,
            pending_video: None,
            last_video_duration: (TIMESCALE / 30) as u32,
            keyframe_requested: None,
            audio_cuts: VecDeque::new(),
            audio_rate: audio.sample_rate,
            audio_anchor: None,
            audio_frames: 0,
            finished: false,
        })
    }

    fn with_init(&self) -> bool {
        self.config.dash || self.config.hls
    }

    /// Where the presentation ends so far: a new publisher session
    /// continues the timeline from here.
    pub fn end_time(&self) -> u64 {
        let v = self.pending_video.as_ref().map(|p| p.time as u64 + u64::from(self.last_video_duration));
        [v, self.video.end(), self.audio.end(), self.audio_next_time()]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0)
    }

    /// Fragments published so far, per track (video, audio).
    pub fn published(&self) -> (&[Chunk], &[Chunk]) {
        (&self.video.published, &self.audio.published)
    }

    pub fn push_video(&mut self, s: VideoSample) -> Result<PushOutput, PackagerError> {
        if self.finished {
            return Err(PackagerError::Finished);
        }
        if s.time < 0 {
            return Err(PackagerError::NegativeTime { track: "video", time: s.time });
        }
        let mut out = PushOutput::default();
        if let Some(p) = self.pending_video.take() {
            if s.time <= p.time {
                let last = p.time;
                self.pending_video = Some(p);
                return Err(PackagerError::NonMonotonic { track: "video", time: s.time, last });
            }
            let delta = (s.time - p.time) as u64;
            if delta > self.config.max_fragment() {
                // A discontinuity: end the fragment with the last sample at
                // its usual duration; the next fragment starts at `s`.
                let d = self.last_video_duration;
                self.add_video(p, d);
                if let Some(end) = self.video.frag_start.map(|f| f + self.video.frag_len) {
                    self.cut_video(end, &mut out.objects);
                }
            } else {
                self.last_video_duration = delta as u32;
                self.add_video(p, delta as u32);
            }
        } else if let Some(end) = self.video.end() {
            if (s.time as u64) < end {
                return Err(PackagerError::NonMonotonic { track: "video", time: s.time, last: end as i64 });
            }
        }
        let mut s = s;
        let mut t = s.time as u64;
        let first_ever = self.video.frag_start.is_none() && self.pending_video.is_none();
        if first_ever {
            // Both tracks start together: a player placed at the start of a
            // recording waits forever for a track that starts later.
            if let Some(a) = self.audio_anchor {
                if a < t && t - a <= START_ALIGNMENT {
                    t = a;
                    s.time = a as i64;
                }
            }
        }
        if self.video.samples.is_empty() {
            // A fragment starts at its first sample; one that starts less
            // than a frame after the previous fragment ended (a new
            // publisher session) is moved back onto it, keeping the
            // timeline contiguous.
            if let Some(end) = self.video.end() {
                if t > end && t - end <= u64::from(self.last_video_duration) {
                    t = end;
                    s.time = end as i64;
                }
            }
            self.video.frag_start = Some(t);
        } else {
            let elapsed = t.saturating_sub(self.video.frag_start.unwrap_or(t));
            if (s.keyframe && elapsed + self.config.cut_tolerance() >= self.config.fragment_duration)
                || elapsed >= self.config.max_fragment()
            {
                self.cut_video(t, &mut out.objects);
            }
        }
        let start = self.video.frag_start.unwrap_or(t);
        if s.keyframe {
            // Arrived before the boundary: ask again when it is reached.
            self.keyframe_requested = None;
        } else if t >= start + self.config.fragment_duration
            && self
                .keyframe_requested
                .is_none_or(|at| t >= at + self.config.keyframe_retry())
        {
            self.keyframe_requested = Some(t);
            out.keyframe_needed = true;
        }
        self.pending_video = Some(s);
        Ok(out)
    }

    fn add_video(&mut self, s: VideoSample, duration: u32) {
        self.video.frag_len += u64::from(duration);
        self.video.samples.push(FragmentSample { duration, keyframe: s.keyframe, composition_offset: 0, data: s.data });
    }

    fn cut_video(&mut self, at: u64, out: &mut Vec<PublishedObject>) {
        let with_init = self.with_init();
        if let Some(closed) = self.video.close() {
            // Contiguous: the fragment ends where the next sample starts.
            debug_assert_eq!(closed.chunk.end(), at);
            self.video.frag_start = Some(at);
            self.keyframe_requested = None;
            self.audio_cuts.push_back(at);
            if self.video.on_closed(closed, out, with_init) {
                self.write_manifests(ManifestMode::Live { dvr_window: self.config.dvr_window }, out);
            }
        }
    }

    fn audio_next_time(&self) -> Option<u64> {
        self.audio_anchor.map(|a| a + self.audio_offset(self.audio_frames))
    }

    fn audio_offset(&self, frames: u64) -> u64 {
        ((u128::from(frames) * u128::from(SAMPLES_PER_FRAME) * TIMESCALE as u128) / u128::from(self.audio_rate.max(1))) as u64
    }

    pub fn push_audio(&mut self, f: AudioFrame) -> Result<PushOutput, PackagerError> {
        if self.finished {
            return Err(PackagerError::Finished);
        }
        if f.time < 0 {
            return Err(PackagerError::NegativeTime { track: "audio", time: f.time });
        }
        let mut out = PushOutput::default();
        let frame = self.audio_offset(1).max(1);
        let time = f.time as u64;
        let t = match self.audio_next_time() {
            None => {
                // Both tracks start together (see push_video).
                // Video that started later and has written nothing yet (only
                // its first frame is pending) starts with the audio instead.
                if self.video.samples.is_empty() && self.video.held.is_none() && self.video.published.is_empty() {
                    if let Some(p) = self.pending_video.as_mut() {
                        let v = p.time as u64;
                        if time < v && v - time <= START_ALIGNMENT {
                            p.time = time as i64;
                            self.video.frag_start = Some(time);
                        }
                    }
                }
                let video_start = self.video.frag_start.or(self.pending_video.as_ref().map(|p| p.time as u64));
                let time = match video_start {
                    // Moving all audio earlier shifts A/V sync: only a little.
                    Some(v) if v < time && time - v <= START_ALIGNMENT / 5 => v,
                    _ => time,
                };
                self.audio_anchor = Some(time);
                self.audio_frames = 0;
                self.audio.frag_start = Some(time);
                time
            }
            Some(expected) if time > expected + 2 * frame => {
                // A gap (a new publisher session): close what we have and
                // re-anchor at the new time.
                self.cut_audio(&mut out.objects);
                self.audio_anchor = Some(time);
                self.audio_frames = 0;
                self.audio.frag_start = Some(time);
                time
            }
            Some(expected) if time + 2 * frame < expected => {
                return Err(PackagerError::NonMonotonic { track: "audio", time: f.time, last: expected as i64 });
            }
            Some(expected) => expected,
        };
        // Follow the video cuts that this frame has reached.
        let mut cut = false;
        while self.audio_cuts.front().is_some_and(|&c| c <= t) {
            self.audio_cuts.pop_front();
            cut = true;
        }
        let start = self.audio.frag_start.unwrap_or(t);
        if (cut || t.saturating_sub(start) >= self.config.max_fragment()) && !self.audio.samples.is_empty() {
            self.cut_audio(&mut out.objects);
        }
        let next = self.audio_anchor.unwrap_or(t) + self.audio_offset(self.audio_frames + 1);
        let duration = u32::try_from(next - t).unwrap_or(u32::MAX);
        self.audio_frames += 1;
        self.audio.frag_len += u64::from(duration);
        self.audio.samples.push(FragmentSample { duration, keyframe: true, composition_offset: 0, data: f.data });
        Ok(out)
    }

    fn cut_audio(&mut self, out: &mut Vec<PublishedObject>) {
        let with_init = self.with_init();
        if let Some(closed) = self.audio.close() {
            if self.audio.on_closed(closed, out, with_init) {
                self.write_manifests(ManifestMode::Live { dvr_window: self.config.dvr_window }, out);
            }
        }
    }

    /// Closes the current fragments at the end of a publisher session (the
    /// publisher left). Live manifests keep listing what was published; a
    /// later session continues from [`Presentation::end_time`].
    pub fn end_session(&mut self) -> PushOutput {
        let mut out = PushOutput::default();
        if self.finished {
            return out;
        }
        if let Some(p) = self.pending_video.take() {
            let d = self.last_video_duration;
            self.add_video(p, d);
        }
        if let Some(end) = self.video.frag_start.map(|s| s + self.video.frag_len) {
            self.cut_video(end, &mut out.objects);
        }
        self.audio_cuts.clear();
        self.cut_audio(&mut out.objects);
        out
    }

    /// Ends the presentation: the last fragments and the final on-demand
    /// manifests at the same keys.
    pub fn finish(&mut self) -> Outputs {
        let mut out = self.end_session().objects;
        if !self.finished {
            self.video.flush_held(&mut out);
            self.audio.flush_held(&mut out);
            self.write_manifests(ManifestMode::Final, &mut out);
            self.finished = true;
        }
        Outputs { objects: out }
    }

    fn write_manifests(&self, mode: ManifestMode, out: &mut Vec<PublishedObject>) {
        let tracks = [self.video.manifest(), self.audio.manifest()];
        let cache = match mode {
            ManifestMode::Live { .. } => layout::CACHE_LIVE_MANIFEST,
            ManifestMode::Final => layout::CACHE_FINAL_MANIFEST,
        };
        if self.config.smooth {
            out.push(PublishedObject {
                key: layout::SMOOTH_MANIFEST.to_owned(),
                content_type: layout::CT_SMOOTH_MANIFEST,
                cache_control: cache,
                body: Bytes::from(crate::manifest::smooth::write(&tracks, mode)),
            });
        }
        if self.config.dash {
            let end = tracks.iter().filter_map(|t| t.chunks.last()).map(Chunk::end).max().unwrap_or(0);
            let clock = DashClock {
                availability_start_unix_ms: self.config.availability_start_unix_ms,
                publish_unix_ms: self.config.availability_start_unix_ms + (end / 10_000) as i64,
                fragment_duration: self.config.fragment_duration,
            };
            out.push(PublishedObject {
                key: layout::DASH_MANIFEST.to_owned(),
                content_type: layout::CT_DASH_MANIFEST,
                cache_control: cache,
                body: Bytes::from(crate::manifest::dash::write(&tracks, mode, clock)),
            });
        }
        if self.config.hls {
            for (key, body) in crate::manifest::hls::write(&tracks, mode) {
                out.push(PublishedObject { key, content_type: layout::CT_HLS_PLAYLIST, cache_control: cache, body: Bytes::from(body) });
            }
        }
    }
}
