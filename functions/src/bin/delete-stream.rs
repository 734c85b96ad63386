//! Lambda function for `DeleteStream` (see `Operation::DeleteStream`).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mediastreams_functions::lambda::run(mediastreams_functions::Operation::DeleteStream, mediastreams_functions::config::s3_media).await
}
