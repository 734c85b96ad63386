//! The WHIP endpoint (RFC 9725): `POST /whip/{name}` with an SDP offer and
//! the stream's bearer token creates a session (`201`, `Location`, `ETag`,
//! the SDP answer); `DELETE` on the session URL ends it; `PATCH` (trickle
//! ICE) is not supported (`405`: offers and answers carry all candidates);
//! `OPTIONS` answers CORS preflights so a page on another origin can
//! publish. Errors are problem details naming the problem.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use mediastreams_http::Problem;

use super::fleet::Owner;
use crate::node::{IngestNode, Publication, PublishError};
use mediastreams_webrtc_proto::offer::{self, MAX_OFFER_BYTES, check_offer};

use crate::media::audio::Channels;

pub fn router(node: Arc<IngestNode>) -> Router {
    Router::new()
        .route("/whip/{name}", post(create).options(preflight).fallback(not_allowed_endpoint))
        .route("/whip/{name}/{session}", axum::routing::delete(end).options(preflight).fallback(not_allowed_session))
        .with_state(node)
}

fn cors(h: &mut HeaderMap) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, DELETE, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type, If-Match"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Location, ETag, Link, Accept-Post"));
}

fn problem(p: Problem) -> Response {
    let mut r = p.into_response().map(Body::from);
    cors(r.headers_mut());
    r
}

/// A WHIP handler's error: a problem+json answer, with the CORS headers
/// every WHIP response carries (browser publishers read the details).
struct Refused(Problem);

impl From<Problem> for Refused {
    fn from(p: Problem) -> Self {
        Refused(p)
    }
}

impl axum::response::IntoResponse for Refused {
    fn into_response(self) -> Response {
        problem(self.0)
    }
}

async fn preflight() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    cors(r.headers_mut());
    r.headers_mut().insert("accept-post", HeaderValue::from_static("application/sdp"));
    r
}

async fn not_allowed_endpoint() -> Response {
    let mut p = Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "the WHIP endpoint takes POST (an SDP offer)");
    p.allow = Some("POST, OPTIONS");
    problem(p)
}

async fn not_allowed_session() -> Response {
    let mut p = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "a WHIP session takes DELETE; trickle ICE (PATCH) is not supported: the offer and answer carry every candidate",
    );
    p.allow = Some("DELETE, OPTIONS");
    problem(p)
}

fn unauthorized(detail: &str) -> Refused {
    Refused(Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail))
}

/// Checks the bearer token against the stream's ingest session.
async fn authorize(node: &IngestNode, name: &str, h: &HeaderMap) -> Result<mediastreams_model::Stream, Refused> {
    if mediastreams_model::name::validate(name).is_err() {
        return Err(Problem::not_found(format!("no stream named \"{name}\"")).into());
    }
    let Some(token) = mediastreams_http::bearer(h) else {
        return Err(unauthorized("the stream's ingest token is required: Authorization: Bearer <token>"));
    };
    let stream = match node.repo.get(name).await {
        Ok(Some(s)) => s.stream,
        Ok(None) => return Err(Problem::not_found(format!("no stream named \"{name}\"")).into()),
        Err(e) => {
            tracing::error!(error = %e, "table read failed");
            let mut p =
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "storage-unavailable", "the stream table could not be reached; try again");
            p.retry_after = Some(RETRY_AFTER_SECONDS);
            return Err(p.into());
        }
    };
    match &stream.ingest {
        Some(i) if i.token_hash.verify(token) => Ok(stream),
        _ => Err(unauthorized("the ingest token is wrong or has been replaced; start ingest for a new one")),
    }
}

/// Hands the request to the node the stream is assigned to, when that is
/// another node of the fleet ([`super::fleet`]).
async fn hand_over(
    node: &IngestNode,
    stream: &mediastreams_model::Stream,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<Response> {
    let fleet = node.fleet()?;
    let assigned = stream.ingest.as_ref().and_then(|i| i.node_id.as_deref());
    let name = stream.name.as_str();
    match fleet.owner(assigned, headers).await {
        Owner::Here => None,
        Owner::Node(url) => Some(match fleet.forward(&url, method, uri, headers, body).await {
            Ok(mut r) => {
                cors(r.headers_mut());
                r
            }
            Err(e) => {
                tracing::warn!(stream = %name, owner = %url, error = %e, "handing a WHIP request to its node failed");
                problem(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "node-unavailable",
                    format!("the ingest node of stream \"{name}\" did not answer; try again"),
                ))
            }
        }),
        Owner::Misdirected(id) => Some(problem(Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected",
            format!("stream \"{name}\" is assigned to ingest node {id}, not this one"),
        ))),
        Owner::Unavailable(id) => Some(problem(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node-unavailable",
            format!(
                "stream \"{name}\" is assigned to ingest node {id}, which is not available; stop and start ingest to be assigned another"
            ),
        ))),
    }
}

