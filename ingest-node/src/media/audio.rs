//! The audio path ([`AudioPath`]): WebRTC publishers send Opus. DASH
//! players take it as it is; Smooth Streaming players and Apple's HLS
//! players accept AAC, so a recording with a Smooth or HLS output
//! transcodes Opus to AAC-LC ([`OpusToAac`]). Decoding and encoding use FFmpeg's libavcodec (Debian's
//! build, through `ffmpeg-next`): its native Opus decoder and its native
//! AAC-LC encoder (its fast quantizer search), 48 kHz, mono or stereo as
//! the recording's audio track is ([`Channels`]), 64 kb/s a channel.
//!
//! The encoder takes frames of exactly 1024 samples; Opus packets decode to
//! 960 (20 ms), so decoded audio is re-chunked here. A lost Opus packet
//! becomes silence of its duration, so the audio timeline stays continuous.

use bytes::Bytes;
use ffmpeg::util::channel_layout::ChannelLayout;
use ffmpeg::util::format::sample::{Sample, Type};
use ffmpeg_next as ffmpeg;
use mediastreams_packager::AudioCodec;
use mediastreams_packager::codec::opus;

/// Output sample rate.
pub const SAMPLE_RATE: u32 = 48_000;
/// The most channels a track has.
const MAX_CHANNELS: usize = 2;

/// A recording's audio channels. Browsers send mono Opus from a microphone
/// (no `sprop-stereo=1` in their offers: Chromium, Safari, Firefox); OBS
/// says `sprop-stereo=1`. Encoding a mono source as stereo AAC costs
/// nearly twice the CPU for the same sound (benches/audio.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channels {
    Mono,
    #[default]
    Stereo,
}

impl Channels {
    pub fn count(self) -> usize {
        match self {
            Channels::Mono => 1,
            Channels::Stereo => 2,
        }
    }

    /// The AAC bitrate of a track with these channels.
    pub fn aac_bitrate(self) -> u32 {
        AAC_BITRATE_PER_CHANNEL * self.count() as u32
    }

    /// From a stored track's channel count (1 or 2).
    pub fn from_count(n: u16) -> Option<Channels> {
        match n {
            1 => Some(Channels::Mono),
            2 => Some(Channels::Stereo),
            _ => None,
        }
    }

    fn layout(self) -> ChannelLayout {
        match self {
            Channels::Mono => ChannelLayout::MONO,
            Channels::Stereo => ChannelLayout::STEREO,
        }
    }
}
/// AAC-LC frame length.
pub const AAC_FRAME: usize = 1024;
/// Output bitrate per channel: 64 kb/s mono, 128 kb/s stereo.
pub const AAC_BITRATE_PER_CHANNEL: u32 = 64_000;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("FFmpeg has no {0} codec")]
    MissingCodec(&'static str),
    #[error("FFmpeg: {0}")]
    Ffmpeg(#[from] ffmpeg::Error),
}

/// libavcodec's AAC encoder's search for quantizers (its `aac_coder`
/// option), measured in `benches/audio.rs` (docs/ingest.md has the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AacCoder {
    /// Two-loop search: libavcodec's default.
    TwoLoop,
    /// The fast search: the node's choice.
    #[default]
    Fast,
    /// Average noise to mask ratio trellis: the slowest.
    Anmr,
}

impl AacCoder {
    fn option(self) -> &'static str {
        match self {
            AacCoder::TwoLoop => "twoloop",
            AacCoder::Fast => "fast",
            AacCoder::Anmr => "anmr",
        }
    }
}

/// What the node does with a session's Opus, as the recording's audio
/// track is ([`crate::recorder::audio_codec_for`]): transcode it to AAC-LC,
/// or carry it as sent (a stream whose outputs are all DASH: no decoding,
/// no encoding).
pub enum AudioPath {
    Transcode(OpusToAac),
    Passthrough(OpusPassthrough),
}

/// One packet for the packager: an AAC-LC frame or an Opus packet, and its
/// duration in 48 kHz samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedAudio {
    pub samples: u32,
    pub data: Bytes,
}

impl AudioPath {
    /// The path to a recording's audio track: `codec`, with `channels` and
    /// (for AAC) at `bitrate`.
    pub fn for_track(codec: AudioCodec, channels: Channels, bitrate: u32) -> Result<Self, AudioError> {
        Ok(match codec {
            AudioCodec::Aac => AudioPath::Transcode(OpusToAac::for_track(channels, bitrate)?),
            AudioCodec::Opus => AudioPath::Passthrough(OpusPassthrough::default()),
        })
    }

