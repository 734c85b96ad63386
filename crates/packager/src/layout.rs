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

pub(crate) fn quality_dir(bitrate: u32) -> String {
    format!("smooth.ism/QualityLevels({bitrate})")
}

/// `smooth.ism/QualityLevels({bitrate})/Fragments({video|audio}={time})`:
/// what the manifest's `Url` template expands to (MS-SSTR 2.2.6).
pub fn fragment_key(track: TrackType, bitrate: u32, time: u64) -> String {
    format!("{}/Fragments({}={time})", quality_dir(bitrate), track.name())
}

/// The initialization segment of a quality level (DASH and HLS).
pub fn init_key(track: TrackType, bitrate: u32) -> String {
    format!("{}/init-{}.mp4", quality_dir(bitrate), track.name())
}

/// An HLS media playlist.
pub fn hls_media_playlist_key(track: TrackType, bitrate: u32) -> String {
    format!("hls/{}-{bitrate}.m3u8", track.name())
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
    }
}
