//! Integration tests. One binary (linking the AWS SDK is slow); one module
//! per subject.

mod table_conformance;
mod store_conformance;
