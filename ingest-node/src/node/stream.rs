//! A stream task: one per stream on the node. It owns the stream's
//! [`Recorder`] and audio path, places the sessions' media on the
//! timeline ([`Timeline`]), writes ingest statistics, and watches the
//! stream's record: when stop-ingest moves it to `Stopping`, or no media
//! has arrived for the idle timeout, or the node drains, it finalizes the
//! recording; when the record is deleted or belongs to a newer generation,
//! it abandons it. A publisher that disconnects ends only its session; a
//! new session continues the same presentation.
//!
//! A table or store that fails never ends a recording: reads are tried
//! again at the next poll, the first transition with the next media, the
//! final ones with backoff (see [`Recorder`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mediastreams_model::{AvSync, IngestDelays, StreamState};
use mediastreams_packager::{AudioFrame, VideoSample};
use tokio::sync::{mpsc, watch};

use super::{Command, Generation, IngestNode, Phase, PublishError};
use crate::media::audio::{AudioPath, EncodedAudio};
use crate::media::layer_clock::LayerClocks;
use crate::media::layers::{LayerMap, Routed};
use crate::media_input::{KeyframeRequests, StreamInput};
use crate::recorder::{Recorder, RecorderError};
use crate::timeline::{Timeline, TimelineEvent};
use crate::uploader::StoreReport;

/// How often ingest statistics are written to the stream record.
pub(crate) const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// A read of the stream record in flight.
type RecordRead = tokio::task::JoinHandle<Result<Option<mediastreams_storage::VersionedStream>, mediastreams_storage::RepoError>>;

/// A read of the stream record that takes longer is given up (the next
/// poll reads again).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts at opening the recorder for a waiting publisher, while the
/// table fails (then it gets 503); a recovered stream tries until it opens.
const OPEN_ATTEMPTS: u32 = 3;
const OPEN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_OPEN_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) struct StreamJob {
    pub name: String,
    pub generation: Generation,
    pub task: u64,
    pub keyframes: KeyframeRequests,
    /// Taken on at start (no publisher waits): opening is retried until it
    /// succeeds, as nobody else would finish the stream.
    pub recovering: bool,
}

/// Statistics gathered between two writes.
#[derive(Debug, Default)]
struct StatsWindow {
    /// When the window opened (the stream task's start for the first).
    opened: Option<Instant>,
    video_bytes: u64,
    audio_bytes: u64,
    frames: u64,
    width: u32,
    height: u32,
    received: [u64; 2],
    lost: [u64; 2],
    last_media_at: Option<time::OffsetDateTime>,
    av_sync: Option<AvSync>,
    /// The most seen in the window (see [`IngestDelays`]).
    video_transit: Duration,
    queue: Duration,
    keyframe: Duration,
    /// The latest publisher session's video layers (simulcast), by layer.
    layers: BTreeMap<u8, LayerWindow>,
    /// That session (the newest that sent video or opened a layer).
    layers_session: Option<u64>,
}

/// One video layer's figures over a window.
#[derive(Debug, Default, Clone)]
struct LayerWindow {
    rid: Option<String>,
    bytes: u64,
    frames: u64,
    width: u32,
    height: u32,
    recorded: bool,
}

