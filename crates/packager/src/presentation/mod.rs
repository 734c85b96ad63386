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
//! one audio frame. Audio times come from the count of samples since the
//! track's anchor (1024 per AAC frame, what its TOC says per Opus packet),
//! so the audio timeline is contiguous and exact.
//!
//! Publishing and `tfrf`: objects in S3 cannot be edited, so a live
//! fragment's `tfrf` (which announces the next fragment to players that
//! never re-read a live manifest) is written with the fragment. A fragment
//! closes when the first sample of the next one arrives, so the next one's
//! start is known exactly; its duration is not, and the `tfrf` carries the
//! closing fragment's own as the expected one. Players take the start as
//! given and correct a fragment's duration from its successor's start
//! (dash.js: "Patch segment duration"); manifests list exact durations. A
//! fragment is therefore published as it closes, and available one
//! fragment sooner than if it waited for its successor to close. Only the
//! fragment closed at the end of a publisher session, whose successor may
//! never come, waits: for the next session's first fragment, which it then
//! announces, or for the end (an empty `tfrf`). The live manifest lists
//! only published fragments.
//!
//! Quality levels: a video track may have several levels (browser
//! simulcast: one encoding per level). Smooth Streaming lists one fragment
//! timeline per track, shared by its levels, so the first level leads: its
//! keyframes decide the cuts, as above. Every other level follows the
//! leader's fragments (see [`Follower`]): a sample belongs to the fragment
//! whose span holds it (within half a frame, as the encodings' clocks are
//! mapped separately), the first sample of a fragment is placed at the
//! fragment's start and the last one lasts until its end, so each level's
//! fragments have exactly the leader's times and durations. A fragment is
//! listed in the manifests once every level has published it (a level
//! more than three fragments behind is built with what it has). From its
//! first keyframe on, a level writes every span: one it sent nothing for
//! (a paused simulcast layer) shows its last keyframe, as do its predicted
//! frames after a pause until its next keyframe. Keyframe requests are for
//! every level.

mod follower;
mod track;
pub mod types;

use std::collections::VecDeque;

use bytes::Bytes;

use crate::bmff::{FragmentSample, TrackKind};
use crate::codec::aac::AudioConfig;
use crate::codec::h264::{avc_decoder_configuration, codec_private_data, parse_sps};
use crate::codec::opus::{self, OpusConfig};
use crate::layout::{self, PublishedObject};
use crate::manifest::dash::DashClock;
use crate::manifest::{Chunk, LevelDetail, LevelInfo, ManifestMode, TrackManifest};
use crate::{TIMESCALE, TrackType};
use follower::Follower;
use track::{BitrateBounds, LevelOutput, Track};
pub use types::*;

/// The longest a session's last picture is held to meet the end of its
/// audio (1 s).
const MAX_LAST_PICTURE: u64 = TIMESCALE as u64;

/// The longest frame [`Presentation::follower_tolerance`] takes (100 ms).
const MAX_FRAME_FOR_TOLERANCE: u32 = (TIMESCALE / 10) as u32;

/// How many video fragments the first live manifest waits for audio: a
/// publisher whose audio never comes still goes live, without audio.
const AUDIO_WAIT_FRAGMENTS: usize = 3;

#[derive(Debug)]
pub struct Presentation {
    config: PresentationConfig,
    video: Track,
    /// Video levels after the first.
    followers: Vec<Follower>,
    audio: Track,
    /// What the manifests last written list: (video, audio) fragments.
    listed: (usize, usize),
    /// The live manifests last written, by key: one that would be written
    /// again unchanged is not (a video fragment leaves the audio playlist
    /// as it was, an audio one the video playlist; the multivariant
    /// playlist rarely changes): fewer store writes (S3 requests, local
    /// files) at every fragment boundary.
    live_manifests: Vec<(String, Bytes)>,
    pending_video: Option<VideoSample>,
    last_video_duration: u32,
    /// When a keyframe was last requested in the current fragment.
    keyframe_requested: Option<u64>,
    /// Video cut times the audio track has yet to follow.
    audio_cuts: VecDeque<u64>,
    audio_config: AudioTrackConfig,
    audio_anchor: Option<u64>,
    /// Samples (per channel) placed since the anchor.
    audio_samples: u64,
    /// How far the track's first audio was moved back onto the video's
    /// start, when no silence could fill the span: later frames are moved
    /// as much, so the track stays contiguous.
    audio_shift: u64,
    /// A silent AAC frame ([`Presentation::set_audio_silence`]).
    audio_silence: Option<Bytes>,
    finished: bool,
}

