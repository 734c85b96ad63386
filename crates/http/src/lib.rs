//! What every HTTP edge of the service shares: problem details
//! ([`Problem`]), bearer credentials ([`bearer`], [`constant_time_eq`]),
//! the logging setup ([`init_logging`]), and the server loop of the local
//! runner and of the ingest nodes' WHIP port ([`serve`]).
//!
//! A server on the open internet meets clients that never finish: headers
//! sent a byte a minute, bodies that stall, connections opened by the
//! thousand and left. [`serve`] bounds each: a request's headers must
//! arrive within [`Limits::header_read_timeout`] (which also closes
//! keep-alive connections idle that long), handlers read bodies within
//! [`Limits::body_timeout`] ([`read_body`]), and at most
//! [`Limits::max_connections`] are open at once (more are closed as they
//! are accepted, so the server's sockets and memory stay bounded and the
//! connections it has keep being served).
#![forbid(unsafe_code)]

mod problem;

pub use problem::Problem;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// The credentials of `Authorization: Bearer <credentials>`, if present.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

/// Compares secrets in time that depends on their length only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For a terminal (the local runner).
    Human,
    /// JSON lines (containers).
    Json,
    /// JSON lines without time stamps (Lambda: CloudWatch stamps each).
    JsonUnstamped,
}

/// Sets up `tracing` for a binary: `RUST_LOG` filters (default `info`).
///
/// The filter is a list of `target=level` directives and at most one bare
/// level (`info`, `mediastreams_ingest=debug,warn`): `tracing-subscriber`'s
/// `Targets`, not its regex-based `EnvFilter`, which would add a quarter of
/// a megabyte to every Lambda function for span-field filters nobody uses. A
/// filter it cannot read logs at `info` and says so.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let (filter, unreadable) = log_filter(&spec);
    let fmt = tracing_subscriber::fmt::layer();
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Human => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json()).try_init(),
        LogFormat::JsonUnstamped => registry.with(fmt.json().with_current_span(false).without_time()).try_init(),
    };
    if let Some(error) = unreadable {
        tracing::warn!(rust_log = %spec, %error, "RUST_LOG not understood: logging at info");
    }
}

/// The filter `RUST_LOG` names (see [`init_logging`]), and why it was not
/// understood if it was not (then `info`).
///
/// Directives are trimmed and empty ones skipped (`info, h2=warn,` is
/// `info,h2=warn`): `Targets` alone would read an empty directive as "every
/// target at every level" and a spaced one as a target that never matches.
/// A directive without a level (a bare target, a misspelt level) is refused
/// rather than read as "this target at every level": `RUST_LOG=inof` must
/// not turn logging off.
fn log_filter(spec: &str) -> (tracing_subscriber::filter::Targets, Option<String>) {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let info = tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO);
    let directives: Vec<&str> = spec.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return (info, None);
    }
    if let Some(d) = directives.iter().find(|d| !d.contains('=') && !LEVELS.contains(&d.to_ascii_lowercase().as_str())) {
        return (info, Some(format!("{d:?} names no level (target=level, or a level alone)")));
    }
    match directives.join(",").parse::<tracing_subscriber::filter::Targets>() {
        Ok(targets) => (targets, None),
        Err(e) => (info, Some(e.to_string())),
    }
}

/// The bounds [`serve`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request's headers (and the first byte of the next request on a
    /// kept-alive connection) must arrive within this.
    pub header_read_timeout: Duration,
    /// A request body must arrive within this ([`read_body`]).
    pub body_timeout: Duration,
    /// Connections open at once; more are closed at accept.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { header_read_timeout: Duration::from_secs(10), body_timeout: Duration::from_secs(30), max_connections: 4096 }
    }
}

/// What a server did (tests and logs).
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub accepted: AtomicU64,
    /// Connections closed at accept because `max_connections` were open.
    pub refused: AtomicU64,
}

/// Serves `router` on `listener` within `limits` until `shutdown`
/// resolves, then stops accepting and lets open connections finish their
/// requests. Handlers see the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    counters: Arc<ServerCounters>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors or the like: the connections
                    // there are go on; try again shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = open.clone().try_acquire_owned() else {
            let refused = counters.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if refused.is_power_of_two() {
                tracing::warn!(max = limits.max_connections, refused, "connection limit reached; closing new connections");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(req.map(Body::new))
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                }
                _ = async { let _ = closing.wait_for(|c| *c).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
        });
    }
    // Let open connections finish what they are doing.
    let _ = closing_tx.send(true);
    let _ = tokio::time::timeout(limits.body_timeout, open.acquire_many(limits.max_connections.max(1) as u32)).await;
    Ok(())
}

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit.
    TooLarge,
    /// Not all there within the body timeout.
    TimedOut,
    /// The client went away mid-body.
    Incomplete,
}

/// Reads a request body of at most `limit` bytes within `limits.body_timeout`.
pub async fn read_body(body: Body, limit: usize, limits: &Limits) -> Result<axum::body::Bytes, BodyError> {
    match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return Err(BodyError::TooLarge);
                }
                source = err.source();
            }
            Err(BodyError::Incomplete)
        }
        Err(_) => Err(BodyError::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::log_filter;

    #[test]
    fn rust_log_names_a_default_level_and_per_target_levels() {
        let (filter, error) = log_filter("mediastreams_ingest=debug,warn");
        assert_eq!(error, None);
        assert!(filter.would_enable("mediastreams_ingest::session", &Level::DEBUG));
        assert!(!filter.would_enable("h2::codec", &Level::INFO));
        assert!(filter.would_enable("h2::codec", &Level::WARN));

        let (filter, error) = log_filter("");
        assert_eq!(error, None);
        assert!(filter.would_enable("anything", &Level::INFO));
        assert!(!filter.would_enable("anything", &Level::DEBUG));
    }

    #[test]
    fn rust_log_directives_are_trimmed_and_empty_ones_skipped() {
        for spec in ["info,", ",info", " info ", "info\n", "info, h2=warn", "info,,h2=warn"] {
            let (filter, error) = log_filter(spec);
            assert_eq!(error, None, "{spec:?}");
            assert!(filter.would_enable("mediastreams", &Level::INFO), "{spec:?}");
            assert!(!filter.would_enable("hyper::proto", &Level::TRACE), "{spec:?}: an empty directive enabled everything");
        }
        let (filter, _) = log_filter("info, h2=warn");
        assert!(!filter.would_enable("h2::codec", &Level::INFO), "a spaced directive still applies");
    }

    #[test]
    fn a_directive_without_a_level_is_refused() {
        for spec in ["inof", "mediastreams", "warn,mediastreams"] {
            let (filter, error) = log_filter(spec);
            assert!(error.is_some(), "{spec:?}");
            assert!(filter.would_enable("anything", &Level::INFO), "{spec:?}");
        }
        assert_eq!(log_filter("WARN").1, None);
    }

    #[test]
    fn an_unreadable_rust_log_logs_at_info_and_says_why() {
        let (filter, error) = log_filter("mediastreams=loud");
        assert!(error.is_some());
        assert!(filter.would_enable("mediastreams", &Level::INFO));
        assert!(!filter.would_enable("mediastreams", &Level::DEBUG));
    }
}
