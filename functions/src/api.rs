//! The handlers of the stream resource API.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use mediastreams_model::{
    CreateStreamRequest, IngestSession, IngestToken, PlaybackId, StreamName, StreamState, StreamView, Transition, stream::IngestView,
};
use mediastreams_storage::{ObjectStore, RepoError, StreamRepo, VersionedStream};
use serde::Serialize;
use time::OffsetDateTime;

use crate::Problem;
use crate::routes::{Operation, RouteError, route};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Default and largest page of `GET /streams`.
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

/// Deployment settings of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Base URL players read media from (CDN, or `http://host/media` locally).
    pub media_base_url: String,
    /// Base URL of the WHIP endpoint; a stream's ingest URL is
    /// `{ingest_base_url}/whip/{name}`.
    pub ingest_base_url: String,
    /// When set, every request must carry it (`Authorization: Bearer` or
    /// `X-Api-Key`). Used locally; in the cloud API Gateway authorizes.
    pub api_key: Option<String>,
}

#[derive(Clone)]
pub struct Api {
    repo: StreamRepo,
    media: Arc<dyn ObjectStore>,
    config: Arc<ApiConfig>,
    /// When set, start-ingest assigns streams to registered ingest nodes
    /// instead of `ingest_base_url`.
    nodes: Option<mediastreams_storage::NodeRegistry>,
}

type ApiResult = Result<Response<Bytes>, Problem>;

impl Api {
    pub fn new(repo: StreamRepo, media: Arc<dyn ObjectStore>, config: ApiConfig) -> Self {
        Api { repo, media, config: Arc::new(config), nodes: None }
    }

    /// Assigns ingest to the least loaded healthy node of `registry`.
    pub fn with_node_registry(mut self, registry: mediastreams_storage::NodeRegistry) -> Self {
        self.nodes = Some(registry);
        self
    }

    pub fn repo(&self) -> &StreamRepo {
        &self.repo
    }

    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// Answers one request, whatever its operation.
    pub async fn handle(&self, req: Request<Bytes>) -> Response<Bytes> {
        self.handle_only(None, req).await
    }

