//! The node: WHIP sessions in, one recorder per stream.
//!
//! Each stream with a publisher has a *stream task* that owns its
//! [`Recorder`] and audio transcoder; the publisher's WebRTC session feeds it
//! through a bounded channel (`try_send`: when the stream task lags, RTP
//! reception drops samples rather than stalling). The stream task also
//! watches the stream's record: when stop-ingest moves it to `Stopping`, or
//! no media has arrived for the idle timeout, it finalizes the recording.
//! A publisher that disconnects ends only its session; a new session within
//! the grace period continues the same presentation.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mediastreams_model::{AvSync, StreamState};
use mediastreams_packager::{AudioFrame, VideoSample};
use mediastreams_rtp::clock::{SenderClock, TrackClock, extend_near, slew, synced_anchor};
use mediastreams_rtp::codec::h264::AccessUnit;
use mediastreams_storage::{ObjectStore, StreamRepo};
use tokio::sync::{Mutex, mpsc};

use crate::media::audio::OpusToAac;
use crate::recorder::Recorder;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The local address WebRTC media is received on.
    pub media_ip: IpAddr,
    /// The one UDP port every session's media arrives on (0: any free
    /// port, chosen when the node binds it).
    pub media_port: u16,
    /// Public addresses to announce instead (NAT 1:1, cloud hosts).
    pub public_ips: Vec<String>,
    /// No media for this long ends ingest (the recording becomes on demand).
    pub idle_timeout: Duration,
    /// How often the stream record is checked for stop-ingest.
    pub poll_interval: Duration,
    /// Nominal video bitrate announced in the manifests.
    pub video_bitrate: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            media_ip: IpAddr::from([127, 0, 0, 1]),
            media_port: 0,
            public_ips: Vec::new(),
            idle_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            video_bitrate: 1_500_000,
        }
    }
}

/// What sessions send their stream task.
#[derive(Debug)]
pub enum StreamInput {
    Video { unit: AccessUnit, rtp_ext: u64, arrival: Instant, session: u64 },
    Audio { opus: Bytes, rtp_ext: u64, arrival: Instant, session: u64 },
    /// Audio packets of `session` that never came (20 ms each).
    AudioLost { samples: usize, session: u64 },
    /// A reader's cumulative reception counters.
    Reception { video: bool, received: u64, lost: u64 },
    SessionEnded { session: u64 },
    /// An RTCP sender report of the session's video or audio track.
    SenderReport { video: bool, ntp: u64, rtp: u32, session: u64 },
}

/// How often ingest statistics are written to the stream record.
pub const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// Statistics gathered between two writes.
#[derive(Debug, Default)]
struct StatsWindow {
    video_bytes: u64,
    audio_bytes: u64,
    frames: u64,
    width: u32,
    height: u32,
    received: [u64; 2],
    lost: [u64; 2],
    last_media_at: Option<time::OffsetDateTime>,
    av_sync: Option<AvSync>,
}

/// Capacity of a stream task's input queue (about 10 s of media).
pub const STREAM_QUEUE: usize = 1024;

pub(crate) struct StreamEntry {
    pub input: mpsc::Sender<StreamInput>,
    /// The session publishing now, if any.
    pub session: Option<crate::session::SessionHandle>,
    /// Where keyframe requests go (the current session's video reader).
    pub keyframe_tx: Arc<Mutex<Option<mpsc::Sender<()>>>>,
}

pub struct IngestNode {
    pub(crate) repo: StreamRepo,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) config: NodeConfig,
    pub(crate) streams: Mutex<HashMap<String, StreamEntry>>,
    pub(crate) next_session: std::sync::atomic::AtomicU64,
    /// The media socket, bound by [`IngestNode::bind_media`] or the first
    /// session.
    mux: tokio::sync::OnceCell<Arc<crate::ice::udp_mux::UdpMux>>,
    /// The public IP found with [`IngestNode::discover_public_ip`].
    discovered_ip: std::sync::OnceLock<String>,
    /// This node's place in a fleet, if it is in one.
    fleet: std::sync::OnceLock<crate::whip::fleet::Fleet>,
}

