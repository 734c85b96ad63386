//! The object store on Amazon S3 (or any S3-compatible server).

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use bytes::Bytes;

use super::{MAX_LIST, Object, ObjectKey, ObjectMeta, ObjectStore, StoreError};
use crate::table::Page;

#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

impl S3Store {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Store { client, bucket: bucket.into() }
    }

    /// A client for `config`; `path_style` for servers that do not serve
    /// virtual-hosted buckets (local S3-compatible servers).
    pub fn from_config(config: &aws_config::SdkConfig, bucket: impl Into<String>, path_style: bool) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(config).force_path_style(path_style).build();
        Self::new(Client::from_conf(s3), bucket)
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket if it does not exist (local servers and tests).
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let svc = e.as_service_error();
                if svc.is_some_and(|s| s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()) {
                    Ok(())
                } else {
                    Err(StoreError::backend(e.into_service_error()))
                }
            }
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &ObjectKey, body: Bytes, meta: &ObjectMeta) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(&meta.content_type)
            .set_cache_control(meta.cache_control.clone())
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let e = e.into_service_error();
                match aws_sdk_s3::error::ProvideErrorMetadata::code(&e) {
                    Some(
                        code @ ("AccessDenied" | "NoSuchBucket" | "AllAccessDisabled" | "InvalidAccessKeyId" | "AccountProblem"
                        | "InvalidBucketName" | "InvalidObjectState"),
                    ) => StoreError::Refused(format!("{code}: {}", aws_sdk_s3::error::ProvideErrorMetadata::message(&e).unwrap_or(""))),
                    _ => StoreError::backend(e),
                }
            })
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        let out = match self.client.get_object().bucket(&self.bucket).key(key.as_str()).send().await {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(StoreError::backend(e.into_service_error())),
        };
        let meta = ObjectMeta {
            content_type: out.content_type().unwrap_or("application/octet-stream").to_owned(),
            cache_control: out.cache_control().map(str::to_owned),
        };
        let body = out.body.collect().await.map_err(StoreError::backend)?.into_bytes();
        Ok(Some(Object { body, meta }))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::backend(e.into_service_error()))
    }

    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Page<String>, StoreError> {
        let limit = limit.clamp(1, MAX_LIST);
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(after.map(str::to_owned))
            .max_keys(i32::try_from(limit).unwrap_or(1000))
            .send()
            .await
            .map_err(|e| StoreError::backend(e.into_service_error()))?;
        let items: Vec<String> = out.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
        let next = if out.is_truncated().unwrap_or(false) { items.last().cloned() } else { None };
        Ok(Page { items, next })
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        ObjectKey::check_prefix(prefix)?;
        let mut removed = 0;
        loop {
            let page = self.list(prefix, None, MAX_LIST).await?;
            if page.items.is_empty() {
                return Ok(removed);
            }
            let ids = page
                .items
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::backend)?;
            let delete = Delete::builder().set_objects(Some(ids)).quiet(true).build().map_err(StoreError::backend)?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| StoreError::backend(e.into_service_error()))?;
            if let Some(err) = out.errors().first() {
                return Err(StoreError::Backend(
                    format!("could not delete {}: {}", err.key().unwrap_or("?"), err.message().unwrap_or("unknown error")).into(),
                ));
            }
            removed += page.items.len();
        }
    }
}
