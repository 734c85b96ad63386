//! The recorder: one per stream on a node. It takes the stream's samples
//! (after depacketizing, and transcoding for audio), packages them, hands
//! the objects to the uploader, and moves the stream through its states:
//! `Ready -> Live` on the first media, `Stopping -> OnDemand` once the
//! on-demand presentation is written.

use std::sync::Arc;

use futures::FutureExt;

use bytes::Bytes;
use mediastreams_model::{IngestStats, StreamState, Transition};
use mediastreams_packager::recovery;
use mediastreams_packager::{
    AudioCodec, AudioFrame, AudioTrackConfig, MEASURED_BITRATE, PackagerError, Presentation, PresentationConfig, START_ALIGNMENT,
    VideoSample, VideoTrackConfig,
};
use mediastreams_storage::{ObjectStore, RepoError, StreamRepo, recording};
use time::OffsetDateTime;

use crate::media::audio::Channels;
use crate::node::Generation;
use crate::uploader::{StoreReport, UploadError, UploadStats, Uploader, UploaderConfig, UploaderTask};

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("no stream named {0:?}")]
    NoStream(String),
    #[error("stream {name:?} is {state}; it does not accept media")]
    NotAccepting { name: String, state: StreamState },
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Packager(#[from] PackagerError),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("media store: {0}")]
    Store(String),
    #[error("audio transcoding: {0}")]
    Audio(String),
    #[error("stream {0:?} was deleted or admitted again since this recording began")]
    Superseded(String),
    #[error("the stored recording cannot be continued: {0}")]
    Unresumable(String),
}

/// The audio codec of a new recording: the publisher's Opus as sent (no
/// transcoding) when every output is DASH, whose players (dash.js in
/// Chromium, Firefox and Edge, GStreamer, libavformat) decode Opus in
/// fragmented MP4; else AAC-LC: Smooth Streaming players take nothing
/// else, and Apple's players of HLS take no Opus (Apple's HLS authoring
/// specification lists AAC, not Opus; hls.js would play it).
/// `passthrough` off (a fleet not yet all on a version that reads Opus
/// tracks: `NodeConfig::opus_passthrough`): AAC always.
pub fn audio_codec_for(outputs: &[mediastreams_model::OutputSpec], passthrough: bool) -> AudioCodec {
    let dash_only = !outputs.is_empty() && outputs.iter().all(|o| o.format == mediastreams_model::OutputFormat::Dash);
    if dash_only && passthrough { AudioCodec::Opus } else { AudioCodec::Aac }
}

/// The audio track of a recording in `codec` with `channels` (a new
/// recording's is stereo until a publisher says otherwise). The bitrate
/// names the track's objects (`QualityLevels({bitrate})`): AAC's is what
/// it is encoded at; Opus's is nominal (48 kb/s a channel: browsers send
/// about 32 kb/s from a microphone, OBS more), chosen so that an Opus
/// track and an AAC track never share a key.
pub fn audio_track(codec: AudioCodec, channels: Channels) -> AudioTrackConfig {
    let bitrate = match codec {
        AudioCodec::Aac => channels.aac_bitrate(),
        AudioCodec::Opus => OPUS_NOMINAL_BITRATE_PER_CHANNEL * channels.count() as u32,
    };
    AudioTrackConfig { codec, bitrate, channels: channels.count() as u16, sample_rate: 48_000 }
}

/// A presentation whose AAC audio that starts shortly after its video is
/// preceded by silence from the video's start (in sync), not moved earlier.
fn with_silence(mut p: Presentation, audio: AudioTrackConfig) -> Presentation {
    if audio.codec == AudioCodec::Aac
        && let Some(channels) = Channels::from_count(audio.channels)
    {
        match crate::media::audio::silent_aac_frame(channels, audio.bitrate) {
            Ok(frame) => p.set_audio_silence(frame),
            Err(e) => tracing::warn!(error = %e, "no silent AAC frame; late audio is moved earlier instead"),
        }
    }
    p
}

/// See [`audio_track`].
pub const OPUS_NOMINAL_BITRATE_PER_CHANNEL: u32 = 48_000;

/// Least time between two attempts at `Ready -> Live` while the table
/// fails.
const LIVE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// Backoff of the final transitions while the table fails.
const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// Audio kept while no picture has come: 10 s of 20 ms Opus packets
/// (10.7 s of AAC frames).
const EARLY_AUDIO_FRAMES: usize = 500;

