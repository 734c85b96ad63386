//! Opus -> AAC-LC, measured: the node's path (libavcodec's Opus decoder and
//! AAC encoder, `media/audio.rs`) against the pure-Rust pair considered
//! instead (`opus-decoder` + `syom`). A 20 s stereo test signal (tones
//! with slow amplitude modulation over low noise) is encoded to Opus at
//! 64 kb/s in 20 ms packets (libopus, as browsers send), transcoded by each
//! path, decoded back by one judge (libavcodec's AAC decoder), aligned to
//! the source, and compared: SNR in dB (higher is closer to the source) and
//! CPU time per second of audio (one core).
//!
//! Three sources: the tones, a pure tone, and synthesized speech (ffmpeg's
//! flite voice), since what libavcodec's AAC encoder costs depends on the
//! sound; `AUDIO_BENCH_F32=file` adds any interleaved stereo f32 file.
//!
//!   cargo bench -p mediastreams-ingest-node --bench audio

use std::time::Instant;

use ffmpeg::util::channel_layout::ChannelLayout;
use ffmpeg::util::format::sample::{Sample, Type};
use ffmpeg_next as ffmpeg;
use mediastreams_ingest_node::media::audio::{AacCoder, Channels, OpusToAac};

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

/// An ADTS header for a raw AAC-LC frame, 48 kHz, `channels` 1 or 2.
fn adts(frame: &[u8], channels: u8) -> Vec<u8> {
    let len = frame.len() + 7;
    let mut h = vec![
        0xff,
        0xf1,
        (1 << 6) | (3 << 2) | (channels >> 2),
        ((channels & 3) << 6) | ((len >> 11) & 3) as u8,
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
/// delays, either way), over the middle of the signal; and that lag.
fn snr(source: &[f32], decoded: &[f32]) -> (f64, i64) {
    let from = RATE as i64;
    let to = (source.len().min(decoded.len()) as i64 - RATE as i64 - 8192).max(from);
    let at = |v: &[f32], i: i64| usize::try_from(i).ok().and_then(|i| v.get(i)).map_or(0.0, |&x| f64::from(x));
    let error_at = |lag: i64, step: usize| {
        let (mut signal, mut error) = (0.0f64, 0.0f64);
        for i in (from..to).step_by(step) {
            let (s, d) = (at(source, i), at(decoded, i + lag));
            signal += s * s;
            error += (s - d) * (s - d);
        }
        (signal, error)
    };
    // The lag with the least error, coarse then exact.
    let best = (-4096..8192i64).min_by(|&a, &b| error_at(a, 97).1.total_cmp(&error_at(b, 97).1)).unwrap_or(0);
    let (signal, error) = error_at(best, 1);
    (10.0 * (signal / error.max(1e-12)).log10(), best)
}

/// A pure 440 Hz tone, as the load generator's clip has (`ingest-bench`).
fn sine() -> [Vec<f32>; 2] {
    let tone: Vec<f32> = (0..RATE * SECONDS).map(|i| 0.125 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / RATE as f32).sin()).collect();
    [tone.clone(), tone]
}

/// Synthesized speech (Debian's ffmpeg has libflite), looped to 20 s.
fn speech() -> Option<[Vec<f32>; 2]> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg("flite=text='Live streaming from a web browser to the cloud. Create a media stream through an HTTP API, start browser ingest, and players read Smooth Streaming straight from object storage, live and then on demand',aresample=48000")
        .args(["-ac", "2", "-f", "f32le", "-"])
        .output()
        .ok()?;
    if !out.status.success() || out.stdout.is_empty() {
        return None;
    }
    Some(looped(&out.stdout))
}

/// Interleaved stereo f32 bytes, looped to `SECONDS`.
fn looped(bytes: &[u8]) -> [Vec<f32>; 2] {
    let samples: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let mut pcm = [Vec::with_capacity(RATE * SECONDS), Vec::with_capacity(RATE * SECONDS)];
    for i in 0..RATE * SECONDS {
        let at = (2 * i) % samples.len().max(2);
        pcm[0].push(samples.get(at).copied().unwrap_or(0.0));
        pcm[1].push(samples.get(at + 1).copied().unwrap_or(0.0));
    }
    pcm
}

