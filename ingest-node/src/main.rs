//! `ingest-node`: the ingest node as a standalone service (the cloud
//! fleet): the WHIP endpoint on `--listen`, media to S3, streams in
//! DynamoDB, and a heartbeat in the node registry every 10 s so that
//! start-ingest can assign streams to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use clap::Parser;
use mediastreams_ingest_node::{IngestNode, NodeConfig};
use mediastreams_storage::{DynamoTable, NodeRecord, NodeRegistry, S3Store, StreamRepo};

#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address of the WHIP endpoint (HTTP; TLS ends at the load balancer).
    #[arg(long, default_value = "0.0.0.0:8080", env = "LISTEN")]
    listen: SocketAddr,
    /// The DynamoDB table of streams and nodes.
    #[arg(long, env = "TABLE_NAME")]
    table: String,
    /// The S3 bucket of media.
    #[arg(long, env = "MEDIA_BUCKET")]
    bucket: String,
    /// DynamoDB and S3 at a compatible server (tests), instead of AWS.
    #[arg(long, env = "AWS_ENDPOINT")]
    endpoint: Option<String>,
    /// The base URL publishers reach this node's WHIP endpoint at
    /// (default: `http://{the address --listen bound}`, for a node on one
    /// machine; a fleet behind a load balancer names the balancer).
    #[arg(long, env = "WHIP_BASE_URL")]
    whip_base_url: Option<String>,
    /// This node's id in the registry (default: random).
    #[arg(long, env = "NODE_ID")]
    node_id: Option<String>,
    /// Streams this node takes at most.
    #[arg(long, default_value_t = 20, env = "CAPACITY")]
    capacity: u32,
    /// Keep the publisher's Opus for streams whose outputs are all DASH
    /// (no transcoding). Off by default: turn it on once every node and
    /// function runs this version or later, as earlier ones read such a
    /// recording's audio as AAC (docs/operations.md).
    #[arg(long, default_value_t = false, env = "OPUS_PASSTHROUGH", action = clap::ArgAction::Set)]
    opus_passthrough: bool,
    /// Local address WebRTC media is received on.
    #[arg(long, default_value = "0.0.0.0", env = "MEDIA_IP")]
    media_ip: std::net::IpAddr,
    /// The one UDP port all sessions' media arrives on.
    #[arg(long, default_value_t = 8189, env = "MEDIA_PORT")]
    media_port: u16,
    /// A STUN server (`host:port`) to learn the public IP from at start,
    /// when `--public-ip` is not given (hosts behind a 1:1 NAT, such as
    /// Fargate tasks with public IPs).
    #[arg(long, env = "STUN_SERVER")]
    stun_server: Option<String>,
    /// Public IP announced in ICE candidates (NAT 1:1).
    #[arg(long, env = "PUBLIC_IP")]
    public_ip: Option<String>,
    /// Where the other nodes reach this node's WHIP endpoint directly (it
    /// is handed requests for its streams that the load balancer sent to
    /// them). `auto`: `http://{this host's private IP}:{listen port}`.
    #[arg(long, env = "INTERNAL_URL")]
    internal_url: Option<String>,
    /// Seconds without media after which ingest stops by itself.
    #[arg(long, default_value_t = 60, env = "IDLE_TIMEOUT")]
    idle_timeout: u64,
    /// Where objects wait on local disk while S3 is unreachable.
    #[arg(long, env = "SPOOL_DIR")]
    spool_dir: Option<std::path::PathBuf>,
    /// Bytes the spool holds at most (all streams).
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024, env = "SPOOL_BYTES")]
    spool_bytes: u64,
    /// Seconds SIGTERM may take to finalize every stream as on demand
    /// (keep it below the container's stop timeout).
    #[arg(long, default_value_t = 100, env = "DRAIN_TIMEOUT")]
    drain_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mediastreams_http::init_logging(mediastreams_http::LogFormat::Json);
    let args = Args::parse();
    let sdk = match &args.endpoint {
        Some(e) => mediastreams_storage::aws::local_config(e),
        None => mediastreams_storage::aws::load_config().await,
    };
    let table = Arc::new(DynamoTable::from_config(&sdk, args.table.clone()));
    let media = Arc::new(S3Store::from_config(&sdk, args.bucket.clone(), args.endpoint.is_some()));
    let node = IngestNode::new(
        StreamRepo::new(table.clone()),
        media,
        NodeConfig {
            media_ip: args.media_ip,
            media_port: args.media_port,
            public_ips: args.public_ip.iter().cloned().collect(),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            spool_dir: Some(args.spool_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("mediastreams-spool"))),
            spool_bytes: args.spool_bytes,
            capacity: Some(args.capacity as usize),
            opus_passthrough: args.opus_passthrough,
            ..Default::default()
        },
    );
    let media = node.bind_media().await.with_context(|| format!("bind the media port {}:{}", args.media_ip, args.media_port))?;
    tracing::info!(%media, "media socket bound");
    if let (None, Some(stun)) = (&args.public_ip, &args.stun_server) {
        let public = node.discover_public_ip(stun).await.with_context(|| format!("learn the public IP from {stun}"))?;
        tracing::info!(%public, stun = %stun, "public address");
    }
    let id = args
        .node_id
        .clone()
        .unwrap_or_else(|| mediastreams_model::PlaybackId::generate().map(|p| p.to_string()).unwrap_or_else(|_| "node".into()));
    let registry = NodeRegistry::new(table, mediastreams_storage::nodes::NODE_TTL);
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listen on {}", args.listen))?;
    let bound = listener.local_addr().context("the listening address")?;
    let whip_base_url = args.whip_base_url.clone().unwrap_or_else(|| format!("http://{bound}"));
    let internal_url = match args.internal_url.as_deref() {
        Some("auto") => {
            Some(format!("http://{}:{}", private_ip().context("find this host's private IP for --internal-url auto")?, bound.port()))
        }
        other => other.map(str::to_owned),
    };
    node.join_fleet(id.clone(), registry.clone());
    // A node restarted with its id (NODE_ID) takes its streams back: a
    // publisher that reconnects continues its recording.
    if args.node_id.is_some() {
        let taken = node.recover(Some(&id)).await.context("read the streams this node owned")?;
        if !taken.is_empty() {
            tracing::warn!(streams = ?taken, "took on streams this node owned before it restarted");
        }
    }
    let beat = node.heartbeat(
        registry.clone(),
        NodeRecord {
            id: id.clone(),
            whip_base_url: whip_base_url.clone(),
            capacity: args.capacity,
            active_streams: 0,
            heartbeat_at: time::OffsetDateTime::now_utc(),
            internal_url: internal_url.clone(),
        },
        mediastreams_storage::nodes::HEARTBEAT_INTERVAL,
    );
    let app =
        Router::new().route("/healthz", get(|| async { "ok\n" })).merge(mediastreams_ingest_node::whip::endpoint::router(node.clone()));
    tracing::info!(node = %id, listen = %bound, whip = %whip_base_url, "ingest node up");
    // SIGTERM: refuse new publishers, finalize every stream as on demand
    // (every queued object written), deregister, then stop serving.
    let drain = Duration::from_secs(args.drain_timeout);
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let draining = {
        let node = node.clone();
        let registry = registry.clone();
        let id = id.clone();
        tokio::spawn(async move {
            mediastreams_ingest_node::termination_signal().await;
            let open = node.shutdown(drain).await;
            if open.is_empty() {
                tracing::info!("every stream finalized");
            } else {
                tracing::error!(streams = ?open, "streams still open at the drain timeout; the reaper or this node's restart finishes them");
            }
            beat.abort();
            if let Err(e) = registry.deregister(&id).await {
                tracing::warn!(error = %e, "could not deregister");
            }
            let _ = drained_tx.send(());
        })
    };
    mediastreams_http::serve(listener, app, mediastreams_http::Limits::default(), Default::default(), async {
        let _ = drained_rx.await;
    })
    .await?;
    let _ = draining.await;
    tracing::info!("ingest node stopped");
    Ok(())
}

/// The address this host sends from towards the outside (its private IP
/// in a VPC): the local end of a UDP socket "connected" to a public
/// address (no packet is sent).
fn private_ip() -> std::io::Result<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket.connect("192.0.2.1:9")?;
    Ok(socket.local_addr()?.ip())
}
