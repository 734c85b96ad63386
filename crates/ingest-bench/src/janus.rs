//! The peer compared against: Janus (Debian's `janus` package), its
//! VideoRoom plugin with recording on, driven through its HTTP API
//! (<https://janus.conf.meetecho.com/docs/rest.html>): one Janus session
//! and plugin handle per publisher, `joinandconfigure` with the offer, the
//! answer from the session's long-poll. `scripts/bench-ingest --peer janus`
//! writes its configuration and starts it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::publisher::PublishError;

/// The room `scripts/bench-ingest` configures (recording on).
pub const ROOM: u64 = 1234;

/// One publisher's Janus session and VideoRoom handle.
pub struct JanusPublisher {
    http: reqwest::Client,
    session: String,
}

fn transaction() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> Result<Value, PublishError> {
    let r = http.post(url).json(&body).send().await?;
    let v: Value = r.json().await?;
    match v["janus"].as_str() {
        Some("success" | "ack") => Ok(v),
        _ => Err(PublishError::Signalling(format!("Janus answered {v} to {body}"))),
    }
}

impl JanusPublisher {
    /// Joins the room as publisher `display` with `offer`; returns the
    /// handle and the answer.
    pub async fn join(http: &reqwest::Client, base: &str, display: &str, offer: String) -> Result<(JanusPublisher, String), PublishError> {
        let base = base.trim_end_matches('/');
        let offer_candidates: String = offer.lines().filter(|l| l.starts_with("a=candidate")).collect::<Vec<_>>().join(" | ");
        let id =
            |v: &Value| v["data"]["id"].as_u64().map(|i| i.to_string()).ok_or_else(|| PublishError::Signalling(format!("no id in {v}")));
        let session = id(&post(http, base, json!({"janus": "create", "transaction": transaction()})).await?)?;
        let session_url = format!("{base}/{session}");
        let handle =
            id(&post(http, &session_url, json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": transaction()}))
                .await?)?;
        post(
            http,
            &format!("{session_url}/{handle}"),
            json!({
                "janus": "message",
                "transaction": transaction(),
                "body": {"request": "joinandconfigure", "room": ROOM, "ptype": "publisher", "display": display, "audio": true, "video": true, "record": true},
                "jsep": {"type": "offer", "sdp": offer},
            }),
        )
        .await?;
        // Every candidate is in the offer: say so, or Janus waits for more
        // (and gives ICE up).
        post(
            http,
            &format!("{session_url}/{handle}"),
            json!({"janus": "trickle", "transaction": transaction(), "candidate": {"completed": true}}),
        )
        .await?;
        // The answer comes as an event on the session's long poll.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::time::Instant::now() < deadline {
            let events: Value = http.get(format!("{session_url}?maxev=5")).send().await?.json().await?;
            for e in events.as_array().cloned().unwrap_or_else(|| vec![events.clone()]) {
                if let Some(sdp) = e["jsep"]["sdp"].as_str() {
                    tracing::debug!(%offer_candidates, answer = %sdp, "Janus answered");
                    let me = JanusPublisher { http: http.clone(), session: session_url.clone() };
                    me.keep_alive();
                    return Ok((me, sdp.to_owned()));
                }
                if e["plugindata"]["data"]["error"].is_string() {
                    return Err(PublishError::Signalling(format!("the VideoRoom refused: {e}")));
                }
            }
        }
        Err(PublishError::Signalling("no answer from Janus in 15 s".to_owned()))
    }

    /// Long-polls the session (which keeps it alive) until it is gone.
    fn keep_alive(&self) {
        let (http, url) = (self.http.clone(), self.session.clone());
        tokio::spawn(async move {
            loop {
                match http.get(format!("{url}?maxev=10")).send().await {
                    Ok(r) if r.status().is_success() => {
                        if r.json::<Value>().await.is_ok_and(|v| v["janus"] == "error") {
                            break;
                        }
                    }
                    _ => break,
                }
            }
        });
    }

    /// Ends the session (Janus closes the recording).
    pub async fn destroy(&self) {
        let _ = post(&self.http, &self.session, json!({"janus": "destroy", "transaction": transaction()})).await;
    }
}