fn unix_ms_now() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub struct Recorder {
    repo: StreamRepo,
    name: String,
    generation: Generation,
    config: PresentationConfig,
    video_bitrate: u32,
    presentation: Option<Presentation>,
    /// A new recording's video quality levels (each layer of a simulcast
    /// publisher: SPS and PPS, smallest picture first), settled before its
    /// first picture; without them, one level from the first keyframe.
    video_plan: Option<Vec<(Bytes, Bytes)>>,
    /// The node's time of the presentation's position 0: its first kept
    /// sample. Players expect a recording to start at 0 (dash.js shifts a
    /// Smooth recording that does not, but not its `tfdt`s, and then cuts
    /// its end off), so every sample is moved back by this much.
    origin: i64,
    /// Audio that arrived before the first video keyframe (which carries the
    /// decoder configuration the presentation needs).
    early_audio: std::collections::VecDeque<AudioFrame>,
    /// The recording's audio track; `audio_fixed` once the recording has
    /// one (stored, or the presentation made), before that the current
    /// publisher's channels.
    audio: AudioTrackConfig,
    audio_fixed: bool,
    live: bool,
    /// When `Ready -> Live` may be tried again (it failed).
    next_live_attempt: Option<std::time::Instant>,
    /// `Ready -> Live` in flight: `Ok` once the stream is `Live` (or has
    /// left `Ready` otherwise).
    live_attempt: Option<tokio::task::JoinHandle<Result<(), ()>>>,
    /// Where a continued recording's stored fragments end (the timeline
    /// position the next session starts at).
    continues_at: i64,
    uploader: Uploader,
    task: UploaderTask,
}

impl Recorder {
    /// Opens the recorder of a stream that is `Ready` or `Live` in
    /// `generation`. A `Live` stream already has media (its node restarted,
    /// or its stream task did): the presentation continues after the last
    /// stored fragment, and no stored key is written again but the
    /// manifests.
    pub async fn open(
        repo: StreamRepo,
        store: Arc<dyn ObjectStore>,
        name: &str,
        generation: &Generation,
        video_bitrate: u32,
        uploads: UploaderConfig,
        opus_passthrough: bool,
    ) -> Result<Recorder, RecorderError> {
        let s = repo.get(name).await?.ok_or_else(|| RecorderError::NoStream(name.to_owned()))?.stream;
        if Generation::of(&s).as_ref() != Some(generation) {
            return Err(RecorderError::Superseded(name.to_owned()));
        }
        if !s.state.accepts_publisher() {
            return Err(RecorderError::NotAccepting { name: name.to_owned(), state: s.state });
        }
        let formats = &s.settings.outputs;
        let has = |f| formats.iter().any(|o| o.format == f);
        let now_ms = unix_ms_now();
        let mut config = PresentationConfig {
            fragment_duration: u64::from(s.settings.fragment_duration_ms) * 10_000,
            dvr_window: u64::from(s.settings.dvr_window_seconds) * 10_000_000,
            dash: has(mediastreams_model::OutputFormat::Dash),
            hls: has(mediastreams_model::OutputFormat::Hls),
            availability_start_unix_ms: now_ms,
        };
        let pid = s.playback_id.to_string();
        let new_audio = audio_track(audio_codec_for(formats, opus_passthrough), Channels::Stereo);
        let mut presentation = None;
        let mut continues_at = 0;
        let mut audio = None;
        if s.state == StreamState::Live {
            let unresumable = |e: &dyn std::fmt::Display| RecorderError::Unresumable(e.to_string());
            let stored = recording::read(store.as_ref(), &pid).await.map_err(|e| match e {
                recording::RecordingError::Store(e) => RecorderError::Store(e.to_string()),
                e => unresumable(&e),
            })?;
            if let Some(stored) = stored {
                let end = stored.end(config.fragment_duration);
                // The live edge is now: DASH players place it by the clock.
                config.availability_start_unix_ms = now_ms - (end / 10_000) as i64;
                let videos = recovery::video_configs(&stored.live).map_err(|e| unresumable(&e))?;
                let chunks = recovery::stored_chunks(&stored.live, &stored.video, &stored.audio, config.fragment_duration);
                let (v, a) = (chunks.video.len(), chunks.audio.len());
                // The stored audio track (its codec, channels and bitrate,
                // which is in the audio fragments' keys), or a publisher's
                // when it has none yet.
                audio = recovery::audio_track(&stored.live).filter(|a| Channels::from_count(a.channels).is_some());
                let track = audio.unwrap_or(new_audio);
                let mut p = with_silence(Presentation::resume_levels(config.clone(), videos, track, chunks)?, track);
                // The largest picture its manifests gave each level (a
                // larger one than its first SPS came later).
                for (i, level) in stored.live.video.iter().enumerate() {
                    if let mediastreams_packager::manifest::LevelDetail::Video { width, height } = level.detail {
                        p.video_level_picture_at_least(i, width, height);
                    }
                }
                presentation = Some(p);
                continues_at = end as i64;
                tracing::warn!(
                    stream = name,
                    video_fragments = v,
                    audio_fragments = a,
                    end_ms = end / 10_000,
                    "continuing the stored recording after its last fragment"
                );
            } else if let Some(end) = recording::fragments_end(store.as_ref(), &pid).await.map_err(|e| match e {
                recording::RecordingError::Store(e) => RecorderError::Store(e.to_string()),
                e => unresumable(&e),
            })? {
                // Live, fragments stored, but no manifest yet (the node died
                // within the first fragments): a new presentation, after
                // them.
                continues_at = end as i64;
                tracing::warn!(stream = name, end_ms = end / 10_000, "unlisted fragments stored; the recording starts after them");
            }
        }
        // A fragment stored more than its duration after the packager
        // handed it over is late: a player at the live edge waits for it.
        let late_after = std::time::Duration::from_millis(u64::from(s.settings.fragment_duration_ms));
        let (uploader, task) = Uploader::start(store, format!("{pid}/"), uploads, late_after);
        Ok(Recorder {
            repo,
            name: name.to_owned(),
            generation: generation.clone(),
            config,
            video_bitrate,
            presentation,
            video_plan: None,
            origin: 0,
            early_audio: std::collections::VecDeque::new(),
            audio: audio.unwrap_or(new_audio),
            audio_fixed: audio.is_some(),
            live: s.state == StreamState::Live,
            next_live_attempt: None,
            live_attempt: None,
            continues_at,
            uploader,
            task,
        })
    }