async fn create(State(node): State<Arc<IngestNode>>, Path(name): Path<String>, req: Request) -> Result<Response, Refused> {
    let (parts, body) = req.into_parts();
    let stream = authorize(&node, &name, &parts.headers).await?;
    let body = mediastreams_http::read_body(body, MAX_OFFER_BYTES, &mediastreams_http::Limits::default()).await.map_err(|e| match e {
        mediastreams_http::BodyError::TooLarge => Problem::payload_too_large(MAX_OFFER_BYTES),
        mediastreams_http::BodyError::TimedOut => {
            Problem::new(StatusCode::REQUEST_TIMEOUT, "body-timeout", "the offer did not arrive in time")
        }
        mediastreams_http::BodyError::Incomplete => Problem::bad_request("incomplete-body", "the offer ended early"),
    })?;
    if let Some(r) = hand_over(&node, &stream, parts.method.clone(), &parts.uri, &parts.headers, body.clone()).await {
        return Ok(r);
    }
    if !stream.state.accepts_publisher() {
        return Err(Problem::conflict("invalid-state", format!("stream \"{name}\" is {}; start ingest first", stream.state)).into());
    }
    let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.split(';').next().map(str::trim) != Some("application/sdp") {
        return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "a WHIP offer is application/sdp").into());
    }
    let offer = String::from_utf8(body.to_vec()).map_err(|_| Problem::bad_request("invalid-offer", "the offer is not UTF-8 text"))?;
    let summary = check_offer(&offer).map_err(|e| {
        let code = match e {
            offer::OfferError::NotSdp => "invalid-offer",
            _ => "unsupported-offer",
        };
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
    })?;
    let audio = if summary.stereo { Channels::Stereo } else { Channels::Mono };
    let Publication { session: id, answer } =
        node.publish(&stream, offer, audio, summary.video_layers).await.map_err(|e| publish_problem(&e))?;
    let mut r = Response::new(Body::from(answer));
    *r.status_mut() = StatusCode::CREATED;
    let h = r.headers_mut();
    cors(h);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&format!("/whip/{name}/{id}")) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{id}\"")) {
        h.insert(header::ETAG, v);
    }
    Ok(r)
}

async fn end(
    State(node): State<Arc<IngestNode>>,
    Path((name, session)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let stream = authorize(&node, &name, &headers).await?;
    if let Some(r) = hand_over(&node, &stream, method, &uri, &headers, Bytes::new()).await {
        return Ok(r);
    }
    let ended = match session.parse::<u64>() {
        Ok(id) => node.unpublish(&name, id).await,
        Err(_) => false,
    };
    if !ended {
        return Err(Problem::not_found(format!("no session {session} of stream \"{name}\"")).into());
    }
    let mut r = Response::new(Body::empty());
    cors(r.headers_mut());
    Ok(r)
}

/// Seconds a client should wait before trying again after a 503.
const RETRY_AFTER_SECONDS: &str = "2";

/// The answer to a publisher the node did not take.
fn publish_problem(e: &PublishError) -> Problem {
    let unavailable = |code: &'static str| {
        let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string());
        p.retry_after = Some(RETRY_AFTER_SECONDS);
        p
    };
    match e {
        PublishError::PublisherConnected(_) => Problem::conflict("publisher-connected", e.to_string()),
        PublishError::NotAccepting { .. } => Problem::conflict("invalid-state", e.to_string()),
        PublishError::Superseded(_) => Problem::conflict("superseded", e.to_string()),
        PublishError::StorageUnavailable(_) => unavailable("storage-unavailable"),
        PublishError::NodeUnavailable(_) | PublishError::ShuttingDown => unavailable("node-unavailable"),
        PublishError::AtCapacity(_) => unavailable("node-at-capacity"),
        PublishError::Unresumable { .. } => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "recording-unreadable", e.to_string()),
        PublishError::Negotiation(_) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "negotiation-failed", e.to_string()),
    }
}