fn main() {
    ffmpeg::init().unwrap();
    measure("tones with slow amplitude modulation over low noise", &source(), true);
    measure("a pure 440 Hz tone", &sine(), false);
    match speech() {
        Some(pcm) => measure("speech (ffmpeg's flite voice, as the load generator sends)", &pcm, false),
        None => println!("\nspeech: ffmpeg with libflite is not installed; skipped"),
    }
    // Any interleaved stereo f32 file at 48 kHz (e.g. `ffmpeg -i x -f f32le
    // -ac 2 -ar 48000 x.f32`), looped to 20 s.
    if let Ok(path) = std::env::var("AUDIO_BENCH_F32") {
        let pcm = looped(&std::fs::read(&path).expect("AUDIO_BENCH_F32"));
        measure(&path, &pcm, false);
    }
}

fn measure(what: &str, pcm: &[Vec<f32>; 2], pure_rust: bool) {
    let packets = opus_packets(pcm);
    let seconds = SECONDS as f64;
    println!("\nsource: {what}, {SECONDS} s stereo 48 kHz; Opus 64 kb/s, {} packets of 20 ms (libopus)", packets.len());

    // Reference: the Opus stream itself, decoded by libavcodec (the ceiling).
    let (mut opus_only, mut opus_mean) = (Vec::new(), Vec::new());
    {
        let mut d = opus_decoder::OpusDecoder::new(48_000, 2).unwrap();
        let mut buf = vec![0f32; 5760 * 2];
        for p in &packets {
            let n = d.decode_float(p, &mut buf, false).unwrap();
            opus_only.extend((0..n).map(|i| buf[2 * i]));
            opus_mean.extend((0..n).map(|i| (buf[2 * i] + buf[2 * i + 1]) / 2.0));
        }
    }
    let source_mean: Vec<f32> = pcm[0].iter().zip(&pcm[1]).map(|(l, r)| (l + r) / 2.0).collect();
    let (db, lag) = snr(&pcm[0], &opus_only);
    println!("{:<44} {:>8.2} dB (lag {lag})", "Opus decoded (opus-decoder), no AAC", db);

    // The node's path, with each of libavcodec's AAC quantizer searches.
    // The SNR against the Opus-decoded signal (the AAC encoder's input) is
    // the AAC step's own loss.
    for (channels, coder, label) in [
        (Channels::Stereo, AacCoder::TwoLoop, "Opus -> AAC stereo, aac_coder twoloop"),
        (Channels::Stereo, AacCoder::Fast, "Opus -> AAC stereo, aac_coder fast (chosen)"),
        (Channels::Mono, AacCoder::TwoLoop, "Opus -> AAC mono, aac_coder twoloop"),
        (Channels::Mono, AacCoder::Fast, "Opus -> AAC mono, aac_coder fast (chosen)"),
    ] {
        let started = Instant::now();
        let mut t = match OpusToAac::with_coder(channels, coder) {
            Ok(t) => t,
            Err(e) => {
                println!("{label:<48} cannot open: {e}");
                continue;
            }
        };
        let mut aac = Vec::new();
        for p in &packets {
            aac.extend(t.push_opus(p).unwrap());
        }
        aac.extend(t.finish().unwrap());
        let cpu = started.elapsed().as_secs_f64();
        let decoded = decode_aac(&aac.iter().map(|f| adts(f, channels.count() as u8)).collect::<Vec<_>>());
        // Mono is judged against the mean of the channels it was mixed from.
        let (reference, input) = match channels {
            Channels::Mono => (&source_mean, &opus_mean),
            Channels::Stereo => (&pcm[0], &opus_only),
        };
        let (db, lag) = snr(reference, &decoded);
        let (step, _) = snr(input, &decoded);
        println!(
            "{:<48} {:>8.2} dB (lag {lag}), {:>6.2} dB vs its input, {:>7.2} ms CPU per s of audio ({:.2}% of a core), {} kb/s",
            label,
            db,
            step,
            cpu * 1000.0 / seconds,
            cpu / seconds * 100.0,
            aac.iter().map(|f| f.len()).sum::<usize>() * 8 / SECONDS / 1000
        );
    }

    // Decoding alone (libavcodec's Opus decoder, as the node's path does
    // before encoding): what is left when no output needs AAC.
    let started = Instant::now();
    let mut t = OpusToAac::new(Channels::Stereo).unwrap();
    for p in &packets {
        t.decode_only(p).unwrap();
    }
    let cpu = started.elapsed().as_secs_f64();
    println!(
        "{:<48} {:>7.2} ms CPU per s of audio ({:.2}% of a core)",
        "libavcodec Opus decode alone",
        cpu * 1000.0 / seconds,
        cpu / seconds * 100.0
    );

    if !pure_rust {
        return;
    }
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
