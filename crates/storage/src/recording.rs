//! Reading back what the media store holds of a recording: the last live
//! Smooth manifest (the presentation's index: its quality levels and the
//! fragments of its window) and every stored fragment of each track's
//! first quality level that every level of the track holds or that the
//! manifest lists (video levels are written one after another: a node that
//! died may have stored the first level's latest fragments and not yet the
//! others'; those, and the audio from their time on, are left unlisted,
//! never listed without the others). The reaper finalizes a dead
//! node's recording from it; an ingest node continues a recording from it
//! (a node restart, a restarted stream task), after every stored fragment,
//! so that no stored key is written twice.

use std::collections::{BTreeMap, BTreeSet};

use mediastreams_packager::TrackType;
use mediastreams_packager::recovery::{LiveManifest, RecoveryError, StoredTrack, fragment_times, parse_fragment_key, parse_live_manifest};

use crate::object::MAX_LIST;
use crate::{ObjectKey, ObjectKeyError, ObjectStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("media store: {0}")]
    Store(#[from] StoreError),
    #[error("object key: {0}")]
    Key(#[from] ObjectKeyError),
    #[error("the stored manifest: {0}")]
    Manifest(#[from] RecoveryError),
}

/// A stored recording (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecording {
    pub live: LiveManifest,
    pub video: StoredTrack,
    pub audio: StoredTrack,
    /// Where the latest stored fragment of any track and level ends,
    /// listed or not ([`fragments_end`]).
    pub fragments_end: Option<u64>,
}

impl StoredRecording {
    /// Where the stored fragments end (timescale units): a continuing
    /// presentation starts there, after every stored key.
    pub fn end(&self, fragment_duration: u64) -> u64 {
        let s = mediastreams_packager::recovery::stored_chunks(&self.live, &self.video, &self.audio, fragment_duration);
        s.video.iter().chain(&s.audio).map(|c| c.end()).max().unwrap_or(0).max(self.fragments_end.unwrap_or(0))
    }
}

/// Reads the recording under `{playback_id}/`; `None` when nothing was
/// ever published (no manifest).
pub async fn read(store: &dyn ObjectStore, playback_id: &str) -> Result<Option<StoredRecording>, RecordingError> {
    let manifest_key = ObjectKey::parse(&format!("{playback_id}/{}", mediastreams_packager::layout::SMOOTH_MANIFEST))?;
    let Some(manifest) = store.get(&manifest_key).await? else { return Ok(None) };
    let xml = String::from_utf8_lossy(&manifest.body).into_owned();
    let live = parse_live_manifest(&xml)?;
    let video_levels: Vec<u32> = live.video.iter().map(|l| l.bitrate).collect();
    let audio_lead = live.audio.first().map(|l| l.bitrate);
    let mut video: BTreeMap<u32, BTreeSet<u64>> = video_levels.iter().map(|b| (*b, BTreeSet::new())).collect();
    let mut audio = StoredTrack::default();
    let mut audio_last: Option<(u64, String)> = None;
    let root = format!("{playback_id}/");
    let prefix = format!("{playback_id}/smooth.ism/");
    let mut after: Option<String> = None;
    loop {
        let page = store.list(&prefix, after.as_deref(), MAX_LIST).await?;
        for key in &page.items {
            let Some((track, bitrate, t)) = key.strip_prefix(&root).and_then(parse_fragment_key) else { continue };
            match track {
                TrackType::Video => {
                    if let Some(starts) = video.get_mut(&bitrate) {
                        starts.insert(t);
                    }
                }
                TrackType::Audio if Some(bitrate) == audio_lead => {
                    audio.starts.push(t);
                    if audio_last.as_ref().is_none_or(|(lt, _)| t > *lt) {
                        audio_last = Some((t, key.clone()));
                    }
                }
                TrackType::Audio => {}
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    // The first level's fragments that the manifest lists (its window:
    // every level had them then), that are older than its window (they
    // were listed before they left it: media once listed stays listed),
    // or that every level holds. After the window's start, a fragment of
    // the first level alone was never listed (the node died before the
    // others' were stored): it stays unlisted.
    let listed: BTreeSet<u64> = live.video_chunks.iter().map(|c| c.start).collect();
    let window_start = live.video_chunks.first().map(|c| c.start);
    let mut video_track = StoredTrack::default();
    let mut unlisted_from: Option<u64> = None;
    if let Some(lead) = video_levels.first().and_then(|b| video.get(b)) {
        for t in lead {
            if listed.contains(t) || window_start.is_some_and(|w| *t < w) || video.values().all(|starts| starts.contains(t)) {
                video_track.starts.push(*t);
            } else {
                unlisted_from = Some(unlisted_from.map_or(*t, |u| u.min(*t)));
            }
        }
    }
    // Audio is cut where video is (each audio fragment starts at the first
    // frame at or after its video cut): audio from the first unlisted
    // video fragment on stays unlisted too, when no listed video follows,
    // so that the tracks end together.
    if let Some(from) = unlisted_from
        && video_track.starts.iter().all(|t| *t < from)
    {
        audio.starts.retain(|t| *t < from);
        audio_last = audio.starts.iter().max().map(|t| {
            let bitrate = audio_lead.unwrap_or(0);
            (*t, format!("{root}{}", mediastreams_packager::layout::fragment_key(TrackType::Audio, bitrate, *t)))
        });
    }
    let video_last = video_levels
        .first()
        .zip(video_track.starts.last())
        .map(|(bitrate, t)| format!("{root}{}", mediastreams_packager::layout::fragment_key(TrackType::Video, *bitrate, *t)));
    for (track, last) in [(&mut video_track, video_last), (&mut audio, audio_last.map(|(_, k)| k))] {
        if let Some(key) = last
            && let Some(o) = store.get(&ObjectKey::parse(&key)?).await?
        {
            track.last_duration = fragment_times(&o.body).map(|(_, d)| d);
        }
    }
    let fragments_end = fragments_end(store, playback_id).await?;
    Ok(Some(StoredRecording { live, video: video_track, audio, fragments_end }))
}

/// Where the stored fragments under `{playback_id}/` end (timescale
/// units), whether or not a manifest lists them: the latest fragment of
/// each track and level, by its key, and its duration, from its `tfxd`.
/// `None` when there is none. A node that went live and died before its
/// first manifest was stored left such fragments; a new presentation
/// starts after them, so that none is written again.
pub async fn fragments_end(store: &dyn ObjectStore, playback_id: &str) -> Result<Option<u64>, RecordingError> {
    let root = format!("{playback_id}/");
    let prefix = format!("{playback_id}/smooth.ism/");
    let mut latest: std::collections::BTreeMap<(TrackType, u32), (u64, String)> = std::collections::BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(&prefix, after.as_deref(), MAX_LIST).await?;
        for key in &page.items {
            let Some((track, bitrate, t)) = key.strip_prefix(&root).and_then(parse_fragment_key) else { continue };
            let e = latest.entry((track, bitrate)).or_insert((t, key.clone()));
            if t > e.0 {
                *e = (t, key.clone());
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut end = None;
    for (t, key) in latest.into_values() {
        let d = match store.get(&ObjectKey::parse(&key)?).await? {
            Some(o) => fragment_times(&o.body).map_or(0, |(_, d)| d),
            None => 0,
        };
        end = end.max(Some(t + d));
    }
    Ok(end)
}
