//! Placing a stream's media on its presentation timeline (100 ns units),
//! without I/O: the stream task feeds it what the sessions report and asks
//! it where each sample goes.
//!
//! Per publisher session, each track's RTP clock is anchored at its first
//! packet, the tracks offset by their arrival, the session placed at the
//! timeline's `origin` (where the previous session, or the stored
//! recording, ended). Once both tracks have sent an RTCP sender report,
//! the video clock is slewed (1 ms per frame) to where the reports put it
//! relative to the audio: lip sync by the sender's capture clock. Audio
//! frames are placed by their count of samples (1024 per AAC frame, 960 per
//! 20 ms Opus packet) from the audio anchor, so lost audio that is
//! concealed keeps later audio in place.

use std::time::Instant;

use mediastreams_model::AvSync;
use mediastreams_rtp::clock::{SenderClock, TrackClock, extend_near, slew, synced_anchor};

/// A track whose RTP time strays this far (2 s) from its arrival time has
/// jumped (a restarted encoder, a looping file): it is re-anchored.
pub const MAX_CLOCK_JUMP: i64 = 20_000_000;
/// How far (10 s) another level's picture may lie from level 0's last
/// one and still be placed on the clock ([`Timeline::video_at`]): beyond
/// the layers' wait for each other ([`crate::media::layers::CHOICE_WAIT`])
/// and their pauses' handover; an encoder restarted with another RTP
/// offset lies hours away.
pub const MAX_LEVEL_SPREAD: i64 = 100_000_000;
/// Largest step of the video clock toward sync, per frame (1 ms).
pub const SYNC_STEP: i64 = 10_000;
/// Sender reports that would move video by more than this (1 s) are not
/// believed: arrival-based alignment is never that far off.
pub const MAX_SYNC_CORRECTION: i64 = 10_000_000;

/// One session's clocks.
#[derive(Debug)]
struct SessionClock {
    session: u64,
    first_arrival: Instant,
    video: Option<TrackClock>,
    /// The audio clock and the samples placed on it so far.
    audio: Option<(TrackClock, u64)>,
    /// The latest extended RTP timestamp of each track (video, audio).
    last_rtp: [Option<u64>; 2],
    /// The latest sender report of each track (video, audio).
    reports: [Option<SenderClock>; 2],
    /// The video clock follows the sender reports.
    synced: bool,
    /// The last video sample's time.
    last_video_time: Option<i64>,
    /// The video clock as anchored, before any sync step: what transit is
    /// measured against.
    video_anchor: Option<TrackClock>,
    /// The video's transit (arrival minus RTP time, both from the anchor):
    /// the least seen and the latest (100 ns units).
    transit: Option<(i64, i64)>,
}

impl SessionClock {
    fn new(session: u64, first_arrival: Instant) -> Self {
        SessionClock {
            session,
            first_arrival,
            video: None,
            audio: None,
            last_rtp: [None; 2],
            reports: [None; 2],
            synced: false,
            last_video_time: None,
            video_anchor: None,
            transit: None,
        }
    }
}

/// Something worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineEvent {
    /// The video RTP clock jumped by this much (100 ns units) and was
    /// re-anchored at arrival.
    VideoClockJumped { jump: i64 },
    /// Audio and video are now in sync by the sender reports; the first
    /// correction (100 ns units).
    Synced { correction: i64 },
}

/// A stream's timeline (see the module documentation).
#[derive(Debug)]
pub struct Timeline {
    origin: i64,
    clock: Option<SessionClock>,
    events: Vec<TimelineEvent>,
}