    /// Answers one request; with `only`, requests for other operations are
    /// refused (a Lambda function serves just its own operation).
    pub async fn handle_only(&self, only: Option<Operation>, req: Request<Bytes>) -> Response<Bytes> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let (op, result) = match self.dispatch(only, req).await {
            Ok((op, r)) => (Some(op), Ok(r)),
            Err((op, p)) => (op, Err(p)),
        };
        let response = result.unwrap_or_else(Problem::into_response);
        tracing::info!(
            method = %method,
            path = %path,
            operation = op.map(Operation::id),
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        );
        response
    }

    async fn dispatch(
        &self,
        only: Option<Operation>,
        req: Request<Bytes>,
    ) -> Result<(Operation, Response<Bytes>), (Option<Operation>, Problem)> {
        let route = route(req.method(), req.uri().path()).map_err(|e| {
            (
                None,
                match e {
                    RouteError::NotFound => Problem::not_found(format!("no resource at {}", req.uri().path())),
                    RouteError::MethodNotAllowed { allow } => {
                        let mut p = Problem::new(
                            StatusCode::METHOD_NOT_ALLOWED,
                            "method-not-allowed",
                            format!("{} is not allowed here; allowed: {allow}", req.method()),
                        );
                        p.allow = Some(allow);
                        p
                    }
                },
            )
        })?;
        let op = route.operation;
        if only.is_some_and(|o| o != op) {
            return Err((Some(op), Problem::not_found(format!("this function does not serve {}", op.id()))));
        }
        self.authorize(&req).map_err(|p| (Some(op), p))?;
        if req.body().len() > MAX_BODY_BYTES {
            return Err((Some(op), Problem::payload_too_large(MAX_BODY_BYTES)));
        }
        let name = match route.name {
            Some(n) => Some(
                StreamName::parse(n).map_err(|e| (Some(op), Problem::bad_request("invalid-name", format!("stream name {n:?}: {e}"))))?,
            ),
            None => None,
        };
        let result = match (op, name) {
            (Operation::ListStreams, _) => self.list_streams(&req).await,
            (Operation::CreateStream, Some(n)) => self.create_stream(&n, &req).await,
            (Operation::GetStream, Some(n)) => self.get_stream(&n).await,
            (Operation::DeleteStream, Some(n)) => self.delete_stream(&n).await,
            (Operation::StartIngest, Some(n)) => self.start_ingest(&n).await,
            (Operation::StopIngest, Some(n)) => self.stop_ingest(&n).await,
            (_, None) => Err(Problem::internal()),
        };
        result.map(|r| (op, r)).map_err(|p| (Some(op), p))
    }

    fn authorize(&self, req: &Request<Bytes>) -> Result<(), Problem> {
        let Some(expected) = &self.config.api_key else {
            return Ok(());
        };
        let h = req.headers();
        let presented = mediastreams_http::bearer(h).or_else(|| h.get("x-api-key").and_then(|v| v.to_str().ok()));
        match presented {
            Some(p) if mediastreams_http::constant_time_eq(p.as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "the API key is wrong")),
            None => Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an API key is required (Authorization: Bearer <key> or X-Api-Key)",
            )),
        }
    }

    fn view(&self, s: &VersionedStream) -> StreamView {
        s.stream.view(&self.config.media_base_url)
    }

    async fn create_stream(&self, name: &StreamName, req: &Request<Bytes>) -> ApiResult {
        let body = json_body(req)?;
        let request: CreateStreamRequest = match body {
            None => CreateStreamRequest::default(),
            Some(b) => parse_object(&b)?,
        };
        let settings = request.into_settings().map_err(|e| Problem::bad_request("invalid-settings", format!("{}: {e}", e.field())))?;
        let same_or_conflict = |existing: VersionedStream| -> ApiResult {
            if existing.stream.settings == settings {
                json(StatusCode::OK, &self.view(&existing))
            } else {
                Err(Problem::conflict("stream-exists", format!("a stream named \"{name}\" already exists with different settings")))
            }
        };
        if let Some(existing) = self.repo.get(name.as_str()).await.map_err(repo_problem)? {
            return same_or_conflict(existing);
        }
        let playback_id = PlaybackId::generate().map_err(|e| {
            tracing::error!(error = %e, "no randomness");
            Problem::internal()
        })?;
        let stream = mediastreams_model::Stream::new(name.clone(), playback_id, settings.clone(), now());
        match self.repo.create(&stream).await {
            Ok(created) => {
                let mut res = json(StatusCode::CREATED, &self.view(&created))?;
                if let Ok(loc) = HeaderValue::from_str(&format!("/streams/{name}")) {
                    res.headers_mut().insert(header::LOCATION, loc);
                }
                Ok(res)
            }
            // Lost a race with another create of the same name.
            Err(RepoError::AlreadyExists(_)) => match self.repo.get(name.as_str()).await.map_err(repo_problem)? {
                Some(existing) => same_or_conflict(existing),
                None => Err(Problem::conflict("stream-exists", format!("stream \"{name}\" is being created and deleted concurrently"))),
            },
            Err(e) => Err(repo_problem(e)),
        }
    }

    async fn get_stream(&self, name: &StreamName) -> ApiResult {
        let s = self.find(name).await?;
        json(StatusCode::OK, &self.view(&s))
    }

    async fn find(&self, name: &StreamName) -> Result<VersionedStream, Problem> {
        self.repo.get(name.as_str()).await.map_err(repo_problem)?.ok_or_else(|| Problem::not_found(format!("no stream named \"{name}\"")))
    }

    async fn list_streams(&self, req: &Request<Bytes>) -> ApiResult {
        let mut limit = DEFAULT_PAGE;
        let mut after: Option<String> = None;
        for (k, v) in query_pairs(req.uri().query().unwrap_or(""))? {
            match k.as_str() {
                "limit" => {
                    limit = v.parse::<usize>().ok().filter(|l| (1..=MAX_PAGE).contains(l)).ok_or_else(|| {
                        Problem::bad_request("invalid-limit", format!("limit must be a whole number from 1 to {MAX_PAGE}"))
                    })?;
                }
                "continuationToken" => after = Some(decode_token(&v)?),
                other => {
                    return Err(Problem::bad_request(
                        "invalid-query",
                        format!("unknown query parameter {other:?}; known: limit, continuationToken"),
                    ));
                }
            }
        }
        let page = self.repo.list(after.as_deref(), limit).await.map_err(repo_problem)?;
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ListBody {
            streams: Vec<StreamView>,
            #[serde(skip_serializing_if = "Option::is_none")]
            continuation_token: Option<String>,
        }
        json(
            StatusCode::OK,
            &ListBody {
                streams: page.items.iter().map(|s| self.view(s)).collect(),
                continuation_token: page.next.as_deref().map(encode_token),
            },
        )
    }

    async fn delete_stream(&self, name: &StreamName) -> ApiResult {
        let deleting = self.repo.transition(name.as_str(), Transition::Delete, now(), None).await.map_err(repo_problem)?;
        let prefix = format!("{}/", deleting.stream.playback_id);
        // The record stays in `Deleting` until its media is gone, so a
        // failure here leaves a stream that a repeated DELETE finishes.
        let removed = self.media.delete_prefix(&prefix).await.map_err(|e| {
            tracing::error!(stream = %name, error = %e, "removing media failed");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "media-removal-failed",
                "the stream's media could not be removed yet; repeat the DELETE",
            )
        })?;
        match self.repo.delete(name.as_str(), deleting.version).await {
            Ok(()) | Err(RepoError::NotFound(_)) => {}
            // A concurrent DELETE finished first, or changed the record.
            Err(RepoError::Table(mediastreams_storage::TableError::ConditionFailed)) => {}
            Err(e) => return Err(repo_problem(e)),
        }
        tracing::info!(stream = %name, objects = removed, "stream deleted");
        let mut res = Response::new(Bytes::new());
        *res.status_mut() = StatusCode::NO_CONTENT;
        Ok(res)
    }

    async fn start_ingest(&self, name: &StreamName) -> ApiResult {
        let token = IngestToken::generate().map_err(|e| {
            tracing::error!(error = %e, "no randomness");
            Problem::internal()
        })?;
        let (base, node_id) = match &self.nodes {
            None => (self.config.ingest_base_url.clone(), None),
            Some(registry) => match registry.pick(now()).await.map_err(repo_problem)? {
                Some(node) => (node.whip_base_url, Some(node.id)),
                None => {
                    return Err(Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no-ingest-capacity",
                        "no ingest node has room for another stream; try again shortly",
                    ));
                }
            },
        };
        let url = format!("{}/whip/{}", base.trim_end_matches('/'), name);
        let session = IngestSession { token_hash: token.hash(), url: url.clone(), node_id, started_at: now() };
        let s = self.repo.transition(name.as_str(), Transition::StartIngest, now(), Some(session)).await.map_err(repo_problem)?;
        let mut view = self.view(&s);
        view.ingest = Some(IngestView { protocol: "whip", url, token: Some(token.as_str().to_owned()) });
        json(StatusCode::OK, &view)
    }

    async fn stop_ingest(&self, name: &StreamName) -> ApiResult {
        let s = self.repo.transition(name.as_str(), Transition::StopIngest, now(), None).await.map_err(repo_problem)?;
        // Stopping a live stream is finished by the ingest node, which
        // finalizes the recording and moves the stream to OnDemand.
        let status = if s.stream.state == StreamState::Stopping { StatusCode::ACCEPTED } else { StatusCode::OK };
        json(status, &self.view(&s))
    }
}