    /// The channels of the recording's audio track (what every session's
    /// audio is encoded to).
    pub fn audio_channels(&self) -> Channels {
        Channels::from_count(self.audio.channels).unwrap_or_default()
    }

    /// The bitrate of the recording's audio track (what every session's
    /// audio is encoded at, for AAC).
    pub fn audio_bitrate(&self) -> u32 {
        self.audio.bitrate
    }

    /// The codec of the recording's audio track.
    pub fn audio_codec(&self) -> AudioCodec {
        self.audio.codec
    }

    /// A publisher sending `channels` began a session: a recording without
    /// an audio track yet takes them (audio encoded for other channels,
    /// waiting for the first picture, is dropped).
    pub fn prefer_audio_channels(&mut self, channels: Channels) {
        if self.audio_fixed || self.presentation.is_some() || self.audio_channels() == channels {
            return;
        }
        self.audio = audio_track(self.audio.codec, channels);
        self.early_audio.clear();
    }

    /// Where the next publisher session starts on the timeline: 0, or the
    /// end of the stored recording this one continues.
    pub fn continues_at(&self) -> i64 {
        self.continues_at
    }

    /// Records the stream's first media: `Ready -> Live`, beside media (a
    /// slow table holds up nothing). A table that fails does not stop the
    /// recording: the transition is tried again (at most once a second)
    /// with the following media, and at the end (see [`Recorder::finish`]).
    fn went_live(&mut self) {
        if self.live {
            return;
        }
        if let Some(attempt) = self.live_attempt.take_if(|a| a.is_finished()) {
            match attempt.now_or_never() {
                Some(Ok(Ok(()))) => {
                    self.live = true;
                    return;
                }
                _ => self.next_live_attempt = Some(std::time::Instant::now() + LIVE_RETRY),
            }
        }
        if self.live_attempt.is_some() || self.next_live_attempt.is_some_and(|at| std::time::Instant::now() < at) {
            return;
        }
        let (repo, name) = (self.repo.clone(), self.name.clone());
        self.live_attempt = Some(tokio::spawn(async move { mark_live(&repo, &name).await }));
    }

    /// A new recording's video quality levels, settled from a simulcast
    /// publisher's layers (SPS and PPS of each, smallest picture first),
    /// before its first picture; ignored once the recording has levels.
    pub fn plan_video_levels(&mut self, levels: Vec<(Bytes, Bytes)>) {
        if self.presentation.is_none() && levels.len() > 1 {
            self.video_plan = Some(levels);
        }
    }

