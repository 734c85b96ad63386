//! Running the API as AWS Lambda functions behind API Gateway (HTTP API,
//! payload format 2.0).

use std::convert::Infallible;

use bytes::Bytes;
use lambda_http::{Body, Request, Response, service_fn};

use crate::{Api, Operation};

/// Answers one API Gateway request with the API; with `only`, a function
/// refuses other operations.
pub async fn handle(api: &Api, only: Option<Operation>, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = Bytes::copy_from_slice(body.as_ref());
    let res = api.handle_only(only, http::Request::from_parts(parts, body)).await;
    let (parts, body) = res.into_parts();
    let body = if body.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(e) => Body::Binary(e.into_bytes()),
        }
    };
    Response::from_parts(parts, body)
}

/// The main of a Lambda function serving `op`: JSON logs to CloudWatch,
/// configuration from the environment (see [`crate::config`]), the media
/// store `media` makes.
pub async fn run(op: Operation, media: crate::config::MediaStore) -> Result<(), lambda_http::Error> {
    mediastreams_http::init_logging(mediastreams_http::LogFormat::JsonUnstamped);
    let api = crate::config::api_from_env(media).await?;
    tracing::info!(operation = op.id(), "function starting");
    lambda_http::run(service_fn(move |req: Request| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(handle(&api, Some(op), req).await) }
    }))
    .await
}
