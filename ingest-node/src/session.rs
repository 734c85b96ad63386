//! One publisher's WebRTC session (the `webrtc` crate, on Tokio): answer
//! the WHIP offer, receive H.264 and Opus, depacketize in our own code
//! (`mediastreams-rtp`), feed the stream task, send PLIs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mediastreams_rtp::RtpPacket;
use mediastreams_rtp::codec::h264::{Depacketized, H264Depacketizer};
use mediastreams_rtp::reorder::{ReorderBuffer, Reordered};
use mediastreams_rtp::seq::TimestampExtender;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS, MediaEngine};
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder, register_default_interceptors,
};

use crate::ice::udp_mux::MuxRuntime;
use crate::ice::udp_mux::UdpMux;
use crate::media::audio::Channels;
use crate::media_input::{MediaSink, StreamInput};
use mediastreams_webrtc_proto::candidates::announce;

/// How long a missing packet is waited for (a NACK round trip).
const REORDER_WAIT: Duration = Duration::from_millis(150);
const REORDER_CAPACITY: usize = 1024;
/// Least time between two PLIs.
const PLI_INTERVAL: Duration = Duration::from_millis(300);
/// How long ICE gathering may take before the answer goes out anyway.
const GATHERING_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("WebRTC: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    #[error("the media socket: {0}")]
    MediaSocket(#[from] std::io::Error),
    #[error("no randomness for ICE credentials")]
    Random,
    #[error("the session has no local description")]
    NoAnswer,
}

/// The node's handle on a session.
#[derive(Clone)]
pub struct SessionHandle {
    pub id: u64,
    pc: Arc<dyn PeerConnection>,
    ended: Arc<AtomicBool>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle").field("id", &self.id).finish_non_exhaustive()
    }
}

impl SessionHandle {
    /// Closes the connection; the caller reports the session's end.
    pub async fn close(&self) {
        self.ended.store(true, Ordering::SeqCst);
        let _ = self.pc.close().await;
    }
}

struct Events {
    session: u64,
    input: mpsc::Sender<StreamInput>,
    sink: MediaSink,
    keyframes: crate::media_input::KeyframeRequests,
    gathered: mpsc::Sender<()>,
    ended: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(session = self.session, %state, "connection state");
        if matches!(state, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed | RTCPeerConnectionState::Disconnected)
            && !self.ended.swap(true, Ordering::SeqCst)
        {
            let _ = self.input.send(StreamInput::SessionEnded { session: self.session }).await;
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let input = self.input.clone();
        let session = self.session;
        let kind = track.kind().await;
        if matches!(kind, RtpCodecKind::Video | RtpCodecKind::Audio) {
            // Before the reader, so that a drain waits for its end.
            let _ = input.send(StreamInput::TrackStarted { session, video: kind == RtpCodecKind::Video }).await;
        }
        match kind {
            RtpCodecKind::Video => {
                let (tx, rx) = mpsc::channel(4);
                self.keyframes.attach(tx);
                tokio::spawn(read_video(track, self.sink.clone(), rx, session));
            }
            RtpCodecKind::Audio => {
                tokio::spawn(read_audio(track, input, session));
            }
            _ => {}
        }
    }
}

fn packet(p: &rtc::rtp::Packet) -> RtpPacket {
    RtpPacket { sequence: p.header.sequence_number, timestamp: p.header.timestamp, marker: p.header.marker, payload: p.payload.clone() }
}

/// Asks the publisher for a keyframe of the video stream `ssrc` (one
/// simulcast layer), at most every [`PLI_INTERVAL`].
async fn send_pli(track: &Arc<dyn TrackRemote>, ssrc: u32, last: &mut Option<Instant>) {
    if last.is_some_and(|l| l.elapsed() < PLI_INTERVAL) {
        return;
    }
    *last = Some(Instant::now());
    let _ = track.write_rtcp(vec![Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc: ssrc })]).await;
}

/// The audio reader's reception: sender reports go to the stream task, RTP
/// packets into the reorder buffer, and every 2 s a reception report.
struct Reception {
    session: u64,
    start: Instant,
    reorder: ReorderBuffer,
    reported: Instant,
}

impl Reception {
    fn new(session: u64) -> Self {
        let now = Instant::now();
        Reception { session, start: now, reorder: ReorderBuffer::new(REORDER_CAPACITY, REORDER_WAIT), reported: now }
    }