    /// The picture size of each of the recording's video quality levels
    /// (their first SPS), once it has them.
    pub fn video_level_pictures(&self) -> Option<Vec<(u32, u32)>> {
        if let Some(p) = &self.presentation {
            return Some(p.video_level_pictures());
        }
        let plan = self.video_plan.as_ref()?;
        plan.iter().map(|(sps, _)| mediastreams_packager::codec::h264::parse_sps(sps).ok().map(|i| (i.width, i.height))).collect()
    }

    /// How many video quality levels the recording has (1 until settled).
    pub fn video_levels(&self) -> usize {
        match (&self.presentation, &self.video_plan) {
            (Some(p), _) => p.video_levels(),
            (None, Some(plan)) => plan.len(),
            (None, None) => 1,
        }
    }

    /// Takes a video access unit (AVCC) of quality level `level`, which
    /// arrived at `arrival`. The first one must be a keyframe of level 0
    /// with its SPS and PPS. Returns whether a keyframe should be
    /// requested.
    pub async fn push_video(
        &mut self,
        level: usize,
        sample: VideoSample,
        sps: Option<&Bytes>,
        pps: Option<&Bytes>,
        arrival: std::time::Instant,
    ) -> Result<bool, RecorderError> {
        if self.presentation.is_none() {
            if level != 0 {
                // Level 0 begins the recording.
                return Ok(false);
            }
            let (Some(sps), Some(pps)) = (sps, pps) else {
                return Ok(true);
            };
            // Audio from shortly before the first decodable picture is
            // kept: the packager starts both tracks together, moving that
            // picture back onto it. Older audio would leave the video
            // starting later than the audio, which players wait for.
            let early: Vec<AudioFrame> = std::mem::take(&mut self.early_audio)
                .into_iter()
                .filter(|a| a.time.saturating_add(START_ALIGNMENT as i64) >= sample.time)
                .collect();
            // Position 0, or where unlisted stored fragments end (see
            // `open`): nothing stored is written again.
            self.origin = early.first().map_or(sample.time, |a| a.time.min(sample.time)) - self.continues_at;
            // DASH's availabilityStartTime is the wall-clock time of
            // position 0: when this picture arrived (it may have waited,
            // held while a simulcast publisher's layers were settled),
            // less how long before it position 0 was. Players place the
            // live edge by it: a later one would put them that much
            // further behind.
            let mut config = self.config.clone();
            let arrived_ms = unix_ms_now() - arrival.elapsed().as_millis() as i64;
            config.availability_start_unix_ms = arrived_ms - (sample.time - self.origin) / 10_000;
            // One level: the node's nominal bitrate; several (simulcast):
            // each measured over its first fragment.
            let one = || vec![VideoTrackConfig { bitrate: self.video_bitrate, sps: sps.clone(), pps: pps.clone() }];
            let levels = match self.video_plan.take() {
                Some(plan) => {
                    let videos = plan.into_iter().map(|(sps, pps)| VideoTrackConfig { bitrate: MEASURED_BITRATE, sps, pps }).collect();
                    // Levels the packager refuses (a malformed SPS): one
                    // level, level 0's picture, rather than none.
                    Presentation::with_video_levels(config.clone(), videos, self.audio).or_else(|e| {
                        tracing::error!(stream = %self.name, error = %e, "the simulcast levels cannot be packaged; recording one level");
                        Presentation::with_video_levels(config, one(), self.audio)
                    })
                }
                None => Presentation::with_video_levels(config, one(), self.audio),
            };
            let p = with_silence(levels?, self.audio);
            self.audio_fixed = true;
            self.presentation = Some(p);
            for a in early {
                self.push_audio(a).await?;
            }
        }
        let Some(p) = self.presentation.as_mut() else {
            return Ok(true);
        };
        if level >= p.video_levels() {
            return Ok(false);
        }
        let sample = VideoSample { time: sample.time - self.origin, ..sample };
        let out = p.push_video_level(level, sample)?;
        self.went_live();
        let keyframe_needed = out.keyframe_needed;
        self.uploader.send(out.objects).await?;
        Ok(keyframe_needed)
    }

