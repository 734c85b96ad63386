//! HLS view (RFC 8216) over the Smooth fragments: fMP4 media playlists
//! (EXT-X-MAP to the initialization segment) and a multivariant playlist
//! with the audio as an alternate rendition.

use std::fmt::Write;

use super::{Chunk, LevelDetail, ManifestMode, TrackManifest, windowed};
use crate::{TIMESCALE, TrackType, layout};

fn media_playlist(track: TrackType, bitrate: u32, all: &[Chunk], mode: ManifestMode) -> String {
    let chunks = windowed(all, mode);
    let first_index = all.len() - chunks.len();
    let ts = TIMESCALE as u64;
    let target = chunks.iter().map(|c| c.duration.div_ceil(ts)).max().unwrap_or(1).max(1);
    let mut x = String::new();
    x.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(x, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(x, "#EXT-X-MEDIA-SEQUENCE:{first_index}");
    if mode == ManifestMode::Final {
        x.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    x.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = writeln!(x, "#EXT-X-MAP:URI=\"{}\"", layout::hls_init_uri(track, bitrate));
    for c in chunks {
        let _ =
            writeln!(x, "#EXTINF:{}.{:06},\n{}", c.duration / ts, (c.duration % ts) / 10, layout::hls_segment_uri(track, bitrate, c.start));
    }
    if mode == ManifestMode::Final {
        x.push_str("#EXT-X-ENDLIST\n");
    }
    x
}

/// The multivariant playlist and every media playlist, as (key, body).
pub fn write(tracks: &[TrackManifest], mode: ManifestMode) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut main = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let audio = tracks.iter().find(|t| t.track == TrackType::Audio);
    let audio_level = audio.and_then(|a| a.levels.first());
    if let (Some(a), Some(l)) = (audio, audio_level) {
        let channels = match l.detail {
            LevelDetail::Audio { channels, .. } => channels,
            LevelDetail::Video { .. } => 2,
        };
        let _ = writeln!(
            main,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"{channels}\",URI=\"audio-{}.m3u8\"",
            l.bitrate
        );
        out.push((
            crate::layout::hls_media_playlist_key(TrackType::Audio, l.bitrate),
            media_playlist(TrackType::Audio, l.bitrate, &a.chunks, mode),
        ));
    }
    if let Some(v) = tracks.iter().find(|t| t.track == TrackType::Video) {
        for l in &v.levels {
            let (w, h) = match l.detail {
                LevelDetail::Video { width, height } => (width, height),
                LevelDetail::Audio { .. } => (0, 0),
            };
            let bandwidth = l.bitrate + audio_level.map(|a| a.bitrate).unwrap_or(0);
            let codecs = match audio_level {
                Some(a) => format!("{},{}", l.codecs, a.codecs),
                None => l.codecs.clone(),
            };
            let _ = write!(main, "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{codecs}\",RESOLUTION={w}x{h}");
            if audio_level.is_some() {
                main.push_str(",AUDIO=\"audio\"");
            }
            let _ = writeln!(main, "\nvideo-{}.m3u8", l.bitrate);
            out.push((
                crate::layout::hls_media_playlist_key(TrackType::Video, l.bitrate),
                media_playlist(TrackType::Video, l.bitrate, &v.chunks, mode),
            ));
        }
    }
    out.insert(0, (crate::layout::HLS_MULTIVARIANT.to_owned(), main));
    out
}
