//! Lambda function for `ListStreams` (see `Operation::ListStreams`).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mediastreams_functions::lambda::run(mediastreams_functions::Operation::ListStreams, mediastreams_functions::config::no_media).await
}
