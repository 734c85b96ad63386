//! `mediastreams-local`: run the media stream service on this machine.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mediastreams_local::{LocalConfig, StorageChoice, build_service, open_backends, serve};

/// The media stream service on one port: API, media, ingest and pages.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "MEDIASTREAMS_LISTEN")]
    listen: SocketAddr,
    /// Directory of the embedded table and media store.
    #[arg(long, default_value = "./data", env = "MEDIASTREAMS_DATA_DIR")]
    data_dir: PathBuf,
    /// URL clients use to reach this server (default: http://{listen}).
    #[arg(long, env = "MEDIASTREAMS_PUBLIC_URL")]
    public_url: Option<String>,
    /// Require this API key on API requests (Authorization: Bearer or X-Api-Key).
    #[arg(long, env = "MEDIASTREAMS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Local address WebRTC media is received on.
    #[arg(long, default_value = "127.0.0.1", env = "MEDIASTREAMS_MEDIA_IP")]
    media_ip: std::net::IpAddr,
    /// The one UDP port all publishers' media arrives on (0: any free port).
    #[arg(long, default_value_t = 8189, env = "MEDIASTREAMS_MEDIA_PORT")]
    media_port: u16,
    /// Public IP to announce in ICE candidates (NAT 1:1); repeatable.
    #[arg(long = "public-ip", env = "MEDIASTREAMS_PUBLIC_IPS", value_delimiter = ',')]
    public_ips: Vec<String>,
    /// Seconds without media after which ingest stops by itself.
    #[arg(long, default_value_t = 60, env = "MEDIASTREAMS_IDLE_TIMEOUT")]
    idle_timeout: u64,
    /// Directory of the studio and player pages (built by scripts/build-web).
    #[arg(long, default_value = "web/public", env = "MEDIASTREAMS_WEB_DIR")]
    web_dir: PathBuf,
    /// Use DynamoDB (at this endpoint, e.g. a local DynamoDB-compatible
    /// server) instead of the embedded table.
    #[arg(long, env = "MEDIASTREAMS_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
    /// Use S3 (at this endpoint) instead of the local media directory.
    #[arg(long, env = "MEDIASTREAMS_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Use the AWS account of the environment for both (no endpoints).
    #[arg(long, conflicts_with_all = ["dynamodb_endpoint", "s3_endpoint"])]
    aws: bool,
    /// DynamoDB table name, with --dynamodb-endpoint or --aws.
    #[arg(long, default_value = "mediastreams", env = "MEDIASTREAMS_TABLE")]
    table: String,
    /// S3 bucket name, with --s3-endpoint or --aws.
    #[arg(long, default_value = "mediastreams-media", env = "MEDIASTREAMS_BUCKET")]
    bucket: String,
    /// Seconds SIGTERM or Ctrl-C may take to finalize every live stream as
    /// on demand before the server exits.
    #[arg(long, default_value_t = 30, env = "MEDIASTREAMS_DRAIN_TIMEOUT")]
    drain_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mediastreams_http::init_logging(mediastreams_http::LogFormat::Human);
    let args = Args::parse();
    let storage = if args.aws || args.dynamodb_endpoint.is_some() || args.s3_endpoint.is_some() {
        if args.dynamodb_endpoint.is_some() != args.s3_endpoint.is_some() {
            anyhow::bail!("give both --dynamodb-endpoint and --s3-endpoint, or --aws");
        }
        StorageChoice::Aws {
            dynamodb_endpoint: args.dynamodb_endpoint,
            table: args.table,
            s3_endpoint: args.s3_endpoint,
            bucket: args.bucket,
        }
    } else {
        StorageChoice::Embedded { data_dir: args.data_dir.clone() }
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let config = LocalConfig {
        storage: storage.clone(),
        ingest: mediastreams_ingest_node::NodeConfig {
            media_ip: args.media_ip,
            media_port: args.media_port,
            public_ips: args.public_ips.clone(),
            idle_timeout: std::time::Duration::from_secs(args.idle_timeout),
            // Objects wait here while an S3 store is down.
            spool_dir: Some(args.data_dir.join("spool")),
            ..Default::default()
        },
        public_url: args.public_url.unwrap_or_else(|| format!("http://{addr}")),
        api_key: args.api_key,
        web_dir: Some(args.web_dir.clone()),
        limits: mediastreams_http::Limits::default(),
    };
    let backends = open_backends(&storage).await.context("opening storage")?;
    let (router, node) = build_service(&backends, &config);
    let media = node
        .bind_media()
        .await
        .with_context(|| format!("cannot bind the media port {}:{} (--media-port)", args.media_ip, args.media_port))?;
    tracing::info!(
        url = %config.public_url,
        storage = ?storage,
        %media,
        api_key = config.api_key.is_some(),
        "mediastreams-local listening"
    );
    // Streams that were live when this server last stopped without
    // draining (killed, crashed): a publisher that reconnects continues
    // the recording; otherwise it is finalized after the idle timeout.
    let taken = node.recover(None).await.context("reading the streams to recover")?;
    if !taken.is_empty() {
        tracing::warn!(streams = ?taken, "recovering streams that were live when the server last stopped");
    }
    // The line scripts and tests wait for.
    println!("mediastreams-local listening on {}", config.public_url);
    let drain = std::time::Duration::from_secs(args.drain_timeout);
    serve(listener, router, config.limits, async move {
        mediastreams_ingest_node::termination_signal().await;
        // Every live stream becomes on demand, every object written.
        let open = node.shutdown(drain).await;
        if !open.is_empty() {
            tracing::error!(streams = ?open, "streams still open at the drain timeout; they are recovered at the next start");
        }
    })
    .await?;
    tracing::info!("mediastreams-local stopped");
    Ok(())
}