impl IngestNode {
    pub fn new(repo: StreamRepo, store: Arc<dyn ObjectStore>, config: NodeConfig) -> Arc<Self> {
        Arc::new(IngestNode {
            repo,
            store,
            config,
            streams: Mutex::new(HashMap::new()),
            next_session: std::sync::atomic::AtomicU64::new(1),
            mux: tokio::sync::OnceCell::new(),
            discovered_ip: std::sync::OnceLock::new(),
            fleet: std::sync::OnceLock::new(),
        })
    }

    /// Makes this node `node_id` of the fleet in `registry`: WHIP requests
    /// for streams assigned to other nodes are handed to them
    /// ([`crate::whip::fleet`]). Only the first call counts.
    pub fn join_fleet(&self, node_id: String, registry: mediastreams_storage::NodeRegistry) {
        let _ = self.fleet.set(crate::whip::fleet::Fleet::new(node_id, registry));
    }

    pub(crate) fn fleet(&self) -> Option<&crate::whip::fleet::Fleet> {
        self.fleet.get()
    }

    /// Asks a STUN server (`host:port`) which address the media socket is
    /// seen at, and announces that IP in answers from now on (unless
    /// `public_ips` are configured, which win). For hosts behind a 1:1 NAT
    /// that do not know their public IP (cloud tasks).
    pub async fn discover_public_ip(&self, stun_server: &str) -> std::io::Result<std::net::SocketAddr> {
        let mux = self.media_mux().await?;
        let local = mux.local_addr()?;
        let server = tokio::net::lookup_host(stun_server)
            .await?
            .find(|a| a.is_ipv4() == local.is_ipv4())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{stun_server} has no address of the media socket's family")))?;
        let public = mux.public_address(server).await?;
        let _ = self.discovered_ip.set(public.ip().to_string());
        Ok(public)
    }

    /// The IP answers announce instead of the media socket's, if any.
    pub fn public_ip(&self) -> Option<&str> {
        self.config.public_ips.first().map(String::as_str).or_else(|| self.discovered_ip.get().map(String::as_str))
    }

    /// Binds the media socket (`media_ip:media_port`) if it is not bound
    /// yet, and returns its address. Binaries call it at start, so that a
    /// port in use is an error then rather than at the first publisher.
    pub async fn bind_media(&self) -> std::io::Result<std::net::SocketAddr> {
        self.media_mux().await?.local_addr()
    }

    pub(crate) async fn media_mux(&self) -> std::io::Result<Arc<crate::ice::udp_mux::UdpMux>> {
        let addr = std::net::SocketAddr::new(self.config.media_ip, self.config.media_port);
        self.mux
            .get_or_try_init(|| crate::ice::udp_mux::UdpMux::bind(addr))
            .await
            .cloned()
    }

    /// The media socket's counters, once it is bound.
    pub fn media_stats(&self) -> Option<crate::ice::udp_mux::MuxStats> {
        self.mux.get().map(|m| m.stats())
    }

    pub fn repo(&self) -> &StreamRepo {
        &self.repo
    }

    /// Streams this node is recording now (its load, in heartbeats).
    pub async fn active_streams(&self) -> usize {
        self.streams.lock().await.len()
    }

    /// The stream task's input, starting the task when the stream has none.
    pub(crate) async fn stream_input(self: &Arc<Self>, name: &str) -> Result<(mpsc::Sender<StreamInput>, Arc<Mutex<Option<mpsc::Sender<()>>>>), crate::recorder::RecorderError> {
        let mut streams = self.streams.lock().await;
        if let Some(e) = streams.get(name)
            && !e.input.is_closed() {
                return Ok((e.input.clone(), e.keyframe_tx.clone()));
            }
        let recorder = Recorder::open(self.repo.clone(), self.store.clone(), name, self.config.video_bitrate).await?;
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let keyframe_tx = Arc::new(Mutex::new(None));
        streams.insert(name.to_owned(), StreamEntry { input: tx.clone(), session: None, keyframe_tx: keyframe_tx.clone() });
        let node = self.clone();
        let name = name.to_owned();
        let kf = keyframe_tx.clone();
        tokio::spawn(async move {
            let result = stream_task(node.clone(), name.clone(), recorder, rx, kf).await;
            if let Err(e) = result {
                tracing::error!(stream = %name, error = %e, "stream task failed");
            }
            let mut streams = node.streams.lock().await;
            if let Some(entry) = streams.remove(&name)
                && let Some(s) = entry.session {
                    s.close().await;
                }
        });
        Ok((tx, keyframe_tx))
    }
}

