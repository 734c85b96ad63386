//! Opus to AAC-LC: WebRTC publishers send Opus, Smooth Streaming players
//! accept only AAC. Decoding and encoding use FFmpeg's libavcodec (Debian's
//! build, through `ffmpeg-next`): its native Opus decoder and its native
//! AAC-LC encoder, 48 kHz stereo, 128 kb/s.
//!
//! The encoder takes frames of exactly 1024 samples; Opus packets decode to
//! 960 (20 ms), so decoded audio is re-chunked here. A lost Opus packet
//! becomes silence of its duration, so the audio timeline stays continuous.

use bytes::Bytes;
use ffmpeg::util::channel_layout::ChannelLayout;
use ffmpeg::util::format::sample::{Sample, Type};
use ffmpeg_next as ffmpeg;

/// Output sample rate and channel count.
pub const SAMPLE_RATE: u32 = 48_000;
pub const CHANNELS: usize = 2;
/// AAC-LC frame length.
pub const AAC_FRAME: usize = 1024;
/// Output bitrate.
pub const AAC_BITRATE: usize = 128_000;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("FFmpeg has no {0} codec")]
    MissingCodec(&'static str),
    #[error("FFmpeg: {0}")]
    Ffmpeg(#[from] ffmpeg::Error),
}

pub struct OpusToAac {
    decoder: ffmpeg::decoder::Audio,
    encoder: ffmpeg::encoder::Audio,
    /// Decoded samples waiting for a whole AAC frame, per channel.
    pending: [Vec<f32>; CHANNELS],
    /// Samples handed to the encoder so far (its pts).
    encoded_samples: i64,
    decoded: ffmpeg::frame::Audio,
}

impl OpusToAac {
    pub fn new() -> Result<Self, AudioError> {
        ffmpeg::init()?;
        let opus = ffmpeg::decoder::find(ffmpeg::codec::Id::OPUS).ok_or(AudioError::MissingCodec("Opus decoder"))?;
        // Without an OpusHead, FFmpeg's decoder assumes 48 kHz stereo.
        let decoder = ffmpeg::codec::context::Context::new_with_codec(opus).decoder().audio()?;

        let aac = ffmpeg::encoder::find(ffmpeg::codec::Id::AAC).ok_or(AudioError::MissingCodec("AAC encoder"))?;
        let mut ectx = ffmpeg::codec::context::Context::new_with_codec(aac).encoder().audio()?;
        ectx.set_rate(SAMPLE_RATE as i32);
        ectx.set_channel_layout(ChannelLayout::STEREO);
        ectx.set_format(Sample::F32(Type::Planar));
        ectx.set_bit_rate(AAC_BITRATE);
        ectx.set_time_base((1, SAMPLE_RATE as i32));
        let encoder = ectx.open_as(aac)?;
        Ok(OpusToAac { decoder, encoder, pending: [Vec::new(), Vec::new()], encoded_samples: 0, decoded: ffmpeg::frame::Audio::empty() })
    }

    /// Takes one Opus packet; returns the AAC frames now complete.
    pub fn push_opus(&mut self, packet: &[u8]) -> Result<Vec<Bytes>, AudioError> {
        let pkt = ffmpeg::Packet::copy(packet);
        match self.decoder.send_packet(&pkt) {
            Ok(()) => {}
            // A corrupt packet: conceal it as silence of a typical length.
            Err(ffmpeg::Error::InvalidData) => return self.push_silence(960),
            Err(e) => return Err(e.into()),
        }
        while self.decoder.receive_frame(&mut self.decoded).is_ok() {
            let n = self.decoded.samples();
            let planar = self.decoded.is_planar();
            let channels = usize::from(self.decoded.channels()).max(1);
            for ch in 0..CHANNELS {
                let src = ch.min(channels - 1);
                match self.decoded.format() {
                    Sample::F32(_) if planar => self.pending[ch].extend_from_slice(&self.decoded.plane::<f32>(src)[..n]),
                    Sample::F32(_) => {
                        let data = self.decoded.plane::<f32>(0);
                        self.pending[ch].extend((0..n).map(|i| data.get(i * channels + src).copied().unwrap_or(0.0)));
                    }
                    Sample::I16(_) if planar => {
                        self.pending[ch].extend(self.decoded.plane::<i16>(src)[..n].iter().map(|&s| f32::from(s) / 32768.0))
                    }
                    _ => self.pending[ch].extend(std::iter::repeat_n(0.0, n)),
                }
            }
        }
        self.drain(false)
    }

    /// Conceals `samples` lost samples (per channel) with silence.
    pub fn push_silence(&mut self, samples: usize) -> Result<Vec<Bytes>, AudioError> {
        for ch in &mut self.pending {
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
            let mut frame = ffmpeg::frame::Audio::new(Sample::F32(Type::Planar), AAC_FRAME, ChannelLayout::STEREO);
            frame.set_rate(SAMPLE_RATE);
            for ch in 0..CHANNELS {
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
