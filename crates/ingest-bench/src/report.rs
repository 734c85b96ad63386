//! What a run measured, without I/O: the JSON report, percentiles, a
//! process's CPU time and memory from `/proc`, and a recording's length from
//! its on-demand Smooth manifest.

use serde::Serialize;

/// `target/bench/ingest-N.json` (the keys are those of issue 11, in
/// snake case; times in milliseconds).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub publishers: usize,
    pub seconds: f64,
    pub fragment_ms: u32,
    /// Every publisher started at once (else spread over a fragment).
    pub synchronized: bool,
    /// The server measured: `mediastreams`, or `janus` (the peer: its
    /// VideoRoom recording RTP; no fragments, states or manifests).
    pub peer: String,
    /// The streams' output format (`smooth`: audio transcoded to AAC;
    /// `hls`: AAC too; `dash`: Opus kept); none for the peer.
    pub output: Option<String>,
    /// The peer's recordings: files and megabytes written.
    pub peer_recordings: Option<u64>,
    pub peer_recorded_mb: Option<f64>,
    /// Media payload sent per publisher (H.264 and Opus, before RTP/SRTP).
    pub bitrate_kbps: f64,
    /// Of one core, averaged over the steady state (every publisher live).
    pub node_cpu_percent: Option<f64>,
    /// The node's resident memory at the end of the steady state.
    pub node_rss_mb: Option<f64>,
    /// The node's resident memory before the run.
    pub node_idle_rss_mb: Option<f64>,
    /// (loaded − idle) / publishers.
    pub rss_per_stream_mb: Option<f64>,
    /// The generator's own CPU, of one core, over the same span.
    pub generator_cpu_percent: Option<f64>,
    /// Fragments (video and audio) the sent media makes: one per GOP
    /// per track, as the clip's GOP is the fragment duration.
    pub fragments_expected: u64,
    /// Fragments listed in the on-demand manifests.
    pub fragments_stored: u64,
    /// Fragments the node stored more than a fragment duration after the
    /// packager handed them over (its `stats.fragmentsLate`).
    pub fragments_late: u64,
    pub rtp_packets_lost: u64,
    pub live_after_first_media_ms_p50: Option<f64>,
    pub live_after_first_media_ms_max: Option<f64>,
    /// From the packager handing a fragment over to it stored: the
    /// largest of the streams' 99th percentiles (each recording's final
    /// `stats.fragmentStoreMsP99`, buckets 1/8 wide).
    pub stored_after_close_ms_p99: Option<f64>,
    pub on_demand_after_stop_ms_p50: Option<f64>,
    pub on_demand_after_stop_ms_max: Option<f64>,
    /// Every stream ended `OnDemand` with a recording no more than one
    /// fragment shorter than what was sent.
    pub all_on_demand: bool,
    pub recorded_seconds_min: Option<f64>,
    pub sent_seconds: f64,
    /// PLIs the publishers answered with an early keyframe.
    pub keyframe_requests: u64,
    /// What went wrong, per stream.
    pub problems: Vec<String>,
}

impl Report {
    /// The one-line summary printed per run.
    pub fn summary(&self) -> String {
        let f1 = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        if self.peer != "mediastreams" {
            return format!(
                "{}: {} publishers x {:.0} s at {:.0} kbit/s: {}% of a core, {} MB RSS ({} MB/stream); {} recordings, {} MB",
                self.peer,
                self.publishers,
                self.seconds,
                self.bitrate_kbps,
                f1(self.node_cpu_percent),
                f1(self.node_rss_mb),
                f1(self.rss_per_stream_mb),
                self.peer_recordings.map_or("-".to_owned(), |n| n.to_string()),
                f1(self.peer_recorded_mb),
            );
        }
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        format!(
            "{} publishers{}{} x {:.0} s at {:.0} kbit/s: node {}% of a core, {} MB RSS ({} MB/stream); fragments {}/{} stored, {} late; {} RTP lost; Live after first media p50 {} ms; stored after close p99 {} ms; OnDemand after stop p50 {} ms; all on demand: {}",
            self.publishers,
            if self.synchronized { " (synchronized)" } else { "" },
            self.output.as_deref().filter(|o| *o == "dash").map_or(String::new(), |_| " (DASH only: Opus kept)".to_owned()),
            self.seconds,
            self.bitrate_kbps,
            f1(self.node_cpu_percent),
            f1(self.node_rss_mb),
            f1(self.rss_per_stream_mb),
            self.fragments_stored,
            self.fragments_expected,
            self.fragments_late,
            self.rtp_packets_lost,
            f(self.live_after_first_media_ms_p50),
            f(self.stored_after_close_ms_p99),
            f(self.on_demand_after_stop_ms_p50),
            self.all_on_demand,
        )
    }
}

/// The nearest-rank percentile `p` (0..=100) of `values`.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// A process's CPU time so far (user + system), in clock ticks, from
/// `/proc/{pid}/stat`: fields 14 and 15, counted after the command name's
/// closing parenthesis (the name may hold spaces).
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` from `/proc/{pid}/status`, in MB (10^6 bytes).
pub fn rss_mb(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0 / 1e6)
}

/// What an on-demand Smooth manifest holds: its duration (s) and the
/// number of fragments of each stream index.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub seconds: f64,
    pub fragments: u64,
    pub live: bool,
}

pub fn smooth_recording(xml: &str) -> Result<Recording, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    let timescale: f64 = root.attribute("TimeScale").and_then(|t| t.parse().ok()).unwrap_or(10_000_000.0);
    let duration: f64 = root.attribute("Duration").and_then(|d| d.parse().ok()).ok_or("no Duration")?;
    let fragments = root
        .children()
        .filter(|n| n.has_tag_name("StreamIndex"))
        .flat_map(|si| si.children().filter(|c| c.has_tag_name("c")))
        .map(|c| c.attribute("r").and_then(|r| r.parse::<u64>().ok()).unwrap_or(1))
        .sum();
    Ok(Recording { seconds: duration / timescale, fragments, live: root.attribute("IsLive") == Some("TRUE") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[f64::NAN, 2.0], 50.0), Some(2.0));
    }

    #[test]
    fn cpu_ticks_read_past_a_command_name_with_spaces() {
        let stat = "1234 (tokio worker) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100 1000 200";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn rss_is_read_in_megabytes() {
        let status = "Name:\tx\nVmPeak:\t 9000 kB\nVmRSS:\t   36000 kB\nThreads:\t4\n";
        assert!((rss_mb(status).unwrap() - 36.864).abs() < 1e-9);
        assert_eq!(rss_mb("Name: x"), None);
    }

    #[test]
    fn a_smooth_manifest_gives_its_duration_and_fragments() {
        let xml = r#"<SmoothStreamingMedia MajorVersion="2" MinorVersion="2" TimeScale="10000000" Duration="80000000">
            <StreamIndex Type="video"><c t="0" d="20000000"/><c d="20000000" r="3"/></StreamIndex>
            <StreamIndex Type="audio"><c t="0" d="40000000"/><c d="40000000"/></StreamIndex></SmoothStreamingMedia>"#;
        assert_eq!(smooth_recording(xml).unwrap(), Recording { seconds: 8.0, fragments: 6, live: false });
        assert!(smooth_recording("<x/>").is_err());
    }
}