/// Per-session timing: RTP clocks anchored at each track's first packet,
/// the tracks offset by their arrival, the session placed at `origin` on
/// the presentation timeline. Once both tracks have sent an RTCP sender
/// report, the video clock is slewed (1 ms per frame) to where the reports
/// put it relative to the audio: lip sync by the sender's capture clock.
struct SessionClock {
    session: u64,
    origin: i64,
    first_arrival: Instant,
    video: Option<TrackClock>,
    audio: Option<(TrackClock, u64)>,
    /// The latest extended RTP timestamp of each track (video, audio).
    last_rtp: [Option<u64>; 2],
    /// The latest sender report of each track (video, audio).
    reports: [Option<SenderClock>; 2],
    /// The video clock follows the sender reports.
    synced: bool,
    /// The last video sample's time.
    last_video_time: Option<i64>,
}

/// A track whose RTP time strays this far (2 s) from its arrival time has
/// jumped (a restarted encoder, a looping file): it is re-anchored.
const MAX_CLOCK_JUMP: i64 = 20_000_000;

/// Largest step of the video clock toward sync, per frame (1 ms).
const SYNC_STEP: i64 = 10_000;
/// Sender reports that would move video by more than this (1 s) are not
/// believed: arrival-based alignment is never that far off.
const MAX_SYNC_CORRECTION: i64 = 10_000_000;

impl SessionClock {
    fn new(session: u64, origin: i64, first_arrival: Instant) -> Self {
        SessionClock { session, origin, first_arrival, video: None, audio: None, last_rtp: [None; 2], reports: [None; 2], synced: false, last_video_time: None }
    }

    /// Re-anchors the video clock when `rtp` maps far from `arrival_time`
    /// (the publisher's RTP clock jumped), after the last frame.
    fn follow_video_jump(&mut self, stream: &str, rtp: u64, arrival_time: i64) {
        let Some(vc) = self.video else { return };
        let jump = vc.to_timeline(rtp) - arrival_time;
        if jump.abs() > MAX_CLOCK_JUMP {
            let after_last = self.last_video_time.map_or(arrival_time, |l| l + 1);
            self.video = Some(TrackClock { clock_rate: vc.clock_rate, anchor_rtp: rtp, anchor_time: arrival_time.max(after_last) });
            // The old report maps the old clock.
            self.reports[0] = None;
            tracing::warn!(stream, session = self.session, jump_ms = jump / 10_000, "the publisher's video RTP clock jumped; re-anchored at arrival");
        }
    }

    /// The video clock, moved a step toward where the sender reports put it.
    fn sync_video(&mut self, stream: &str) -> Option<TrackClock> {
        let mut vc = self.video?;
        if let (Some((ac, _)), Some(video_report), Some(audio_report)) = (self.audio, self.reports[0], self.reports[1]) {
            let target = synced_anchor(&ac, audio_report, &vc, video_report);
            let correction = target - vc.anchor_time;
            if correction.abs() <= MAX_SYNC_CORRECTION {
                if !self.synced {
                    self.synced = true;
                    tracing::info!(stream, session = self.session, correction_ms = correction / 10_000, "audio and video in sync by sender reports");
                }
                vc.anchor_time = slew(vc.anchor_time, target, SYNC_STEP);
                self.video = Some(vc);
            }
        }
        Some(vc)
    }

    fn offset(&self, arrival: Instant) -> i64 {
        self.origin + (arrival.saturating_duration_since(self.first_arrival).as_nanos() / 100) as i64
    }
}

