//! Serving the media store over HTTP, as S3 + CloudFront do in the cloud.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use mediastreams_storage::{ObjectKey, ObjectStore};

pub(crate) async fn get_object(State(store): State<Arc<dyn ObjectStore>>, method: Method, Path(key): Path<String>) -> Response {
    let plain = |status: StatusCode, msg: &'static str| {
        let mut r = Response::new(Body::from(msg));
        *r.status_mut() = status;
        cors(&mut r);
        r
    };
    let Ok(key) = ObjectKey::parse(&key) else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    match store.get(&key).await {
        Ok(Some(o)) => {
            let len = o.body.len();
            let mut r = if method == Method::HEAD { Response::new(Body::empty()) } else { Response::new(Body::from(o.body)) };
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&o.meta.content_type) {
                h.insert(header::CONTENT_TYPE, v);
            }
            if let Some(cc) = o.meta.cache_control.as_deref()
                && let Ok(v) = HeaderValue::from_str(cc)
            {
                h.insert(header::CACHE_CONTROL, v);
            }
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            cors(&mut r);
            r
        }
        Ok(None) => plain(StatusCode::NOT_FOUND, "not found\n"),
        Err(e) => {
            tracing::error!(key = %key, error = %e, "media read failed");
            plain(StatusCode::SERVICE_UNAVAILABLE, "media store unavailable\n")
        }
    }
}

/// The media origin's clock (`layout::TIME_PATH`): ISO 8601, UTC, in
/// milliseconds, never cached. Players set their clock from it (the DASH
/// MPD's first `UTCTiming`, the player page for Smooth); the CDN answers
/// the same path at its edge (infra/template.yaml).
pub(crate) async fn time() -> Response {
    let now = time::OffsetDateTime::now_utc();
    let text = now
        .replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let mut r = Response::new(Body::from(text));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    cors(&mut r);
    r
}

/// Players on any origin may read media, as with the CDN's CORS policy.
fn cors(r: &mut Response) {
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
}
