//! The fate of a dead ingest node's streams: a node that stops
//! heartbeating (crashed, killed, lost its network) leaves its streams
//! `Live` or `Stopping` with nobody to finish them. The reaper finalizes
//! each as on demand from what storage holds (see
//! `mediastreams_packager::recovery`): `Live -> Stopping`, the final
//! manifests at the same URLs, then `Stopping -> OnDemand`, every state
//! change a conditional write. The publisher's session died with the node;
//! the recording up to the last written fragment is kept. (Reassigning the
//! stream to another node would need the publisher to start a new WHIP
//! session anyway, and the packager state to continue the timeline is
//! lost with the node.)
//!
//! It runs as the scheduled function `reap-streams` (every minute).

use std::collections::HashSet;
use std::sync::Arc;

use mediastreams_model::{OutputFormat, Stream, StreamState, Transition};
use mediastreams_packager::recovery::{Formats, final_manifests};
use mediastreams_storage::recording::{self, RecordingError};
use mediastreams_storage::{NodeRegistry, ObjectKey, ObjectKeyError, ObjectMeta, ObjectStore, RepoError, StoreError, StreamRepo};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    #[error("table: {0}")]
    Repo(#[from] RepoError),
    #[error("media store: {0}")]
    Store(#[from] StoreError),
    #[error("object key: {0}")]
    Key(#[from] ObjectKeyError),
    #[error("stream {stream}: {error}")]
    Recording { stream: String, error: RecordingError },
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReapReport {
    /// Streams finalized as on demand.
    pub finalized: Vec<String>,
    /// Streams found on dead nodes that changed state meanwhile (someone
    /// else took them on).
    pub skipped: Vec<String>,
}

/// Finalizes every `Live` or `Stopping` stream assigned to a node that is
/// not healthy (expired heartbeat, or no record at all).
pub async fn reap(
    repo: &StreamRepo,
    registry: &NodeRegistry,
    store: &Arc<dyn ObjectStore>,
    now: OffsetDateTime,
) -> Result<ReapReport, ReapError> {
    let healthy: HashSet<String> = registry.all().await?.into_iter().filter(|n| n.is_healthy(now, registry.ttl())).map(|n| n.id).collect();
    let mut report = ReapReport::default();
    let mut after: Option<String> = None;
    loop {
        let page = repo.list(after.as_deref(), 100).await?;
        for v in &page.items {
            let s = &v.stream;
            let orphaned = matches!(s.state, StreamState::Live | StreamState::Stopping)
                && s.ingest.as_ref().and_then(|i| i.node_id.as_ref()).is_some_and(|id| !healthy.contains(id));
            if !orphaned {
                continue;
            }
            let name = s.name.as_str().to_owned();
            match finalize(repo, store, &name, now).await {
                Ok(true) => {
                    tracing::warn!(stream = %name, node = ?s.ingest.as_ref().and_then(|i| i.node_id.clone()), "ingest node is dead: recording finalized from storage");
                    report.finalized.push(name);
                }
                Ok(false) => report.skipped.push(name),
                Err(e) => tracing::error!(stream = %name, error = %e, "could not finalize a dead node's stream"),
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(report),
        }
    }
}

/// Finalizes one stream from storage. `false` when it was no longer
/// `Live` or `Stopping`.
pub async fn finalize(repo: &StreamRepo, store: &Arc<dyn ObjectStore>, name: &str, now: OffsetDateTime) -> Result<bool, ReapError> {
    let Some(current) = repo.get(name).await? else { return Ok(false) };
    match current.stream.state {
        StreamState::Live => match repo.transition(name, Transition::StopIngest, now, None).await {
            Ok(_) => {}
            Err(RepoError::Transition(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        },
        StreamState::Stopping => {}
        _ => return Ok(false),
    }
    write_final_manifests(store, &current.stream).await?;
    match repo.transition(name, Transition::RecordingFinalized, now, None).await {
        Ok(_) => Ok(true),
        Err(RepoError::Transition(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn write_final_manifests(store: &Arc<dyn ObjectStore>, stream: &Stream) -> Result<(), ReapError> {
    let pid = stream.playback_id.to_string();
    let recovery = |error| ReapError::Recording { stream: stream.name.as_str().to_owned(), error };
    // No live manifest: nothing was ever published; the recording is empty.
    let Some(stored) = recording::read(store.as_ref(), &pid).await.map_err(recovery)? else { return Ok(()) };
    let formats = Formats {
        dash: stream.settings.outputs.iter().any(|o| o.format == OutputFormat::Dash),
        hls: stream.settings.outputs.iter().any(|o| o.format == OutputFormat::Hls),
    };
    let fragment_duration = u64::from(stream.settings.fragment_duration_ms) * 10_000;
    for o in final_manifests(&stored.live, &stored.video, &stored.audio, formats, fragment_duration) {
        let key = ObjectKey::parse(&format!("{pid}/{}", o.key))?;
        store.put(&key, o.body, &ObjectMeta::new(o.content_type, Some(o.cache_control))).await?;
    }
    Ok(())
}