async fn stream_task(
    node: Arc<IngestNode>,
    name: String,
    mut recorder: Recorder,
    mut rx: mpsc::Receiver<StreamInput>,
    keyframe_tx: Arc<Mutex<Option<mpsc::Sender<()>>>>,
) -> Result<(), crate::recorder::RecorderError> {
    let mut transcoder = OpusToAac::new().map_err(|e| crate::recorder::RecorderError::Audio(e.to_string()))?;
    let mut clock: Option<SessionClock> = None;
    let mut origin: i64 = 0;
    let mut last_media = Instant::now();
    let mut poll = tokio::time::interval(node.config.poll_interval);
    let (mut sps, mut pps): (Option<Bytes>, Option<Bytes>) = (None, None);
    let mut window = StatsWindow::default();
    let mut window_start = Instant::now();
    let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
    loop {
        tokio::select! {
            input = rx.recv() => {
                let Some(input) = input else { break };
                match input {
                    StreamInput::Video { unit, rtp_ext, arrival, session } => {
                        last_media = Instant::now();
                        let c = clock.get_or_insert_with(|| SessionClock::new(session, origin, arrival));
                        if c.session != session {
                            *c = SessionClock::new(session, origin, arrival);
                        }
                        let anchor = c.offset(arrival);
                        c.video.get_or_insert(TrackClock { clock_rate: 90_000, anchor_rtp: rtp_ext, anchor_time: anchor });
                        c.follow_video_jump(&name, rtp_ext, anchor);
                        c.last_rtp[0] = Some(rtp_ext);
                        let Some(vc) = c.sync_video(&name) else { continue };
                        window.av_sync = Some(if c.synced { AvSync::SenderReports } else { AvSync::Arrival });
                        if unit.keyframe {
                            tracing::debug!(stream = %name, rtp_ext, "keyframe");
                        }
                        let (s, p) = unit.parameter_sets();
                        if let Some(s) = s {
                            if sps.as_ref() != Some(s)
                                && let Ok(info) = mediastreams_packager::codec::h264::parse_sps(s) {
                                    (window.width, window.height) = (info.width, info.height);
                                }
                            sps = Some(s.clone());
                        }
                        window.frames += 1;
                        window.video_bytes += unit.nal_units.iter().map(|n| n.len() as u64).sum::<u64>();
                        window.last_media_at = Some(time::OffsetDateTime::now_utc());
                        if let Some(p) = p { pps = Some(p.clone()); }
                        let time = vc.to_timeline(rtp_ext).max(0);
                        c.last_video_time = Some(time);
                        let sample = VideoSample { time, keyframe: unit.keyframe, data: unit.to_avcc() };
                        match recorder.push_video(sample, sps.as_ref(), pps.as_ref()).await {
                            Ok(true) => request_keyframe(&keyframe_tx).await,
                            Ok(false) => {}
                            Err(crate::recorder::RecorderError::Packager(e)) => tracing::warn!(stream = %name, error = %e, "video sample dropped"),
                            Err(e) => return Err(e),
                        }
                    }
                    StreamInput::Audio { opus, rtp_ext, arrival, session } => {
                        last_media = Instant::now();
                        window.audio_bytes += opus.len() as u64;
                        window.last_media_at = Some(time::OffsetDateTime::now_utc());
                        let c = clock.get_or_insert_with(|| SessionClock::new(session, origin, arrival));
                        if c.session != session {
                            *c = SessionClock::new(session, origin, arrival);
                        }
                        let anchor = c.offset(arrival);
                        c.audio.get_or_insert((TrackClock { clock_rate: 48_000, anchor_rtp: rtp_ext, anchor_time: anchor }, 0));
                        c.last_rtp[1] = Some(rtp_ext);
                        let frames = match transcoder.push_opus(&opus) {
                            Ok(f) => f,
                            Err(e) => { tracing::debug!(stream = %name, error = %e, "opus packet dropped"); Vec::new() }
                        };
                        push_aac(&name, &mut recorder, c, frames).await?;
                    }
                    StreamInput::Reception { video, received, lost } => {
                        let i = usize::from(!video);
                        window.received[i] = received;
                        window.lost[i] = lost;
                    }
                    StreamInput::SenderReport { video, ntp, rtp, session } => {
                        if let Some(c) = clock.as_mut().filter(|c| c.session == session) {
                            let i = usize::from(!video);
                            if let Some(reference) = c.last_rtp[i] {
                                c.reports[i] = Some(SenderClock { ntp, rtp: extend_near(rtp, reference) });
                            }
                        }
                    }
                    StreamInput::AudioLost { samples, session } => {
                        // Lost audio is concealed with silence on the
                        // timeline: the frames count, so later audio keeps
                        // its place against video.
                        let Some(c) = clock.as_mut().filter(|c| c.session == session && c.audio.is_some()) else { continue };
                        let frames = match transcoder.push_silence(samples) {
                            Ok(f) => f,
                            Err(e) => { tracing::debug!(stream = %name, error = %e, "silence not encoded"); Vec::new() }
                        };
                        push_aac(&name, &mut recorder, c, frames).await?;
                    }
                    StreamInput::SessionEnded { session } => {
                        // The publisher is gone: another may connect.
                        if let Some(e) = node.streams.lock().await.get_mut(&name)
                            && e.session.as_ref().is_some_and(|s| s.id == session) {
                                e.session = None;
                            }
                        if clock.as_ref().is_some_and(|c| c.session == session) {
                            origin = recorder.end_session().await?;
                            clock = None;
                            transcoder = OpusToAac::new().map_err(|e| crate::recorder::RecorderError::Audio(e.to_string()))?;
                            tracing::info!(stream = %name, session, "publisher left; waiting for a reconnect");
                        }
                    }
                }
            }
            _ = stats_tick.tick() => {
                let secs = window_start.elapsed().as_secs_f64().max(0.001);
                let stats = mediastreams_model::IngestStats {
                    video_bitrate_bps: (window.video_bytes as f64 * 8.0 / secs) as u64,
                    audio_bitrate_bps: (window.audio_bytes as f64 * 8.0 / secs) as u64,
                    width: window.width,
                    height: window.height,
                    frame_rate: (window.frames as f64 / secs * 10.0).round() / 10.0,
                    packets_lost: window.lost.iter().sum(),
                    packets_received: window.received.iter().sum(),
                    last_media_at: window.last_media_at,
                    av_sync: window.av_sync,
                };
                window = StatsWindow { width: window.width, height: window.height, received: window.received, lost: window.lost, last_media_at: window.last_media_at, ..Default::default() };
                window_start = Instant::now();
                if stats.last_media_at.is_some() {
                    // A conditional write like every other; a lost race is retried.
                    let r = node.repo.update(&name, |s| {
                        if !matches!(s.state, StreamState::Live) {
                            return Ok(None);
                        }
                        let mut next = s.clone();
                        next.stats = Some(stats.clone());
                        Ok(Some(next))
                    }).await;
                    if let Err(e) = r {
                        tracing::warn!(stream = %name, error = %e, "could not write ingest statistics");
                    }
                }
            }
            _ = poll.tick() => {
                let state = node.repo.get(&name).await?.map(|s| s.stream.state);
                let idle = last_media.elapsed() >= node.config.idle_timeout;
                match state {
                    // Stop-ingest; or the reaper took this node for dead and
                    // finalized the stream from storage: the node's own final
                    // objects are more complete, write them.
                    Some(StreamState::Stopping | StreamState::OnDemand) => break,
                    Some(StreamState::Ready | StreamState::Live) if !idle => {}
                    Some(StreamState::Ready | StreamState::Live) => {
                        tracing::info!(stream = %name, "no media for the idle timeout; stopping ingest");
                        break;
                    }
                    // Deleted (or being deleted): nothing more to write.
                    None | Some(StreamState::Deleting | StreamState::Created) => {
                        tracing::info!(stream = %name, ?state, "the stream is gone; abandoning the recording");
                        close_session(&node, &name).await;
                        return Ok(());
                    }
                }
            }
        }
    }
    // End the publisher's session and finalize the recording.
    close_session(&node, &name).await;
    recorder.finish().await?;
    Ok(())
}

/// Packages AAC frames at the session's audio clock: the audio track's
/// anchor plus 1024 samples per frame produced so far.
async fn push_aac(name: &str, recorder: &mut Recorder, c: &mut SessionClock, frames: Vec<Bytes>) -> Result<(), crate::recorder::RecorderError> {
    let Some((ac, produced)) = c.audio.as_mut() else { return Ok(()) };
    for f in frames {
        let time = ac.anchor_time + ac.ticks_to_timeline(*produced * 1024);
        *produced += 1;
        match recorder.push_audio(AudioFrame { time, data: f }).await {
            Ok(()) => {}
            Err(crate::recorder::RecorderError::Packager(e)) => tracing::debug!(stream = %name, error = %e, "audio frame dropped"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn close_session(node: &IngestNode, name: &str) {
    if let Some(entry) = node.streams.lock().await.get_mut(name)
        && let Some(s) = entry.session.take() {
            s.close().await;
        }
}

async fn request_keyframe(tx: &Arc<Mutex<Option<mpsc::Sender<()>>>>) {
    if let Some(tx) = tx.lock().await.as_ref() {
        let _ = tx.try_send(());
    }
}
