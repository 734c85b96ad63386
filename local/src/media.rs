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

/// Players on any origin may read media, as with the CDN's CORS policy.
fn cors(r: &mut Response) {
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
}
