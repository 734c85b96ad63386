//! WHIP requests that reach the wrong node. In a fleet, publishers reach
//! the nodes through one load balancer, which picks any node; start-ingest
//! assigned the stream to one of them (the stream's `ingest.nodeId`). A
//! node that gets a request for another node's stream hands it to that
//! node directly (its `internalUrl` in the registry, inside the VPC) and
//! returns its answer unchanged: the SDP answer carries the owner's media
//! address, so the publisher's media goes straight to the owner. A handed
//! request carries [`FORWARDED`] and is never handed on again; one that
//! reaches a node that is not the stream's owner anyway is refused (421),
//! so only the owner ever terminates a stream's media.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use mediastreams_storage::{NodeRecord, NodeRegistry};

/// Marks a request one node handed to another (its value: the sender's id).
pub const FORWARDED: &str = "x-mediastreams-forwarded-by";

/// How long the owner may take to answer (it waits up to 5 s for ICE
/// gathering).
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// This node's place in a fleet.
pub struct Fleet {
    pub node_id: String,
    pub registry: NodeRegistry,
    http: reqwest::Client,
}

/// Who answers a request for a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    /// This node (or no fleet, or no assignment).
    Here,
    /// Another node, at this internal URL.
    Node(String),
    /// Another node that is not healthy or cannot be reached directly.
    Unavailable(String),
    /// Handed over already, yet not this node's stream: never answered
    /// here (two nodes publishing one stream would write over each other).
    Misdirected(String),
}

impl Fleet {
    pub fn new(node_id: String, registry: NodeRegistry) -> Self {
        let http = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_default();
        Fleet { node_id, registry, http }
    }

    /// Who should answer for a stream assigned to `assigned`.
    pub async fn owner(&self, assigned: Option<&str>, headers: &HeaderMap) -> Owner {
        let Some(assigned) = assigned.filter(|a| *a != self.node_id) else { return Owner::Here };
        if headers.contains_key(FORWARDED) {
            // Handed over once already: no loop, and no second node
            // terminating the stream.
            return Owner::Misdirected(assigned.to_owned());
        }
        let now = time::OffsetDateTime::now_utc();
        let record: Option<NodeRecord> = match self.registry.all().await {
            Ok(all) => all.into_iter().find(|n| n.id == assigned),
            Err(e) => {
                tracing::warn!(error = %e, "node registry read failed");
                None
            }
        };
        match record {
            Some(n) if n.is_healthy(now, self.registry.ttl()) => match n.internal_url {
                Some(url) => Owner::Node(url),
                None => Owner::Unavailable(assigned.to_owned()),
            },
            _ => Owner::Unavailable(assigned.to_owned()),
        }
    }

    /// Sends the request to the owner and returns its response.
    pub async fn forward(
        &self,
        base: &str,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, reqwest::Error> {
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let mut req = self.http.request(method, &url).body(body).header(FORWARDED, &self.node_id);
        for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::IF_MATCH] {
            if let Some(v) = headers.get(&name) {
                req = req.header(name, v);
            }
        }
        let res = req.send().await?;
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut out = HeaderMap::new();
        for (name, value) in res.headers() {
            let keep = [header::LOCATION, header::ETAG, header::LINK, header::CONTENT_TYPE, header::ALLOW].iter().any(|h| h == name)
                || name.as_str().starts_with("access-control-")
                || name.as_str() == "accept-post";
            if keep && let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_str().as_bytes()), HeaderValue::from_bytes(value.as_bytes())) {
                out.append(n, v);
            }
        }
        let body = res.bytes().await?;
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = status;
        *r.headers_mut() = out;
        Ok(r)
    }
}
