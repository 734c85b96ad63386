//! Lambda function for `GetStream` (see `Operation::GetStream`).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mediastreams_functions::lambda::run(mediastreams_functions::Operation::GetStream, mediastreams_functions::config::no_media).await
}
