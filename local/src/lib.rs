//! `mediastreams-local`: the service on one port, for a laptop or a test.
//!
//! * `/streams...`: the stream resource API (the same handlers as the
//!   Lambda functions);
//! * `/media/{key}`: the media store, read the way players read S3/CloudFront;
//! * `/healthz`: liveness.
//!
//! Storage is embedded by default (a `redb` table and a directory under
//! `--data-dir`); endpoint options switch to DynamoDB and S3.
#![forbid(unsafe_code)]

mod media;
mod server;

pub use server::{Backends, LocalConfig, StorageChoice, build_router, open_backends, serve};