/// The current time, to the millisecond (what the API shows).
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_millisecond(t.millisecond()).unwrap_or(t)
}

/// The JSON body of a request, or `None` when it has none. A body must be
/// declared `application/json` (or `+json`).
fn json_body(req: &Request<Bytes>) -> Result<Option<Bytes>, Problem> {
    let body = req.body();
    let content_type = req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("").to_ascii_lowercase());
    if body.is_empty() && content_type.is_none() {
        return Ok(None);
    }
    let is_json = content_type.as_deref().is_some_and(|ct| {
        let mime = ct.split(';').next().unwrap_or("").trim();
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
    });
    if !is_json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!("the request body must be application/json, not {}", content_type.as_deref().unwrap_or("undeclared")),
        ));
    }
    Ok(Some(body.clone()))
}

/// Parses a request body that must be one JSON object (serde would also
/// accept a struct written as an array).
fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let bad = |m: String| Problem::bad_request("invalid-request", format!("request body: {m}"));
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let kind = match &value {
        serde_json::Value::Object(_) => None,
        serde_json::Value::Array(_) => Some("an array"),
        serde_json::Value::String(_) => Some("a string"),
        serde_json::Value::Number(_) => Some("a number"),
        serde_json::Value::Bool(_) => Some("a boolean"),
        serde_json::Value::Null => Some("null"),
    };
    if let Some(kind) = kind {
        return Err(bad(format!("expected a JSON object, found {kind}")));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." { bad(e.into_inner().to_string()) } else { bad(format!("{path}: {}", e.into_inner())) }
    })
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> ApiResult {
    let body = serde_json::to_vec(value).map_err(|e| {
        tracing::error!(error = %e, "response serialization failed");
        Problem::internal()
    })?;
    let mut res = Response::new(Bytes::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

fn repo_problem(e: RepoError) -> Problem {
    match e {
        RepoError::NotFound(name) => Problem::not_found(format!("no stream named {name:?}")),
        RepoError::AlreadyExists(name) => Problem::conflict("stream-exists", format!("a stream named {name:?} already exists")),
        RepoError::Transition(t) => Problem::conflict("invalid-state", t.to_string()),
        RepoError::Contention => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "contention", "the stream is being changed by many requests at once; try again")
        }
        RepoError::Table(e) => {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "table error");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "storage-unavailable", "the stream table could not be reached; try again")
        }
    }
}

