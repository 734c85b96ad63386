//! From RTP timestamps to the presentation timeline (10 MHz, the MS-SSTR
//! timescale), aligned across tracks, without drift.
//!
//! Each track's clock is anchored once per publisher session: an extended
//! RTP timestamp and the timeline position it maps to. Every later time is
//! computed from that anchor with exact integer arithmetic, so there is no
//! accumulated rounding and no drift however long the stream runs (the
//! RTP clocks are the truth for media progression).
//!
//! Anchors come from the tracks' first packets. The offset between tracks
//! (A/V sync) comes from RTCP sender reports, which map each track's RTP
//! clock to the sender's NTP wallclock (RFC 3550 6.4.1); when a track has
//! none yet, arrival times stand in for all tracks.

use std::time::Duration;

/// Units per second of the presentation timeline.
pub const TIMESCALE: i64 = 10_000_000;

/// An RTCP sender report's clock pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderClock {
    /// NTP timestamp, 32.32 fixed point seconds.
    pub ntp: u64,
    /// The RTP timestamp of the same instant, extended.
    pub rtp: u64,
}

/// A 32.32 NTP timestamp in timeline units.
pub fn ntp_to_timeline(ntp: u64) -> i128 {
    (i128::from(ntp) * i128::from(TIMESCALE)) >> 32
}

/// What is known of a track when its clock is anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackStart {
    pub clock_rate: u32,
    /// Extended RTP timestamp of the first media.
    pub first_rtp: u64,
    /// When that media arrived (any monotonic clock shared by the tracks).
    pub first_arrival: Duration,
    pub sender_clock: Option<SenderClock>,
}

/// One track's mapping to the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackClock {
    pub clock_rate: u32,
    pub anchor_rtp: u64,
    pub anchor_time: i64,
}