    /// One Opus packet of the session; returns what is ready to package.
    pub fn push_opus(&mut self, packet: Bytes) -> Result<Vec<EncodedAudio>, AudioError> {
        match self {
            AudioPath::Transcode(t) => Ok(aac_frames(t.push_opus(&packet)?)),
            AudioPath::Passthrough(p) => Ok(p.push_opus(packet)),
        }
    }

    /// `packets` lost Opus packets, each as long as the last that came
    /// (20 ms before any): silence (AAC) or packets that every decoder
    /// conceals (Opus); the timeline keeps its length.
    pub fn push_lost(&mut self, packets: usize) -> Result<Vec<EncodedAudio>, AudioError> {
        match self {
            AudioPath::Transcode(t) => {
                let samples = packets.saturating_mul(t.last_packet_samples);
                Ok(aac_frames(t.push_silence(samples)?))
            }
            AudioPath::Passthrough(p) => {
                let samples = u32::try_from(packets).unwrap_or(u32::MAX).saturating_mul(p.last_samples);
                Ok(p.push_lost(samples))
            }
        }
    }

    /// The end of the session: what the encoder still holds.
    pub fn finish(&mut self) -> Result<Vec<EncodedAudio>, AudioError> {
        match self {
            AudioPath::Transcode(t) => Ok(aac_frames(t.finish()?)),
            AudioPath::Passthrough(_) => Ok(Vec::new()),
        }
    }
}

fn aac_frames(frames: Vec<Bytes>) -> Vec<EncodedAudio> {
    frames.into_iter().map(|data| EncodedAudio { samples: AAC_FRAME as u32, data }).collect()
}

/// Opus carried as sent. A packet whose layout a decoder would reject
/// (RFC 6716 §3.4), and a lost one, become packets of the sender's mode
/// with an empty frame, which decoders conceal: the audio timeline stays
/// continuous, and no player is handed a packet it cannot decode.
#[derive(Debug)]
pub struct OpusPassthrough {
    /// The TOC byte of the last good packet (lost audio is concealed in
    /// its mode and channels).
    last_toc: Option<u8>,
    /// The last good packet's duration (a lost packet is as long).
    last_samples: u32,
}

impl Default for OpusPassthrough {
    fn default() -> Self {
        OpusPassthrough { last_toc: None, last_samples: 960 }
    }
}

impl OpusPassthrough {
    pub fn push_opus(&mut self, packet: Bytes) -> Vec<EncodedAudio> {
        match opus::packet_samples(&packet) {
            Ok(samples) => {
                self.last_toc = packet.first().copied();
                self.last_samples = samples;
                vec![EncodedAudio { samples, data: packet }]
            }
            // Concealed as lost, as long as the last good one.
            Err(_) => self.push_lost(self.last_samples),
        }
    }

    pub fn push_lost(&mut self, samples: u32) -> Vec<EncodedAudio> {
        opus::lost_packets(samples, self.last_toc).into_iter().map(|(data, samples)| EncodedAudio { samples, data }).collect()
    }
}

/// A silent AAC-LC frame of `channels` at `bitrate`, from the encoder the
/// node transcodes with: what precedes audio that starts shortly after a
/// recording's video (`Presentation::set_audio_silence`).
pub fn silent_aac_frame(channels: Channels, bitrate: u32) -> Result<Bytes, AudioError> {
    let mut t = OpusToAac::for_track(channels, bitrate)?;
    let mut frames = t.push_silence(4 * AAC_FRAME)?;
    frames.extend(t.finish()?);
    // One from the middle: past the encoder's start, before its flush.
    frames.get(frames.len() / 2).cloned().ok_or(AudioError::MissingCodec("AAC encoder output"))
}

pub struct OpusToAac {
    decoder: ffmpeg::decoder::Audio,
    encoder: ffmpeg::encoder::Audio,
    channels: Channels,
    /// Decoded samples waiting for a whole AAC frame, per output channel.
    pending: [Vec<f32>; MAX_CHANNELS],
    /// Samples handed to the encoder so far (its pts).
    encoded_samples: i64,
    /// What the last packet decoded to, per channel (a lost packet is
    /// concealed as that long; 960, 20 ms, before any).
    last_packet_samples: usize,
    decoded: ffmpeg::frame::Audio,
}

