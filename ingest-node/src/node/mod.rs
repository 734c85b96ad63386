//! The node: it owns every stream it records and every publisher session,
//! behind a small API: [`IngestNode::publish`] (an offer in, an answer
//! out), [`IngestNode::unpublish`], [`IngestNode::shutdown`] and
//! [`IngestNode::recover`]. The HTTP endpoint only translates.
//!
//! A stream on the node is its *ingest generation*: the playback id and
//! the token hash of the start-ingest that admitted it
//! ([`Generation`]), never its name alone. A publisher of a newer
//! generation (stop and start-ingest again, or DELETE and PUT of the same
//! name) supersedes the old one at once: its session is closed and its
//! stream task abandons what it had, writing nothing more.
//!
//! Each stream has a *stream task* ([`stream`]) that owns its recorder;
//! sessions feed it through a bounded queue. The one-publisher rule is
//! checked once, under the registry lock, before any PeerConnection
//! exists; the registry lock is a plain mutex never held across an await,
//! so nothing (the heartbeat included) waits on a table or a store for it.

mod stream;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mediastreams_model::{Stream, StreamState};

use crate::media::audio::Channels;
use mediastreams_storage::{ObjectStore, StreamRepo};
use tokio::sync::{mpsc, watch};

use crate::media_input::{MediaSink, STREAM_QUEUE};
use crate::session::SessionHandle;

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
    /// How often the stream record is checked for stop-ingest (the
    /// default, 500 ms, keeps stop to `OnDemand` under a second: half of it
    /// on average to notice, then the drain and the final writes; two table
    /// reads a second per stream).
    pub poll_interval: Duration,
    /// Nominal video bitrate announced in the manifests.
    pub video_bitrate: u32,
    /// Bytes of objects each stream queues in memory while the store is
    /// slow or down, before it spools them.
    pub upload_memory_bytes: usize,
    /// Where objects wait on local disk while the store is down (`None`:
    /// no spool; past the memory bound the stream task waits).
    pub spool_dir: Option<std::path::PathBuf>,
    /// Bytes the spool holds at most, for all streams together.
    pub spool_bytes: u64,
    /// Streams the node records at once at most (`None`: no limit); a
    /// publisher of another stream gets 503 with `Retry-After`.
    pub capacity: Option<usize>,
    /// Keep the publisher's Opus for streams whose outputs are all DASH
    /// (no transcoding). A node or function older than the one that
    /// brought it reads such a recording's audio as AAC: a fleet turns it
    /// on once every node and function is at least that version, and off
    /// again (until no DASH-only stream is `Live`) before going back
    /// (docs/operations.md). The local runner, one program, has it on.
    pub opus_passthrough: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            media_ip: IpAddr::from([127, 0, 0, 1]),
            media_port: 0,
            public_ips: Vec::new(),
            idle_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            video_bitrate: 1_500_000,
            upload_memory_bytes: crate::uploader::MEMORY_BYTES,
            spool_dir: None,
            opus_passthrough: true,
            spool_bytes: 2 * 1024 * 1024 * 1024,
            capacity: None,
        }
    }
}

/// Which admission of a stream a recording belongs to: its playback id
/// (new for every PUT) and the hash of the ingest token start-ingest gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub playback_id: String,
    pub token_hash: mediastreams_model::TokenHash,
}

impl Generation {
    /// The stream's current generation; `None` without an ingest session.
    pub fn of(stream: &Stream) -> Option<Generation> {
        let ingest = stream.ingest.as_ref()?;
        Some(Generation { playback_id: stream.playback_id.to_string(), token_hash: ingest.token_hash.clone() })
    }
}

/// Why a publisher was not taken. Each maps to one HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("stream \"{0}\" already has a publisher; DELETE its session first")]
    PublisherConnected(String),
    #[error("stream \"{name}\" is {state}; start ingest first")]
    NotAccepting { name: String, state: StreamState },
    #[error("stream \"{0}\" no longer exists or was admitted again")]
    Superseded(String),
    #[error("storage is unavailable: {0}")]
    StorageUnavailable(String),
    #[error("the stored recording of stream \"{name}\" cannot be continued: {reason}")]
    Unresumable { name: String, reason: String },
    #[error("the ingest node cannot take a session now: {0}")]
    NodeUnavailable(String),
    #[error("the ingest node is shutting down")]
    ShuttingDown,
    #[error("the ingest node records {0} streams, its capacity; stop and start ingest to be assigned another node")]
    AtCapacity(usize),
    #[error("the offer could not be answered: {0}")]
    Negotiation(String),
}