impl Presentation {
    /// A presentation with one video quality level.
    pub fn new(config: PresentationConfig, video: VideoTrackConfig, audio: AudioTrackConfig) -> Result<Self, PackagerError> {
        Self::with_video_levels(config, vec![video], audio)
    }

    /// A presentation whose video has several quality levels (level 0
    /// first: it decides the fragment times), each pushed with
    /// [`Presentation::push_video_level`].
    pub fn with_video_levels(
        config: PresentationConfig,
        videos: Vec<VideoTrackConfig>,
        audio: AudioTrackConfig,
    ) -> Result<Self, PackagerError> {
        let mut levels = Vec::with_capacity(videos.len());
        for (i, video) in videos.iter().enumerate() {
            if video.bitrate != MEASURED_BITRATE && videos[..i].iter().any(|v| v.bitrate == video.bitrate) {
                return Err(PackagerError::DuplicateBitrate(video.bitrate));
            }
            let sps = parse_sps(&video.sps)?;
            let avcc = avc_decoder_configuration(&video.sps, &video.pps)?;
            levels.push(LevelOutput::new(
                TrackType::Video,
                LevelInfo {
                    bitrate: video.bitrate,
                    codecs: sps.codec_string(),
                    codec_private_data: codec_private_data(&video.sps, &video.pps),
                    detail: LevelDetail::Video { width: sps.width, height: sps.height },
                },
                TrackKind::Video { width: sps.width as u16, height: sps.height as u16, avcc },
            ));
        }
        let mut levels = levels.into_iter();
        let Some(leader) = levels.next() else {
            return Err(PackagerError::NoVideoLevel);
        };
        let followers = levels.map(Follower::new).collect();
        let detail = LevelDetail::Audio { sample_rate: audio.sample_rate, channels: audio.channels, codec: audio.codec };
        let (codecs, codec_private_data, entry) = match audio.codec {
            AudioCodec::Aac => {
                let aac = AudioConfig::aac_lc(audio.sample_rate, audio.channels)?;
                let entry = TrackKind::Aac {
                    sample_rate: audio.sample_rate,
                    channels: audio.channels,
                    audio_specific_config: aac.audio_specific_config()?,
                    bitrate: audio.bitrate,
                };
                (aac.codec_string(), aac.codec_private_data()?, entry)
            }
            AudioCodec::Opus => {
                if audio.sample_rate != opus::SAMPLE_RATE {
                    return Err(opus::OpusError::BadConfig("an Opus track is 48 kHz").into());
                }
                let config = OpusConfig::new(audio.channels)?;
                (opus::CODECS.to_owned(), config.codec_private_data(), TrackKind::Opus { channels: audio.channels, dops: config.dops() })
            }
        };
        let video_track = Track { level: leader, frag_start: None, samples: Vec::new(), frag_len: 0, held: None, published: Vec::new() };
        let audio_track = Track::new(TrackType::Audio, LevelInfo { bitrate: audio.bitrate, codecs, codec_private_data, detail }, entry);
        Ok(Presentation {
            config,
            video: video_track,
            followers,
            audio: audio_track,
            listed: (0, 0),
            live_manifests: Vec::new(),
            pending_video: None,
            last_video_duration: (TIMESCALE / 30) as u32,
            keyframe_requested: None,
            audio_cuts: VecDeque::new(),
            audio_config: audio,
            audio_anchor: None,
            audio_samples: 0,
            audio_shift: 0,
            audio_silence: None,
            finished: false,
        })
    }

