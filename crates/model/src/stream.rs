//! The media stream resource: what is stored, what users send, what the API
//! shows.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::name::{NameError, StreamName};
use crate::output::{Output, OutputFormat, OutputSpec, streaming_url};
use crate::secret::{PlaybackId, TokenHash};
use crate::state::{StreamState, Transition, TransitionError};

/// Default target fragment duration.
pub const DEFAULT_FRAGMENT_DURATION_MS: u32 = 2_000;
/// Accepted fragment durations, in milliseconds.
pub const FRAGMENT_DURATION_MS_RANGE: std::ops::RangeInclusive<u32> = 1_000..=10_000;
/// Default DVR window of the live presentation.
pub const DEFAULT_DVR_WINDOW_SECONDS: u32 = 1_800;
/// Accepted DVR windows, in seconds (30 s to 24 h).
pub const DVR_WINDOW_SECONDS_RANGE: std::ops::RangeInclusive<u32> = 30..=86_400;
/// At most one output per format.
pub const MAX_OUTPUTS: usize = 3;

/// The body of `PUT /streams/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateStreamRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<OutputSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment_duration_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dvr_window_seconds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("outputs must name at least one output")]
    NoOutputs,
    #[error("at most {MAX_OUTPUTS} outputs are allowed, one per format")]
    TooManyOutputs,
    #[error("output name {name:?} is invalid: {source}")]
    BadOutputName { name: String, source: NameError },
    #[error("output name {0:?} is used twice")]
    DuplicateOutputName(String),
    #[error("format {0:?} is used by two outputs")]
    DuplicateFormat(&'static str),
    #[error("fragmentDurationMs must be between 1000 and 10000, got {0}")]
    FragmentDuration(u32),
    #[error("dvrWindowSeconds must be between 30 and 86400, got {0}")]
    DvrWindow(u32),
}

impl SettingsError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            SettingsError::FragmentDuration(_) => "fragmentDurationMs",
            SettingsError::DvrWindow(_) => "dvrWindowSeconds",
            _ => "outputs",
        }
    }
}

/// A stream's settings with every default applied: what a create request
/// means. Two requests are "the same" when their settings are equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub outputs: Vec<OutputSpec>,
    pub fragment_duration_ms: u32,
    pub dvr_window_seconds: u32,
}

impl CreateStreamRequest {
    /// Applies defaults and checks every field.
    pub fn into_settings(self) -> Result<Settings, SettingsError> {
        let outputs = match self.outputs {
            None => vec![OutputSpec::default_smooth()],
            Some(o) if o.is_empty() => return Err(SettingsError::NoOutputs),
            Some(o) if o.len() > MAX_OUTPUTS => return Err(SettingsError::TooManyOutputs),
            Some(o) => o,
        };
        let mut names = BTreeSet::new();
        let mut formats = BTreeSet::new();
        for o in &outputs {
            o.validate().map_err(|source| SettingsError::BadOutputName { name: o.name.clone(), source })?;
            if !names.insert(o.name.as_str()) {
                return Err(SettingsError::DuplicateOutputName(o.name.clone()));
            }
            if !formats.insert(o.format) {
                return Err(SettingsError::DuplicateFormat(o.format.as_str()));
            }
        }
        let fragment_duration_ms = self.fragment_duration_ms.unwrap_or(DEFAULT_FRAGMENT_DURATION_MS);
        if !FRAGMENT_DURATION_MS_RANGE.contains(&fragment_duration_ms) {
            return Err(SettingsError::FragmentDuration(fragment_duration_ms));
        }
        let dvr_window_seconds = self.dvr_window_seconds.unwrap_or(DEFAULT_DVR_WINDOW_SECONDS);
        if !DVR_WINDOW_SECONDS_RANGE.contains(&dvr_window_seconds) {
            return Err(SettingsError::DvrWindow(dvr_window_seconds));
        }
        Ok(Settings { outputs, fragment_duration_ms, dvr_window_seconds })
    }
}

/// The current ingest session of a stream (between start- and stop-ingest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestSession {
    /// SHA-256 of the WHIP bearer token; the token itself is never stored.
    pub token_hash: TokenHash,
    /// The WHIP endpoint publishers post their offer to.
    pub url: String,
    /// The ingest node the stream is assigned to, when nodes register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

/// When the stream was live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveInfo {
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
}

