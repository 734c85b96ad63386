//! Lambda function for `CreateStream` (see `Operation::CreateStream`).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mediastreams_functions::lambda::run(mediastreams_functions::Operation::CreateStream, mediastreams_functions::config::no_media).await
}