const TOKEN_PREFIX: &str = "v1:";

fn encode_token(after: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{after}"))
}

fn decode_token(token: &str) -> Result<String, Problem> {
    let bad = || Problem::bad_request("invalid-continuation-token", "continuationToken is not one this API returned");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    let name = s.strip_prefix(TOKEN_PREFIX).ok_or_else(bad)?;
    StreamName::parse(name).map_err(|_| bad())?;
    Ok(name.to_owned())
}

/// Parses `a=b&c=d`, percent-decoding names and values.
fn query_pairs(q: &str) -> Result<Vec<(String, String)>, Problem> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, Problem> {
    let bad = || Problem::bad_request("invalid-query", "the query string is not valid percent-encoding");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_tokens_round_trip_and_reject_forgeries() {
        assert_eq!(decode_token(&encode_token("abc")).unwrap(), "abc");
        assert!(decode_token("!!!").is_err());
        assert!(decode_token(&URL_SAFE_NO_PAD.encode("v1:../x")).is_err());
        assert!(decode_token(&URL_SAFE_NO_PAD.encode("abc")).is_err());
    }

    #[test]
    fn query_parsing() {
        assert_eq!(
            query_pairs("limit=5&continuationToken=a%3Db").unwrap(),
            vec![("limit".into(), "5".into()), ("continuationToken".into(), "a=b".into())]
        );
        assert!(query_pairs("a=%zz").is_err());
        assert!(query_pairs("a=%f").is_err());
        assert!(query_pairs("a=%ff").is_err());
    }
}
