//! The ingest node: terminates WHIP (RFC 9725) publishers' WebRTC sessions
//! and writes Smooth Streaming fragments and manifests to object storage.
//!
//! * [`whip`]: the HTTP endpoint and the offer checks;
//! * [`ice`]: every session's media on one UDP port, and the candidates
//!   the answers announce;
//! * [`session`]: one publisher's WebRTC session (the `webrtc` crate) and
//!   its RTP readers (depacketizing in `mediastreams-rtp`);
//! * [`node`]: the node's streams and sessions behind `publish`,
//!   `unpublish`, `shutdown` and `recover`; the stream tasks that own the
//!   recorders and watch the streams' states;
//! * [`timeline`]: placing media on the presentation timeline (I/O free);
//! * [`media_input`]: what sessions hand their stream task;
//! * [`media`]: Opus to AAC;
//! * [`recorder`], [`uploader`]: packaging, state transitions, writing.
#![forbid(unsafe_code)]

// What other crates use: the node (`IngestNode`), its WHIP router, the
// recorder (driven directly by the recorder tests) and the audio
// transcoder (benchmarked). The rest is the node's own.
mod ice;
pub mod media;
mod media_input;
mod node;
pub mod recorder;
mod sender_reports;
mod session;
mod timeline;
mod uploader;
pub mod whip;

pub use node::{Generation, IngestNode, NodeConfig, Publication, PublishError};

/// Resolves at the first SIGTERM or SIGINT (ECS and systemd stop with
/// SIGTERM; a terminal with SIGINT): the binaries then drain the node.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: draining"),
                    _ = int.recv() => tracing::info!("SIGINT: draining"),
                }
                return;
            }
            _ => tracing::warn!("cannot watch SIGTERM; only Ctrl-C stops the node cleanly"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
