//! One WHIP publisher (RFC 9725): its own peer connection (ICE, DTLS,
//! SRTP, RTCP sender reports from the `webrtc` crate's default
//! interceptors), sending the shared clip paced like a browser, answering
//! a PLI or FIR with the clip's next keyframe.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, StreamInfo, TaggedPacket};
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS, MediaEngine};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder, register_default_interceptors,
};

use crate::clip::Clip;

const VIDEO_PT: u8 = 102;
const AUDIO_PT: u8 = 111;
/// After the crate's own interceptors, which read the same RTCP first.
const TAP_SLOT: usize = 14_000;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    #[error("the WHIP endpoint: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the WHIP endpoint answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("signalling: {0}")]
    Signalling(String),
    #[error("ICE and DTLS did not connect in {0:?}")]
    NotConnected(Duration),
    #[error("ICE gathering did not complete")]
    NoCandidates,
}

/// Marks inbound keyframe requests (PLI, FIR) for the application; the
/// `webrtc` crate ends inbound RTCP in its chain otherwise.
#[derive(Default)]
struct KeyframeRequestTap {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

fn is_keyframe_request(p: &dyn rtc::rtcp::Packet) -> bool {
    p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>()
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet
            && packets.iter().any(|p| is_keyframe_request(p.as_ref()))
        {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequestTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

struct Events {
    gathered: mpsc::Sender<()>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }
}

fn codec(kind: RtpCodecKind) -> RTCRtpCodecParameters {
    match kind {
        RtpCodecKind::Video => RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: VIDEO_PT,
        },
        _ => RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: AUDIO_PT,
        },
    }
}

fn random_ssrc() -> u32 {
    let mut b = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u32::from_be_bytes(b)
}

/// What a publisher counted.
#[derive(Debug, Default)]
pub struct Counters {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub keyframe_requests: AtomicU64,
    pub write_errors: AtomicU64,
}

pub struct Publisher {
    pc: Arc<dyn PeerConnection>,
    video: Arc<TrackLocalStaticSample>,
    audio: Arc<TrackLocalStaticSample>,
    state: watch::Receiver<RTCPeerConnectionState>,
    keyframe_asked: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
}

impl Publisher {
    /// Offers to `whip` (bearer `token`) and waits until ICE and DTLS connect.
    pub async fn connect(http: &reqwest::Client, whip: &str, token: &str) -> Result<Publisher, PublishError> {
        Self::connect_with("127.0.0.1:0", |offer| async move {
            let r = http.post(whip).bearer_auth(token).header("content-type", "application/sdp").body(offer).send().await?;
            let status = r.status().as_u16();
            let body = r.text().await?;
            if status != 201 {
                return Err(PublishError::Refused { status, body });
            }
            Ok(body)
        })
        .await
    }