impl OpusToAac {
    /// A transcoder to `channels` at their bitrate ([`Channels::aac_bitrate`]).
    pub fn new(channels: Channels) -> Result<Self, AudioError> {
        Self::with_coder(channels, AacCoder::default())
    }

    /// A transcoder for a stored audio track, which keeps the bitrate it
    /// was made with (its fragments' keys name it).
    pub fn for_track(channels: Channels, bitrate: u32) -> Result<Self, AudioError> {
        Self::open(channels, bitrate, AacCoder::default())
    }

    pub fn with_coder(channels: Channels, coder: AacCoder) -> Result<Self, AudioError> {
        Self::open(channels, channels.aac_bitrate(), coder)
    }

    fn open(channels: Channels, bitrate: u32, coder: AacCoder) -> Result<Self, AudioError> {
        ffmpeg::init()?;
        let opus = ffmpeg::decoder::find(ffmpeg::codec::Id::OPUS).ok_or(AudioError::MissingCodec("Opus decoder"))?;
        // Without an OpusHead, FFmpeg's decoder assumes 48 kHz stereo.
        let decoder = ffmpeg::codec::context::Context::new_with_codec(opus).decoder().audio()?;

        let aac = ffmpeg::encoder::find(ffmpeg::codec::Id::AAC).ok_or(AudioError::MissingCodec("AAC encoder"))?;
        let mut ectx = ffmpeg::codec::context::Context::new_with_codec(aac).encoder().audio()?;
        ectx.set_rate(SAMPLE_RATE as i32);
        ectx.set_channel_layout(channels.layout());
        ectx.set_format(Sample::F32(Type::Planar));
        ectx.set_bit_rate(bitrate as usize);
        ectx.set_time_base((1, SAMPLE_RATE as i32));
        let mut options = ffmpeg::Dictionary::new();
        options.set("aac_coder", coder.option());
        let encoder = ectx.open_as_with(aac, options)?;
        Ok(OpusToAac {
            decoder,
            encoder,
            channels,
            pending: [Vec::new(), Vec::new()],
            encoded_samples: 0,
            last_packet_samples: 960,
            decoded: ffmpeg::frame::Audio::empty(),
        })
    }

    /// Decodes one Opus packet and drops the samples (benchmarks: the
    /// decoder's share of the cost).
    #[doc(hidden)]
    pub fn decode_only(&mut self, packet: &[u8]) -> Result<(), AudioError> {
        self.decode(packet)?;
        for ch in &mut self.pending {
            ch.clear();
        }
        Ok(())
    }

    /// Takes one Opus packet; returns the AAC frames now complete.
    pub fn push_opus(&mut self, packet: &[u8]) -> Result<Vec<Bytes>, AudioError> {
        if !self.decode(packet)? {
            return self.push_silence(self.last_packet_samples);
        }
        self.drain(false)
    }