    /// A presentation that continues a stored one (its packager is gone: a
    /// node restart, a restarted stream task): `stored` is what storage
    /// holds, per track, as [`crate::recovery::stored_chunks`] reads it
    /// back. New samples go after its end (the caller places them there,
    /// from [`Presentation::end_time`]); no stored key is written again but
    /// the manifests, which list the stored fragments first.
    pub fn resume(
        config: PresentationConfig,
        video: VideoTrackConfig,
        audio: AudioTrackConfig,
        stored: Stored,
    ) -> Result<Self, PackagerError> {
        Self::resume_levels(config, vec![video], audio, stored)
    }

    /// [`Presentation::resume`] with every stored video quality level
    /// (level 0 first, as stored), each continuing its own keys.
    pub fn resume_levels(
        config: PresentationConfig,
        videos: Vec<VideoTrackConfig>,
        audio: AudioTrackConfig,
        stored: Stored,
    ) -> Result<Self, PackagerError> {
        let mut p = Self::with_video_levels(config, videos, audio)?;
        let n = stored.video.len();
        for f in &mut p.followers {
            f.level.init_published = n > 0;
            f.level.sequence = u32::try_from(n).unwrap_or(u32::MAX);
            f.published = n;
        }
        for (track, chunks) in [(&mut p.video, stored.video), (&mut p.audio, stored.audio)] {
            // The stored fragments' initialization segments are there too.
            track.level.init_published = !chunks.is_empty();
            track.level.sequence = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
            track.published = chunks;
        }
        p.listed = (p.video.published.len(), p.audio.published.len());
        Ok(p)
    }

    /// A continued presentation's first level had shown a larger picture
    /// than its first SPS (the stored manifest's `MaxWidth`/`MaxHeight`):
    /// its manifests keep giving it.
    pub fn video_picture_at_least(&mut self, width: u32, height: u32) {
        self.video_level_picture_at_least(0, width, height);
    }

    /// [`Presentation::video_picture_at_least`] for video level `level`.
    pub fn video_level_picture_at_least(&mut self, level: usize, width: u32, height: u32) {
        let info = match level {
            0 => &mut self.video.level.info,
            i => match self.followers.get_mut(i - 1) {
                Some(f) => &mut f.level.info,
                None => return,
            },
        };
        if let LevelDetail::Video { width: w, height: h } = &mut info.detail
            && u64::from(width) * u64::from(height) > u64::from(*w) * u64::from(*h)
        {
            (*w, *h) = (width, height);
        }
    }

    /// Each video level's picture as its initialization segment gives it
    /// (its first SPS), level 0 first.
    pub fn video_level_pictures(&self) -> Vec<(u32, u32)> {
        std::iter::once(&self.video.level)
            .chain(self.followers.iter().map(|f| &f.level))
            .map(|l| match &l.init {
                TrackKind::Video { width, height, .. } => (u32::from(*width), u32::from(*height)),
                _ => (0, 0),
            })
            .collect()
    }

    fn with_init(&self) -> bool {
        self.config.dash || self.config.hls
    }

    /// Where the presentation ends so far: a new publisher session
    /// continues the timeline from here.
    pub fn end_time(&self) -> u64 {
        let v = self.pending_video.as_ref().map(|p| p.time as u64 + u64::from(self.last_video_duration));
        [v, self.video.end(), self.audio.end(), self.audio_next_time()].into_iter().flatten().max().unwrap_or(0)
    }

    /// Fragments published so far, per track (video, audio).
    pub fn published(&self) -> (&[Chunk], &[Chunk]) {
        (&self.video.published, &self.audio.published)
    }

    /// The number of video quality levels.
    pub fn video_levels(&self) -> usize {
        1 + self.followers.len()
    }

