//! Lambda function for `StartIngest` (see `Operation::StartIngest`).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mediastreams_functions::lambda::run(mediastreams_functions::Operation::StartIngest, mediastreams_functions::config::no_media).await
}