impl StatsWindow {
    /// The window's statistics over `secs`; the next window keeps the
    /// size, the counters and the last media time.
    fn close(&mut self, store: StoreReport) -> mediastreams_model::IngestStats {
        let secs = self.opened.map_or(0.0, |o| o.elapsed().as_secs_f64()).max(0.001);
        let stats = mediastreams_model::IngestStats {
            video_bitrate_bps: (self.video_bytes as f64 * 8.0 / secs) as u64,
            audio_bitrate_bps: (self.audio_bytes as f64 * 8.0 / secs) as u64,
            width: self.width,
            height: self.height,
            frame_rate: (self.frames as f64 / secs * 10.0).round() / 10.0,
            packets_lost: self.lost.iter().sum(),
            packets_received: self.received.iter().sum(),
            last_media_at: self.last_media_at,
            av_sync: self.av_sync,
            delays: (self.frames > 0).then_some(IngestDelays {
                video_transit_ms: self.video_transit.as_millis() as u64,
                queue_ms: self.queue.as_millis() as u64,
                keyframe_ms: self.keyframe.as_millis() as u64,
                store_ms: store.window_max.as_millis() as u64,
            }),
            fragments_stored: store.fragments,
            fragments_late: store.late,
            fragment_store_ms_p99: store.fragment_p99_ms,
            video_layers: self.layer_stats(secs),
        };
        *self = StatsWindow {
            opened: Some(Instant::now()),
            width: self.width,
            height: self.height,
            received: self.received,
            lost: self.lost,
            last_media_at: self.last_media_at,
            layers_session: self.layers_session,
            // Each layer keeps its name, size and whether it is recorded.
            layers: std::mem::take(&mut self.layers).into_iter().map(|(i, l)| (i, LayerWindow { bytes: 0, frames: 0, ..l })).collect(),
            ..Default::default()
        };
        stats
    }

    /// Whether `session`'s layers are the ones counted: the newest session
    /// to send video (a newer one replaces the older's).
    fn layers_of(&mut self, session: u64) -> bool {
        if self.layers_session.is_none_or(|s| session > s) {
            self.layers_session = Some(session);
            self.layers.clear();
        }
        self.layers_session == Some(session)
    }

    /// A simulcast publisher's layers, largest first (none for one layer).
    fn layer_stats(&self, secs: f64) -> Vec<mediastreams_model::VideoLayerStats> {
        if self.layers.len() < 2 {
            return Vec::new();
        }
        let mut out: Vec<_> = self
            .layers
            .values()
            .map(|l| mediastreams_model::VideoLayerStats {
                rid: l.rid.clone(),
                width: l.width,
                height: l.height,
                bitrate_bps: (l.bytes as f64 * 8.0 / secs) as u64,
                frame_rate: (l.frames as f64 / secs * 10.0).round() / 10.0,
                recorded: l.recorded,
            })
            .collect();
        out.sort_by_key(|l| std::cmp::Reverse(u64::from(l.width) * u64::from(l.height)));
        out
    }
}

fn publish_error(name: &str, e: RecorderError) -> PublishError {
    match e {
        RecorderError::NotAccepting { state, .. } => PublishError::NotAccepting { name: name.to_owned(), state },
        RecorderError::NoStream(_) | RecorderError::Superseded(_) => PublishError::Superseded(name.to_owned()),
        RecorderError::Repo(e) => PublishError::StorageUnavailable(format!("the stream table: {e}")),
        RecorderError::Store(e) => PublishError::StorageUnavailable(format!("the media store: {e}")),
        e @ (RecorderError::Unresumable(_) | RecorderError::Packager(_)) => {
            PublishError::Unresumable { name: name.to_owned(), reason: e.to_string() }
        }
        e @ (RecorderError::Upload(_) | RecorderError::Audio(_)) => PublishError::NodeUnavailable(e.to_string()),
    }
}

/// How a stream task ends.
enum End {
    /// As on demand (or `Failed`, when the upload failed).
    Finish,
    Abandon,
}