    /// Takes one event of `track`.
    async fn take(&mut self, track: &Arc<dyn TrackRemote>, event: TrackRemoteEvent, input: &mpsc::Sender<StreamInput>) {
        match event {
            TrackRemoteEvent::OnRtpPacket(p) => {
                self.reorder.push(packet(&p), self.start.elapsed());
                if self.reported.elapsed() >= Duration::from_secs(2) {
                    self.reported = Instant::now();
                    let st = self.reorder.stats();
                    let _ = input.try_send(StreamInput::Reception { video: false, received: st.received, lost: st.lost });
                }
            }
            TrackRemoteEvent::OnRtcpPacket(packets) => {
                if let Some(ssrc) = track.ssrcs().await.first().copied() {
                    forward_sender_reports(&packets, ssrc, input, false, 0, self.session);
                }
            }
            _ => {}
        }
    }

    /// The next packet (or gap) in sequence order that is due.
    fn pop(&mut self) -> Option<Reordered> {
        self.reorder.pop(self.start.elapsed())
    }
}

/// The most video layers (simulcast encodings, one SSRC each) a session's
/// video track is read as; the `webrtc` crate binds only the SSRCs of the
/// `rid`s the offer declared, so a publisher cannot make more.
const MAX_VIDEO_LAYERS: usize = 8;

/// One video layer (simulcast encoding) of a session: its own SSRC,
/// sequence numbers, RTP clock and H.264 stream.
struct VideoLayer {
    index: u8,
    ssrc: u32,
    reorder: ReorderBuffer,
    depacketizer: H264Depacketizer,
    timestamps: TimestampExtender,
    last_pli: Option<Instant>,
    dropped: u64,
}

impl VideoLayer {
    fn new(index: u8, ssrc: u32) -> Self {
        VideoLayer {
            index,
            ssrc,
            reorder: ReorderBuffer::new(REORDER_CAPACITY, REORDER_WAIT),
            depacketizer: H264Depacketizer::new(),
            timestamps: TimestampExtender::new(),
            last_pli: None,
            dropped: 0,
        }
    }

    /// Takes the next packet or gap; asks the publisher for a keyframe of
    /// this layer when its depacketizer needs one and `ask` (the track is
    /// still open).
    async fn take(&mut self, out: Reordered, track: &Arc<dyn TrackRemote>, sink: &MediaSink, session: u64, ask: bool) {
        let produced = match out {
            Reordered::Packet(p) => self.depacketizer.push(&p),
            Reordered::Lost { .. } => self.depacketizer.lost(),
        };
        for d in produced {
            match d {
                Depacketized::AccessUnit(unit) => {
                    let rtp_ext = self.timestamps.extend(unit.rtp_timestamp);
                    if !sink.send_video(unit, rtp_ext, Instant::now(), session, self.index) {
                        self.dropped += 1;
                    }
                }
                Depacketized::KeyframeNeeded if ask => send_pli(track, self.ssrc, &mut self.last_pli).await,
                Depacketized::KeyframeNeeded => {}
            }
        }
    }
}

/// The session's video layers, by SSRC: one without simulcast, one per
/// `rid` with it (numbered as they first arrive).
struct VideoLayers {
    session: u64,
    start: Instant,
    layers: Vec<VideoLayer>,
    reported: Instant,
}

impl VideoLayers {
    fn layer(&mut self, ssrc: u32) -> Option<&mut VideoLayer> {
        if let Some(i) = self.layers.iter().position(|l| l.ssrc == ssrc) {
            return self.layers.get_mut(i);
        }
        if self.layers.len() >= MAX_VIDEO_LAYERS {
            return None;
        }
        let index = self.layers.len() as u8;
        tracing::debug!(session = self.session, ssrc, layer = index, "video layer");
        self.layers.push(VideoLayer::new(index, ssrc));
        self.layers.last_mut()
    }

