//! What only the local server does: the optional API key, serving media,
//! and the binary's command line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use bytes::Bytes;
use mediastreams_storage::{ObjectKey, ObjectMeta};

use super::harness::Env;

#[tokio::test]
async fn api_key_guards_every_operation_when_set() {
    let env = Env::local_embedded(Some("s3cret")).await;
    for (method, path) in [
        ("GET", "/streams"),
        ("PUT", "/streams/a"),
        ("GET", "/streams/a"),
        ("DELETE", "/streams/a"),
        ("POST", "/streams/a/start-ingest"),
        ("POST", "/streams/a/stop-ingest"),
    ] {
        let r = env.raw(method, path, &[], None).await;
        assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"), "{method} {path}");
        assert!(r.header("www-authenticate").is_some());
        let r = env.raw(method, path, &[("authorization", "Bearer wrong")], None).await;
        assert_eq!(r.status, 401);
        let r = env.raw(method, path, &[("x-api-key", "s3cre")], None).await;
        assert_eq!(r.status, 401);
    }
    let r = env.raw("PUT", "/streams/a", &[("authorization", "Bearer s3cret")], None).await;
    assert_eq!(r.status, 201);
    let r = env.raw("GET", "/streams/a", &[("x-api-key", "s3cret")], None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn media_is_served_like_the_cdn() {
    let env = Env::local_embedded(None).await;
    let created = env.call("PUT", "/streams/m", None).await.json();
    let url = created["outputs"][0]["url"].as_str().unwrap().to_owned();
    let key = url.strip_prefix(&format!("{}/", env.media_base)).unwrap();
    let manifest = b"<SmoothStreamingMedia/>";
    env.media
        .put(
            &ObjectKey::parse(key).unwrap(),
            Bytes::from_static(manifest),
            &ObjectMeta::new("application/vnd.ms-sstr+xml", Some("max-age=1")),
        )
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let r = client.get(&url).header("origin", "http://elsewhere.example").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.ms-sstr+xml");
    assert_eq!(r.headers()["cache-control"], "max-age=1");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest);
    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], manifest.len().to_string().as_str());
    let missing = client.get(format!("{}/nothing/here", env.media_base)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    for escape in ["/media/..%2F..%2Fetc%2Fpasswd", "/media/a/../../table.redb", "/media/%2e%2e/table.redb"] {
        let base = env.media_base.strip_suffix("/media").unwrap();
        let r = client.get(format!("{base}{escape}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{escape}");
    }
}

/// The media origin's clock, which the live MPD names first (`UTCTiming`
/// http-xsdate): the time to the millisecond, never cached, readable from
/// any page; at the origin's root, where a relative `/time` in an MPD
/// under `/media/` resolves.
#[tokio::test]
async fn the_media_origin_tells_the_time_to_the_millisecond() {
    let env = Env::local_embedded(None).await;
    let base = env.media_base.strip_suffix("/media").unwrap();
    let before = time::OffsetDateTime::now_utc();
    let r = reqwest::get(format!("{base}{}", mediastreams_packager::layout::TIME_PATH)).await.unwrap();
    let after = time::OffsetDateTime::now_utc();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let text = r.text().await.unwrap();
    let t = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"));
    // Milliseconds (three fraction digits, as the CDN's edge function
    // writes them), between the request's start and its end.
    assert!(text.len() == 24 && text.ends_with('Z') && text.split('.').nth(1).is_some_and(|f| f.len() == 4), "{text}");
    let ms = |t: time::OffsetDateTime| t.unix_timestamp_nanos() / 1_000_000;
    assert!(ms(before) <= ms(t) && ms(t) <= ms(after), "{before} <= {t} <= {after}");
}

/// The binary as the README runs it: flags, the embedded data directory,
/// the listening line.
#[test]
fn the_binary_serves_the_api_on_its_data_dir() {
    let exe = mediastreams_tests::workspace_binary("mediastreams-local");
    let dir = mediastreams_tests::scratch();
    let mut child = Command::new(exe)
        .args(["--listen", "127.0.0.1:0", "--media-port", "0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start mediastreams-local");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let c = reqwest::Client::new();
        let put = c.put(format!("{url}/streams/bin")).send().await.unwrap().status();
        let health = c.get(format!("{url}/healthz")).send().await.unwrap().status();
        (put, health)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status.0, 201);
    assert_eq!(status.1, 200);
    assert!(dir.path().join("table.redb").exists(), "the table lives in --data-dir");
    assert!(dir.path().join("media").is_dir());
}
