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
    let mut r = Response::new(Body::from(iso_millis(time::OffsetDateTime::now_utc())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    cors(&mut r);
    r
}

/// `2026-12-05T09:41:07.042Z`: always three fraction digits, as the CDN's
/// edge function writes it (JavaScript's `Date.toISOString`).
fn iso_millis(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Players on any origin may read media, as with the CDN's CORS policy.
fn cors(r: &mut Response) {
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_time_has_three_fraction_digits_always() {
        let t = time::macros::datetime!(2026-12-05 09:41:07 UTC);
        assert_eq!(super::iso_millis(t), "2026-12-05T09:41:07.000Z");
        assert_eq!(super::iso_millis(t + time::Duration::milliseconds(42)), "2026-12-05T09:41:07.042Z");
        let paris = time::macros::datetime!(2026-12-05 10:41:07.5 +01:00);
        assert_eq!(super::iso_millis(paris), "2026-12-05T09:41:07.500Z");
    }
}