    /// Takes one event of `track`: packets into their layer's reorder
    /// buffer, sender reports to the stream task; then every layer's due
    /// packets on to the stream task.
    async fn take(&mut self, track: &Arc<dyn TrackRemote>, event: TrackRemoteEvent, sink: &MediaSink) {
        match event {
            TrackRemoteEvent::OnRtpPacket(p) => {
                let at = self.start.elapsed();
                if let Some(layer) = self.layer(p.header.ssrc) {
                    layer.reorder.push(packet(&p), at);
                }
                if self.reported.elapsed() >= Duration::from_secs(2) {
                    self.reported = Instant::now();
                    let (received, lost) =
                        self.layers.iter().map(|l| l.reorder.stats()).fold((0, 0), |(r, l), s| (r + s.received, l + s.lost));
                    let _ = sink.input.try_send(StreamInput::Reception { video: true, received, lost });
                }
            }
            TrackRemoteEvent::OnRtcpPacket(packets) => {
                for l in &self.layers {
                    forward_sender_reports(&packets, l.ssrc, &sink.input, true, l.index, self.session);
                }
            }
            TrackRemoteEvent::OnOpen(init) => {
                // A layer's first packet follows; number it in arrival order.
                if let Some(layer) = self.layer(init.ssrc).map(|l| l.index) {
                    let _ = sink.input.try_send(StreamInput::VideoLayer { session: self.session, layer, rid: init.rid });
                }
            }
            _ => {}
        }
        let at = self.start.elapsed();
        for layer in &mut self.layers {
            while let Some(out) = layer.reorder.pop(at) {
                layer.take(out, track, sink, self.session, true).await;
            }
        }
    }

    /// A keyframe of every layer, so that they can be cut together.
    async fn request_keyframes(&mut self, track: &Arc<dyn TrackRemote>) {
        if self.layers.is_empty() {
            // Before the first packet: the SSRCs the track knows.
            for ssrc in track.ssrcs().await {
                let _ = self.layer(ssrc);
            }
        }
        for l in &mut self.layers {
            send_pli(track, l.ssrc, &mut l.last_pli).await;
        }
    }
}

async fn read_video(track: Arc<dyn TrackRemote>, sink: MediaSink, mut keyframe_rx: mpsc::Receiver<()>, session: u64) {
    let now = Instant::now();
    let mut video = VideoLayers { session, start: now, layers: Vec::new(), reported: now };
    video.request_keyframes(&track).await;
    loop {
        tokio::select! {
            event = track.poll() => {
                let Some(event) = event else { break };
                video.take(&track, event, &sink).await;
            }
            Some(()) = keyframe_rx.recv() => video.request_keyframes(&track).await,
        }
    }
    // The track ended: what waited behind a hole is video too.
    for layer in &mut video.layers {
        for out in layer.reorder.flush() {
            layer.take(out, &track, &sink, session, false).await;
        }
        tracing::debug!(
            session,
            layer = layer.index,
            ssrc = layer.ssrc,
            dropped = layer.dropped,
            stats = ?layer.reorder.stats(),
            depacketizer = ?layer.depacketizer.stats(),
            "video layer ended"
        );
    }
    let _ = sink.input.send(StreamInput::TrackEnded { session, video: true }).await;
}

/// Sends the stream task the sender reports of `ssrc` (a video layer or
/// the audio) among `packets`.
fn forward_sender_reports(
    packets: &[Box<dyn rtc::rtcp::Packet>],
    ssrc: u32,
    input: &mpsc::Sender<StreamInput>,
    video: bool,
    layer: u8,
    session: u64,
) {
    for p in packets {
        if let Some((ntp, rtp)) = crate::sender_reports::clock_of(p.as_ref(), ssrc) {
            let _ = input.try_send(StreamInput::SenderReport { video, layer, ntp, rtp, session });
        }
    }
}

async fn read_audio(track: Arc<dyn TrackRemote>, input: mpsc::Sender<StreamInput>, session: u64) {
    let mut reception = Reception::new(session);
    let mut timestamps = TimestampExtender::new();
    while let Some(event) = track.poll().await {
        reception.take(&track, event, &input).await;
        while let Some(out) = reception.pop() {
            send_audio(out, &mut timestamps, &input, session);
        }
    }
    // The track ended: what waited behind a hole is audio too.
    for out in reception.reorder.flush() {
        send_audio(out, &mut timestamps, &input, session);
    }
    let _ = input.send(StreamInput::TrackEnded { session, video: false }).await;
}

fn send_audio(out: Reordered, timestamps: &mut TimestampExtender, input: &mpsc::Sender<StreamInput>, session: u64) {
    let msg = match out {
        Reordered::Packet(p) if !p.payload.is_empty() => {
            let rtp_ext = timestamps.extend(p.timestamp);
            StreamInput::Audio { opus: p.payload, rtp_ext, arrival: Instant::now(), session }
        }
        Reordered::Packet(_) => return,
        Reordered::Lost { count } => StreamInput::AudioLost { packets: count.min(50) as usize, session },
    };
    let _ = input.try_send(msg);
}