    /// Takes an AAC-LC frame or an Opus packet, as the audio track is.
    pub async fn push_audio(&mut self, frame: AudioFrame) -> Result<(), RecorderError> {
        match self.presentation.as_mut() {
            Some(p) => {
                let out = p.push_audio(AudioFrame { time: frame.time - self.origin, ..frame })?;
                self.uploader.send(out.objects).await?;
            }
            // Until the first picture, the newest 10 s of audio are kept.
            None => {
                if self.early_audio.len() >= EARLY_AUDIO_FRAMES {
                    self.early_audio.pop_front();
                }
                self.early_audio.push_back(frame);
            }
        }
        Ok(())
    }

    /// The publisher left: close the current fragments; a new session
    /// continues from the returned position (the node's time, 100 ns units).
    pub async fn end_session(&mut self) -> Result<i64, RecorderError> {
        match self.presentation.as_mut() {
            Some(p) => {
                let out = p.end_session();
                self.uploader.send(out.objects).await?;
                Ok(p.end_time() as i64 + self.origin)
            }
            None => Ok(0),
        }
    }

    /// A newer generation took the stream, or it was deleted: nothing
    /// more is written (queued objects are dropped).
    pub fn abandon(self) {
        self.task.abandon();
    }

    /// Why writing the recording failed, once it has (the stream task then
    /// ends it as `Failed`).
    pub fn upload_failure(&self) -> Option<String> {
        self.uploader.failure()
    }

    /// How long objects took to be stored: the most since the last call,
    /// and this recorder's fragments (how many, how many late, the 99th
    /// percentile).
    pub fn store_report(&self) -> StoreReport {
        self.uploader.store_report()
    }

