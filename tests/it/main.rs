//! Integration tests. One binary (linking the AWS SDK is slow); one module
//! per subject.

pub mod api;
mod browser_e2e;
mod faults;
mod infra;
mod ingest_bench;
mod lambda_runtime;
mod nodes;
mod packager_tools;
mod player;
mod recorder;
mod store_conformance;
mod stun;
mod table_conformance;
mod whip;