fn media_engine() -> Result<MediaEngine, webrtc::error::Error> {
    let mut me = MediaEngine::default();
    for (pt, profile) in [(102u8, "42e01f"), (108, "42001f"), (116, "4d001f")] {
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_H264.to_owned(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: format!("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"),
                    rtcp_feedback: vec![],
                },
                payload_type: pt,
            },
            RtpCodecKind::Video,
        )?;
    }
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )?;
    Ok(me)
}

/// A session's ICE ufrag (16 hex digits: unique among the node's sessions,
/// it routes their STUN on the shared port) and password (32 hex digits;
/// RFC 8839 asks for at least 128 bits).
fn ice_credentials() -> Result<(String, String), SessionError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| SessionError::Random)?;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    Ok((hex(&bytes[..8]), hex(&bytes[8..])))
}

/// What answers announce.
#[derive(Debug, Clone)]
pub struct Announce {
    /// The address media is received on (loopback: loopback candidates).
    pub media_ip: std::net::IpAddr,
    /// The public IP announced instead, if any.
    pub public_ip: Option<String>,
}

/// Answers `offer` on the node's media socket; media goes to `sink`.
pub(crate) async fn start(
    mux: Arc<UdpMux>,
    announce_as: &Announce,
    session: u64,
    offer: String,
    audio: Channels,
    video_layers: usize,
    sink: MediaSink,
) -> Result<(SessionHandle, String), SessionError> {
    // Before any of its media: what the session's audio and video will be.
    // (The queue is all but empty now; were it full, the stream task
    // would keep the channels it has, and take the first video layer.)
    let _ = sink.input.try_send(StreamInput::SessionStarted { session, audio, video_layers });
    let mut me = media_engine()?;
    let registry = register_default_interceptors(Registry::new(), &mut me)?
        .with(rtc::interceptor::Slot::from(crate::sender_reports::SLOT), crate::sender_reports::SenderReportTap::default());
    let media_port = mux.local_addr()?.port();
    let (ufrag, pwd) = ice_credentials()?;
    let runtime: Arc<dyn webrtc::runtime::Runtime> = Arc::new(MuxRuntime::new(mux, ufrag.clone()));
    // The session's ufrag routes its STUN to it on the shared port. The
    // node answers as the DTLS server (`a=setup:passive`): a DTLS server
    // has its keys before the client can finish, so the publisher's first
    // packets (its first keyframe) never arrive before we can decrypt
    // them. As the DTLS client, the node dropped them whenever it
    // processed the server's last flight after the media that followed it
    // ("remote_srtp_context is not set yet"), and lost the first GOP.
    let mut settings = SettingEngineBuilder::new().with_ice_credentials(ufrag, pwd).with_answering_dtls_role(RTCDtlsRole::Server);
    if announce_as.media_ip.is_loopback() {
        settings = settings.with_include_loopback_candidate(true);
    }
    let (gathered_tx, mut gathered_rx) = mpsc::channel(1);
    let ended = Arc::new(AtomicBool::new(false));
    let events = Arc::new(Events {
        session,
        input: sink.input.clone(),
        keyframes: sink.keyframes.clone(),
        sink,
        gathered: gathered_tx,
        ended: ended.clone(),
    });
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(me)
        .with_setting_engine(settings.build())
        .with_interceptor_registry(registry)
        .with_handler(events as Arc<dyn PeerConnectionEventHandler>)
        .with_runtime(runtime)
        .with_udp_addrs(vec![format!("{}:0", announce_as.media_ip)])
        .build()
        .await?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let result = async {
        pc.set_remote_description(RTCSessionDescription::offer(offer)?).await?;
        let answer = pc.create_answer(None).await?;
        pc.set_local_description(answer).await?;
        let _ = tokio::time::timeout(GATHERING_TIMEOUT, gathered_rx.recv()).await;
        let sdp = pc.local_description().await.map(|d| d.sdp).ok_or(SessionError::NoAnswer)?;
        Ok(announce(&sdp, media_port, announce_as.public_ip.as_deref()))
    }
    .await;
    match result {
        Ok(sdp) => Ok((SessionHandle { id: session, pc, ended }, sdp)),
        Err(e) => {
            let _ = pc.close().await;
            Err(e)
        }
    }
}
