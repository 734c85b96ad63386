//! `mediastreams-local`: the service on one port, for a laptop or a test.
//!
//! * `/streams...`: the stream resource API (the same handlers as the
//!   Lambda functions);
//! * `/media/{key}`: the media store, read the way players read S3/CloudFront;
//! * `/whip/{name}`: the WHIP endpoint of the in-process ingest node;
//! * `/` and `/{page}`: the studio and player pages (`--web-dir`);
//! * `/healthz`: liveness.
//!
//! Storage is embedded by default (a `redb` table and a directory under
//! `--data-dir`); endpoint options switch to DynamoDB and S3.
#![forbid(unsafe_code)]

mod media;
mod server;
mod web;

pub use server::{Backends, LocalConfig, StorageChoice, build_router, build_service, open_backends, serve};
