//! MPEG-DASH view (ISO/IEC 23009-1) over the Smooth fragments: a
//! SegmentTemplate with a SegmentTimeline whose `$Time$` is the fragment
//! time in the Smooth key, one initialization segment per quality level.
//! `type="dynamic"` while live, `static` when final.
//!
//! The fragments carry `tfdt` and `default-base-is-moof`, which DASH
//! players need; the MS-SSTR `uuid` boxes in them are skipped by parsers.

use std::fmt::Write;

use super::{LevelDetail, ManifestMode, TrackManifest, windowed, xs_duration};
use crate::TIMESCALE;

/// The live MPD's time sources (ISO/IEC 23009-1 5.8.5.7), in order: the
/// media origin's clock in milliseconds ([`crate::layout::TIME_PATH`],
/// `http-xsdate`: the CDN answers it at the edge, the local runner itself),
/// then the `Date` header of the MPD itself (`http-head`), which every HTTP
/// origin sends but only to the second: a player that sets its clock from
/// it is up to a second behind, and plays up to a second further from the
/// live edge than it means to (dash.js: 4.45 to 5.16 s glass to glass).
pub const UTC_TIMING: &str = concat!(
    "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-xsdate:2014\" value=\"/time\"/>\n",
    "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-head:2014\" value=\"manifest.mpd\"/>\n"
);

/// Wallclock facts a dynamic MPD needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DashClock {
    /// Unix time (ms) of timeline position 0.
    pub availability_start_unix_ms: i64,
    /// Unix time (ms) of this MPD.
    pub publish_unix_ms: i64,
    /// The target fragment duration, in timescale units.
    pub fragment_duration: u64,
}

fn iso8601(unix_ms: i64) -> String {
    // Civil-from-days (H. Hinnant), UTC.
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", sod / 3600, (sod / 60) % 60, sod % 60)
}

pub fn write(tracks: &[TrackManifest], mode: ManifestMode, clock: DashClock) -> String {
    let ts = TIMESCALE as u64;
    let mut x = String::with_capacity(4096);
    x.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let frag = clock.fragment_duration.max(1);
    match mode {
        ManifestMode::Live { dvr_window } => {
            let _ = writeln!(
                x,
                "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"{}\" timeShiftBufferDepth=\"{}\" minBufferTime=\"{}\" suggestedPresentationDelay=\"{}\">",
                iso8601(clock.availability_start_unix_ms),
                iso8601(clock.publish_unix_ms),
                // Re-read twice a fragment: a player learns of a new
                // fragment half a fragment after it is written, on average
                // a quarter (the MPD is small and cached for 1 s).
                xs_duration(frag / 2, ts),
                xs_duration(dvr_window, ts),
                xs_duration(2 * frag, ts),
                xs_duration(3 * frag, ts),
            );
        }
        ManifestMode::Final => {
            let start = tracks.iter().filter_map(|t| t.chunks.first()).map(|c| c.start).min().unwrap_or(0);
            let end = tracks.iter().filter_map(|t| t.chunks.last()).map(|c| c.end()).max().unwrap_or(0);
            let _ = writeln!(
                x,
                "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" type=\"static\" mediaPresentationDuration=\"{}\" minBufferTime=\"{}\">",
                xs_duration(end.saturating_sub(start), ts),
                xs_duration(2 * frag, ts),
            );
        }
    }
    x.push_str("  <Period id=\"0\" start=\"PT0S\">\n");
    for t in tracks {
        let name = t.track.name();
        let mime = crate::layout::fragment_content_type(t.track);
        let _ = writeln!(
            x,
            "    <AdaptationSet id=\"{}\" contentType=\"{name}\" mimeType=\"{mime}\" segmentAlignment=\"true\" startWithSAP=\"1\">",
            t.track.track_id()
        );
        let _ = writeln!(
            x,
            "      <SegmentTemplate timescale=\"{ts}\" initialization=\"{}\" media=\"{}\">",
            crate::layout::dash_init_template(t.track),
            crate::layout::dash_media_template(t.track)
        );
        x.push_str("        <SegmentTimeline>\n");
        for c in windowed(&t.chunks, mode) {
            let _ = writeln!(x, "          <S t=\"{}\" d=\"{}\"/>", c.start, c.duration);
        }
        x.push_str("        </SegmentTimeline>\n      </SegmentTemplate>\n");
        for l in &t.levels {
            match l.detail {
                LevelDetail::Video { width, height } => {
                    let _ = writeln!(
                        x,
                        "      <Representation id=\"video-{}\" bandwidth=\"{}\" codecs=\"{}\" width=\"{width}\" height=\"{height}\"/>",
                        l.bitrate, l.bitrate, l.codecs
                    );
                }
                LevelDetail::Audio { sample_rate, channels, .. } => {
                    let _ = writeln!(
                        x,
                        "      <Representation id=\"audio-{}\" bandwidth=\"{}\" codecs=\"{}\" audioSamplingRate=\"{sample_rate}\">\n        <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{channels}\"/>\n      </Representation>",
                        l.bitrate, l.bitrate, l.codecs
                    );
                }
            }
        }
        x.push_str("    </AdaptationSet>\n");
    }
    x.push_str("  </Period>\n");
    if matches!(mode, ManifestMode::Live { .. }) {
        // The player's clock is set from our own origin ([`UTC_TIMING`]:
        // its `/time`, else the `Date` of a HEAD of this MPD; relative
        // URLs resolve against the MPD). Without one, dash.js asks a
        // public time server. (After the Period: the MPD schema's order.)
        x.push_str(UTC_TIMING);
    }
    x.push_str("</MPD>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::iso8601;

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_795_478_400_123), "2026-11-24T00:00:00.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