    /// A sample of video quality level `level` (0: the first, which
    /// [`Presentation::push_video`] takes).
    pub fn push_video_level(&mut self, level: usize, s: VideoSample) -> Result<PushOutput, PackagerError> {
        if level == 0 {
            return self.push_video(s);
        }
        if self.finished {
            return Err(PackagerError::Finished);
        }
        let tolerance = self.follower_tolerance();
        let floor = self.video.frag_start;
        let max_fragment = self.config.max_fragment();
        let f = self.followers.get_mut(level - 1).ok_or(PackagerError::NoSuchLevel(level))?;
        if s.keyframe {
            grow_picture(&mut f.level.info, &s.data);
        }
        f.push(s)?;
        match floor {
            Some(floor) => f.drop_before(floor, tolerance),
            // The leader has not started: keep a bounded span.
            None => {
                let newest = f.last_time.unwrap_or(0);
                while f.pending.front().is_some_and(|p| p.time + max_fragment < newest) {
                    f.pending.pop_front();
                }
            }
        }
        let mut out = PushOutput::default();
        f.build(tolerance, false);
        out.keyframe_needed = std::mem::take(&mut f.keyframe_needed);
        self.publish_followers(&mut out.objects, false);
        self.update_manifests(&mut out.objects);
        Ok(out)
    }

    /// The bounds of a measured video level's bitrate (of picture `area`)
    /// by the levels already measured (see [`MEASURED_BITRATE`]): room is
    /// left for the levels between still to be measured.
    fn bitrate_bounds(&self, area: u64) -> BitrateBounds {
        let levels: Vec<&LevelOutput> = std::iter::once(&self.video.level).chain(self.followers.iter().map(|f| &f.level)).collect();
        let fixed: Vec<(u64, u32)> = levels.iter().filter(|l| !l.measuring()).map(|l| (l.init_area(), l.info.bitrate)).collect();
        let unmeasured_between =
            |lo: u64, hi: u64| levels.iter().filter(|l| l.measuring() && l.init_area() > lo && l.init_area() < hi).count() as u32;
        let floor = fixed
            .iter()
            .filter(|(a, _)| *a < area)
            .map(|(a, b)| b.saturating_add(1000 * (1 + unmeasured_between(*a, area))))
            .max()
            .unwrap_or(0);
        let cap = fixed
            .iter()
            .filter(|(a, _)| *a > area)
            .map(|(a, b)| b.saturating_sub(1000 * (1 + unmeasured_between(area, *a))))
            .min()
            .unwrap_or(u32::MAX);
        BitrateBounds { floor, cap, taken: fixed.into_iter().map(|(_, b)| b).collect() }
    }

    /// Fixes level 0's bitrate, if measured, by its first fragment: over
    /// its duration, at least half the fragment duration (a first fragment
    /// cut short by the publisher leaving is mostly its keyframe).
    fn fix_leader_bitrate(&mut self, samples: &[FragmentSample], duration: u64) {
        if self.video.level.measuring() {
            let bytes = samples.iter().map(|s| s.data.len() as u64).sum::<u64>();
            let bounds = self.bitrate_bounds(self.video.level.init_area());
            self.video.level.fix_bitrate(bytes, duration.max(self.config.fragment_duration / 2), bounds);
        }
    }

    /// Publishes what the following levels have built (`finished`: all of
    /// it), each measured level's bitrate fixed by its first fragment
    /// with samples before anything of it is written.
    fn publish_followers(&mut self, out: &mut Vec<PublishedObject>, finished: bool) {
        let with_init = self.with_init();
        for i in 0..self.followers.len() {
            if self.followers[i].level.measuring() {
                let first = self.followers[i].built.iter().find(|(_, _, s)| !s.is_empty());
                if let Some((chunk, _, samples)) = first {
                    let bytes = samples.iter().map(|s| s.data.len() as u64).sum::<u64>();
                    // From its first sample's own time (a level whose
                    // layer began within the fragment), at least half
                    // the fragment duration.
                    let from = self.followers[i].first_sample_time.unwrap_or(chunk.start).clamp(chunk.start, chunk.end());
                    let span = (chunk.end() - from).max(self.config.fragment_duration / 2);
                    let bounds = self.bitrate_bounds(self.followers[i].level.init_area());
                    self.followers[i].level.fix_bitrate(bytes, span, bounds);
                }
            }
            self.followers[i].publish(out, with_init, finished);
        }
    }