impl Timeline {
    /// A timeline whose next session starts at `origin`.
    pub fn new(origin: i64) -> Self {
        Timeline { origin, clock: None, events: Vec::new() }
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<TimelineEvent> {
        std::mem::take(&mut self.events)
    }

    /// The session's clock; media of a new session starts a new clock at
    /// the origin.
    fn session(&mut self, session: u64, arrival: Instant) -> &mut SessionClock {
        if self.clock.as_ref().is_some_and(|c| c.session != session) {
            self.clock = None;
        }
        self.clock.get_or_insert_with(|| SessionClock::new(session, arrival))
    }

    fn offset(origin: i64, c: &SessionClock, arrival: Instant) -> i64 {
        origin + (arrival.saturating_duration_since(c.first_arrival).as_nanos() / 100) as i64
    }

    /// The time of a video access unit (extended RTP timestamp `rtp`,
    /// arrived at `arrival`).
    pub fn video(&mut self, session: u64, rtp: u64, arrival: Instant) -> i64 {
        let origin = self.origin;
        let mut events = Vec::new();
        let c = self.session(session, arrival);
        let at = Self::offset(origin, c, arrival);
        // A clock anchored anew (another encoding) starts after the last frame.
        let after_last = c.last_video_time.map_or(at, |l| at.max(l + 1));
        let vc = *c.video.get_or_insert(TrackClock { clock_rate: 90_000, anchor_rtp: rtp, anchor_time: after_last });
        c.video_anchor.get_or_insert(vc);
        // Re-anchor a clock that jumped, after the last frame.
        let jump = vc.to_timeline(rtp) - at;
        if jump.abs() > MAX_CLOCK_JUMP {
            let after_last = c.last_video_time.map_or(at, |l| l + 1);
            c.video = Some(TrackClock { clock_rate: vc.clock_rate, anchor_rtp: rtp, anchor_time: at.max(after_last) });
            c.video_anchor = c.video;
            c.transit = None;
            // The old report maps the old clock.
            c.reports[0] = None;
            events.push(TimelineEvent::VideoClockJumped { jump });
        }
        c.last_rtp[0] = Some(rtp);
        if let Some(anchor) = c.video_anchor {
            let transit = at - anchor.to_timeline(rtp);
            let least = c.transit.map_or(transit, |(least, _)| least.min(transit));
            c.transit = Some((least, transit));
        }
        // A step toward where the sender reports put video.
        let mut vc = c.video.unwrap_or(vc);
        if let (Some((ac, _)), Some(video_report), Some(audio_report)) = (c.audio, c.reports[0], c.reports[1]) {
            let target = synced_anchor(&ac, audio_report, &vc, video_report);
            let correction = target - vc.anchor_time;
            if correction.abs() <= MAX_SYNC_CORRECTION {
                if !c.synced {
                    c.synced = true;
                    events.push(TimelineEvent::Synced { correction });
                }
                vc.anchor_time = slew(vc.anchor_time, target, SYNC_STEP);
                c.video = Some(vc);
            }
        }
        let time = vc.to_timeline(rtp).max(0);
        c.last_video_time = Some(time);
        self.events.extend(events);
        time
    }

    /// Where the video clock places `rtp` now, without moving it: a
    /// picture of another quality level (a simulcast layer on the same
    /// clock, [`crate::media::layer_clock`]) of a capture whose picture of
    /// level 0 [`Timeline::video`] placed. `None` before the session's
    /// video clock is anchored, and when `rtp` lies more than
    /// [`MAX_LEVEL_SPREAD`] from the last picture placed (the clock jumped,
    /// an encoder restarted with another RTP offset: [`Timeline::video`]
    /// re-anchors it).
    pub fn video_at(&self, session: u64, rtp: u64) -> Option<i64> {
        let c = self.clock.as_ref().filter(|c| c.session == session)?;
        let t = c.video?.to_timeline(rtp).max(0);
        match c.last_video_time {
            Some(last) if (t - last).abs() > MAX_LEVEL_SPREAD => None,
            _ => Some(t),
        }
    }

    /// An Opus packet of the session arrived: anchors the audio clock at
    /// the first.
    pub fn audio(&mut self, session: u64, rtp: u64, arrival: Instant) {
        let origin = self.origin;
        let c = self.session(session, arrival);
        let at = Self::offset(origin, c, arrival);
        c.audio.get_or_insert((TrackClock { clock_rate: 48_000, anchor_rtp: rtp, anchor_time: at }, 0));
        c.last_rtp[1] = Some(rtp);
    }

    /// The times of the session's next audio frames, of `samples` each (48
    /// kHz; none before its audio is anchored, or for another session's).
    pub fn audio_times(&mut self, session: u64, samples: impl IntoIterator<Item = u32>) -> Vec<i64> {
        let Some((ac, placed)) = self.clock.as_mut().filter(|c| c.session == session).and_then(|c| c.audio.as_mut()) else {
            return Vec::new();
        };
        samples
            .into_iter()
            .map(|n| {
                let t = ac.anchor_time + ac.ticks_to_timeline(*placed);
                *placed += u64::from(n);
                t
            })
            .collect()
    }

    /// Whether the session's audio clock runs (lost audio of a session
    /// whose audio has not started is not concealed).
    pub fn has_audio(&self, session: u64) -> bool {
        self.clock.as_ref().is_some_and(|c| c.session == session && c.audio.is_some())
    }

    /// An RTCP sender report of the session's video or audio track.
    pub fn sender_report(&mut self, session: u64, video: bool, ntp: u64, rtp: u32) {
        if let Some(c) = self.clock.as_mut().filter(|c| c.session == session) {
            let i = usize::from(!video);
            if let Some(reference) = c.last_rtp[i] {
                c.reports[i] = Some(SenderClock { ntp, rtp: extend_near(rtp, reference) });
            }
        }
    }

    /// How the current session's tracks are aligned.
    pub fn av_sync(&self) -> Option<AvSync> {
        let c = self.clock.as_ref()?;
        c.video?;
        Some(if c.synced { AvSync::SenderReports } else { AvSync::Arrival })
    }

    /// How much later than the session's quickest video frame, by their
    /// RTP timestamps, the latest one arrived (100 ns units): the relative
    /// transit time of RFC 3550 §6.4.1, from the publisher's capture to our
    /// socket. Jitter moves it frame to frame; a publisher that falls
    /// behind (its encoder or pacer queueing) raises it for good.
    pub fn video_transit(&self) -> Option<i64> {
        self.clock.as_ref()?.transit.map(|(least, latest)| latest - least)
    }

    /// The session whose media is being placed, if any.
    pub fn current_session(&self) -> Option<u64> {
        self.clock.as_ref().map(|c| c.session)
    }

    /// Whether media of `session` is being placed.
    pub fn is_current(&self, session: u64) -> bool {
        self.clock.as_ref().is_some_and(|c| c.session == session)
    }

    /// The session ended; the next starts at `next_origin` (where the
    /// presentation ends).
    pub fn end_session(&mut self, next_origin: i64) {
        self.clock = None;
        self.origin = next_origin;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const FRAME: u64 = 3000; // 90 kHz ticks at 30 fps

    #[test]
    fn a_session_starts_at_the_origin_and_follows_its_rtp_clock() {
        let t0 = Instant::now();
        let mut tl = Timeline::new(5_000_000);
        assert_eq!(tl.video(1, 1_000_000, t0), 5_000_000);
        // Arrival jitter does not matter; the RTP clock does.
        assert_eq!(tl.video(1, 1_000_000 + FRAME, t0 + Duration::from_millis(80)), 5_000_000 + 333_333);
        assert_eq!(tl.av_sync(), Some(AvSync::Arrival));
        // 80 ms after the first frame, 33.3 ms later by RTP time.
        assert_eq!(tl.video_transit(), Some(466_667));
        // A frame that comes quicker than the first lowers the least transit.
        tl.video(1, 1_000_000 + 2 * FRAME, t0 + Duration::from_millis(50));
        assert_eq!(tl.video_transit(), Some(0));
        // 100 ms of RTP time later, 150 ms later by the clock.
        tl.video(1, 1_000_000 + 3 * FRAME, t0 + Duration::from_millis(200));
        assert_eq!(tl.video_transit(), Some(1_166_666));
    }

    #[test]
    fn audio_is_offset_from_video_by_arrival_and_placed_by_sample_count() {
        let t0 = Instant::now();
        let mut tl = Timeline::new(0);
        tl.video(1, 90_000, t0);
        tl.audio(1, 480_000, t0 + Duration::from_millis(20));
        assert_eq!(tl.audio_times(1, [1024; 3]), vec![200_000, 200_000 + 213_333, 200_000 + 426_666]);
        // Concealed loss advances the frame count like real frames.
        assert_eq!(tl.audio_times(1, [960, 960]), vec![200_000 + 640_000, 200_000 + 840_000]);
        // Another session's audio is not placed.
        assert!(tl.audio_times(2, [1024]).is_empty());
        assert!(tl.has_audio(1) && !tl.has_audio(2));
    }

    #[test]
    fn another_level_is_placed_on_the_video_clock_without_moving_it() {
        let t0 = Instant::now();
        let mut tl = Timeline::new(0);
        assert_eq!(tl.video_at(1, 1_000_000), None, "not anchored");
        tl.video(1, 1_000_000, t0);
        assert_eq!(tl.video(1, 1_000_000 + 30 * FRAME, t0 + Duration::from_secs(1)), 10_000_000);
        assert_eq!(tl.video_at(1, 1_000_000 + 30 * FRAME), Some(10_000_000));
        assert_eq!(tl.video_at(1, 1_000_000 + 31 * FRAME), Some(10_333_333));
        assert_eq!(tl.video_at(2, 1_000_000), None, "another session");
        assert!(tl.video_at(1, 1_000_000 + 200 * FRAME).is_some(), "a held picture seconds apart");
        assert_eq!(tl.video_at(1, 1_000_000 + 30_000 * FRAME), None, "a jump: for Timeline::video to re-anchor");
    }

    #[test]
    fn a_new_session_starts_where_the_last_one_ended() {
        let t0 = Instant::now();
        let mut tl = Timeline::new(0);
        tl.video(1, 0, t0);
        tl.end_session(80_000_000);
        assert!(!tl.is_current(1));
        // The new session's RTP clock starts anywhere.
        assert_eq!(tl.video(2, 123_456_789, t0 + Duration::from_secs(30)), 80_000_000);
        assert!(tl.is_current(2));
    }

    #[test]
    fn a_jumping_video_clock_is_re_anchored_after_the_last_frame() {
        let t0 = Instant::now();
        let mut tl = Timeline::new(0);
        tl.video(1, 900_000, t0);
        let last = tl.video(1, 900_000 + FRAME, t0 + Duration::from_millis(33));
        // The file looped: the RTP clock goes back 10 s.
        let t = tl.video(1, 0, t0 + Duration::from_millis(66));
        assert!(t > last, "{t} after {last}");
        assert!(matches!(tl.take_events()[..], [TimelineEvent::VideoClockJumped { .. }]));
        assert!(tl.take_events().is_empty());
    }

    #[test]
    fn sender_reports_slew_video_toward_sync_a_millisecond_per_frame() {
        let t0 = Instant::now();
        let mut tl = Timeline::new(0);
        tl.audio(1, 0, t0);
        tl.video(1, 0, t0);
        // The sender says video's RTP 0 was captured 50 ms after audio's.
        let ntp = |ms: u64| (ms << 32) / 1000;
        tl.sender_report(1, false, ntp(1000), 0);
        tl.sender_report(1, true, ntp(1050), 0);
        let times: Vec<i64> = (1..=3).map(|i| tl.video(1, i * FRAME, t0 + Duration::from_millis(33 * i))).collect();
        assert_eq!(times, vec![333_333 + 10_000, 666_666 + 20_000, 1_000_000 + 30_000]);
        assert_eq!(tl.av_sync(), Some(AvSync::SenderReports));
        let events = tl.take_events();
        assert!(matches!(events[..], [TimelineEvent::Synced { correction }] if (correction - 500_000).abs() <= 1), "{events:?}");
    }
}