/// A session the node took.
#[derive(Debug, Clone)]
pub struct Publication {
    pub session: u64,
    pub answer: String,
}

/// What a stream task is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Record,
    /// Finalize the recording as on demand (shutdown).
    Finish,
    /// A newer generation took the stream: write nothing more.
    Abandon,
}

/// A stream task's progress, as publishers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Opening the recorder (reading the record, maybe the stored
    /// recording to continue).
    Opening,
    Recording,
    /// Finalizing or abandoning: no more publishers.
    Closing,
    Failed(PublishError),
}

#[derive(Debug)]
enum Publisher {
    None,
    /// Admitted; its PeerConnection is being built.
    Negotiating,
    Connected(SessionHandle),
}

pub(crate) struct StreamEntry {
    task: u64,
    generation: Generation,
    sink: MediaSink,
    publisher: Publisher,
    command: watch::Sender<Command>,
    phase: watch::Receiver<Phase>,
}

/// Counters of the node's life (tests and benchmarks read them).
#[derive(Debug, Default)]
pub struct NodeCounters {
    /// PeerConnections built.
    pub sessions_started: AtomicU64,
    /// Stream tasks that ended by finalizing a recording as on demand.
    pub recordings_finalized: AtomicU64,
}

pub struct IngestNode {
    pub(crate) repo: StreamRepo,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) config: NodeConfig,
    streams: Mutex<HashMap<String, StreamEntry>>,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    counters: NodeCounters,
    spool: Option<Arc<crate::uploader::Spool>>,
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
        let spool = config.spool_dir.clone().map(|dir| crate::uploader::Spool::new(dir, config.spool_bytes));
        Arc::new(IngestNode {
            repo,
            store,
            config,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            counters: NodeCounters::default(),
            spool,
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
        let server = tokio::net::lookup_host(stun_server).await?.find(|a| a.is_ipv4() == local.is_ipv4()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("{stun_server} has no address of the media socket's family"))
        })?;
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
        self.mux.get_or_try_init(|| crate::ice::udp_mux::UdpMux::bind(addr)).await.cloned()
    }

    /// The media socket's counters, once it is bound.
    pub fn media_stats(&self) -> Option<crate::ice::udp_mux::MuxStats> {
        self.mux.get().map(|m| m.stats())
    }

    pub fn repo(&self) -> &StreamRepo {
        &self.repo
    }

    pub fn counters(&self) -> &NodeCounters {
        &self.counters
    }

    /// Bytes waiting in the spool now.
    pub fn spooled_bytes(&self) -> u64 {
        self.spool.as_ref().map_or(0, |s| s.used())
    }

    pub(crate) fn uploads(&self) -> crate::uploader::UploaderConfig {
        crate::uploader::UploaderConfig { memory_bytes: self.config.upload_memory_bytes, spool: self.spool.clone() }
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<String, StreamEntry>> {
        // A panic while holding the lock cannot leave the map half-changed
        // (every change is one insert or remove): keep using it.
        self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Streams this node is recording now (its load, in heartbeats). Never
    /// waits on storage.
    pub fn active_streams(&self) -> usize {
        self.registry().len()
    }

    /// Writes this node's registry record every `every`, with its load now
    /// (never waiting on the streams: see the module documentation), until
    /// the returned task is aborted. A failed write is logged and the next
    /// one tried on time.
    pub fn heartbeat(
        self: &Arc<Self>,
        registry: mediastreams_storage::NodeRegistry,
        template: mediastreams_storage::NodeRecord,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let node = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let record = mediastreams_storage::NodeRecord {
                    active_streams: u32::try_from(node.active_streams()).unwrap_or(u32::MAX),
                    heartbeat_at: time::OffsetDateTime::now_utc(),
                    ..template.clone()
                };
                if let Err(e) = registry.heartbeat(&record).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
        })
    }

    /// Takes a publisher for `stream` (as read from the table by the
    /// caller, who checked its token): admits it under the one-publisher
    /// rule, opens the stream's recorder if it has none (continuing a
    /// stored recording), then answers the offer.
    /// `audio`: the channels the publisher said it sends (its offer);
    /// `video_layers`: its simulcast encodings (1 without simulcast).
    pub async fn publish(
        self: &Arc<Self>,
        stream: &Stream,
        offer: String,
        audio: Channels,
        video_layers: usize,
    ) -> Result<Publication, PublishError> {
        let name = stream.name.as_str().to_owned();
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(PublishError::ShuttingDown);
        }
        if !stream.state.accepts_publisher() {
            return Err(PublishError::NotAccepting { name, state: stream.state });
        }
        let Some(generation) = Generation::of(stream) else {
            return Err(PublishError::NotAccepting { name, state: stream.state });
        };
        let (task, sink, mut phase, superseded) = {
            let mut streams = self.registry();
            let superseded = match streams.get_mut(&name) {
                Some(e) if e.generation == generation => {
                    if !matches!(e.publisher, Publisher::None) {
                        return Err(PublishError::PublisherConnected(name));
                    }
                    if let Phase::Closing = *e.phase.borrow() {
                        return Err(PublishError::NotAccepting { name, state: StreamState::Stopping });
                    }
                    e.publisher = Publisher::Negotiating;
                    None
                }
                // A newer generation: the old one's task abandons.
                Some(_) => streams.remove(&name),
                None => match self.config.capacity {
                    Some(capacity) if streams.len() >= capacity => return Err(PublishError::AtCapacity(capacity)),
                    _ => None,
                },
            };
            let e = match streams.get(&name) {
                Some(e) => e,
                None => {
                    let e = self.spawn_stream(&name, generation.clone(), Publisher::Negotiating, Command::Record);
                    streams.entry(name.clone()).or_insert(e)
                }
            };
            (e.task, e.sink.clone(), e.phase.clone(), superseded)
        };
        if let Some(old) = superseded {
            tracing::info!(stream = %name, "a newer ingest generation supersedes the stream's publisher");
            old.command.send_replace(Command::Abandon);
            if let Publisher::Connected(s) = old.publisher {
                s.close().await;
            }
        }
        // The recorder opens (or failed).
        let opened = loop {
            let now = phase.borrow_and_update().clone();
            match now {
                Phase::Opening => {}
                Phase::Recording => break Ok(()),
                Phase::Closing => break Err(PublishError::NotAccepting { name: name.clone(), state: StreamState::Stopping }),
                Phase::Failed(e) => break Err(e),
            }
            if phase.changed().await.is_err() {
                break Err(PublishError::Superseded(name.clone()));
            }
        };
        if let Err(e) = opened {
            self.release(&name, task, None);
            return Err(e);
        }
        let session = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.counters.sessions_started.fetch_add(1, Ordering::Relaxed);
        let mux = match self.media_mux().await {
            Ok(m) => m,
            Err(e) => {
                self.release(&name, task, None);
                return Err(PublishError::NodeUnavailable(format!("the media socket: {e}")));
            }
        };
        let announce = crate::session::Announce { media_ip: self.config.media_ip, public_ip: self.public_ip().map(str::to_owned) };
        let (handle, answer) = match crate::session::start(mux, &announce, session, offer, audio, video_layers, sink).await {
            Ok(x) => x,
            Err(e) => {
                self.release(&name, task, None);
                return Err(match e {
                    crate::session::SessionError::MediaSocket(_) | crate::session::SessionError::Random => {
                        PublishError::NodeUnavailable(e.to_string())
                    }
                    e => PublishError::Negotiation(e.to_string()),
                });
            }
        };
        let taken = {
            let mut streams = self.registry();
            match streams.get_mut(&name) {
                Some(e) if e.task == task && matches!(e.publisher, Publisher::Negotiating) && *e.phase.borrow() == Phase::Recording => {
                    e.publisher = Publisher::Connected(handle.clone());
                    true
                }
                _ => false,
            }
        };
        if !taken {
            // Superseded or closed while negotiating.
            handle.close().await;
            return Err(PublishError::Superseded(name));
        }
        tracing::info!(stream = %name, session, "publisher connected");
        Ok(Publication { session, answer })
    }

    /// Clears the publisher slot of task `task` of stream `name` (when it
    /// holds `session`, or is negotiating for `None`); returns the session.
    fn release(&self, name: &str, task: u64, session: Option<u64>) -> Option<(SessionHandle, MediaSink)> {
        let mut streams = self.registry();
        let e = streams.get_mut(name).filter(|e| e.task == task)?;
        match (&e.publisher, session) {
            (Publisher::Negotiating, None) => {
                e.publisher = Publisher::None;
                None
            }
            (Publisher::Connected(s), Some(id)) if s.id == id => match std::mem::replace(&mut e.publisher, Publisher::None) {
                Publisher::Connected(s) => Some((s, e.sink.clone())),
                _ => None,
            },
            _ => None,
        }
    }

    /// The publisher ends its session `session` of stream `name` (WHIP
    /// DELETE). `false` when there is no such session.
    pub async fn unpublish(&self, name: &str, session: u64) -> bool {
        let task = self.registry().get(name).map(|e| e.task);
        let Some((handle, sink)) = task.and_then(|t| self.release(name, t, Some(session))) else { return false };
        handle.close().await;
        let _ = sink.input.send(crate::media_input::StreamInput::SessionEnded { session }).await;
        true
    }

    /// Starts the task of stream `name` and returns its registry entry.
    fn spawn_stream(self: &Arc<Self>, name: &str, generation: Generation, publisher: Publisher, command: Command) -> StreamEntry {
        let task = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (input, rx) = mpsc::channel(STREAM_QUEUE);
        let sink = MediaSink::new(input);
        let (command_tx, command_rx) = watch::channel(command);
        let (phase_tx, phase_rx) = watch::channel(Phase::Opening);
        let node = self.clone();
        let recovering = matches!(publisher, Publisher::None);
        let job = stream::StreamJob {
            name: name.to_owned(),
            generation: generation.clone(),
            task,
            keyframes: sink.keyframes.clone(),
            recovering,
        };
        tokio::spawn(async move {
            let name = job.name.clone();
            let finalized = stream::run(node.clone(), job, rx, command_rx, phase_tx).await;
            if finalized {
                node.counters.recordings_finalized.fetch_add(1, Ordering::Relaxed);
            }
            let entry = {
                let mut streams = node.registry();
                match streams.get(&name) {
                    Some(e) if e.task == task => streams.remove(&name),
                    _ => None,
                }
            };
            if let Some(StreamEntry { publisher: Publisher::Connected(s), .. }) = entry {
                s.close().await;
            }
        });
        StreamEntry { task, generation, sink, publisher, command: command_tx, phase: phase_rx }
    }

    /// Closes the connected publisher of task `task` (the stream task is
    /// finishing or abandoning).
    pub(crate) async fn close_publisher(&self, name: &str, task: u64) {
        let handle = {
            let mut streams = self.registry();
            match streams.get_mut(name) {
                Some(e) if e.task == task => match std::mem::replace(&mut e.publisher, Publisher::None) {
                    Publisher::Connected(s) => Some(s),
                    other => {
                        e.publisher = other;
                        None
                    }
                },
                _ => None,
            }
        };
        if let Some(s) = handle {
            s.close().await;
        }
    }

    /// A session of task `task` ended by itself (its connection failed or
    /// closed): another publisher may connect.
    pub(crate) fn session_ended(&self, name: &str, task: u64, session: u64) {
        let _ = self.release(name, task, Some(session));
    }

    /// Takes on the streams this node owned before it restarted (`owner`:
    /// the node id streams are assigned to, `None` for the local runner,
    /// whose streams have none): a `Live` stream waits for its publisher to
    /// reconnect, continuing the stored recording, and is finalized as on
    /// demand after the idle timeout if none does; a `Stopping` stream is
    /// finalized at once. Returns the streams taken on.
    pub async fn recover(self: &Arc<Self>, owner: Option<&str>) -> Result<Vec<String>, mediastreams_storage::RepoError> {
        let mut taken = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.repo.list(after.as_deref(), 100).await?;
            for v in &page.items {
                let s = &v.stream;
                let assigned = s.ingest.as_ref().and_then(|i| i.node_id.as_deref());
                if !matches!(s.state, StreamState::Live | StreamState::Stopping) || assigned != owner {
                    continue;
                }
                let Some(generation) = Generation::of(s) else { continue };
                let name = s.name.as_str().to_owned();
                let command = if s.state == StreamState::Stopping { Command::Finish } else { Command::Record };
                let mut streams = self.registry();
                if streams.contains_key(&name) {
                    continue;
                }
                let e = self.spawn_stream(&name, generation, Publisher::None, command);
                streams.insert(name.clone(), e);
                tracing::warn!(stream = %name, state = %s.state, "taking on a stream this node owned before it restarted");
                taken.push(name);
            }
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(taken),
            }
        }
    }

    /// Drains the node (SIGTERM): refuses new publishers, finalizes every
    /// stream as on demand with every queued object written, and returns
    /// once all are done or `within` has passed. Returns the streams still
    /// open then (they stay `Live`/`Stopping` for the reaper, or for this
    /// node's recovery on restart).
    pub async fn shutdown(&self, within: Duration) -> Vec<String> {
        self.shutting_down.store(true, Ordering::SeqCst);
        for e in self.registry().values() {
            e.command.send_if_modified(|c| {
                if *c == Command::Record {
                    *c = Command::Finish;
                    true
                } else {
                    false
                }
            });
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let open: Vec<String> = self.registry().keys().cloned().collect();
            if open.is_empty() || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
