//! One conformance suite for the [`ObjectStore`] abstraction, run against
//! the local-directory store and against S3 (the moto server).

use std::sync::Arc;

use bytes::Bytes;
use mediastreams_storage::{ObjectKey, ObjectMeta, ObjectStore};
use mediastreams_tests as support;

fn key(k: &str) -> ObjectKey {
    ObjectKey::parse(k).unwrap()
}

fn fragment_meta() -> ObjectMeta {
    ObjectMeta::new("video/mp4", Some("max-age=31536000, immutable"))
}

async fn put_then_get_keeps_bytes_and_meta(s: Arc<dyn ObjectStore>) {
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let k = key("p1/smooth.ism/QualityLevels(2500000)/Fragments(video=20000000)");
    s.put(&k, Bytes::from(all_bytes.clone()), &fragment_meta()).await.unwrap();
    let o = s.get(&k).await.unwrap().expect("stored object");
    assert_eq!(o.body.as_ref(), all_bytes.as_slice());
    assert_eq!(o.meta, fragment_meta());
    let m = ObjectMeta::new("application/vnd.ms-sstr+xml", None);
    let e = key("p1/empty");
    s.put(&e, Bytes::new(), &m).await.unwrap();
    let o = s.get(&e).await.unwrap().unwrap();
    assert!(o.body.is_empty());
    assert_eq!(o.meta, m);
}

async fn get_missing_is_none(s: Arc<dyn ObjectStore>) {
    assert!(s.get(&key("nothing/here")).await.unwrap().is_none());
    s.put(&key("dir/file"), Bytes::from_static(b"x"), &fragment_meta()).await.unwrap();
    // A prefix is not an object.
    assert!(s.get(&key("dir")).await.unwrap().is_none());
}

async fn put_replaces(s: Arc<dyn ObjectStore>) {
    let k = key("p/smooth.ism/Manifest");
    let live = ObjectMeta::new("application/vnd.ms-sstr+xml", Some("max-age=1"));
    let done = ObjectMeta::new("application/vnd.ms-sstr+xml", Some("max-age=60"));
    s.put(&k, Bytes::from_static(b"<live/>"), &live).await.unwrap();
    s.put(&k, Bytes::from_static(b"<vod/>"), &done).await.unwrap();
    let o = s.get(&k).await.unwrap().unwrap();
    assert_eq!(o.body.as_ref(), b"<vod/>");
    assert_eq!(o.meta, done);
}

async fn delete_is_idempotent(s: Arc<dyn ObjectStore>) {
    let k = key("p/a");
    s.put(&k, Bytes::from_static(b"1"), &fragment_meta()).await.unwrap();
    s.delete(&k).await.unwrap();
    assert!(s.get(&k).await.unwrap().is_none());
    s.delete(&k).await.unwrap();
    s.delete(&key("never/was")).await.unwrap();
}

async fn list_is_ordered_paginated_and_prefix_exact(s: Arc<dyn ObjectStore>) {
    let mut keys = Vec::new();
    for t in [0u64, 20_000_000, 40_000_000, 60_000_000, 80_000_000] {
        keys.push(format!("pid/smooth.ism/QualityLevels(500000)/Fragments(video={t})"));
        keys.push(format!("pid/smooth.ism/QualityLevels(128000)/Fragments(audio={t})"));
    }
    keys.push("pid/smooth.ism/Manifest".into());
    keys.push("pidx/other".into());
    keys.push("other/pid/x".into());
    for k in keys.iter().rev() {
        s.put(&key(k), Bytes::from_static(b"."), &fragment_meta()).await.unwrap();
    }
    let mut expected: Vec<String> = keys.iter().filter(|k| k.starts_with("pid/")).cloned().collect();
    expected.sort();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.list("pid/", after.as_deref(), 4).await.unwrap();
        assert!(page.items.len() <= 4);
        seen.extend(page.items.clone());
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    let deep = s.list("pid/smooth.ism/QualityLevels(128000)/", None, 100).await.unwrap();
    assert_eq!(deep.items.len(), 5);
    assert!(deep.items.iter().all(|k| k.contains("audio=")));
    assert_eq!(deep.next, None);
    // A prefix that is not at a '/' boundary matches by string.
    let partial = s.list("pid/smooth.ism/Q", None, 100).await.unwrap();
    assert_eq!(partial.items.len(), 10);
}

async fn delete_prefix_removes_exactly_the_prefix(s: Arc<dyn ObjectStore>) {
    for k in ["a/1", "a/b/2", "a/b/c/3", "ab/4", "b/5"] {
        s.put(&key(k), Bytes::from_static(b"."), &fragment_meta()).await.unwrap();
    }
    assert_eq!(s.delete_prefix("a/").await.unwrap(), 3);
    assert!(s.list("a/", None, 10).await.unwrap().items.is_empty());
    assert!(s.get(&key("ab/4")).await.unwrap().is_some());
    assert!(s.get(&key("b/5")).await.unwrap().is_some());
    assert_eq!(s.delete_prefix("a/").await.unwrap(), 0);
    for bad in ["", "/", "../", "a", "a//"] {
        assert!(s.delete_prefix(bad).await.is_err(), "{bad:?} refused");
    }
    assert!(s.get(&key("b/5")).await.unwrap().is_some());
}

async fn concurrent_overwrites_leave_one_whole_object(s: Arc<dyn ObjectStore>) {
    let k = key("p/smooth.ism/Manifest");
    let bodies: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 50_000 + usize::from(i)]).collect();
    let tasks: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|b| {
            let s = s.clone();
            let k = k.clone();
            tokio::spawn(async move { s.put(&k, Bytes::from(b), &fragment_meta()).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let o = s.get(&k).await.unwrap().unwrap();
    assert!(bodies.iter().any(|b| b.as_slice() == o.body.as_ref()), "one writer's bytes, whole");
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod local_dir {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = super::support::scratch();
                    super::$case(super::support::local_store(&dir)).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::support::s3_store().await).await;
                }
            )*
        }
    };
}

suite!(
    put_then_get_keeps_bytes_and_meta,
    get_missing_is_none,
    put_replaces,
    delete_is_idempotent,
    list_is_ordered_paginated_and_prefix_exact,
    delete_prefix_removes_exactly_the_prefix,
    concurrent_overwrites_leave_one_whole_object,
);
