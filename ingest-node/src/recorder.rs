//! The recorder: one per stream on a node. It takes the stream's samples
//! (after depacketizing, and transcoding for audio), packages them, hands
//! the objects to the uploader, and moves the stream through its states:
//! `Ready -> Live` on the first media, `Stopping -> OnDemand` once the
//! on-demand presentation is written.

use std::sync::Arc;

use bytes::Bytes;
use mediastreams_model::{StreamState, Transition};
use mediastreams_packager::{
    AudioFrame, AudioTrackConfig, PackagerError, Presentation, PresentationConfig, START_ALIGNMENT,
    VideoSample, VideoTrackConfig,
};
use mediastreams_storage::{ObjectStore, RepoError, StreamRepo};
use time::OffsetDateTime;

use crate::uploader::{UploadError, UploadStats, Uploader, UploaderTask};

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
    #[error("audio transcoding: {0}")]
    Audio(String),
}

/// The audio the recorder packages: AAC-LC.
pub const AUDIO: AudioTrackConfig = AudioTrackConfig { bitrate: 128_000, sample_rate: 48_000, channels: 2 };

/// Audio kept while no picture has come: 10 s of AAC frames.
const EARLY_AUDIO_FRAMES: usize = 470;

fn unix_ms_now() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub struct Recorder {
    repo: StreamRepo,
    name: String,
    config: PresentationConfig,
    video_bitrate: u32,
    presentation: Option<Presentation>,
    /// The node's time of the presentation's position 0: its first kept
    /// sample. Players expect a recording to start at 0 (dash.js shifts a
    /// Smooth recording that does not, but not its `tfdt`s, and then cuts
    /// its end off), so every sample is moved back by this much.
    origin: i64,
    /// Audio that arrived before the first video keyframe (which carries the
    /// decoder configuration the presentation needs).
    early_audio: std::collections::VecDeque<AudioFrame>,
    live: bool,
    uploader: Uploader,
    task: UploaderTask,
}

impl Recorder {
    /// Opens the recorder of a stream that is `Ready` or `Live`.
    pub async fn open(repo: StreamRepo, store: Arc<dyn ObjectStore>, name: &str, video_bitrate: u32) -> Result<Recorder, RecorderError> {
        let s = repo.get(name).await?.ok_or_else(|| RecorderError::NoStream(name.to_owned()))?.stream;
        if !s.state.accepts_publisher() {
            return Err(RecorderError::NotAccepting { name: name.to_owned(), state: s.state });
        }
        let formats = &s.settings.outputs;
        let has = |f| formats.iter().any(|o| o.format == f);
        let now_ms = unix_ms_now();
        let config = PresentationConfig {
            fragment_duration: u64::from(s.settings.fragment_duration_ms) * 10_000,
            dvr_window: u64::from(s.settings.dvr_window_seconds) * 10_000_000,
            smooth: has(mediastreams_model::OutputFormat::Smooth),
            dash: has(mediastreams_model::OutputFormat::Dash),
            hls: has(mediastreams_model::OutputFormat::Hls),
            availability_start_unix_ms: now_ms,
        };
        let (uploader, task) = Uploader::start(store, format!("{}/", s.playback_id));
        Ok(Recorder {
            repo,
            name: name.to_owned(),
            config,
            video_bitrate,
            presentation: None,
            origin: 0,
            early_audio: std::collections::VecDeque::new(),
            live: s.state == StreamState::Live,
            uploader,
            task,
        })
    }

    /// Records the stream's first media: `Ready -> Live`.
    async fn went_live(&mut self) -> Result<(), RecorderError> {
        if self.live {
            return Ok(());
        }
        match self.repo.transition(&self.name, Transition::MediaArrived, OffsetDateTime::now_utc(), None).await {
            Ok(_) => {}
            // Already Live (another session of this node made it so).
            Err(RepoError::Transition(t)) if t.from == StreamState::Live => {}
            Err(e) => return Err(e.into()),
        }
        self.live = true;
        tracing::info!(stream = %self.name, "stream is live");
        Ok(())
    }

    /// Takes a video access unit (AVCC). The first one must be a keyframe
    /// with its SPS and PPS. Returns whether a keyframe should be requested.
    pub async fn push_video(&mut self, sample: VideoSample, sps: Option<&Bytes>, pps: Option<&Bytes>) -> Result<bool, RecorderError> {
        if self.presentation.is_none() {
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
            self.origin = early.first().map_or(sample.time, |a| a.time.min(sample.time));
            // DASH's availabilityStartTime is the wall-clock time of
            // position 0: now, less how long before this picture it was.
            let mut config = self.config.clone();
            config.availability_start_unix_ms = unix_ms_now() - (sample.time - self.origin) / 10_000;
            let p = Presentation::new(
                config,
                VideoTrackConfig { bitrate: self.video_bitrate, sps: sps.clone(), pps: pps.clone() },
                AUDIO,
            )?;
            self.presentation = Some(p);
            self.went_live().await?;
            for a in early {
                self.push_audio(a).await?;
            }
        }
        let Some(p) = self.presentation.as_mut() else {
            return Ok(true);
        };
        let sample = VideoSample { time: sample.time - self.origin, ..sample };
        let out = p.push_video(sample)?;
        let keyframe_needed = out.keyframe_needed;
        self.uploader.send(out.objects).await?;
        Ok(keyframe_needed)
    }

    /// Takes an AAC-LC frame.
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

    /// Ingest stopped: writes the on-demand presentation and moves the
    /// stream `Stopping -> OnDemand` (from `Live` the node first takes
    /// `Live -> Stopping` itself, as on its idle timeout).
    pub async fn finish(mut self) -> Result<UploadStats, RecorderError> {
        if let Some(p) = self.presentation.as_mut() {
            let out = p.finish();
            self.uploader.send(out.objects).await?;
        }
        drop(self.uploader);
        // Every object is written before the stream says OnDemand.
        let stats = self.task.finish().await;
        let now = OffsetDateTime::now_utc();
        let current = self.repo.get(&self.name).await?.map(|s| s.stream.state);
        match current {
            Some(StreamState::Live) => {
                self.repo.transition(&self.name, Transition::StopIngest, now, None).await?;
                self.repo.transition(&self.name, Transition::RecordingFinalized, now, None).await?;
            }
            Some(StreamState::Stopping) => {
                self.repo.transition(&self.name, Transition::RecordingFinalized, now, None).await?;
            }
            _ => {}
        }
        tracing::info!(stream = %self.name, objects = stats.objects, bytes = stats.bytes, "recording finalized");
        Ok(stats)
    }
}
