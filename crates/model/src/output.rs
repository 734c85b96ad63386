//! Outputs: the streaming formats a stream is published in, and where
//! players find them.
//!
//! Every output of a stream lives under the stream's playback id in the
//! media store. Manifest paths are fixed per format (see
//! `docs/storage-layout.md`); the packager writes the objects they name.

use serde::{Deserialize, Serialize};

use crate::name::{self, NameError};

/// A streaming format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Microsoft Smooth Streaming (MS-SSTR).
    Smooth,
    /// MPEG-DASH (ISO/IEC 23009-1), over the same fragments.
    Dash,
    /// HTTP Live Streaming (RFC 8216) with fMP4 segments.
    Hls,
}

impl OutputFormat {
    /// The manifest's object key relative to the stream's `{playbackId}/`
    /// prefix in the media store.
    pub fn manifest_path(self) -> &'static str {
        use mediastreams_packager::layout;
        match self {
            OutputFormat::Smooth => layout::SMOOTH_MANIFEST,
            OutputFormat::Dash => layout::DASH_MANIFEST,
            OutputFormat::Hls => layout::HLS_MULTIVARIANT,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Smooth => "smooth",
            OutputFormat::Dash => "dash",
            OutputFormat::Hls => "hls",
        }
    }
}

/// An output as the user asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    #[serde(default = "default_format")]
    pub format: OutputFormat,
}

fn default_format() -> OutputFormat {
    OutputFormat::Smooth
}

impl OutputSpec {
    /// The output created when a request names none.
    pub fn default_smooth() -> Self {
        OutputSpec { name: "smooth".to_owned(), format: OutputFormat::Smooth }
    }

    pub fn validate(&self) -> Result<(), NameError> {
        name::validate(&self.name)
    }
}

/// An output as the API shows it: with its streaming URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub name: String,
    pub format: OutputFormat,
    pub url: String,
}

/// The streaming URL of a format's manifest for a playback id under a media
/// base URL (`https://media.example.com` or `http://127.0.0.1:8080/media`).
pub fn streaming_url(media_base: &str, playback_id: &str, format: OutputFormat) -> String {
    format!("{}/{}/{}", media_base.trim_end_matches('/'), playback_id, format.manifest_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_documented_layout() {
        assert_eq!(streaming_url("http://h/media/", "abc", OutputFormat::Smooth), "http://h/media/abc/smooth.ism/Manifest");
        assert_eq!(streaming_url("https://cdn", "abc", OutputFormat::Dash), "https://cdn/abc/dash/manifest.mpd");
        assert_eq!(streaming_url("https://cdn", "abc", OutputFormat::Hls), "https://cdn/abc/hls/main.m3u8");
    }

    #[test]
    fn format_defaults_to_smooth() {
        let spec: OutputSpec = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
        assert_eq!(spec.format, OutputFormat::Smooth);
        assert!(serde_json::from_str::<OutputSpec>(r#"{"name":"x","format":"rtmp"}"#).is_err());
        assert!(serde_json::from_str::<OutputSpec>(r#"{"name":"x","bogus":1}"#).is_err());
    }
}
