//! Lambda function for `StopIngest` (see `Operation::StopIngest`).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mediastreams_functions::lambda::run(mediastreams_functions::Operation::StopIngest, mediastreams_functions::config::no_media).await
}