/// What the ingest node sees of the incoming media.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestStats {
    pub video_bitrate_bps: u64,
    pub audio_bitrate_bps: u64,
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
    pub packets_lost: u64,
    pub packets_received: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_media_at: Option<OffsetDateTime>,
    /// How the current publisher's audio and video are aligned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub av_sync: Option<AvSync>,
    /// Where media waits, as the most over the window (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delays: Option<IngestDelays>,
    /// Fragments (of every track and level) the node's recorder has
    /// stored, and how many of them were late: stored more than a fragment
    /// duration after the packager handed them over. A node that takes a
    /// recording on after a restart counts from there.
    #[serde(default)]
    pub fragments_stored: u64,
    #[serde(default)]
    pub fragments_late: u64,
    /// The 99th percentile of those fragments' times from the packager to
    /// stored (milliseconds, 1/8 precision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment_store_ms_p99: Option<u64>,
    /// A simulcast publisher's video layers (encodings), largest first;
    /// empty for a publisher that sends one. Each is recorded as a video
    /// quality level; the top-level video figures are the largest level's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub video_layers: Vec<VideoLayerStats>,
}

/// One video layer (simulcast encoding) a publisher sends, over the
/// statistics window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoLayerStats {
    /// Its RTP stream id (`a=rid`, RFC 8851), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// Picture size from its last SPS (0 before its first keyframe).
    pub width: u32,
    pub height: u32,
    pub bitrate_bps: u64,
    pub frame_rate: f64,
    /// Whether this layer feeds a video quality level of the recording.
    pub recorded: bool,
}

/// Where a stream's media waited over a statistics window, each the most
/// seen (milliseconds): the publisher and network, the node's own queue,
/// the media store. Together with the packager's fixed hold (one fragment)
/// they are what a fragment's availability lags its capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestDelays {
    /// How much later than the session's quickest video frame, by their
    /// RTP timestamps, a frame arrived (RFC 3550's relative transit time):
    /// jitter, and a publisher whose encoder or pacer falls behind.
    pub video_transit_ms: u64,
    /// From a unit's arrival to the packager taking it.
    pub queue_ms: u64,
    /// From the packager's request for a keyframe (a fragment is due) to
    /// the keyframe's arrival: a fragment cannot close before it.
    pub keyframe_ms: u64,
    /// From the packager's output to the object stored.
    pub store_ms: u64,
}

/// How a publisher's audio and video are aligned on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AvSync {
    /// By the tracks' RTCP sender reports (the sender's capture clock).
    SenderReports,
    /// By the arrival of each track's first packet (no sender reports yet).
    Arrival,
}

/// A media stream as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stream {
    pub name: StreamName,
    pub playback_id: PlaybackId,
    pub state: StreamState,
    pub settings: Settings,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestSession>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<IngestStats>,
    /// Why the recording failed (state `Failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl Stream {
    pub fn new(name: StreamName, playback_id: PlaybackId, settings: Settings, now: OffsetDateTime) -> Self {
        Stream {
            name,
            playback_id,
            state: StreamState::Created,
            settings,
            created_at: now,
            updated_at: now,
            ingest: None,
            live: None,
            stats: None,
            failure: None,
        }
    }

    /// Applies a transition to this record: the new state and the fields
    /// that go with it. `ingest` is required for `StartIngest`.
    pub fn transition(&self, t: Transition, now: OffsetDateTime, ingest: Option<IngestSession>) -> Result<Stream, TransitionError> {
        let to = t.apply(self.state)?;
        let mut next = self.clone();
        next.state = to;
        next.updated_at = now;
        match t {
            Transition::StartIngest => next.ingest = ingest,
            Transition::StopIngest if to == StreamState::Created => next.ingest = None,
            Transition::StopIngest => {
                if let Some(live) = next.live.as_mut() {
                    live.ended_at = Some(now);
                }
            }
            Transition::MediaArrived => next.live = Some(LiveInfo { started_at: now, ended_at: None }),
            Transition::RecordingFinalized => next.ingest = None,
            Transition::RecordingFailed => {
                next.ingest = None;
                if let Some(live) = next.live.as_mut() {
                    live.ended_at.get_or_insert(now);
                }
            }
            Transition::Delete => {}
        }
        Ok(next)
    }

    /// The stream as the API shows it.
    pub fn view(&self, media_base: &str) -> StreamView {
        StreamView {
            name: self.name.to_string(),
            playback_id: self.playback_id.to_string(),
            state: self.state,
            outputs: self
                .settings
                .outputs
                .iter()
                .map(|o| Output {
                    name: o.name.clone(),
                    format: o.format,
                    url: streaming_url(media_base, self.playback_id.as_str(), o.format),
                })
                .collect(),
            fragment_duration_ms: self.settings.fragment_duration_ms,
            dvr_window_seconds: self.settings.dvr_window_seconds,
            created_at: self.created_at,
            updated_at: self.updated_at,
            ingest: self.ingest.as_ref().map(|i| IngestView { protocol: "whip", url: i.url.clone(), token: None }),
            live: self.live.clone(),
            stats: self.stats.clone(),
            failure: self.failure.clone(),
        }
    }

    /// The URL of one format's manifest, when the stream has that output.
    pub fn output_url(&self, media_base: &str, format: OutputFormat) -> Option<String> {
        self.settings.outputs.iter().any(|o| o.format == format).then(|| streaming_url(media_base, self.playback_id.as_str(), format))
    }
}

