//! Shared AWS SDK configuration: one rustls + ring HTTPS client for every
//! SDK client, and explicit endpoints for DynamoDB- and S3-compatible
//! servers.

use std::time::Duration;

use aws_config::BehaviorVersion;

/// The SDK configuration every client is made from.
pub use aws_config::SdkConfig;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_types::timeout::TimeoutConfig;

/// Loads the SDK configuration from the environment (region, credentials:
/// Lambda and ECS roles, `AWS_*` variables, profiles) with the project's
/// HTTPS client.
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client()).timeout_config(timeouts()).load().await
}

/// The SDK configuration inside AWS Lambda, from the variables Lambda sets:
/// the region (`AWS_REGION`), the function role's credentials
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), and
/// `AWS_ENDPOINT_URL` when set (local invoke against compatible servers).
///
/// The default chain ([`load_config`]) would find the same credentials
/// first, but links what a function never uses (profile files, SSO, STS web
/// identity, the instance metadata client): about a megabyte a function
/// loads at every cold start.
///
/// Not read (the default chain reads them; none is set in the template):
/// per-service endpoints (`AWS_ENDPOINT_URL_DYNAMODB`, `_S3`),
/// `AWS_MAX_ATTEMPTS`/`AWS_RETRY_MODE` (standard retries, three attempts),
/// `AWS_REQUEST_CHECKSUM_CALCULATION`, FIPS and dual-stack settings,
/// container credentials.
pub fn lambda_config() -> Result<aws_config::SdkConfig, MissingVariable> {
    let region = std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()).ok_or(MissingVariable("AWS_REGION"))?;
    let credentials = aws_config::environment::EnvironmentVariableCredentialsProvider::new();
    let mut builder = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(credentials))
        .retry_config(aws_smithy_types::retry::RetryConfig::standard())
        .http_client(https_client())
        .timeout_config(timeouts())
        .sleep_impl(aws_smithy_async::rt::sleep::SharedAsyncSleep::new(aws_smithy_async::rt::sleep::TokioSleep::new()))
        .time_source(aws_smithy_async::time::SharedTimeSource::new(aws_smithy_async::time::SystemTimeSource::new()));
    if let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL").ok().filter(|e| !e.is_empty()) {
        builder = builder.endpoint_url(endpoint);
    }
    Ok(builder.build())
}

/// An environment variable [`lambda_config`] needs is not set.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set")]
pub struct MissingVariable(pub &'static str);

/// Every call is bounded: a server that accepts and never answers (a
/// stalled connection, a black-holed route) fails the attempt, which the
/// SDK retries and the caller then handles, instead of hanging a recording.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .read_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(15))
        .operation_timeout(Duration::from_secs(45))
        .build()
}

/// The HTTPS client every SDK client uses: rustls with ring (already linked
/// for WebRTC), instead of the SDK's default aws-lc build.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// Configuration for a local DynamoDB/S3-compatible server at `endpoint`,
/// with fixed credentials and region (used by tests and by
/// `mediastreams-local` when pointed at such servers).
pub fn local_config(endpoint: &str) -> aws_config::SdkConfig {
    let creds = aws_credential_types::Credentials::from_keys("local", "local", None);
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(creds))
        .endpoint_url(endpoint)
        .http_client(https_client())
        .timeout_config(timeouts())
        .sleep_impl(aws_smithy_async::rt::sleep::SharedAsyncSleep::new(aws_smithy_async::rt::sleep::TokioSleep::new()))
        .build()
}