    /// A following level's sample this close to a fragment boundary
    /// belongs to the fragment after it: half a frame (of level 0's last
    /// frame, at most 100 ms: a pause of level 0 lasts longer, and must
    /// not move the other levels' frames across the boundary).
    fn follower_tolerance(&self) -> u64 {
        u64::from(self.last_video_duration.min(MAX_FRAME_FOR_TOLERANCE) / 2)
    }

    pub fn push_video(&mut self, s: VideoSample) -> Result<PushOutput, PackagerError> {
        if self.finished {
            return Err(PackagerError::Finished);
        }
        if s.time < 0 {
            return Err(PackagerError::NegativeTime { track: "video", time: s.time });
        }
        let mut out = PushOutput::default();
        // Whether the closed fragment's `tfrf` already announced `s`'s time
        // as the next start: then the next fragment starts there, exactly.
        let mut announced = false;
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
                    self.cut_video(end, Some(s.time as u64), &mut out.objects);
                    announced = true;
                }
            } else {
                self.last_video_duration = delta as u32;
                self.add_video(p, delta as u32);
            }
        } else if let Some(end) = self.video.end()
            && (s.time as u64) < end
        {
            return Err(PackagerError::NonMonotonic { track: "video", time: s.time, last: end as i64 });
        }
        let mut s = s;
        let mut t = s.time as u64;
        let first_ever = self.video.frag_start.is_none() && self.pending_video.is_none();
        if first_ever {
            // Both tracks start together: a player placed at the start of a
            // recording waits forever for a track that starts later.
            if let Some(a) = self.audio_anchor
                && a < t
                && t - a <= START_ALIGNMENT
            {
                t = a;
                s.time = a as i64;
            }
        }
        if self.video.samples.is_empty() {
            // A fragment starts at its first sample; one that starts less
            // than a frame after the previous fragment ended (a new
            // publisher session) is moved back onto it, keeping the
            // timeline contiguous; after a gap in one session, where the
            // fragment before announced this sample's time, it stays.
            if !announced
                && let Some(end) = self.video.end()
                && t > end
                && t - end <= u64::from(self.last_video_duration)
            {
                t = end;
                s.time = end as i64;
            }
            self.video.frag_start = Some(t);
        } else {
            let elapsed = t.saturating_sub(self.video.frag_start.unwrap_or(t));
            if (s.keyframe && elapsed + self.config.cut_tolerance() >= self.config.fragment_duration)
                || elapsed >= self.config.max_fragment()
            {
                self.cut_video(t, Some(t), &mut out.objects);
            }
        }
        let start = self.video.frag_start.unwrap_or(t);
        if s.keyframe {
            // Arrived before the boundary: ask again when it is reached.
            self.keyframe_requested = None;
        } else if t >= start + self.config.fragment_duration
            && self.keyframe_requested.is_none_or(|at| t >= at + self.config.keyframe_retry())
        {
            self.keyframe_requested = Some(t);
            out.keyframe_needed = true;
        }
        self.pending_video = Some(s);
        Ok(out)
    }

    fn add_video(&mut self, s: VideoSample, duration: u32) {
        if s.keyframe {
            grow_picture(&mut self.video.level.info, &s.data);
        }
        self.video.frag_len += u64::from(duration);
        self.video.samples.push(FragmentSample { duration, keyframe: s.keyframe, composition_offset: 0, data: s.data });
    }

    /// Closes the video fragment at `at`; the next one starts at
    /// `next_start` when a sample of it has arrived (see the module
    /// documentation).
    fn cut_video(&mut self, at: u64, next_start: Option<u64>, out: &mut Vec<PublishedObject>) {
        let with_init = self.with_init();
        if let Some(closed) = self.video.close() {
            // Contiguous: the fragment ends where the next sample starts.
            debug_assert_eq!(closed.chunk.end(), at);
            self.video.frag_start = Some(at);
            self.keyframe_requested = None;
            self.audio_cuts.push_back(at);
            let tolerance = self.follower_tolerance();
            for f in &mut self.followers {
                f.to_build.push_back((closed.chunk, next_start));
                f.build(tolerance, false);
            }
            self.fix_leader_bitrate(&closed.samples, closed.chunk.duration);
            self.video.on_closed(closed, next_start, out, with_init);
            self.publish_followers(out, false);
            self.update_manifests(out);
        }
    }

    /// Fragments every video level has published.
    fn video_listed(&self) -> usize {
        self.followers.iter().map(|f| f.published).fold(self.video.published.len(), usize::min)
    }

    /// Rewrites the live manifests when they would list more. The first
    /// live manifest waits until both tracks have a fragment listed, as a
    /// track without fragments breaks players (dash.js throws on a
    /// StreamIndex without `c`, and never re-reads a live Smooth manifest);
    /// audio that has not come by the third video fragment is left out
    /// (see [`Presentation::write_manifests`]).
    fn update_manifests(&mut self, out: &mut Vec<PublishedObject>) {
        let now = (self.video_listed(), self.audio.published.len());
        if now.0 == 0 || (now.1 == 0 && now.0 < AUDIO_WAIT_FRAGMENTS) {
            return;
        }
        if now != self.listed {
            self.listed = now;
            let mut manifests = Vec::new();
            self.write_manifests(ManifestMode::Live { dvr_window: self.config.dvr_window }, &mut manifests);
            for m in manifests {
                match self.live_manifests.iter_mut().find(|(key, _)| *key == m.key) {
                    Some((_, last)) if *last == m.body => {}
                    Some((_, last)) => {
                        *last = m.body.clone();
                        out.push(m);
                    }
                    None => {
                        self.live_manifests.push((m.key.clone(), m.body.clone()));
                        out.push(m);
                    }
                }
            }
        }
    }

    fn audio_next_time(&self) -> Option<u64> {
        self.audio_anchor.map(|a| a + self.audio_offset(self.audio_samples))
    }

    /// `samples` audio samples on the timeline (100 ns units).
    fn audio_offset(&self, samples: u64) -> u64 {
        ((u128::from(samples) * TIMESCALE as u128) / u128::from(self.audio_config.sample_rate.max(1))) as u64
    }

    pub fn push_audio(&mut self, f: AudioFrame) -> Result<PushOutput, PackagerError> {
        if self.finished {
            return Err(PackagerError::Finished);
        }
        if f.time < 0 {
            return Err(PackagerError::NegativeTime { track: "audio", time: f.time });
        }
        let samples = self.audio_config.frame_samples(&f.data)?;
        let mut out = PushOutput::default();
        let frame = self.audio_offset(u64::from(samples)).max(1);
        // Audio moved back onto the video's start stays moved (without a
        // filler frame, below), all of it.
        let time = (f.time as u64).saturating_sub(self.audio_shift);
        let t = match self.audio_next_time() {
            None => {
                // Both tracks start together (see push_video).
                // Video that started later and has written nothing yet (only
                // its first frame is pending) starts with the audio instead.
                if self.video.samples.is_empty()
                    && self.video.held.is_none()
                    && self.video.published.is_empty()
                    && let Some(p) = self.pending_video.as_mut()
                {
                    let v = p.time as u64;
                    if time < v && v - time <= START_ALIGNMENT {
                        p.time = time as i64;
                        self.video.frag_start = Some(time);
                    }
                }
                let video_start = self.video.frag_start.or(self.pending_video.as_ref().map(|p| p.time as u64));
                match video_start {
                    // Audio that starts shortly after video: silence from
                    // the video's start (whole frames), so the tracks start
                    // together and stay in sync (within a frame).
                    Some(v) if v < time && time - v <= START_ALIGNMENT / 5 => {
                        self.audio_anchor = Some(v);
                        self.audio_samples = 0;
                        self.audio.frag_start = Some(v);
                        match self.audio_filler(&f.data) {
                            Some((filler, n)) => {
                                let frames = (time - v) / self.audio_offset(u64::from(n)).max(1);
                                for _ in 0..frames {
                                    self.push_audio_sample(n, filler.clone());
                                }
                            }
                            // No filler: all audio is moved earlier by as
                            // much, which shifts A/V sync (a little).
                            None => self.audio_shift = time - v,
                        }
                        self.audio_next_time().unwrap_or(v)
                    }
                    _ => {
                        self.audio_anchor = Some(time);
                        self.audio_samples = 0;
                        self.audio.frag_start = Some(time);
                        time
                    }
                }
            }
            Some(expected) if time > expected + 2 * frame => {
                // A gap (a new publisher session): close what we have and
                // re-anchor at the new time, unshifted.
                let time = f.time as u64;
                self.audio_shift = 0;
                self.cut_audio(Some(time), &mut out.objects);
                self.audio_anchor = Some(time);
                self.audio_samples = 0;
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
            self.cut_audio(Some(t), &mut out.objects);
        }
        self.push_audio_sample(samples, f.data);
        Ok(out)
    }

    /// Appends one audio frame of `samples` at the track's next place (its
    /// anchor is set), lasting until the place of the frame after it.
    fn push_audio_sample(&mut self, samples: u32, data: Bytes) {
        let t = self.audio_next_time().unwrap_or(0);
        self.audio_samples += u64::from(samples);
        let next = self.audio_next_time().unwrap_or(t);
        let duration = u32::try_from(next.saturating_sub(t)).unwrap_or(u32::MAX);
        self.audio.frag_len += u64::from(duration);
        self.audio.samples.push(FragmentSample { duration, keyframe: true, composition_offset: 0, data });
    }

    /// A frame of silence for the audio track, and its samples: an Opus
    /// packet with an empty frame in the mode of `like` (decoders conceal
    /// it), or the AAC frame the caller gave ([`Presentation::set_audio_silence`]).
    fn audio_filler(&self, like: &[u8]) -> Option<(Bytes, u32)> {
        match self.audio_config.codec {
            AudioCodec::Opus => opus::lost_packets(960, like.first().copied()).into_iter().next(),
            AudioCodec::Aac => self.audio_silence.clone().map(|s| (s, crate::codec::aac::SAMPLES_PER_FRAME)),
        }
    }

    /// A silent AAC frame of the audio track's configuration (the caller's
    /// encoder makes it): audio that starts shortly after video is preceded
    /// by silence from the video's start, instead of being moved earlier.
    pub fn set_audio_silence(&mut self, frame: Bytes) {
        self.audio_silence = Some(frame);
    }

    fn cut_audio(&mut self, next_start: Option<u64>, out: &mut Vec<PublishedObject>) {
        let with_init = self.with_init();
        if let Some(closed) = self.audio.close() {
            self.audio.on_closed(closed, next_start, out, with_init);
            self.update_manifests(out);
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
        // A later session's audio is placed as it comes.
        self.audio_shift = 0;
        if let Some(p) = self.pending_video.take() {
            // The last picture lasts until the audio ends (up to
            // `MAX_LAST_PICTURE`): both tracks then end at the same time,
            // players reach the end of both (a player waits at the end of
            // the shorter one, and may never fire `ended`), and a later
            // session continues both without a hole in the video.
            let start = p.time as u64;
            let nominal = u64::from(self.last_video_duration);
            let d = match self.audio_next_time() {
                Some(audio_end) if audio_end > start && audio_end - start <= MAX_LAST_PICTURE => audio_end - start,
                _ => nominal,
            };
            self.add_video(p, u32::try_from(d).unwrap_or(self.last_video_duration));
        }
        // The next fragments' starts are not known: they are held.
        if let Some(end) = self.video.frag_start.map(|s| s + self.video.frag_len) {
            self.cut_video(end, None, &mut out.objects);
        }
        self.audio_cuts.clear();
        self.cut_audio(None, &mut out.objects);
        // No more samples of this session: following levels build what
        // they have.
        let tolerance = self.follower_tolerance();
        for f in &mut self.followers {
            f.build(tolerance, true);
        }
        self.publish_followers(&mut out.objects, false);
        self.update_manifests(&mut out.objects);
        out
    }

    /// Ends the presentation: the last fragments and the final on-demand
    /// manifests at the same keys.
    pub fn finish(&mut self) -> Outputs {
        let mut out = self.end_session().objects;
        if !self.finished {
            // (Level 0's bitrate is fixed as its first fragment closes, in
            // `cut_video`, before anything of it is held or written.)
            self.video.flush_held(&mut out);
            self.audio.flush_held(&mut out);
            let tolerance = self.follower_tolerance();
            for f in &mut self.followers {
                f.build(tolerance, true);
            }
            self.publish_followers(&mut out, true);
            self.write_manifests(ManifestMode::Final, &mut out);
            self.finished = true;
        }
        Outputs { objects: out }
    }

    fn write_manifests(&self, mode: ManifestMode, out: &mut Vec<PublishedObject>) {
        // A level whose bitrate is still to be measured has written
        // nothing (it is named by its bitrate): not listed yet.
        let levels: Vec<LevelInfo> = std::iter::once(&self.video.level)
            .chain(self.followers.iter().map(|f| &f.level))
            .filter(|l| !l.measuring())
            .map(|l| l.info.clone())
            .collect();
        let video_chunks = match mode {
            ManifestMode::Live { .. } => &self.video.published[..self.video_listed()],
            ManifestMode::Final => &self.video.published[..],
        };
        // A track with no fragment (no audio came) is not listed at all.
        let tracks: Vec<TrackManifest> = [
            TrackManifest { track: TrackType::Video, levels, chunks: video_chunks.to_vec() },
            TrackManifest { track: TrackType::Audio, levels: vec![self.audio.level.info.clone()], chunks: self.audio.published.clone() },
        ]
        .into_iter()
        .filter(|t| !t.chunks.is_empty())
        .collect();
        let cache = match mode {
            ManifestMode::Live { .. } => layout::CACHE_LIVE_MANIFEST,
            ManifestMode::Final => layout::CACHE_FINAL_MANIFEST,
        };
        out.push(PublishedObject {
            key: layout::SMOOTH_MANIFEST.to_owned(),
            content_type: layout::CT_SMOOTH_MANIFEST,
            cache_control: cache,
            body: Bytes::from(crate::manifest::smooth::write(&tracks, mode)),
        });
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

/// A keyframe's in-band SPS (AVCC: 4-byte lengths) with a larger picture
/// than a level's manifests say (its publisher scaled up, or a simulcast
/// recording moved to a larger layer): the manifests give the largest
/// (Smooth `MaxWidth`/`MaxHeight`, DASH `@width`/`@height`, HLS
/// `RESOLUTION`: what a player sizes its display for). The initialization
/// segment and CodecPrivateData keep the first; decoders take the
/// in-band one.
fn grow_picture(info: &mut LevelInfo, avcc: &[u8]) {
    let LevelDetail::Video { width, height } = &mut info.detail else { return };
    let (mut width, mut height) = (*width, *height);
    let mut rest = avcc;
    while let [a, b, c, d, tail @ ..] = rest {
        let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
        let Some((nal, after)) = (len <= tail.len()).then(|| tail.split_at(len)) else { return };
        if nal.first().is_some_and(|h| h & 0x1f == 7)
            && let Ok(sps) = parse_sps(nal)
            && u64::from(sps.width) * u64::from(sps.height) > u64::from(width) * u64::from(height)
        {
            (width, height) = (sps.width, sps.height);
            info.detail = LevelDetail::Video { width, height };
            // Its profile and level too (a larger picture needs a higher
            // level): what the DASH and HLS manifests name.
            info.codecs = sps.codec_string();
        }
        rest = after;
    }
}