/// The ingest part of the API's stream: where to publish. The token is
/// present only in the start-ingest response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestView {
    pub protocol: &'static str,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A stream as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamView {
    pub name: String,
    pub playback_id: String,
    pub state: StreamState,
    pub outputs: Vec<Output>,
    pub fragment_duration_ms: u32,
    pub dvr_window_seconds: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<IngestStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<Settings, SettingsError> {
        serde_json::from_str::<CreateStreamRequest>(json).unwrap().into_settings()
    }

    #[test]
    fn defaults() {
        let s = req("{}").unwrap();
        assert_eq!(s.outputs, vec![OutputSpec::default_smooth()]);
        assert_eq!(s.fragment_duration_ms, 2000);
        assert_eq!(s.dvr_window_seconds, 1800);
        // Spelling the defaults out means the same stream.
        assert_eq!(req(r#"{"outputs":[{"name":"smooth","format":"smooth"}],"fragmentDurationMs":2000}"#).unwrap(), s);
    }

    #[test]
    fn invalid_settings() {
        assert_eq!(req(r#"{"outputs":[]}"#), Err(SettingsError::NoOutputs));
        assert_eq!(req(r#"{"outputs":[{"name":"a"},{"name":"a","format":"dash"}]}"#), Err(SettingsError::DuplicateOutputName("a".into())));
        assert_eq!(req(r#"{"outputs":[{"name":"a"},{"name":"b"}]}"#), Err(SettingsError::DuplicateFormat("smooth")));
        assert!(matches!(req(r#"{"outputs":[{"name":"A"}]}"#), Err(SettingsError::BadOutputName { .. })));
        assert_eq!(req(r#"{"fragmentDurationMs":999}"#), Err(SettingsError::FragmentDuration(999)));
        assert_eq!(req(r#"{"dvrWindowSeconds":86401}"#), Err(SettingsError::DvrWindow(86401)));
        assert!(serde_json::from_str::<CreateStreamRequest>(r#"{"output":[]}"#).is_err());
    }

    #[test]
    fn transitions_carry_their_fields() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let s = Stream::new(StreamName::parse("a").unwrap(), PlaybackId::from_stored("0".repeat(32)), req("{}").unwrap(), now);
        let session = IngestSession { token_hash: TokenHash::of("t"), url: "http://x/whip/a".into(), node_id: None, started_at: now };
        let ready = s.transition(Transition::StartIngest, now, Some(session)).unwrap();
        assert!(ready.ingest.is_some());
        let later = now + time::Duration::seconds(5);
        let live = ready.transition(Transition::MediaArrived, later, None).unwrap();
        assert_eq!(live.live.as_ref().unwrap().started_at, later);
        let stopping = live.transition(Transition::StopIngest, later, None).unwrap();
        assert_eq!(stopping.state, StreamState::Stopping);
        assert_eq!(stopping.live.as_ref().unwrap().ended_at, Some(later));
        let done = stopping.transition(Transition::RecordingFinalized, later, None).unwrap();
        assert_eq!(done.state, StreamState::OnDemand);
        assert!(done.ingest.is_none());
        let back = ready.transition(Transition::StopIngest, later, None).unwrap();
        assert_eq!(back.state, StreamState::Created);
        assert!(back.ingest.is_none());
    }

    #[test]
    fn view_shows_urls_and_never_the_token_hash() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let s = Stream::new(
            StreamName::parse("a").unwrap(),
            PlaybackId::from_stored("ab".repeat(16)),
            req(r#"{"outputs":[{"name":"s"},{"name":"d","format":"dash"}]}"#).unwrap(),
            now,
        );
        let v = serde_json::to_value(s.view("http://m")).unwrap();
        assert_eq!(v["outputs"][1]["url"], format!("http://m/{}/dash/manifest.mpd", "ab".repeat(16)));
        assert!(!v.to_string().contains("tokenHash"));
    }
}
