//! The storage layout: every object key, content type and cache policy the
//! packager produces. Keys are relative to the stream's `{playbackId}/`
//! prefix. See `docs/storage-layout.md`.

use bytes::Bytes;

use crate::TrackType;

/// The Smooth Streaming client manifest.
pub const SMOOTH_MANIFEST: &str = "smooth.ism/Manifest";
/// The DASH MPD.
pub const DASH_MANIFEST: &str = "dash/manifest.mpd";
/// The HLS multivariant playlist.
pub const HLS_MULTIVARIANT: &str = "hls/main.m3u8";

/// Manifests change with every fragment while live.
pub const CACHE_LIVE_MANIFEST: &str = "max-age=1";
/// Final on-demand manifests may still be replaced (a re-finalized
/// recording), so they are cached briefly rather than forever.
pub const CACHE_FINAL_MANIFEST: &str = "max-age=60";
/// Fragments and initialization segments never change once written.
pub const CACHE_IMMUTABLE: &str = "max-age=31536000, immutable";

pub const CT_SMOOTH_MANIFEST: &str = "application/vnd.ms-sstr+xml";
pub const CT_DASH_MANIFEST: &str = "application/dash+xml";
pub const CT_HLS_PLAYLIST: &str = "application/vnd.apple.mpegurl";

/// One object to write to the media store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedObject {
    pub key: String,
    pub content_type: &'static str,
    pub cache_control: &'static str,
    pub body: Bytes,
}

/// The Smooth presentation's directory: every fragment and initialization
/// segment lives under it, and the DASH and HLS views point into it.
const SMOOTH_DIR: &str = "smooth.ism";

/// `smooth.ism/QualityLevels({bitrate})`; `bitrate` is a number, or a
/// template variable (`$Bandwidth$`) in the DASH view.
fn quality_dir(bitrate: impl std::fmt::Display) -> String {
    format!("{SMOOTH_DIR}/QualityLevels({bitrate})")
}

/// The Smooth manifest's `Url` template (MS-SSTR 2.2.2.3): players expand it
/// to [`fragment_key`] relative to the manifest.
pub fn smooth_url_template(track: TrackType) -> String {
    format!("QualityLevels({{bitrate}})/Fragments({}={{start time}})", track.name())
}

/// `smooth.ism/QualityLevels({bitrate})/Fragments({video|audio}={time})`:
/// what the manifest's `Url` template expands to (MS-SSTR 2.2.6).
pub fn fragment_key(track: TrackType, bitrate: u32, time: u64) -> String {
    format!("{}/Fragments({}={time})", quality_dir(bitrate), track.name())
}

/// Whether a key is a media fragment's ([`fragment_key`]).
pub fn is_fragment_key(key: &str) -> bool {
    key.contains("/Fragments(")
}

/// Where the media origin answers its current time (ISO 8601, UTC, in
/// milliseconds), at its root: the CDN's edge function, the local runner.
/// Players set their clock from it (the DASH MPD's first `UTCTiming`).
pub const TIME_PATH: &str = "/time";

/// The initialization segment of a quality level (DASH and HLS).
pub fn init_key(track: TrackType, bitrate: u32) -> String {
    format!("{}/init-{}.mp4", quality_dir(bitrate), track.name())
}

/// An HLS media playlist.
pub fn hls_media_playlist_key(track: TrackType, bitrate: u32) -> String {
    format!("hls/{}-{bitrate}.m3u8", track.name())
}

/// What the HLS view appends to a fragment's URL. The MS-SSTR
/// fragment keys have no file extension, and libavformat's HLS demuxer
/// (ffmpeg, ffprobe, mpv and every player built on it) opens a segment only
/// if its URL ends in a media extension (`allowed_segment_extensions`). A
/// query string names one without changing the object: S3, its
/// S3-compatible peers, CloudFront (by default) and the local runner ignore
/// it, so all three views read the same stored fragment. (libavformat's
/// DASH demuxer checks extensions only of local files, so the DASH view
/// needs no suffix.)
pub const SEGMENT_URL_SUFFIX: &str = "?ext=.m4s";

/// An HLS media playlist's segment URI, relative to the playlist.
pub fn hls_segment_uri(track: TrackType, bitrate: u32, time: u64) -> String {
    format!("../{}{SEGMENT_URL_SUFFIX}", fragment_key(track, bitrate, time))
}

/// An HLS media playlist's `EXT-X-MAP` URI, relative to the playlist.
pub fn hls_init_uri(track: TrackType, bitrate: u32) -> String {
    format!("../{}", init_key(track, bitrate))
}

/// The DASH `SegmentTemplate@media`, relative to the MPD.
pub fn dash_media_template(track: TrackType) -> String {
    format!("../{}/Fragments({}=$Time$)", quality_dir("$Bandwidth$"), track.name())
}

/// The DASH `SegmentTemplate@initialization`, relative to the MPD.
pub fn dash_init_template(track: TrackType) -> String {
    format!("../{}/init-{}.mp4", quality_dir("$Bandwidth$"), track.name())
}

pub fn fragment_content_type(track: TrackType) -> &'static str {
    match track {
        TrackType::Video => "video/mp4",
        TrackType::Audio => "audio/mp4",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(fragment_key(TrackType::Video, 2_500_000, 0), "smooth.ism/QualityLevels(2500000)/Fragments(video=0)");
        assert_eq!(fragment_key(TrackType::Audio, 128_000, 20_053_333), "smooth.ism/QualityLevels(128000)/Fragments(audio=20053333)");
        assert_eq!(init_key(TrackType::Video, 1), "smooth.ism/QualityLevels(1)/init-video.mp4");
        assert_eq!(hls_media_playlist_key(TrackType::Audio, 9), "hls/audio-9.m3u8");
        // The views point at the Smooth objects.
        let key = fragment_key(TrackType::Video, 7, 40);
        assert_eq!(hls_segment_uri(TrackType::Video, 7, 40), format!("../{key}?ext=.m4s"));
        assert_eq!(dash_media_template(TrackType::Video).replace("$Bandwidth$", "7").replace("$Time$", "40"), format!("../{key}"));
        assert_eq!(dash_init_template(TrackType::Audio).replace("$Bandwidth$", "9"), format!("../{}", init_key(TrackType::Audio, 9)));
        assert_eq!(hls_init_uri(TrackType::Audio, 9), format!("../{}", init_key(TrackType::Audio, 9)));
        assert_eq!(
            smooth_url_template(TrackType::Audio).replace("{bitrate}", "9").replace("{start time}", "40"),
            fragment_key(TrackType::Audio, 9, 40).trim_start_matches("smooth.ism/")
        );
    }
}