    /// Makes an offer, has `signal` turn it into an answer (WHIP, or
    /// another server's signalling), and waits until ICE and DTLS connect.
    /// Media leaves from `bind` (an address and port 0).
    pub async fn connect_with<F, Fut>(bind: &str, signal: F) -> Result<Publisher, PublishError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<String, PublishError>>,
    {
        let mut me = MediaEngine::default();
        me.register_codec(codec(RtpCodecKind::Video), RtpCodecKind::Video)?;
        me.register_codec(codec(RtpCodecKind::Audio), RtpCodecKind::Audio)?;
        let registry = register_default_interceptors(Registry::new(), &mut me)?
            .with(rtc::interceptor::Slot::from(TAP_SLOT), KeyframeRequestTap::default());
        let (gathered_tx, mut gathered_rx) = mpsc::channel(1);
        let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(me)
            .with_setting_engine(SettingEngineBuilder::new().with_include_loopback_candidate(true).build())
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Events { gathered: gathered_tx, state: state_tx }) as Arc<dyn PeerConnectionEventHandler>)
            .with_udp_addrs(vec![bind.to_owned()])
            .build()
            .await?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let mut tracks = Vec::new();
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            let track = Arc::new(TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    "ingest-bench".to_owned(),
                    format!("{kind}"),
                    format!("{kind}"),
                    kind,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(random_ssrc()), ..Default::default() },
                        codec: codec(kind).rtp_codec,
                        ..Default::default()
                    }],
                ),
            )?);
            pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
            tracks.push(track);
        }
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        tokio::time::timeout(Duration::from_secs(5), gathered_rx.recv()).await.map_err(|_| PublishError::NoCandidates)?;
        let offer = pc.local_description().await.ok_or(PublishError::NoCandidates)?.sdp;
        let body = match signal(offer).await {
            Ok(b) => b,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
        pc.set_remote_description(RTCSessionDescription::answer(body)?).await?;
        const CONNECT: Duration = Duration::from_secs(10);
        let connected =
            tokio::time::timeout(CONNECT, state.wait_for(|s| *s == RTCPeerConnectionState::Connected)).await.is_ok_and(|r| r.is_ok());
        if !connected {
            let _ = pc.close().await;
            return Err(PublishError::NotConnected(CONNECT));
        }
        let (audio, video) = (tracks.pop(), tracks.pop());
        let (Some(video), Some(audio)) = (video, audio) else { unreachable!("two tracks were added") };
        let publisher = Publisher {
            pc,
            video,
            audio,
            state,
            keyframe_asked: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(Counters::default()),
        };
        publisher.listen_for_keyframe_requests();
        Ok(publisher)
    }

    fn listen_for_keyframe_requests(&self) {
        let (video, asked, counters) = (self.video.clone(), self.keyframe_asked.clone(), self.counters.clone());
        tokio::spawn(async move {
            while let Some(event) = video.poll().await {
                let TrackLocalEvent::OnRtcpPacket(packets) = event else { continue };
                if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
                    counters.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                    asked.store(true, Ordering::Relaxed);
                }
            }
        });
    }

    /// Whether the connection is still up.
    pub fn connected(&self) -> bool {
        *self.state.borrow() == RTCPeerConnectionState::Connected
    }

    /// Sends the clip, looping, in real time for `duration`; calls
    /// `first_media` as the first sample goes out. Video and audio are
    /// paced by one timer: each frame and packet at its due time from the
    /// start, so a late wake-up sends what is due at once (as a browser's
    /// capture does) and the rate never drifts.
    pub async fn send(&self, clip: &Clip, duration: Duration, first_media: impl FnOnce()) {
        let (Some(&ssrc_v), Some(&ssrc_a)) = (self.video.ssrcs().await.first(), self.audio.ssrcs().await.first()) else { return };
        let start = Instant::now();
        let audio_packet = Duration::from_millis(20);
        let (mut v, mut a) = (0usize, 0usize);
        let (mut v_sent, mut a_sent) = (0u32, 0u32);
        let mut first_media = Some(first_media);
        loop {
            let v_due = start + clip.frame_duration * v_sent;
            let a_due = start + audio_packet * a_sent;
            let due = v_due.min(a_due);
            if due.duration_since(start) >= duration {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            if let Some(f) = first_media.take() {
                f();
            }
            if v_due <= a_due {
                if self.keyframe_asked.swap(false, Ordering::Relaxed) && !clip.video[v].keyframe {
                    v = clip.next_keyframe(v);
                }
                let unit = &clip.video[v];
                let sample = Sample { data: unit.data.clone(), duration: clip.frame_duration, ..Sample::new(Instant::now()) };
                if self.video.sample_writer(ssrc_v, VIDEO_PT).write_sample(&sample).await.is_err() {
                    self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                }
                self.counters.frames.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes.fetch_add(unit.data.len() as u64, Ordering::Relaxed);
                v = (v + 1) % clip.video.len();
                v_sent += 1;
            } else {
                let packet = &clip.audio[a];
                let sample = Sample { data: packet.clone(), duration: audio_packet, ..Sample::new(Instant::now()) };
                if self.audio.sample_writer(ssrc_a, AUDIO_PT).write_sample(&sample).await.is_err() {
                    self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                }
                self.counters.bytes.fetch_add(packet.len() as u64, Ordering::Relaxed);
                a = (a + 1) % clip.audio.len();
                a_sent += 1;
            }
        }
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}
