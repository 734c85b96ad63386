//! The ingest node registry: nodes announce themselves in the table with a
//! heartbeat and their load; start-ingest assigns a stream to the least
//! loaded healthy node with room.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::streams::RepoError;
use crate::table::{Precondition, Record, Table, TableError};

/// The collection node records are listed in.
pub const COLLECTION: &str = "node";

/// How often a node writes its record.
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// A node whose heartbeat is older than this is dead (three missed beats).
pub const NODE_TTL: time::Duration = time::Duration::seconds(30);

fn key(id: &str) -> String {
    format!("node#{id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub id: String,
    /// Base of the node's WHIP URLs (`{base}/whip/{name}`).
    pub whip_base_url: String,
    /// Streams the node takes at most.
    pub capacity: u32,
    /// Streams the node is recording now.
    pub active_streams: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub heartbeat_at: OffsetDateTime,
    /// Where other nodes reach this node's WHIP endpoint directly (inside
    /// the VPC), to hand it requests for its streams that the load balancer
    /// sent elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_url: Option<String>,
}

impl NodeRecord {
    pub fn is_healthy(&self, now: OffsetDateTime, ttl: time::Duration) -> bool {
        now - self.heartbeat_at <= ttl
    }
}

#[derive(Clone)]
pub struct NodeRegistry {
    table: Arc<dyn Table>,
    ttl: time::Duration,
}

impl NodeRegistry {
    /// `ttl`: a node whose last heartbeat is older is considered dead.
    pub fn new(table: Arc<dyn Table>, ttl: time::Duration) -> Self {
        NodeRegistry { table, ttl }
    }

    /// How old a heartbeat may be for its node to count as healthy.
    pub fn ttl(&self) -> time::Duration {
        self.ttl
    }

    /// Writes a node's heartbeat (a conditional write on the record's
    /// version, so two writers never interleave).
    pub async fn heartbeat(&self, node: &NodeRecord) -> Result<(), RepoError> {
        let body = serde_json::to_string(node).map_err(TableError::backend)?;
        for _ in 0..32 {
            let current = self.table.get(&key(&node.id)).await?;
            let (version, pre) = match &current {
                Some(r) => (r.version + 1, Precondition::Version(r.version)),
                None => (1, Precondition::Absent),
            };
            let record = Record { key: key(&node.id), collection: COLLECTION.to_owned(), version, body: body.clone() };
            match self.table.put(&record, pre).await {
                Ok(()) => return Ok(()),
                Err(TableError::ConditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RepoError::Contention)
    }

    /// Removes a node (it shuts down cleanly).
    pub async fn deregister(&self, id: &str) -> Result<(), RepoError> {
        if let Some(r) = self.table.get(&key(id)).await? {
            match self.table.delete(&key(id), r.version).await {
                Ok(()) | Err(TableError::ConditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Every registered node, healthy or not.
    pub async fn all(&self) -> Result<Vec<NodeRecord>, RepoError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.table.list(COLLECTION, after.as_deref(), 1000).await?;
            for r in page.items {
                let node: NodeRecord =
                    serde_json::from_str(&r.body).map_err(|e| TableError::Corrupt { key: r.key.clone(), reason: e.to_string() })?;
                out.push(node);
            }
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// The least loaded healthy node with room (by fill ratio, then id).
    pub async fn pick(&self, now: OffsetDateTime) -> Result<Option<NodeRecord>, RepoError> {
        let mut candidates: Vec<NodeRecord> =
            self.all().await?.into_iter().filter(|n| n.is_healthy(now, self.ttl) && n.active_streams < n.capacity).collect();
        candidates.sort_by(|a, b| {
            let fa = u64::from(a.active_streams) * u64::from(b.capacity.max(1));
            let fb = u64::from(b.active_streams) * u64::from(a.capacity.max(1));
            fa.cmp(&fb).then_with(|| a.id.cmp(&b.id))
        });
        Ok(candidates.into_iter().next())
    }

    /// Nodes whose heartbeat expired.
    pub async fn expired(&self, now: OffsetDateTime) -> Result<Vec<NodeRecord>, RepoError> {
        Ok(self.all().await?.into_iter().filter(|n| !n.is_healthy(now, self.ttl)).collect())
    }
}