    /// Decodes into `pending`; false for a corrupt packet.
    fn decode(&mut self, packet: &[u8]) -> Result<bool, AudioError> {
        let pkt = ffmpeg::Packet::copy(packet);
        match self.decoder.send_packet(&pkt) {
            Ok(()) => {}
            // A corrupt packet: concealed as silence of a typical length.
            Err(ffmpeg::Error::InvalidData) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let mut decoded = 0;
        while self.decoder.receive_frame(&mut self.decoded).is_ok() {
            let n = self.decoded.samples();
            decoded += n;
            let sources = usize::from(self.decoded.channels()).clamp(1, MAX_CHANNELS);
            let [left, right] = &mut self.pending;
            match (self.channels, sources) {
                (Channels::Mono, 1) | (Channels::Stereo, 2) => {
                    for (ch, out) in [left, right].into_iter().take(sources).enumerate() {
                        extend_channel(&self.decoded, ch, n, out, 1.0);
                    }
                }
                // A stereo packet in a mono track: the two channels' mean.
                (Channels::Mono, _) => {
                    let from = left.len();
                    extend_channel(&self.decoded, 0, n, left, 0.5);
                    extend_channel(&self.decoded, 1, n, right, 0.5);
                    for (l, r) in left[from..].iter_mut().zip(right.drain(..)) {
                        *l += r;
                    }
                }
                // A mono packet in a stereo track: on both channels.
                (Channels::Stereo, _) => {
                    let from = left.len();
                    extend_channel(&self.decoded, 0, n, left, 1.0);
                    right.extend_from_slice(&left[from..]);
                }
            }
        }
        if decoded > 0 {
            self.last_packet_samples = decoded;
        }
        Ok(true)
    }

    /// Conceals `samples` lost samples (per channel) with silence.
    pub fn push_silence(&mut self, samples: usize) -> Result<Vec<Bytes>, AudioError> {
        for ch in self.pending.iter_mut().take(self.channels.count()) {
            ch.extend(std::iter::repeat_n(0.0, samples));
        }
        self.drain(false)
    }

    /// Flushes the encoder at the end of a session (pads the last frame).
    pub fn finish(&mut self) -> Result<Vec<Bytes>, AudioError> {
        let mut out = self.drain(true)?;
        self.encoder.send_eof()?;
        out.extend(self.receive());
        Ok(out)
    }

    fn drain(&mut self, pad: bool) -> Result<Vec<Bytes>, AudioError> {
        let mut out = Vec::new();
        while self.pending[0].len() >= AAC_FRAME || (pad && !self.pending[0].is_empty()) {
            let mut frame = ffmpeg::frame::Audio::new(Sample::F32(Type::Planar), AAC_FRAME, self.channels.layout());
            frame.set_rate(SAMPLE_RATE);
            for ch in 0..self.channels.count() {
                let take = self.pending[ch].len().min(AAC_FRAME);
                let plane = frame.plane_mut::<f32>(ch);
                plane[..take].copy_from_slice(&self.pending[ch][..take]);
                plane[take..AAC_FRAME].fill(0.0);
                self.pending[ch].drain(..take);
            }
            frame.set_pts(Some(self.encoded_samples));
            self.encoded_samples += AAC_FRAME as i64;
            self.encoder.send_frame(&frame)?;
            out.extend(self.receive());
        }
        Ok(out)
    }

    fn receive(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut pkt = ffmpeg::Packet::empty();
        while self.encoder.receive_packet(&mut pkt).is_ok() {
            // The encoder's priming (its first packet, before time 0) is
            // left out: every frame kept then starts where its input did,
            // so audio is not a frame late against video.
            if pkt.pts().is_some_and(|pts| pts < 0) {
                continue;
            }
            if let Some(d) = pkt.data() {
                out.push(Bytes::copy_from_slice(d));
            }
        }
        out
    }
}

/// Appends channel `ch` of a decoded frame (`n` samples, any of the
/// decoder's sample formats), times `gain`, to `out`.
fn extend_channel(frame: &ffmpeg::frame::Audio, ch: usize, n: usize, out: &mut Vec<f32>, gain: f32) {
    let channels = usize::from(frame.channels()).max(1);
    let ch = ch.min(channels - 1);
    match frame.format() {
        Sample::F32(Type::Planar) => out.extend(frame.plane::<f32>(ch)[..n].iter().map(|&s| s * gain)),
        Sample::F32(Type::Packed) => {
            let data = frame.plane::<f32>(0);
            out.extend((0..n).map(|i| data.get(i * channels + ch).copied().unwrap_or(0.0) * gain));
        }
        Sample::I16(Type::Planar) => out.extend(frame.plane::<i16>(ch)[..n].iter().map(|&s| f32::from(s) / 32768.0 * gain)),
        _ => out.extend(std::iter::repeat_n(0.0, n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20 ms Opus packets of `pcm` (interleaved when stereo), by libopus.
    fn opus_packets(channels: Channels, pcm: impl Fn(usize) -> [f32; 2], packets: usize) -> Vec<Vec<u8>> {
        ffmpeg::init().unwrap();
        let codec = ffmpeg::encoder::find_by_name("libopus").expect("Debian's libavcodec has libopus");
        let mut ctx = ffmpeg::codec::context::Context::new_with_codec(codec).encoder().audio().unwrap();
        ctx.set_rate(SAMPLE_RATE as i32);
        ctx.set_channel_layout(channels.layout());
        ctx.set_format(Sample::F32(Type::Packed));
        ctx.set_bit_rate(64_000);
        ctx.set_time_base((1, SAMPLE_RATE as i32));
        let mut enc = ctx.open_as(codec).unwrap();
        let n = channels.count();
        let mut out = Vec::new();
        let mut packet = ffmpeg::Packet::empty();
        for k in 0..packets {
            let mut frame = ffmpeg::frame::Audio::new(Sample::F32(Type::Packed), 960, channels.layout());
            frame.set_rate(SAMPLE_RATE);
            let bytes = frame.data_mut(0);
            for i in 0..960 {
                let s = pcm(k * 960 + i);
                for ch in 0..n {
                    bytes[(i * n + ch) * 4..][..4].copy_from_slice(&s[ch].to_le_bytes());
                }
            }
            frame.set_pts(Some((k * 960) as i64));
            enc.send_frame(&frame).unwrap();
            while enc.receive_packet(&mut packet).is_ok() {
                out.push(packet.data().unwrap_or(&[]).to_vec());
            }
        }
        out
    }

    /// Decodes raw AAC-LC frames (48 kHz, `channels`): per channel.
    fn decode_aac(frames: &[Bytes], channels: Channels) -> Vec<Vec<f32>> {
        let codec = ffmpeg::decoder::find(ffmpeg::codec::Id::AAC).unwrap();
        let mut dec = ffmpeg::codec::context::Context::new_with_codec(codec).decoder().audio().unwrap();
        let n = channels.count() as u8;
        let mut out = vec![Vec::new(); channels.count()];
        let mut frame = ffmpeg::frame::Audio::empty();
        for f in frames {
            // ADTS: AAC-LC (profile 1), 48 kHz (index 3), `n` channels.
            let len = f.len() + 7;
            let mut adts = vec![
                0xff,
                0xf1,
                (1 << 6) | (3 << 2) | (n >> 2),
                ((n & 3) << 6) | ((len >> 11) & 3) as u8,
                (len >> 3) as u8,
                (((len & 7) << 5) | 0x1f) as u8,
                0xfc,
            ];
            adts.extend_from_slice(f);
            dec.send_packet(&ffmpeg::Packet::copy(&adts)).unwrap();
            while dec.receive_frame(&mut frame).is_ok() {
                assert_eq!(usize::from(frame.channels()), channels.count(), "decoded channels");
                for (ch, o) in out.iter_mut().enumerate() {
                    o.extend_from_slice(&frame.plane::<f32>(ch)[..frame.samples()]);
                }
            }
        }
        out
    }

    fn rms(v: &[f32]) -> f32 {
        let v = &v[v.len() / 4..];
        (v.iter().map(|x| x * x).sum::<f32>() / v.len().max(1) as f32).sqrt()
    }

    fn tone(i: usize) -> f32 {
        0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / SAMPLE_RATE as f32).sin()
    }

    #[test]
    fn passthrough_keeps_packets_and_conceals_lost_and_broken_ones() {
        let packets = opus_packets(Channels::Mono, |i| [tone(i), 0.0], 3);
        let mut p = AudioPath::for_track(AudioCodec::Opus, Channels::Mono, 64_000).unwrap();
        let first = p.push_opus(Bytes::from(packets[0].clone())).unwrap();
        assert_eq!(first, vec![EncodedAudio { samples: 960, data: Bytes::from(packets[0].clone()) }], "kept as sent");
        // Two packets lost: two of the sender's mode with empty frames.
        let lost = p.push_lost(2).unwrap();
        assert_eq!(lost.len(), 2);
        assert!(lost.iter().all(|a| a.samples == 960 && a.data.as_ref() == [packets[0][0] & 0xfc]), "{lost:?}");
        // A packet that breaks RFC 6716 (code 1 with an odd payload): concealed.
        let broken = p.push_opus(Bytes::from_static(&[(1 << 3) | 1, 1, 2, 3])).unwrap();
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].samples, 960);
        assert_eq!(broken[0].data.len(), 1);
        assert!(p.finish().unwrap().is_empty());
        // The concealment decodes: libavcodec takes every packet made.
        let codec = ffmpeg::decoder::find(ffmpeg::codec::Id::OPUS).unwrap();
        let mut dec = ffmpeg::codec::context::Context::new_with_codec(codec).decoder().audio().unwrap();
        let mut frame = ffmpeg::frame::Audio::empty();
        let mut decoded = 0;
        for a in first.iter().chain(&lost).chain(&broken) {
            dec.send_packet(&ffmpeg::Packet::copy(&a.data)).unwrap();
            while dec.receive_frame(&mut frame).is_ok() {
                decoded += frame.samples();
            }
        }
        assert_eq!(decoded, 4 * 960, "every packet decodes to its duration");
    }

    /// A sender of 60 ms packets (GStreamer's `opusenc frame-size=60`): a
    /// lost packet is 60 ms on either path, so later audio keeps its place.
    #[test]
    fn a_lost_packet_is_as_long_as_the_last_that_came() {
        let mut p = AudioPath::for_track(AudioCodec::Opus, Channels::Mono, 64_000).unwrap();
        // SILK 60 ms (config 3), mono.
        p.push_opus(Bytes::from_static(&[3 << 3, 1, 2])).unwrap();
        let lost: u32 = p.push_lost(2).unwrap().iter().map(|a| a.samples).sum();
        assert_eq!(lost, 2 * 2880);
        // The transcoder: what the last packet decoded to.
        let packets = opus_packets(Channels::Mono, |i| [tone(i), 0.0], 5);
        let mut t = OpusToAac::new(Channels::Mono).unwrap();
        for pk in &packets {
            t.push_opus(pk).unwrap();
        }
        assert_eq!(t.last_packet_samples, 960);
        let mut a = AudioPath::Transcode(t);
        let before = match &a {
            AudioPath::Transcode(t) => t.pending[0].len(),
            AudioPath::Passthrough(_) => 0,
        };
        let out: usize = a.push_lost(3).unwrap().len() * AAC_FRAME;
        let after = match &a {
            AudioPath::Transcode(t) => t.pending[0].len(),
            AudioPath::Passthrough(_) => 0,
        };
        assert_eq!(before + 3 * 960, out + after, "three packets of 960 concealed");
    }

    #[test]
    fn a_silent_aac_frame_decodes_to_silence() {
        for channels in [Channels::Mono, Channels::Stereo] {
            let frame = silent_aac_frame(channels, channels.aac_bitrate()).unwrap();
            let decoded = decode_aac(&[frame.clone(), frame.clone(), frame], channels);
            assert!(decoded.iter().all(|ch| ch.len() == 3 * AAC_FRAME && ch.iter().all(|s| s.abs() < 1e-4)), "{channels:?}");
        }
    }

    #[test]
    fn the_aac_path_says_each_frame_is_1024_samples() {
        let packets = opus_packets(Channels::Mono, |i| [tone(i), 0.0], 10);
        let mut p = AudioPath::for_track(AudioCodec::Aac, Channels::Mono, 64_000).unwrap();
        let mut out = Vec::new();
        for pk in packets {
            out.extend(p.push_opus(Bytes::from(pk)).unwrap());
        }
        out.extend(p.finish().unwrap());
        assert!(!out.is_empty() && out.iter().all(|a| a.samples == 1024));
    }

    #[test]
    fn a_mono_track_takes_the_mean_of_a_stereo_publishers_channels() {
        // The tone on the left only: the mono track carries half of it.
        let packets = opus_packets(Channels::Stereo, |i| [tone(i), 0.0], 100);
        let mut t = OpusToAac::new(Channels::Mono).unwrap();
        let mut aac = Vec::new();
        for p in &packets {
            aac.extend(t.push_opus(p).unwrap());
        }
        aac.extend(t.finish().unwrap());
        let decoded = decode_aac(&aac, Channels::Mono);
        let level = rms(&decoded[0]);
        // A sine of amplitude 0.25 has an RMS of 0.177.
        assert!((level - 0.177).abs() < 0.03, "mono RMS {level}");
    }

    #[test]
    fn a_stereo_track_carries_a_mono_publisher_on_both_channels() {
        let packets = opus_packets(Channels::Mono, |i| [tone(i), 0.0], 100);
        let mut t = OpusToAac::new(Channels::Stereo).unwrap();
        let mut aac = Vec::new();
        for p in &packets {
            aac.extend(t.push_opus(p).unwrap());
        }
        // Lost packets are silence on every channel of the track.
        aac.extend(t.push_silence(960).unwrap());
        aac.extend(t.finish().unwrap());
        let decoded = decode_aac(&aac, Channels::Stereo);
        let (l, r) = (rms(&decoded[0]), rms(&decoded[1]));
        assert!((l - 0.354).abs() < 0.05 && (r - l).abs() < 0.01, "left {l}, right {r}");
        // 100 packets of 960 and 960 of silence, in frames of 1024.
        assert_eq!(decoded[0].len(), (101 * 960usize).div_ceil(AAC_FRAME) * AAC_FRAME);
    }
}
