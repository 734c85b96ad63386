//! Opus -> AAC-LC, measured: the node's path (libavcodec's Opus decoder and
//! AAC encoder, `media/audio.rs`) against the pure-Rust pair considered
//! instead (`opus-decoder` + `syom`). A 20 s stereo test signal (tones
//! with slow amplitude modulation over low noise) is encoded to Opus at
//! 64 kb/s in 20 ms packets (libopus, as browsers send), transcoded by each
//! path, decoded back by one judge (libavcodec's AAC decoder), aligned to
//! the source, and compared: SNR in dB (higher is closer to the source) and
//! CPU time per second of audio (one core).
//!
//!   cargo bench -p mediastreams-ingest-node --bench audio

use std::time::Instant;

use ffmpeg::util::channel_layout::ChannelLayout;
use ffmpeg::util::format::sample::{Sample, Type};
use ffmpeg_next as ffmpeg;
use mediastreams_ingest_node::media::audio::OpusToAac;

const RATE: usize = 48_000;
const SECONDS: usize = 20;

fn source() -> [Vec<f32>; 2] {
    let n = RATE * SECONDS;
    let mut seed = 0x2545_f491u32;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed as f32 / u32::MAX as f32 - 0.5) * 0.02
    };
    let mut l = Vec::with_capacity(n);
    let mut r = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f32 / RATE as f32;
        let am = 0.6 + 0.4 * (2.0 * std::f32::consts::PI * 0.7 * t).sin();
        let tone = |f: f32, a: f32| a * (2.0 * std::f32::consts::PI * f * t).sin();
        let base = tone(220.0, 0.25) + tone(660.0, 0.12) + tone(1500.0, 0.06) + tone(4100.0, 0.03);
        l.push(am * base + noise());
        r.push(am * (base * 0.8 + tone(330.0, 0.1)) + noise());
    }
    [l, r]
}

fn opus_packets(pcm: &[Vec<f32>; 2]) -> Vec<Vec<u8>> {
    let codec = ffmpeg::encoder::find_by_name("libopus").expect("Debian's libavcodec has libopus");
    let mut ctx = ffmpeg::codec::context::Context::new_with_codec(codec).encoder().audio().unwrap();
    ctx.set_rate(RATE as i32);
    ctx.set_channel_layout(ChannelLayout::STEREO);
    ctx.set_format(Sample::F32(Type::Packed));
    ctx.set_bit_rate(64_000);
    ctx.set_time_base((1, RATE as i32));
    let mut enc = ctx.open_as(codec).unwrap();
    let mut out = Vec::new();
    let mut packet = ffmpeg::Packet::empty();
    let mut receive = |enc: &mut ffmpeg::encoder::Audio, out: &mut Vec<Vec<u8>>| {
        while enc.receive_packet(&mut packet).is_ok() {
            out.push(packet.data().unwrap_or(&[]).to_vec());
        }
    };
    for (k, start) in (0..pcm[0].len()).step_by(960).enumerate() {
        if start + 960 > pcm[0].len() {
            break;
        }
        let mut frame = ffmpeg::frame::Audio::new(Sample::F32(Type::Packed), 960, ChannelLayout::STEREO);
        frame.set_rate(RATE as u32);
        let bytes = frame.data_mut(0);
        for i in 0..960 {
            for (ch, plane) in pcm.iter().enumerate() {
                let at = (i * 2 + ch) * 4;
                bytes[at..at + 4].copy_from_slice(&plane[start + i].to_le_bytes());
            }
        }
        frame.set_pts(Some((k * 960) as i64));
        enc.send_frame(&frame).unwrap();
        receive(&mut enc, &mut out);
    }
    enc.send_eof().unwrap();
    receive(&mut enc, &mut out);
    out
}

/// An ADTS header for a raw AAC-LC frame, 48 kHz stereo.
fn adts(frame: &[u8]) -> Vec<u8> {
    let len = frame.len() + 7;
    let mut h = vec![
        0xff,
        0xf1,
        (1 << 6) | (3 << 2),
        (2 << 6) | ((len >> 11) & 3) as u8,
        ((len >> 3) & 0xff) as u8,
        (((len & 7) << 5) | 0x1f) as u8,
        0xfc,
    ];
    h.extend_from_slice(frame);
    h
}

/// Decodes ADTS-framed AAC packets with libavcodec; the left channel.
fn decode_aac(packets: &[Vec<u8>]) -> Vec<f32> {
    let codec = ffmpeg::decoder::find(ffmpeg::codec::Id::AAC).unwrap();
    let mut dec = ffmpeg::codec::context::Context::new_with_codec(codec).decoder().audio().unwrap();
    let mut out = Vec::new();
    let mut frame = ffmpeg::frame::Audio::empty();
    for p in packets {
        if dec.send_packet(&ffmpeg::Packet::copy(p)).is_err() {
            continue;
        }
        while dec.receive_frame(&mut frame).is_ok() {
            let n = frame.samples();
            match frame.format() {
                Sample::F32(Type::Planar) => out.extend_from_slice(&frame.plane::<f32>(0)[..n]),
                other => panic!("unexpected decoder format {other:?}"),
            }
        }
    }
    out
}

