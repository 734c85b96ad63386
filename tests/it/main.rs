//! Integration tests. One binary (linking the AWS SDK is slow); one module
//! per subject.

mod api;
mod infra;
mod store_conformance;
mod table_conformance;
