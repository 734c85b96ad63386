//! What every deployment of the API does, whatever carries the requests.

use std::collections::BTreeSet;

use bytes::Bytes;
use futures::future::join_all;
use mediastreams_model::{StreamState, Transition};
use mediastreams_storage::{ObjectKey, ObjectMeta};
use serde_json::json;
use time::OffsetDateTime;

use super::harness::Env;

/// Acts as the ingest node does: the first media arrived.
async fn node_sees_media(env: &Env, name: &str) {
    env.repo.transition(name, Transition::MediaArrived, OffsetDateTime::now_utc(), None).await.expect("Ready -> Live");
}

/// Acts as the ingest node does: the recording is finalized.
async fn node_finalizes(env: &Env, name: &str) {
    env.repo.transition(name, Transition::RecordingFinalized, OffsetDateTime::now_utc(), None).await.expect("Stopping -> OnDemand");
}

pub async fn lifecycle(env: Env) {
    let created = env
        .call(
            "PUT",
            "/streams/cam-1",
            Some(json!({"outputs":[{"name":"smooth","format":"smooth"},{"name":"web","format":"dash"},{"name":"apple","format":"hls"}]})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.header("location"), Some("/streams/cam-1"));
    let s = created.json();
    assert_eq!(s["name"], "cam-1");
    assert_eq!(s["state"], "Created");
    assert_eq!(s["fragmentDurationMs"], 2000);
    let pid = s["playbackId"].as_str().unwrap().to_owned();
    assert_eq!(s["outputs"][0]["url"], format!("{}/{pid}/smooth.ism/Manifest", env.media_base));
    assert_eq!(s["outputs"][1]["url"], format!("{}/{pid}/dash/manifest.mpd", env.media_base));
    assert_eq!(s["outputs"][2]["url"], format!("{}/{pid}/hls/main.m3u8", env.media_base));
    for o in s["outputs"].as_array().unwrap() {
        assert!(!o["url"].as_str().unwrap().contains("cam-1"), "URLs use the playback id, not the name");
    }

    let got = env.call("GET", "/streams/cam-1", None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), s);

    let started = env.call("POST", "/streams/cam-1/start-ingest", None).await;
    assert_eq!(started.status, 200);
    let st = started.json();
    assert_eq!(st["state"], "Ready");
    assert_eq!(st["ingest"]["protocol"], "whip");
    assert!(st["ingest"]["url"].as_str().unwrap().ends_with("/whip/cam-1"));
    let token = st["ingest"]["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43, "256 bits, base64url");
    // The token is shown once: neither GET nor the table holds it.
    let got = env.call("GET", "/streams/cam-1", None).await.json();
    assert_eq!(got["state"], "Ready");
    assert!(got["ingest"].get("token").is_none());
    let stored = env.repo.get("cam-1").await.unwrap().unwrap();
    let stored_json = serde_json::to_string(&stored.stream).unwrap();
    assert!(!stored_json.contains(&token), "the table holds only the token's hash");
    assert!(stored.stream.ingest.as_ref().unwrap().token_hash.verify(&token));

    node_sees_media(&env, "cam-1").await;
    let live = env.call("GET", "/streams/cam-1", None).await.json();
    assert_eq!(live["state"], "Live");
    assert!(live["live"]["startedAt"].is_string());

    let stopping = env.call("POST", "/streams/cam-1/stop-ingest", None).await;
    assert_eq!(stopping.status, 202);
    assert_eq!(stopping.json()["state"], "Stopping");
    let again = env.call("POST", "/streams/cam-1/stop-ingest", None).await;
    assert_eq!((again.status, again.code().as_str()), (409, "invalid-state"));
    let del = env.call("DELETE", "/streams/cam-1", None).await;
    assert_eq!((del.status, del.code().as_str()), (409, "invalid-state"));

    node_finalizes(&env, "cam-1").await;
    let done = env.call("GET", "/streams/cam-1", None).await.json();
    assert_eq!(done["state"], "OnDemand");
    assert_eq!(done["outputs"], s["outputs"], "the same URLs serve the recording");
    assert!(done["live"]["endedAt"].is_string());
    let restart = env.call("POST", "/streams/cam-1/start-ingest", None).await;
    assert_eq!((restart.status, restart.code().as_str()), (409, "invalid-state"));

    // Deleting removes the stream's media and nothing else.
    let meta = ObjectMeta::new("video/mp4", None);
    let mine = ObjectKey::parse(&format!("{pid}/smooth.ism/QualityLevels(1)/Fragments(video=0)")).unwrap();
    let other = ObjectKey::parse("0123456789abcdef0123456789abcdef/smooth.ism/Manifest").unwrap();
    env.media.put(&mine, Bytes::from_static(b"x"), &meta).await.unwrap();
    env.media.put(&other, Bytes::from_static(b"y"), &meta).await.unwrap();
    let del = env.call("DELETE", "/streams/cam-1", None).await;
    assert_eq!(del.status, 204);
    assert!(del.body.is_empty());
    assert!(env.media.get(&mine).await.unwrap().is_none());
    assert!(env.media.get(&other).await.unwrap().is_some());
    let gone = env.call("GET", "/streams/cam-1", None).await;
    assert_eq!((gone.status, gone.code().as_str()), (404, "not-found"));
    // The name can be used again, with a new playback id.
    let again = env.call("PUT", "/streams/cam-1", None).await;
    assert_eq!(again.status, 201);
    assert_ne!(again.json()["playbackId"], s["playbackId"]);
}

pub async fn stop_before_media_returns_to_created(env: Env) {
    assert_eq!(env.call("PUT", "/streams/s", None).await.status, 201);
    let first = env.call("POST", "/streams/s/start-ingest", None).await.json();
    let stopped = env.call("POST", "/streams/s/stop-ingest", None).await;
    assert_eq!(stopped.status, 200);
    let body = stopped.json();
    assert_eq!(body["state"], "Created");
    assert!(body.get("ingest").is_none());
    let second = env.call("POST", "/streams/s/start-ingest", None).await.json();
    assert_ne!(first["ingest"]["token"], second["ingest"]["token"], "a fresh token each time");
    let stop_created = env.call("POST", "/streams/t/stop-ingest", None).await;
    assert_eq!(stop_created.status, 404);
    env.call("PUT", "/streams/t", None).await;
    let stop_created = env.call("POST", "/streams/t/stop-ingest", None).await;
    assert_eq!((stop_created.status, stop_created.code().as_str()), (409, "invalid-state"));
    // Deleting a Created stream works.
    assert_eq!(env.call("DELETE", "/streams/t", None).await.status, 204);
}

pub async fn create_is_idempotent(env: Env) {
    let body = json!({"outputs":[{"name":"smooth"}],"fragmentDurationMs":4000,"dvrWindowSeconds":600});
    let first = env.call("PUT", "/streams/idem", Some(body.clone())).await;
    assert_eq!(first.status, 201);
    let second = env.call("PUT", "/streams/idem", Some(body.clone())).await;
    assert_eq!(second.status, 200);
    assert_eq!(first.json(), second.json());
    // Same meaning, spelled differently: still the same stream.
    let spelled = json!({"outputs":[{"name":"smooth","format":"smooth"}],"fragmentDurationMs":4000,"dvrWindowSeconds":600});
    assert_eq!(env.call("PUT", "/streams/idem", Some(spelled)).await.status, 200);
    for different in [
        json!({"outputs":[{"name":"smooth"}],"fragmentDurationMs":2000,"dvrWindowSeconds":600}),
        json!({"outputs":[{"name":"other"}],"fragmentDurationMs":4000,"dvrWindowSeconds":600}),
        json!({}),
    ] {
        let r = env.call("PUT", "/streams/idem", Some(different)).await;
        assert_eq!((r.status, r.code().as_str()), (409, "stream-exists"));
    }
    // Concurrent identical creates: one 201, the rest 200, one playback id.
    let replies = join_all((0..12).map(|_| env.call("PUT", "/streams/race", Some(body.clone())))).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "exactly one create wins");
    assert!(replies.iter().all(|r| r.status == 201 || r.status == 200));
    let ids: BTreeSet<String> = replies.iter().map(|r| r.json()["playbackId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 1);
}

pub async fn bad_input_gets_clear_errors(env: Env) {
    let long = "a".repeat(64);
    for (name, code) in [
        ("Upper", "invalid-name"),
        ("-dash", "invalid-name"),
        ("under_score", "invalid-name"),
        (long.as_str(), "invalid-name"),
        ("a.b", "invalid-name"),
        ("caf%C3%A9", "invalid-name"),
    ] {
        let r = env.call("PUT", &format!("/streams/{name}"), None).await;
        assert_eq!((r.status, r.code().as_str()), (400, code), "{name}");
        assert!(r.json()["detail"].as_str().unwrap().contains("name"), "the message names the problem");
        let r = env.call("GET", &format!("/streams/{name}"), None).await;
        assert_eq!(r.status, 400, "{name}");
    }
    let ok63 = "a".repeat(63);
    assert_eq!(env.call("PUT", &format!("/streams/{ok63}"), None).await.status, 201);

    let json_ct = [("content-type", "application/json")];
    for (body, code, mentions) in [
        (&b"{"[..], "invalid-request", "EOF"),
        (b"[]", "invalid-request", "expected"),
        (b"{\"outputs\":[{\"name\":\"a\"}],\"colour\":1}", "invalid-request", "colour"),
        (b"{\"outputs\":[{\"name\":\"a\",\"extra\":true}]}", "invalid-request", "extra"),
        (b"{\"outputs\":\"smooth\"}", "invalid-request", "outputs"),
        (b"{\"outputs\":[{\"name\":\"a\",\"format\":\"rtmp\"}]}", "invalid-request", "rtmp"),
        (b"{\"fragmentDurationMs\":-1}", "invalid-request", "-1"),
        (b"{\"fragmentDurationMs\":1e99}", "invalid-request", "fragmentDurationMs"),
        (b"\xff\xfe", "invalid-request", "request body"),
        (b"{\"outputs\":[]}", "invalid-settings", "outputs"),
        (b"{\"outputs\":[{\"name\":\"a\"},{\"name\":\"b\"}]}", "invalid-settings", "smooth"),
        (b"{\"outputs\":[{\"name\":\"a\"},{\"name\":\"a\",\"format\":\"dash\"}]}", "invalid-settings", "twice"),
        (b"{\"outputs\":[{\"name\":\"Bad Name\"}]}", "invalid-settings", "Bad Name"),
        (b"{\"fragmentDurationMs\":100}", "invalid-settings", "fragmentDurationMs"),
        (b"{\"dvrWindowSeconds\":5}", "invalid-settings", "dvrWindowSeconds"),
    ] {
        let r = env.raw("PUT", "/streams/bad", &json_ct, Some(body.to_vec())).await;
        assert_eq!((r.status, r.code().as_str()), (400, code), "{:?}", String::from_utf8_lossy(body));
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(mentions), "{detail:?} should mention {mentions:?}");
    }
    // Nothing was created by any of that.
    assert_eq!(env.call("GET", "/streams/bad", None).await.status, 404);

    for ct in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"] {
        let r = env.raw("PUT", "/streams/bad", &[("content-type", ct)], Some(b"{}".to_vec())).await;
        assert_eq!((r.status, r.code().as_str()), (415, "unsupported-media-type"), "{ct}");
    }
    let r = env.raw("PUT", "/streams/bad", &[], Some(b"{}".to_vec())).await;
    assert_eq!((r.status, r.code().as_str()), (415, "unsupported-media-type"), "undeclared body");
    let r = env.raw("PUT", "/streams/ct", &[("content-type", "application/merge-patch+json; charset=utf-8")], Some(b"{}".to_vec())).await;
    assert_eq!(r.status, 201, "+json types are JSON");

    let big = format!("{{\"outputs\":[{{\"name\":\"{}\"}}]}}", "a".repeat(70_000));
    let r = env.raw("PUT", "/streams/bad", &json_ct, Some(big.into_bytes())).await;
    assert_eq!((r.status, r.code().as_str()), (413, "payload-too-large"));

    for (method, path) in [
        ("GET", "/streams/nope"),
        ("DELETE", "/streams/nope"),
        ("POST", "/streams/nope/start-ingest"),
        ("POST", "/streams/nope/stop-ingest"),
    ] {
        let r = env.call(method, path, None).await;
        assert_eq!((r.status, r.code().as_str()), (404, "not-found"), "{method} {path}");
        assert!(r.json()["detail"].as_str().unwrap().contains("nope"));
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
}

pub async fn list_pages_in_name_order(env: Env) {
    let names = ["g", "b", "e", "a", "f", "c", "d"];
    for n in names {
        assert_eq!(env.call("PUT", &format!("/streams/{n}"), None).await.status, 201);
    }
    let mut seen = Vec::new();
    let mut path = "/streams?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let r = env.call("GET", &path, None).await;
        assert_eq!(r.status, 200);
        let body = r.json();
        pages += 1;
        let page: Vec<String> = body["streams"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect();
        assert!(page.len() <= 3);
        seen.extend(page);
        match body["continuationToken"].as_str() {
            Some(t) => path = format!("/streams?limit=3&continuationToken={t}"),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e", "f", "g"]);
    assert_eq!(pages, 3);
    let all = env.call("GET", "/streams", None).await.json();
    assert_eq!(all["streams"].as_array().unwrap().len(), 7);
    assert!(all.get("continuationToken").is_none());
    for (q, code) in [
        ("limit=0", "invalid-limit"),
        ("limit=101", "invalid-limit"),
        ("limit=abc", "invalid-limit"),
        ("continuationToken=forged", "invalid-continuation-token"),
        ("continuationToken=%zz", "invalid-query"),
        ("colour=red", "invalid-query"),
    ] {
        let r = env.call("GET", &format!("/streams?{q}"), None).await;
        assert_eq!((r.status, r.code().as_str()), (400, code), "{q}");
    }
}

/// Many concurrent start/stop calls on one stream: exactly one wins each
/// transition, and no state is skipped.
pub async fn concurrent_transitions_have_one_winner(env: Env) {
    env.call("PUT", "/streams/hot", None).await;
    let starts = join_all((0..16).map(|_| env.call("POST", "/streams/hot/start-ingest", None))).await;
    assert_eq!(starts.iter().filter(|r| r.status == 200).count(), 1, "one start wins");
    assert!(starts.iter().all(|r| r.status == 200 || (r.status == 409 && r.code() == "invalid-state")));
    let stops = join_all((0..16).map(|_| env.call("POST", "/streams/hot/stop-ingest", None))).await;
    assert_eq!(stops.iter().filter(|r| r.status == 200).count(), 1, "one stop wins");
    assert!(stops.iter().all(|r| r.status == 200 || r.status == 409));

    // Starts and stops racing each other: wins must alternate, so the
    // final state follows from the counts.
    let mixed = join_all((0..24).map(|i| {
        let path = if i % 2 == 0 { "/streams/hot/start-ingest" } else { "/streams/hot/stop-ingest" };
        env.call("POST", path, None)
    }))
    .await;
    let start_wins = mixed.iter().step_by(2).filter(|r| r.status == 200).count();
    let stop_wins = mixed.iter().skip(1).step_by(2).filter(|r| r.status == 200).count();
    assert!(mixed.iter().all(|r| r.status == 200 || r.status == 409));
    assert!(start_wins >= 1);
    assert!(start_wins == stop_wins || start_wins == stop_wins + 1, "{start_wins} starts, {stop_wins} stops");
    let state = env.call("GET", "/streams/hot", None).await.json()["state"].clone();
    let expected = if start_wins == stop_wins { "Created" } else { "Ready" };
    assert_eq!(state, expected);
    let stored = env.repo.get("hot").await.unwrap().unwrap();
    assert_eq!(stored.version as usize, 1 + 2 + start_wins + stop_wins, "every win is one write");

    // Live: concurrent stops, one moves to Stopping.
    if expected == "Created" {
        env.call("POST", "/streams/hot/start-ingest", None).await;
    }
    node_sees_media(&env, "hot").await;
    let stops = join_all((0..16).map(|_| env.call("POST", "/streams/hot/stop-ingest", None))).await;
    assert_eq!(stops.iter().filter(|r| r.status == 202).count(), 1);
    assert_eq!(stops.iter().filter(|r| r.status == 409).count(), 15);
    assert_eq!(env.repo.get("hot").await.unwrap().unwrap().stream.state, StreamState::Stopping);
    // Concurrent deletes of an on-demand stream: all end with it gone.
    node_finalizes(&env, "hot").await;
    let deletes = join_all((0..6).map(|_| env.call("DELETE", "/streams/hot", None))).await;
    assert!(deletes.iter().any(|r| r.status == 204));
    assert!(deletes.iter().all(|r| r.status == 204 || r.status == 404), "{:?}", deletes.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(env.call("GET", "/streams/hot", None).await.status, 404);
}

pub async fn unknown_routes_and_methods(env: Env) {
    let r = env.call("GET", "/nothing", None).await;
    assert_eq!(r.status, 404);
    let r = env.call("GET", "/streams/a/b/c", None).await;
    assert_eq!(r.status, 404);
}

macro_rules! api_suite {
    ($($case:ident),* $(,)?) => {
        mod local_embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::super::harness::Env::local_embedded(None).await).await;
                }
            )*
        }
        mod local_dynamodb_s3 {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::super::harness::Env::local_aws().await).await;
                }
            )*
        }
        mod lambda_dynamodb_s3 {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::super::harness::Env::lambda_aws().await).await;
                }
            )*
        }
        // Against the table and bucket of a stack the SAM template created
        // (scripts/rehearse-deploy): the check that template and code agree.
        mod lambda_rehearsed_stack {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::super::harness::Env::lambda_rehearsed_stack().await).await;
                }
            )*
        }
    };
}

api_suite!(
    lifecycle,
    stop_before_media_returns_to_created,
    create_is_idempotent,
    bad_input_gets_clear_errors,
    list_pages_in_name_order,
    concurrent_transitions_have_one_winner,
    unknown_routes_and_methods,
);