/// Runs the stream task; `true` when it finalized the recording.
pub(crate) async fn run(
    node: Arc<IngestNode>,
    job: StreamJob,
    mut rx: mpsc::Receiver<StreamInput>,
    mut command: watch::Receiver<Command>,
    phase: watch::Sender<Phase>,
) -> bool {
    let name = job.name.clone();
    let recovering = job.recovering;
    // Open the recorder; a waiting publisher hears how it went.
    let mut attempt = 0;
    let mut backoff = OPEN_BACKOFF;
    let recorder = loop {
        attempt += 1;
        match Recorder::open(
            node.repo.clone(),
            node.store.clone(),
            &name,
            &job.generation,
            node.config.video_bitrate,
            node.uploads(),
            node.config.opus_passthrough,
        )
        .await
        {
            Ok(r) => break r,
            Err(e @ (RecorderError::Repo(_) | RecorderError::Store(_))) if recovering || attempt < OPEN_ATTEMPTS => {
                tracing::warn!(stream = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, "could not open the recorder; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_OPEN_BACKOFF);
                if *command.borrow() == Command::Abandon {
                    return false;
                }
            }
            Err(e) => {
                tracing::warn!(stream = %name, error = %e, "cannot record the stream");
                phase.send_replace(Phase::Failed(publish_error(&name, e)));
                return false;
            }
        }
    };
    phase.send_replace(Phase::Recording);
    let mut task = StreamTask {
        node: node.clone(),
        name: name.clone(),
        generation: job.generation,
        task: job.task,
        keyframes: job.keyframes,
        timeline: Timeline::new(recorder.continues_at()),
        recorder,
        audio: None,
        window: StatsWindow { opened: Some(Instant::now()), ..Default::default() },
        params: Vec::new(),
        level_last: Vec::new(),
        keyframe_asked: None,
        tracks: OpenTracks::default(),
        layers: BTreeMap::new(),
        layer_keyframe_asked: None,
    };
    let end = task.record(&mut rx, &mut command).await;
    // No more publishers; the current one is closed.
    phase.send_replace(Phase::Closing);
    node.close_publisher(&name, job.task).await;
    if let End::Finish = end {
        // What the closed session had received (its readers flush their
        // reorder buffers as their tracks end) is part of the recording.
        task.drain(&mut rx).await;
    }
    rx.close();
    match end {
        End::Finish => match task.recorder.finish(Some(task.window.close(StoreReport::default()))).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(stream = %name, error = %e, "could not finalize the recording");
                false
            }
        },
        End::Abandon => {
            tracing::info!(stream = %name, "the stream is gone or was admitted again; abandoning the recording");
            task.recorder.abandon();
            false
        }
    }
}

struct StreamTask {
    node: Arc<IngestNode>,
    name: String,
    generation: Generation,
    task: u64,
    keyframes: KeyframeRequests,
    timeline: Timeline,
    recorder: Recorder,
    /// The session's audio path (made at its first audio): Opus to AAC,
    /// or Opus kept.
    audio: Option<AudioPath>,
    window: StatsWindow,
    /// Each video level's latest SPS and PPS.
    params: Vec<(Option<Bytes>, Option<Bytes>)>,
    /// Each video level's latest time.
    level_last: Vec<Option<i64>>,
    /// When the packager's pending keyframe request was first made.
    keyframe_asked: Option<Instant>,
    /// What a drain waits for.
    tracks: OpenTracks,
    /// Each session's video layers: which feeds which level, on one clock.
    layers: BTreeMap<u64, SessionLayers>,
    /// When keyframes were last asked for to feed a level from another layer.
    layer_keyframe_asked: Option<Instant>,
}

/// An access unit of a video layer, before it is recorded (the levels may
/// be waiting to be settled, [`LayerMap`]); one layer may feed several
/// levels.
#[derive(Debug, Clone)]
struct PendingVideo {
    unit: mediastreams_rtp::codec::h264::AccessUnit,
    /// On the session's video clock ([`LayerClocks`]).
    rtp: u64,
    arrival: Instant,
    /// Its bytes of the stream's input budget, released once every level
    /// has packaged it.
    held: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

/// A publisher session's video layers.
#[derive(Debug)]
struct SessionLayers {
    map: LayerMap<PendingVideo>,
    clocks: LayerClocks,
}

impl SessionLayers {
    fn new(expected: usize) -> Self {
        SessionLayers { map: LayerMap::new(expected), clocks: LayerClocks::default() }
    }
}

/// After the publisher is closed, what is queued is taken, then input until
/// every track reader of its session has ended (flushed), or it has been
/// quiet this long (a reader that never says so), or for at most
/// `DRAIN_MAX`.
const DRAIN_QUIET: Duration = Duration::from_millis(250);
const DRAIN_MAX: Duration = Duration::from_secs(2);

/// The tracks of the latest session whose readers started (or that sent
/// media) and have not ended.
/// Session ids grow (the node numbers them in order): what an older
/// session's readers still deliver (a reader flushing after its publisher
/// reconnected) says nothing of the latest one's tracks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct OpenTracks {
    session: u64,
    video: bool,
    audio: bool,
}

