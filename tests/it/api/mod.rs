//! The stream resource API, one behaviour suite run over three transports:
//! real HTTP against `mediastreams-local` on embedded storage, real HTTP
//! against `mediastreams-local` on DynamoDB + S3 (moto), and API Gateway
//! v2 events into the Lambda handlers on DynamoDB + S3. Every response is
//! validated against `docs/openapi.yaml`.

pub mod harness;
mod lambda_only;
mod local_only;
mod openapi;
mod suite;