/// Splits an ADTS stream (after an optional ID3 tag) into frames.
fn adts_frames(mut data: &[u8]) -> Vec<Vec<u8>> {
    if data.starts_with(b"ID3") && data.len() >= 10 {
        let size = data[6..10].iter().fold(0usize, |a, &b| (a << 7) | usize::from(b & 0x7f));
        data = &data[(10 + size).min(data.len())..];
    }
    let mut out = Vec::new();
    while data.len() >= 7 && data[0] == 0xff && data[1] & 0xf0 == 0xf0 {
        let len = ((usize::from(data[3]) & 3) << 11) | (usize::from(data[4]) << 3) | (usize::from(data[5]) >> 5);
        if len < 7 || len > data.len() {
            break;
        }
        out.push(data[..len].to_vec());
        data = &data[len..];
    }
    out
}

/// SNR (dB) of `decoded` against `source` at the best alignment (codec
/// delays), over the middle of the signal.
fn snr(source: &[f32], decoded: &[f32]) -> (f64, usize) {
    let from = RATE;
    let to = source.len().min(decoded.len()).saturating_sub(RATE + 8192);
    let window = from..from + RATE;
    let lag = (0..8192usize)
        .max_by(|&a, &b| {
            let c = |lag: usize| {
                window.clone().map(|i| f64::from(source[i]) * f64::from(decoded.get(i + lag).copied().unwrap_or(0.0))).sum::<f64>()
            };
            c(a).total_cmp(&c(b))
        })
        .unwrap_or(0);
    let (mut signal, mut error) = (0.0f64, 0.0f64);
    for (i, &s) in source.iter().enumerate().take(to).skip(from) {
        let s = f64::from(s);
        let d = f64::from(decoded.get(i + lag).copied().unwrap_or(0.0));
        signal += s * s;
        error += (s - d) * (s - d);
    }
    (10.0 * (signal / error.max(1e-12)).log10(), lag)
}

fn main() {
    ffmpeg::init().unwrap();
    let pcm = source();
    let packets = opus_packets(&pcm);
    let seconds = SECONDS as f64;
    println!("source: {SECONDS} s stereo 48 kHz; Opus 64 kb/s, {} packets of 20 ms (libopus)", packets.len());

    // Reference: the Opus stream itself, decoded by libavcodec (the ceiling).
    let mut opus_only = Vec::new();
    {
        let mut d = opus_decoder::OpusDecoder::new(48_000, 2).unwrap();
        let mut buf = vec![0f32; 5760 * 2];
        for p in &packets {
            let n = d.decode_float(p, &mut buf, false).unwrap();
            opus_only.extend((0..n).map(|i| buf[2 * i]));
        }
    }
    let (db, lag) = snr(&pcm[0], &opus_only);
    println!("{:<44} {:>8.2} dB (lag {lag})", "Opus decoded (opus-decoder), no AAC", db);

    // The node's path.
    let started = Instant::now();
    let mut t = OpusToAac::new().unwrap();
    let mut aac = Vec::new();
    for p in &packets {
        aac.extend(t.push_opus(p).unwrap());
    }
    aac.extend(t.finish().unwrap());
    let cpu = started.elapsed().as_secs_f64();
    let decoded = decode_aac(&aac.iter().map(|f| adts(f)).collect::<Vec<_>>());
    let (db, lag) = snr(&pcm[0], &decoded);
    println!(
        "{:<44} {:>8.2} dB (lag {lag}), {:>7.2} ms CPU per s of audio ({:.2}% of a core), {} kb/s",
        "libavcodec Opus -> libavcodec AAC (chosen)",
        db,
        cpu * 1000.0 / seconds,
        cpu / seconds * 100.0,
        aac.iter().map(|f| f.len()).sum::<usize>() * 8 / SECONDS / 1000
    );

    // The pure-Rust pair.
    let started = Instant::now();
    let mut d = opus_decoder::OpusDecoder::new(48_000, 2).unwrap();
    let mut planes = [Vec::new(), Vec::new()];
    let mut buf = vec![0f32; 5760 * 2];
    for p in &packets {
        let n = d.decode_float(p, &mut buf, false).unwrap();
        for i in 0..n {
            planes[0].push(buf[2 * i]);
            planes[1].push(buf[2 * i + 1]);
        }
    }
    let stream = syom::encode(&planes, 48_000).unwrap();
    let cpu = started.elapsed().as_secs_f64();
    let frames = adts_frames(&stream);
    let decoded = decode_aac(&frames);
    let (db, lag) = snr(&pcm[0], &decoded);
    println!(
        "{:<44} {:>8.2} dB (lag {lag}), {:>7.2} ms CPU per s of audio ({:.2}% of a core), {} kb/s",
        "opus-decoder -> syom AAC (pure Rust)",
        db,
        cpu * 1000.0 / seconds,
        cpu / seconds * 100.0,
        frames.iter().map(|f| f.len()).sum::<usize>() * 8 / SECONDS / 1000
    );
}
