//! One conformance suite for the [`Table`] abstraction, run against the
//! embedded table and against DynamoDB (the moto server).

use std::collections::BTreeSet;
use std::sync::Arc;

use mediastreams_storage::{Precondition, Record, Table, TableError};
use mediastreams_tests as support;

fn rec(key: &str, collection: &str, version: u64, body: &str) -> Record {
    Record { key: key.into(), collection: collection.into(), version, body: body.into() }
}

async fn get_missing_is_none(t: Arc<dyn Table>) {
    assert_eq!(t.get("nope").await.unwrap(), None);
}

async fn create_only_when_absent(t: Arc<dyn Table>) {
    let r = rec("k", "c", 1, r#"{"a":1}"#);
    t.put(&r, Precondition::Absent).await.unwrap();
    assert_eq!(t.get("k").await.unwrap(), Some(r.clone()));
    let again = rec("k", "c", 1, r#"{"a":2}"#);
    assert!(matches!(t.put(&again, Precondition::Absent).await, Err(TableError::ConditionFailed)));
    assert_eq!(t.get("k").await.unwrap(), Some(r), "failed put changed nothing");
}

async fn update_needs_the_current_version(t: Arc<dyn Table>) {
    t.put(&rec("k", "c", 1, "1"), Precondition::Absent).await.unwrap();
    // Wrong versions fail and change nothing.
    for wrong in [0, 2, 7] {
        assert!(matches!(t.put(&rec("k", "c", wrong + 1, "x"), Precondition::Version(wrong)).await, Err(TableError::ConditionFailed)));
    }
    // A version precondition on a missing record fails too.
    assert!(matches!(t.put(&rec("missing", "c", 2, "x"), Precondition::Version(1)).await, Err(TableError::ConditionFailed)));
    assert_eq!(t.get("missing").await.unwrap(), None);
    t.put(&rec("k", "c", 2, "2"), Precondition::Version(1)).await.unwrap();
    assert_eq!(t.get("k").await.unwrap(), Some(rec("k", "c", 2, "2")));
}

async fn delete_needs_the_current_version(t: Arc<dyn Table>) {
    t.put(&rec("k", "c", 1, "1"), Precondition::Absent).await.unwrap();
    assert!(matches!(t.delete("k", 2).await, Err(TableError::ConditionFailed)));
    assert!(matches!(t.delete("missing", 1).await, Err(TableError::ConditionFailed)));
    assert!(t.get("k").await.unwrap().is_some());
    t.delete("k", 1).await.unwrap();
    assert_eq!(t.get("k").await.unwrap(), None);
    let listed = t.list("c", None, 10).await.unwrap();
    assert!(listed.items.is_empty(), "deleted records leave the listing");
    // The key can be created again.
    t.put(&rec("k", "c", 1, "new"), Precondition::Absent).await.unwrap();
}

async fn list_is_ordered_and_paginated(t: Arc<dyn Table>) {
    // 21 keys written out of order; pages of 7 end exactly at the last key.
    let mut keys: Vec<String> = (0..21).map(|i| format!("stream#s{:02}", (i * 8) % 21)).collect();
    for k in &keys {
        t.put(&rec(k, "c", 1, "{}"), Precondition::Absent).await.unwrap();
    }
    keys.sort();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = t.list("c", after.as_deref(), 7).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|r| r.key.clone()));
        match page.next {
            Some(n) => {
                assert_eq!(Some(&n), page.items.last().map(|r| &r.key));
                after = Some(n)
            }
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, keys, "every key once, in order");
    assert_eq!(pages, 3, "no empty trailing page");
    // Starting after a key that does not exist.
    let page = t.list("c", Some("stream#s10x"), 100).await.unwrap();
    assert_eq!(page.items.first().map(|r| r.key.as_str()), Some("stream#s11"));
    assert_eq!(page.items.len(), 10);
    assert_eq!(page.next, None);
}

async fn list_keeps_collections_apart(t: Arc<dyn Table>) {
    t.put(&rec("a#1", "a", 1, "{}"), Precondition::Absent).await.unwrap();
    t.put(&rec("b#1", "b", 1, "{}"), Precondition::Absent).await.unwrap();
    t.put(&rec("a#2", "a", 1, "{}"), Precondition::Absent).await.unwrap();
    let a: Vec<_> = t.list("a", None, 10).await.unwrap().items.into_iter().map(|r| r.key).collect();
    assert_eq!(a, ["a#1", "a#2"]);
    let b = t.list("b", None, 10).await.unwrap();
    assert_eq!(b.items.len(), 1);
    assert!(t.list("none", None, 10).await.unwrap().items.is_empty());
}

async fn concurrent_writers_exactly_one_wins(t: Arc<dyn Table>) {
    t.put(&rec("k", "c", 1, "0"), Precondition::Absent).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move { t.put(&rec("k", "c", 2, &i.to_string()), Precondition::Version(1)).await })
        })
        .collect();
    let mut winners = BTreeSet::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(()) => {
                winners.insert(i.to_string());
            }
            Err(TableError::ConditionFailed) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one conditional write wins");
    let stored = t.get("k").await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert!(winners.contains(&stored.body), "the winner's write is the one stored");
    // Concurrent creates of one key: one wins as well.
    let creates: Vec<_> = (0..8)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move { t.put(&rec("new", "c", 1, &i.to_string()), Precondition::Absent).await })
        })
        .collect();
    let mut ok = 0;
    for c in creates {
        if c.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
}

async fn large_and_unicode_bodies_round_trip(t: Arc<dyn Table>) {
    let big = format!("{{\"s\":\"{}\"}}", "é✓𝄞".repeat(20_000));
    t.put(&rec("big", "c", 1, &big), Precondition::Absent).await.unwrap();
    assert_eq!(t.get("big").await.unwrap().unwrap().body, big);
    let listed = t.list("c", None, 1).await.unwrap();
    assert_eq!(listed.items[0].body, big);
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = super::support::scratch();
                    super::$case(super::support::embedded_table(&dir)).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::support::dynamo_table().await).await;
                }
            )*
        }
    };
}

suite!(
    get_missing_is_none,
    create_only_when_absent,
    update_needs_the_current_version,
    delete_needs_the_current_version,
    list_is_ordered_and_paginated,
    list_keeps_collections_apart,
    concurrent_writers_exactly_one_wins,
    large_and_unicode_bodies_round_trip,
);
