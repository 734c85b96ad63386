//! Lambda function for `DeleteStream` (see `Operation::DeleteStream`).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mediastreams_functions::lambda::run(mediastreams_functions::Operation::DeleteStream).await
}