impl OpenTracks {
    /// A reader of `session`'s video (`video`) or audio track started, or
    /// its track sent media.
    fn opened(&mut self, session: u64, video: bool) {
        if session < self.session {
            return;
        }
        if session > self.session {
            *self = OpenTracks { session, ..Default::default() };
        }
        if video {
            self.video = true;
        } else {
            self.audio = true;
        }
    }

    /// A track of `session` ended.
    fn ended(&mut self, session: u64, video: bool) {
        if session == self.session {
            if video {
                self.video = false;
            } else {
                self.audio = false;
            }
        }
    }

    fn any(&self) -> bool {
        self.video || self.audio
    }
}

impl StreamTask {
    /// Packages what is still queued, then the audio the encoder holds.
    async fn drain(&mut self, rx: &mut mpsc::Receiver<StreamInput>) {
        let until = tokio::time::Instant::now() + DRAIN_MAX;
        // What is queued already is the session's, whatever the tracks say
        // (their starts may be queued too); then what their readers still
        // deliver, until each says it has ended.
        loop {
            let input = match rx.try_recv() {
                Ok(input) => input,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if !self.tracks.any() {
                        break;
                    }
                    let wait = DRAIN_QUIET.min(until.saturating_duration_since(tokio::time::Instant::now()));
                    match tokio::time::timeout(wait, rx.recv()).await {
                        Ok(Some(input)) => input,
                        _ => break,
                    }
                }
            };
            if matches!(input, StreamInput::SessionEnded { .. }) {
                // Its fragments are closed by finishing.
                continue;
            }
            self.input(input).await;
            if tokio::time::Instant::now() >= until {
                break;
            }
        }
        if let Some(&session) = self.layers.keys().next_back() {
            self.record_undecided(session).await;
        }
        if let Some(session) = self.timeline.current_session() {
            self.flush_audio(session).await;
        }
    }

    /// Keeps the layer choices of the latest few sessions (those that may
    /// still deliver) and always the one being placed, whatever sessions
    /// started since (a publisher whose offers keep failing negotiation
    /// starts sessions that never send).
    fn forget_old_sessions(&mut self, keep: usize) {
        let current = self.timeline.current_session();
        while self.layers.len() > keep {
            let Some(oldest) = self.layers.keys().copied().find(|s| Some(*s) != current) else { break };
            self.layers.remove(&oldest);
        }
    }

    /// A session that ends while its layers wait to be settled: the
    /// levels are settled among those that had a keyframe, and what they
    /// held is recorded.
    async fn record_undecided(&mut self, session: u64) {
        // Only onto the timeline of the session being placed.
        if self.timeline.current_session().is_some_and(|s| s != session) {
            return;
        }
        let recorder = &self.recorder;
        let Some(layers) = self.layers.get_mut(&session) else { return };
        let routed = layers.map.settle_now(Instant::now(), || recorder.video_level_pictures());
        self.mark_recorded(session);
        self.record_routed(session, routed).await;
    }

    /// Which layers of `session` feed a level, for the statistics.
    fn mark_recorded(&mut self, session: u64) {
        if self.window.layers_session != Some(session) {
            return;
        }
        let Some(layers) = self.layers.get(&session) else { return };
        for (i, w) in self.window.layers.iter_mut() {
            w.recorded = layers.map.feeds(*i);
        }
    }

    /// Records what the layer map routed; levels settled for a new
    /// recording become its video quality levels.
    async fn record_routed(&mut self, session: u64, routed: Routed<PendingVideo>) {
        if let Some(layers) = &routed.new_levels {
            // Each level's first unit is its layer's keyframe, with its
            // SPS and PPS.
            let params: Option<Vec<(Bytes, Bytes)>> = (0..layers.len())
                .map(|level| {
                    let (_, v) = routed.units.iter().find(|(l, _)| *l == level)?;
                    let (sps, pps) = v.unit.parameter_sets();
                    Some((sps?.clone(), pps?.clone()))
                })
                .collect();
            match params {
                Some(params) if params.len() > 1 => {
                    tracing::info!(stream = %self.name, session, levels = params.len(), "simulcast layers recorded as video quality levels");
                    self.recorder.plan_video_levels(params);
                }
                Some(_) => {}
                None => tracing::warn!(stream = %self.name, session, "simulcast layers without parameter sets; recording one level"),
            }
        }
        for (level, v) in routed.units {
            self.record_video(session, level, v).await;
        }
    }

    /// The audio path's last frames (AAC: padded to a whole frame).
    async fn flush_audio(&mut self, session: u64) {
        let Some(path) = self.audio.as_mut() else { return };
        match path.finish() {
            Ok(frames) => self.push_audio(session, frames).await,
            Err(e) => tracing::debug!(stream = %self.name, error = %e, "could not flush the audio encoder"),
        }
        self.audio = None;
    }

    async fn record(&mut self, rx: &mut mpsc::Receiver<StreamInput>, command: &mut watch::Receiver<Command>) -> End {
        let mut last_media = Instant::now();
        let mut poll = tokio::time::interval(self.node.config.poll_interval);
        let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
        let mut failed_polls = 0u32;
        let mut writing: Option<tokio::task::JoinHandle<()>> = None;
        let mut reading: Option<(RecordRead, Instant)> = None;
        loop {
            match *command.borrow_and_update() {
                Command::Record => {}
                Command::Finish => return End::Finish,
                Command::Abandon => return End::Abandon,
            }
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { return End::Finish };
                    if matches!(input, StreamInput::Video { .. } | StreamInput::Audio { .. }) {
                        last_media = Instant::now();
                    }
                    self.input(input).await;
                    if let Some(reason) = self.recorder.upload_failure() {
                        tracing::error!(stream = %self.name, reason = %reason, "the recording cannot be written; ending the stream");
                        return End::Finish;
                    }
                }
                changed = command.changed() => {
                    if changed.is_err() {
                        // The node is gone.
                        return End::Finish;
                    }
                }
                _ = stats_tick.tick() => {
                    let stats = self.window.close(self.recorder.store_report());
                    if stats.last_media_at.is_some() && writing.as_ref().is_none_or(|h| h.is_finished()) {
                        writing = Some(self.write_stats(stats));
                    }
                }
                _ = poll.tick() => {
                    // The read runs beside media: a slow table never holds
                    // up packaging. One that takes too long is given up.
                    match &reading {
                        Some((_, started)) if started.elapsed() < READ_TIMEOUT => {}
                        _ => {
                            if let Some((h, _)) = reading.take() {
                                h.abort();
                                tracing::warn!(stream = %self.name, "reading the stream record timed out; reading again");
                            }
                            let (repo, name) = (self.node.repo.clone(), self.name.clone());
                            reading = Some((tokio::spawn(async move { repo.get(&name).await }), Instant::now()));
                        }
                    }
                }
                read = async { match reading.as_mut() { Some((h, _)) => h.await, None => std::future::pending().await } } => {
                    reading = None;
                    let record = match read {
                        Ok(Ok(r)) => {
                            failed_polls = 0;
                            r
                        }
                        Ok(Err(e)) => {
                            // Not a reason to end anything: the next poll
                            // tries again.
                            failed_polls += 1;
                            if failed_polls == 1 || failed_polls.is_power_of_two() {
                                tracing::warn!(stream = %self.name, error = %e, failed_polls, "could not read the stream record; recording on");
                            }
                            continue;
                        }
                        Err(_) => continue,
                    };
                    let Some(record) = record.map(|v| v.stream) else { return End::Abandon };
                    if Generation::of(&record).as_ref() != Some(&self.generation) {
                        return End::Abandon;
                    }
                    let idle = last_media.elapsed() >= self.node.config.idle_timeout;
                    match record.state {
                        // Stop-ingest; or the reaper took this node for
                        // dead and finalized the stream from storage: the
                        // node's own final objects are more complete.
                        StreamState::Stopping | StreamState::OnDemand => return End::Finish,
                        StreamState::Ready | StreamState::Live if !idle => {}
                        StreamState::Ready | StreamState::Live => {
                            tracing::info!(stream = %self.name, "no media for the idle timeout; stopping ingest");
                            return End::Finish;
                        }
                        StreamState::Deleting | StreamState::Created | StreamState::Failed => return End::Abandon,
                    }
                }
            }
        }
    }

    async fn input(&mut self, input: StreamInput) {
        let name = self.name.clone();
        match input {
            StreamInput::Video { unit, rtp_ext, arrival, session, layer, held } => {
                self.tracks.opened(session, true);
                // A keyframe's picture size: which layer is largest.
                let picture = unit
                    .keyframe
                    .then(|| unit.parameter_sets().0.and_then(|s| mediastreams_packager::codec::h264::parse_sps(s).ok()))
                    .flatten()
                    .map(|i| (i.width, i.height));
                if !self.layers.contains_key(&session) {
                    self.forget_old_sessions(3);
                }
                // Without the session's start (its layers): its first layer.
                if self.window.layers_of(session) {
                    let w = self.window.layers.entry(layer).or_default();
                    w.bytes += unit.nal_units.iter().map(|n| n.len() as u64).sum::<u64>();
                    w.frames += 1;
                    if let Some((width, height)) = picture {
                        (w.width, w.height) = (width, height);
                    }
                }
                let recorder = &self.recorder;
                let layers = self.layers.entry(session).or_insert_with(|| SessionLayers::new(1));
                let rtp = layers.clocks.map(layer, rtp_ext, arrival);
                let before = layers.map.sources();
                // By arrival: a stream task working through a backlog sees
                // the layers' timing as they came.
                let held = held.map(Arc::new);
                let routed =
                    layers.map.push(layer, PendingVideo { unit, rtp, arrival, held }, picture, arrival, || recorder.video_level_pictures());
                let (after, wanted) = (layers.map.sources(), layers.map.keyframe_wanted(arrival));
                if before != after {
                    if before.is_empty() {
                        tracing::info!(stream = %name, session, layers = ?after, "video levels fed by layers");
                    } else {
                        tracing::info!(stream = %name, session, from = ?before, to = ?after, "a video layer paused or came back; levels fed by others");
                    }
                    self.mark_recorded(session);
                }
                // Feeding a level from another layer waits for its
                // keyframe: asked for once a second at most.
                if wanted && self.layer_keyframe_asked.is_none_or(|at| at.elapsed() >= crate::media::layers::STALL) {
                    self.layer_keyframe_asked = Some(Instant::now());
                    self.keyframes.request();
                }
                self.record_routed(session, routed).await;
            }
            StreamInput::Audio { opus, rtp_ext, arrival, session } => {
                self.tracks.opened(session, false);
                self.window.queue = self.window.queue.max(arrival.elapsed());
                self.window.audio_bytes += opus.len() as u64;
                self.window.last_media_at = Some(time::OffsetDateTime::now_utc());
                if !self.timeline.is_current(session) {
                    self.audio = None;
                }
                self.timeline.audio(session, rtp_ext, arrival);
                let Some(path) = self.audio_path() else { return };
                let frames = match path.push_opus(opus) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::debug!(stream = %name, error = %e, "opus packet dropped");
                        Vec::new()
                    }
                };
                self.push_audio(session, frames).await;
            }
            StreamInput::AudioLost { packets, session } => {
                self.tracks.opened(session, false);
                // Lost audio is concealed with silence on the timeline:
                // the frames count, so later audio keeps its place
                // against video.
                if !self.timeline.has_audio(session) {
                    return;
                }
                let Some(path) = self.audio_path() else { return };
                let frames = match path.push_lost(packets) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::debug!(stream = %name, error = %e, "silence not encoded");
                        Vec::new()
                    }
                };
                self.push_audio(session, frames).await;
            }
            StreamInput::VideoLayer { session, layer, rid } => {
                if self.window.layers_of(session) {
                    self.window.layers.entry(layer).or_default().rid = rid;
                }
            }
            StreamInput::Reception { video, received, lost } => {
                let i = usize::from(!video);
                self.window.received[i] = received;
                self.window.lost[i] = lost;
            }
            StreamInput::SenderReport { video, layer, ntp, rtp, session } => {
                if !video {
                    self.timeline.sender_report(session, false, ntp, rtp);
                } else if let Some((ntp, rtp)) = self.layers.get_mut(&session).and_then(|l| l.clocks.report(layer, ntp, rtp)) {
                    // The video clock's (its first layer's); another
                    // layer's maps that layer onto it.
                    self.timeline.sender_report(session, true, ntp, rtp as u32);
                }
            }
            StreamInput::SessionStarted { session, audio, video_layers } => {
                self.forget_old_sessions(3);
                self.layers.insert(session, SessionLayers::new(video_layers));
                // A recording that has not begun takes the channels of the
                // publisher that begins it; later sessions are mixed to
                // the recording's.
                self.recorder.prefer_audio_channels(audio);
                tracing::debug!(stream = %name, session, ?audio, recording = ?self.recorder.audio_channels(), "publisher session started");
            }
            StreamInput::TrackStarted { session, video } => self.tracks.opened(session, video),
            StreamInput::TrackEnded { session, video } => self.tracks.ended(session, video),
            StreamInput::SessionEnded { session } => {
                // The publisher is gone: another may connect.
                self.node.session_ended(&self.name, self.task, session);
                self.record_undecided(session).await;
                if self.timeline.is_current(session) {
                    self.flush_audio(session).await;
                    match self.recorder.end_session().await {
                        Ok(next) => self.timeline.end_session(next),
                        Err(e) => tracing::warn!(stream = %name, error = %e, "could not close the session's fragments"),
                    }
                    self.audio = None;
                    tracing::info!(stream = %name, session, "publisher left; waiting for a reconnect");
                }
            }
        }
    }

    /// Records an access unit of video quality level `level`.
    async fn record_video(&mut self, session: u64, level: usize, v: PendingVideo) {
        let name = self.name.clone();
        let PendingVideo { unit, rtp, arrival, held } = v;
        self.window.queue = self.window.queue.max(arrival.elapsed());
        // Level 0's pictures move the video clock; the other levels' (the
        // same captures, on the same clock) are placed on it. Before level
        // 0's first picture of the session, or after the clock jumped, a
        // picture of another level anchors it (one clock for all layers).
        let placed = if level == 0 { None } else { self.timeline.video_at(session, rtp) };
        let mut time = match placed {
            Some(t) => t,
            None => {
                let t = self.timeline.video(session, rtp, arrival);
                if let Some(transit) = self.timeline.video_transit() {
                    self.window.video_transit = self.window.video_transit.max(Duration::from_nanos(transit.max(0) as u64 * 100));
                }
                self.log_timeline_events(session);
                self.window.av_sync = self.timeline.av_sync();
                t
            }
        };
        if self.level_last.len() <= level {
            self.level_last.resize(level + 1, None);
            self.params.resize(level + 1, (None, None));
        }
        // Each level's times increase (a level fed by another layer from
        // a learnt offset may land a little early).
        if let Some(last) = self.level_last[level] {
            time = time.max(last + 1);
        }
        self.level_last[level] = Some(time);
        let (s, p) = unit.parameter_sets();
        // The statistics' picture is the largest level's.
        let top = level + 1 == self.recorder.video_levels();
        let params = &mut self.params[level];
        if let Some(s) = s {
            if top
                && params.0.as_ref() != Some(s)
                && let Ok(info) = mediastreams_packager::codec::h264::parse_sps(s)
            {
                (self.window.width, self.window.height) = (info.width, info.height);
            }
            params.0 = Some(s.clone());
        }
        if let Some(p) = p {
            params.1 = Some(p.clone());
        }
        if top {
            self.window.frames += 1;
            self.window.video_bytes += unit.nal_units.iter().map(|n| n.len() as u64).sum::<u64>();
        }
        self.window.last_media_at = Some(time::OffsetDateTime::now_utc());
        if level == 0
            && unit.keyframe
            && let Some(asked) = self.keyframe_asked.take()
        {
            self.window.keyframe = self.window.keyframe.max(arrival.saturating_duration_since(asked));
        }
        let sample = VideoSample { time, keyframe: unit.keyframe, data: unit.to_avcc() };
        let (sps, pps) = (self.params[level].0.clone(), self.params[level].1.clone());
        match self.recorder.push_video(level, sample, sps.as_ref(), pps.as_ref(), arrival).await {
            Ok(true) => {
                self.keyframe_asked.get_or_insert_with(Instant::now);
                self.keyframes.request();
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(stream = %name, level, error = %e, "video sample dropped"),
        }
        drop(held);
    }

    fn audio_path(&mut self) -> Option<&mut AudioPath> {
        if self.audio.is_none() {
            let r = &self.recorder;
            match AudioPath::for_track(r.audio_codec(), r.audio_channels(), r.audio_bitrate()) {
                Ok(p) => self.audio = Some(p),
                Err(e) => tracing::error!(stream = %self.name, error = %e, "no audio path"),
            }
        }
        self.audio.as_mut()
    }

    /// Packages audio frames at the session's audio clock.
    async fn push_audio(&mut self, session: u64, frames: Vec<EncodedAudio>) {
        let times = self.timeline.audio_times(session, frames.iter().map(|f| f.samples));
        for (time, f) in times.into_iter().zip(frames) {
            if let Err(e) = self.recorder.push_audio(AudioFrame { time, data: f.data }).await {
                tracing::debug!(stream = %self.name, error = %e, "audio frame dropped");
            }
        }
    }

    fn log_timeline_events(&mut self, session: u64) {
        for e in self.timeline.take_events() {
            match e {
                TimelineEvent::VideoClockJumped { jump } => {
                    tracing::warn!(stream = %self.name, session, jump_ms = jump / 10_000, "the publisher's video RTP clock jumped; re-anchored at arrival");
                }
                TimelineEvent::Synced { correction } => {
                    tracing::info!(stream = %self.name, session, correction_ms = correction / 10_000, "audio and video in sync by sender reports");
                }
            }
        }
    }

    /// Writes the statistics beside media (a slow table holds up nothing).
    fn write_stats(&self, stats: mediastreams_model::IngestStats) -> tokio::task::JoinHandle<()> {
        let (repo, name, generation) = (self.node.repo.clone(), self.name.clone(), self.generation.clone());
        tokio::spawn(async move {
            // A conditional write like every other, on this generation only.
            let r = repo
                .update(&name, |s| {
                    if s.state != StreamState::Live || Generation::of(s).as_ref() != Some(&generation) {
                        return Ok(None);
                    }
                    let mut next = s.clone();
                    next.stats = Some(stats.clone());
                    Ok(Some(next))
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(stream = %name, error = %e, "could not write ingest statistics");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OpenTracks;

    #[test]
    fn a_drain_waits_for_the_tracks_of_the_latest_session_until_each_ends() {
        let mut t = OpenTracks::default();
        assert!(!t.any(), "no reader started: nothing to wait for");
        t.opened(1, true);
        t.opened(1, false);
        t.ended(1, true);
        assert!(t.any(), "audio of session 1 is still open");
        t.ended(2, false);
        assert!(t.any(), "another session's end says nothing of session 1");
        t.ended(1, false);
        assert!(!t.any());

        // A new session's media replaces the old session's tracks; what an
        // older session's reader still flushes does not.
        t.opened(3, true);
        t.opened(4, false);
        assert_eq!(t, OpenTracks { session: 4, video: false, audio: true });
        t.opened(3, true);
        t.ended(3, true);
        assert_eq!(t, OpenTracks { session: 4, video: false, audio: true });
    }
}
