//! The Smooth Streaming client manifest (MS-SSTR 2.2.2).
//!
//! Live: `IsLive="TRUE"` (dash.js compares that exact string), a growing
//! list of the fragments within the stream's DVR window, `Duration="0"`,
//! and `DVRWindowLength="0"`: every fragment stays available while live
//! (they are the recording), which MS-SSTR 2.2.2.1 writes as an infinite
//! DVR window. A finite `DVRWindowLength` made stock dash.js (5.x) never
//! start a stream it joined early: it clamps the window to the listed
//! video timeline and sets its buffer target to
//! `min(max(T - 10, T / 2), 4 d0) - 1.5 d0` (T the listed duration, d0 the
//! first fragment's), which is zero or less while three or fewer fragments
//! are listed; it then never requests video, and never re-reads the
//! manifest. With an infinite window the target is `2.5 d0`. Final: no
//! `IsLive`, the whole `Duration`, every fragment. Each fragment is one `c`
//! element with explicit `t` and `d`, the form every parser reads.

use std::fmt::Write;

use super::{LevelDetail, ManifestMode, TrackManifest, windowed};
use crate::TIMESCALE;
use crate::presentation::AudioCodec;

/// How many fragments a live fragment's `tfrf` announces.
pub const LOOKAHEAD_FRAGMENT_COUNT: u32 = 1;

pub fn write(tracks: &[TrackManifest], mode: ManifestMode) -> String {
    let mut x = String::with_capacity(4096);
    x.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let start = tracks.iter().filter_map(|t| t.chunks.first()).map(|c| c.start).min().unwrap_or(0);
    let end = tracks.iter().filter_map(|t| t.chunks.last()).map(|c| c.end()).max().unwrap_or(0);
    match mode {
        ManifestMode::Live { .. } => {
            let _ = writeln!(
                x,
                "<SmoothStreamingMedia MajorVersion=\"2\" MinorVersion=\"2\" TimeScale=\"{TIMESCALE}\" Duration=\"0\" IsLive=\"TRUE\" LookAheadFragmentCount=\"{LOOKAHEAD_FRAGMENT_COUNT}\" DVRWindowLength=\"0\">"
            );
        }
        ManifestMode::Final => {
            let _ = writeln!(
                x,
                "<SmoothStreamingMedia MajorVersion=\"2\" MinorVersion=\"2\" TimeScale=\"{TIMESCALE}\" Duration=\"{}\">",
                end.saturating_sub(start)
            );
        }
    }
    for t in tracks {
        let chunks = windowed(&t.chunks, mode);
        let name = t.track.name();
        let _ = write!(
            x,
            "  <StreamIndex Type=\"{name}\" Name=\"{name}\" Chunks=\"{}\" QualityLevels=\"{}\" Url=\"{}\"",
            chunks.len(),
            t.levels.len(),
            crate::layout::smooth_url_template(t.track)
        );
        let (mw, mh) = t
            .levels
            .iter()
            .filter_map(|l| match l.detail {
                LevelDetail::Video { width, height } => Some((width, height)),
                LevelDetail::Audio { .. } => None,
            })
            .fold((0, 0), |(w, h), (lw, lh)| (w.max(lw), h.max(lh)));
        if mw > 0 {
            let _ = write!(x, " MaxWidth=\"{mw}\" MaxHeight=\"{mh}\" DisplayWidth=\"{mw}\" DisplayHeight=\"{mh}\"");
        }
        x.push_str(">\n");
        for (i, l) in t.levels.iter().enumerate() {
            match l.detail {
                LevelDetail::Video { width, height } => {
                    let _ = writeln!(
                        x,
                        "    <QualityLevel Index=\"{i}\" Bitrate=\"{}\" FourCC=\"AVC1\" MaxWidth=\"{width}\" MaxHeight=\"{height}\" CodecPrivateData=\"{}\"/>",
                        l.bitrate, l.codec_private_data
                    );
                }
                LevelDetail::Audio { sample_rate, channels, codec } => {
                    // AudioTag: 255 is AAC (MS-SSTR 2.2.2.5); Opus has no
                    // WAVE format tag, and no Smooth player takes it (it is
                    // written only for presentations without a Smooth
                    // output, whose index this manifest still is).
                    let (fourcc, tag) = match codec {
                        AudioCodec::Aac => ("AACL", 255),
                        AudioCodec::Opus => (crate::codec::opus::FOURCC, 0),
                    };
                    let _ = writeln!(
                        x,
                        "    <QualityLevel Index=\"{i}\" Bitrate=\"{}\" FourCC=\"{fourcc}\" SamplingRate=\"{sample_rate}\" Channels=\"{channels}\" BitsPerSample=\"16\" PacketSize=\"{}\" AudioTag=\"{tag}\" CodecPrivateData=\"{}\"/>",
                        l.bitrate,
                        4 * channels,
                        l.codec_private_data
                    );
                }
            }
        }
        for c in chunks {
            let _ = writeln!(x, "    <c t=\"{}\" d=\"{}\"/>", c.start, c.duration);
        }
        x.push_str("  </StreamIndex>\n");
    }
    x.push_str("</SmoothStreamingMedia>\n");
    x
}