impl TrackClock {
    /// The timeline position of an extended RTP timestamp (floor).
    pub fn to_timeline(&self, rtp: u64) -> i64 {
        let delta = i128::from(rtp) - i128::from(self.anchor_rtp);
        let t = i128::from(self.anchor_time) + (delta * i128::from(TIMESCALE)).div_euclid(i128::from(self.clock_rate.max(1)));
        t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// A duration in RTP ticks, in timeline units (floor).
    pub fn ticks_to_timeline(&self, ticks: u64) -> i64 {
        ((i128::from(ticks) * i128::from(TIMESCALE)) / i128::from(self.clock_rate.max(1))) as i64
    }
}

/// Extends a 32-bit RTP timestamp (a sender report's) to the 64-bit value
/// nearest `reference`, an extended timestamp of the same track.
pub fn extend_near(rtp: u32, reference: u64) -> u64 {
    let base = reference & !0xffff_ffff;
    [base.wrapping_sub(1 << 32), base, base.wrapping_add(1 << 32)]
        .into_iter()
        .map(|b| b | u64::from(rtp))
        .filter(|c| c.abs_diff(reference) <= 1 << 31)
        .min_by_key(|c| c.abs_diff(reference))
        .unwrap_or(base | u64::from(rtp))
}

/// A track's anchor on the sender's wallclock, in timeline units: the
/// sender report maps its RTP clock to NTP (RFC 3550 6.4.1).
fn anchor_wallclock(clock: &TrackClock, report: SenderClock) -> i128 {
    let since_report = i128::from(clock.anchor_rtp) - i128::from(report.rtp);
    ntp_to_timeline(report.ntp) + since_report * i128::from(TIMESCALE) / i128::from(clock.clock_rate.max(1))
}

/// Where `video`'s anchor belongs on the timeline for lip sync with
/// `audio`, whose anchor stays: the two anchors differ by what their
/// sender reports say separates them on the sender's wallclock.
pub fn synced_anchor(audio: &TrackClock, audio_report: SenderClock, video: &TrackClock, video_report: SenderClock) -> i64 {
    let offset = anchor_wallclock(video, video_report) - anchor_wallclock(audio, audio_report);
    (i128::from(audio.anchor_time) + offset).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// `current` moved toward `target` by at most `max_step`: corrections are
/// spread over many frames, so times never go backwards and durations
/// change by no more than a step.
pub fn slew(current: i64, target: i64, max_step: i64) -> i64 {
    current + (target - current).clamp(-max_step.abs(), max_step.abs())
}

/// Anchors all tracks of a publisher session so that the earliest track
/// starts at `origin` and the others keep their offsets to it.
pub fn anchor_tracks(origin: i64, tracks: &[TrackStart]) -> Vec<TrackClock> {
    let all_reports = !tracks.is_empty() && tracks.iter().all(|t| t.sender_clock.is_some());
    // Each track's first media on a common wallclock, in timeline units.
    let wall: Vec<i128> = tracks
        .iter()
        .map(|t| match (all_reports, t.sender_clock) {
            (true, Some(sr)) => {
                let since_report = i128::from(t.first_rtp) - i128::from(sr.rtp);
                ntp_to_timeline(sr.ntp) + since_report * i128::from(TIMESCALE) / i128::from(t.clock_rate.max(1))
            }
            _ => (t.first_arrival.as_nanos() / 100) as i128,
        })
        .collect();
    let start = wall.iter().copied().min().unwrap_or(0);
    tracks
        .iter()
        .zip(wall)
        .map(|(t, w)| TrackClock {
            clock_rate: t.clock_rate,
            anchor_rtp: t.first_rtp,
            anchor_time: origin.saturating_add((w - start).clamp(0, i128::from(i64::MAX)) as i64),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_drift_over_days() {
        let c = TrackClock { clock_rate: 90_000, anchor_rtp: 1 << 32, anchor_time: 0 };
        // 3 days of 30 fps frames, computed from the anchor each time.
        let frames: u64 = 3 * 86_400 * 30;
        let t = c.to_timeline((1 << 32) + frames * 3000);
        assert_eq!(t, 3 * 86_400 * TIMESCALE);
        // 48 kHz audio: 20 ms packets land on exact 200000-unit steps.
        let a = TrackClock { clock_rate: 48_000, anchor_rtp: 5, anchor_time: 7 };
        assert_eq!(a.to_timeline(5 + 960 * 1_000_000), 7 + 200_000 * 1_000_000);
    }

    #[test]
    fn report_timestamps_extend_near_the_track() {
        assert_eq!(extend_near(5, 10), 5);
        assert_eq!(extend_near(0xffff_fff0, (1 << 32) + 5), 0xffff_fff0, "just before a wrap");
        assert_eq!(extend_near(3, (1 << 32) - 2), (1 << 32) + 3, "just after a wrap");
        assert_eq!(extend_near(7, 3 << 32), (3 << 32) + 7);
        assert_eq!(extend_near(0xffff_ffff, 0), 0xffff_ffff, "no timestamp below zero");
    }

    #[test]
    fn video_is_placed_by_the_sender_reports() {
        // Both tracks anchored by arrival at 1.000 s; the reports say video's
        // first frame was captured 80 ms after audio's first packet.
        let audio = TrackClock { clock_rate: 48_000, anchor_rtp: 48_000, anchor_time: 10_000_000 };
        let video = TrackClock { clock_rate: 90_000, anchor_rtp: 900_000, anchor_time: 10_000_000 };
        let ntp = 3_900_000_000u64 << 32;
        // Audio's report: RTP 96000 (1 s after its anchor) at ntp + 2 s.
        let audio_report = SenderClock { ntp: ntp + (2 << 32), rtp: 96_000 };
        // Video's report: RTP 990000 (1 s after its anchor) at ntp + 2.08 s.
        let video_report = SenderClock { ntp: ntp + (2 << 32) + ((8u64 << 32) / 100), rtp: 990_000 };
        let target = synced_anchor(&audio, audio_report, &video, video_report);
        assert!((target - 10_800_000).abs() <= 1, "{target}");
        // Reached in steps of 1 ms.
        let mut t = video.anchor_time;
        let mut steps = 0;
        while t != target {
            let next = slew(t, target, 10_000);
            assert!((next - t).abs() <= 10_000);
            t = next;
            steps += 1;
        }
        assert_eq!(steps, 80);
        assert_eq!(slew(5, -100, 10), -5);
    }

    #[test]
    fn ntp_conversion() {
        assert_eq!(ntp_to_timeline(1 << 32), TIMESCALE as i128);
        assert_eq!(ntp_to_timeline((3 << 32) | (1 << 31)), 35_000_000);
    }

    #[test]
    fn sender_reports_set_the_offset_between_tracks() {
        // Video's first frame was captured 120 ms after audio's first packet,
        // though both arrived together.
        let sr_base = 1_000u64 << 32;
        let audio = TrackStart {
            clock_rate: 48_000,
            first_rtp: 10_000,
            first_arrival: Duration::from_millis(500),
            sender_clock: Some(SenderClock { ntp: sr_base, rtp: 10_000 }),
        };
        let video = TrackStart {
            clock_rate: 90_000,
            first_rtp: 900_000 + 10_800, // 120 ms after the report
            first_arrival: Duration::from_millis(500),
            sender_clock: Some(SenderClock { ntp: sr_base, rtp: 900_000 }),
        };
        let clocks = anchor_tracks(50_000_000, &[audio, video]);
        assert_eq!(clocks[0].anchor_time, 50_000_000);
        assert_eq!(clocks[1].anchor_time, 50_000_000 + 1_200_000);
    }

    #[test]
    fn arrival_times_stand_in_without_reports() {
        let a = TrackStart { clock_rate: 48_000, first_rtp: 0, first_arrival: Duration::from_millis(1_000), sender_clock: None };
        let v = TrackStart {
            clock_rate: 90_000,
            first_rtp: 0,
            first_arrival: Duration::from_millis(1_040),
            sender_clock: Some(SenderClock { ntp: 0, rtp: 0 }),
        };
        let clocks = anchor_tracks(0, &[a, v]);
        assert_eq!(clocks[0].anchor_time, 0);
        assert_eq!(clocks[1].anchor_time, 400_000);
    }

    #[test]
    fn times_before_the_anchor_are_negative_offsets() {
        let c = TrackClock { clock_rate: 90_000, anchor_rtp: 9_000, anchor_time: 1_000_000 };
        assert_eq!(c.to_timeline(0), 0);
        assert_eq!(c.to_timeline(4_500), 500_000);
    }
}