    /// Ingest stopped: writes the on-demand presentation and moves the
    /// stream `Stopping -> OnDemand` (from `Live` the node first takes
    /// `Live -> Stopping` itself, as on its idle timeout). Table errors are
    /// retried with backoff until the transitions are made, or the record
    /// is found to belong to another generation.
    ///
    /// `last_window` is the statistics of the time since the last write;
    /// the final transition writes them with the recording's totals (its
    /// fragments, how many were late, the 99th percentile of their store
    /// delays).
    pub async fn finish(mut self, last_window: Option<IngestStats>) -> Result<UploadStats, RecorderError> {
        if let Some(p) = self.presentation.as_mut() {
            let out = p.finish();
            // A failed upload takes nothing more; the stream ends Failed.
            if let Err(e) = self.uploader.send(out.objects).await
                && !matches!(e, UploadError::Failed(_))
            {
                return Err(e.into());
            }
        }
        drop(self.uploader);
        // Every object is written before the stream says OnDemand.
        let stats = self.task.finish().await;
        // A `Ready -> Live` in flight lands before the final transitions.
        if let Some(attempt) = self.live_attempt.take() {
            let _ = attempt.await;
        }
        let has_media = self.presentation.is_some();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let done = match &stats.failed {
                None => finalize_record(&self.repo, &self.name, &self.generation, has_media, last_window.as_ref(), &stats.store).await,
                Some(reason) => fail_record(&self.repo, &self.name, &self.generation, reason, stats.not_written).await,
            };
            match done {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(stream = %self.name, error = %e, retry_in_ms = backoff.as_millis() as u64, "could not record the recording's end; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        match &stats.failed {
            None => {
                tracing::info!(stream = %self.name, objects = stats.objects, bytes = stats.bytes, spooled = stats.spooled, "recording finalized")
            }
            Some(reason) => {
                tracing::error!(stream = %self.name, objects = stats.objects, not_written = stats.not_written, reason = %reason, "recording failed")
            }
        }
        Ok(stats)
    }
}

/// `Ready | Live | Stopping -> Failed`, with why, on this recording's
/// generation only.
async fn fail_record(repo: &StreamRepo, name: &str, generation: &Generation, reason: &str, not_written: u64) -> Result<(), RepoError> {
    let failure = format!("{reason}; {not_written} objects were not written; what was written before is kept");
    let r = repo
        .update(name, |s| {
            if Generation::of(s).as_ref() != Some(generation) {
                return Ok(None);
            }
            match s.transition(Transition::RecordingFailed, OffsetDateTime::now_utc(), None) {
                Ok(mut next) => {
                    next.failure = Some(failure.clone());
                    Ok(Some(next))
                }
                Err(_) => Ok(None),
            }
        })
        .await;
    match r {
        Ok(_) | Err(RepoError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `Ready -> Live` (the first media); `Ok` when the stream is `Live` or has
/// left `Ready` otherwise, `Err` to try again.
async fn mark_live(repo: &StreamRepo, name: &str) -> Result<(), ()> {
    match repo.transition(name, Transition::MediaArrived, OffsetDateTime::now_utc(), None).await {
        Ok(_) => {
            tracing::info!(stream = %name, "stream is live");
            Ok(())
        }
        // Already Live (another session of this node made it so).
        Err(RepoError::Transition(t)) if t.from == StreamState::Live => Ok(()),
        // Stopped or deleted meanwhile: the stream task sees it.
        Err(RepoError::Transition(t)) => {
            tracing::info!(stream = %name, state = %t.from, "the stream left Ready before its first media was recorded");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(stream = %name, error = %e, "could not mark the stream Live; retrying with the next media");
            Err(())
        }
    }
}

/// `[Ready -> Live ->] Stopping -> OnDemand`, each a conditional write, on
/// this recording's generation only (`Ready -> Live` when it has media but
/// the first transition never landed: a table down since).
async fn finalize_record(
    repo: &StreamRepo,
    name: &str,
    generation: &Generation,
    has_media: bool,
    last_window: Option<&IngestStats>,
    store: &StoreReport,
) -> Result<(), RepoError> {
    loop {
        let Some(current) = repo.get(name).await? else { return Ok(()) };
        if Generation::of(&current.stream).as_ref() != Some(generation) {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        let t = match current.stream.state {
            StreamState::Ready if has_media => Transition::MediaArrived,
            StreamState::Live => Transition::StopIngest,
            StreamState::Stopping => Transition::RecordingFinalized,
            _ => return Ok(()),
        };
        let last = if t == Transition::RecordingFinalized { final_stats(current.stream.stats.as_ref(), last_window, store) } else { None };
        let r = repo
            .update(name, |s| {
                let mut next = s.transition(t, now, None)?;
                if last.is_some() {
                    next.stats = last.clone();
                }
                Ok(Some(next))
            })
            .await;
        match r {
            // Moved on, or someone else moved it (read again).
            Ok(_) | Err(RepoError::Transition(_)) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The statistics a finished recording keeps: those of its last window
/// (else the last written), with the recorder's totals.
fn final_stats(written: Option<&IngestStats>, last_window: Option<&IngestStats>, store: &StoreReport) -> Option<IngestStats> {
    let mut stats = last_window.filter(|w| w.last_media_at.is_some()).or(written).cloned()?;
    stats.fragments_stored = store.fragments;
    stats.fragments_late = store.late;
    stats.fragment_store_ms_p99 = store.fragment_p99_ms;
    if let Some(d) = stats.delays.as_mut() {
        d.store_ms = d.store_ms.max(store.window_max.as_millis() as u64);
    }
    Some(stats)
}

#[cfg(test)]
mod tests {
    use mediastreams_model::{OutputFormat, OutputSpec};

    use super::*;

    fn outputs(formats: &[OutputFormat]) -> Vec<OutputSpec> {
        formats.iter().enumerate().map(|(i, &format)| OutputSpec { name: format!("o{i}"), format }).collect()
    }

    #[test]
    fn opus_is_kept_only_when_every_output_is_dash() {
        use OutputFormat::*;
        assert_eq!(audio_codec_for(&outputs(&[Dash]), true), AudioCodec::Opus);
        assert_eq!(audio_codec_for(&outputs(&[Dash, Dash]), true), AudioCodec::Opus);
        for formats in [&[Smooth][..], &[Hls], &[Dash, Hls], &[Smooth, Dash], &[]] {
            assert_eq!(audio_codec_for(&outputs(formats), true), AudioCodec::Aac, "{formats:?}");
        }
        // A fleet that has not turned it on: AAC.
        assert_eq!(audio_codec_for(&outputs(&[Dash]), false), AudioCodec::Aac);
    }

    #[test]
    fn opus_and_aac_tracks_never_share_a_key() {
        for channels in [Channels::Mono, Channels::Stereo] {
            for other in [Channels::Mono, Channels::Stereo] {
                assert_ne!(audio_track(AudioCodec::Opus, channels).bitrate, audio_track(AudioCodec::Aac, other).bitrate);
            }
        }
        assert_eq!(audio_track(AudioCodec::Opus, Channels::Mono).bitrate, 48_000);
        assert_eq!(audio_track(AudioCodec::Aac, Channels::Stereo).bitrate, 128_000);
    }
}
