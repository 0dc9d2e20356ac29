//! Object storage in S3: presigned URLs, verification, and the few objects
//! the service writes itself (small ones whole, artifacts streamed in parts
//! by [`StreamingPut`]). Every write asks for SSE-S3.

mod streaming;

use std::time::Duration;
use treven_mesh::trace::{self, Traced as _};

use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, ServerSideEncryption};
use chrono::{DateTime, Utc};
use treven_mesh::ServiceError;

use crate::aws::classify;
use crate::model::{DocumentVersion, Sha256Hex};

pub use self::streaming::{PART_BYTES, StreamingPut};

type Result<T> = std::result::Result<T, ServiceError>;

/// Most list-and-delete rounds [`BlobStore::delete_every_version`] makes
/// (1,000 versions each) before it gives up on a key.
const MAX_ERASE_ROUNDS: usize = 100;

/// A presigned request: where to send it, which headers must go with it,
/// and until when it works.
#[derive(Debug, Clone)]
pub struct Presigned {
    /// The URL.
    pub url: String,
    /// Headers the client must send unchanged (they are signed).
    pub headers: Vec<(String, String)>,
    /// When the signature expires.
    pub expires_at: DateTime<Utc>,
}

/// What HEAD says about an object.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size_bytes: i64,
    /// SHA-256 stored with it, when it was uploaded with one.
    pub sha256: Option<Sha256Hex>,
    /// Its version id.
    pub version_id: String,
}

/// The data bucket.
#[derive(Debug, Clone)]
pub struct BlobStore {
    client: Client,
    bucket: String,
}

fn presigning(ttl: Duration) -> Result<PresigningConfig> {
    PresigningConfig::expires_in(ttl).map_err(ServiceError::internal)
}

fn expiry(ttl: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default()
}

impl BlobStore {
    /// Uses `bucket` through `client`.
    pub fn new(client: Client, bucket: String) -> Self {
        Self { client, bucket }
    }

    /// A PUT URL for exactly this key, content type, length and checksum:
    /// each is a signed header, so a request with another key, type or body
    /// length does not match the signature.
    pub async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: i64,
        sha256: &Sha256Hex,
        ttl: Duration,
    ) -> Result<Presigned> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(size)
            .checksum_sha256(sha256.to_base64())
            .server_side_encryption(ServerSideEncryption::Aes256)
            .presigned(presigning(ttl)?)
            .await
            .map_err(|e| classify("s3 presign put", e))?;
        let headers = request
            .headers()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Ok(Presigned {
            url: request.uri().to_owned(),
            headers,
            expires_at: expiry(ttl),
        })
    }

    /// A GET URL for `key` (optionally one version) that downloads as
    /// `disposition` with `content_type`.
    pub async fn presign_get(
        &self,
        key: &str,
        version_id: Option<&str>,
        disposition: &str,
        content_type: &str,
        ttl: Duration,
    ) -> Result<Presigned> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.filter(|v| !v.is_empty()).map(str::to_owned))
            .response_content_disposition(disposition)
            .response_content_type(content_type)
            .presigned(presigning(ttl)?)
            .await
            .map_err(|e| classify("s3 presign get", e))?;
        Ok(Presigned {
            url: request.uri().to_owned(),
            headers: Vec::new(),
            expires_at: expiry(ttl),
        })
    }

    /// HEAD of the current version; `None` when there is no object.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .traced(trace::s3("HeadObject", &self.bucket))
            .await
        {
            Ok(head) => Ok(Some(ObjectInfo {
                size_bytes: head.content_length().unwrap_or_default(),
                sha256: head.checksum_sha256().and_then(Sha256Hex::from_base64),
                version_id: head.version_id().unwrap_or_default().to_owned(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(classify("s3 head", e)),
        }
    }

    /// Streams one version of an object through SHA-256: its digest and size.
    pub async fn hash(&self, key: &str, version_id: &str) -> Result<(Sha256Hex, i64)> {
        use sha2::Digest as _;
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(Some(version_id.to_owned()).filter(|v| !v.is_empty()))
            .send()
            .traced(trace::s3("GetObject", &self.bucket))
            .await
            .map_err(|e| classify("s3 get", e))?;
        let mut body = object.body;
        let mut hasher = sha2::Sha256::new();
        let mut size = 0i64;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| ServiceError::unavailable(anyhow::Error::new(e).context("s3 read")))?
        {
            size += chunk.len() as i64;
            hasher.update(&chunk);
        }
        Ok((Sha256Hex::from_digest(&hasher.finalize()), size))
    }

    /// Reads one version of a small object whole (at most `max` bytes).
    pub async fn read(&self, key: &str, version_id: &str, max: usize) -> Result<Vec<u8>> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(Some(version_id.to_owned()).filter(|v| !v.is_empty()))
            .send()
            .traced(trace::s3("GetObject", &self.bucket))
            .await
            .map_err(|e| classify("s3 get", e))?;
        if object.content_length().unwrap_or_default() as usize > max {
            return Err(ServiceError::internal(anyhow::anyhow!(
                "object {key} is larger than {max} bytes"
            )));
        }
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| ServiceError::unavailable(anyhow::Error::new(e).context("s3 read")))?;
        Ok(bytes.into_bytes().to_vec())
    }

    /// Writes an object with its checksum and SSE-S3; returns its version id.
    pub async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<String> {
        let sha256 = Sha256Hex::of(&bytes);
        let output = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .checksum_sha256(sha256.to_base64())
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(bytes))
            .send()
            .traced(trace::s3("PutObject", &self.bucket))
            .await
            .map_err(|e| classify("s3 put", e))?;
        Ok(output.version_id().unwrap_or_default().to_owned())
    }

    /// Starts writing `key` chunk by chunk, holding at most one part
    /// ([`PART_BYTES`]) in memory; nothing is visible until
    /// [`StreamingPut::finish`].
    pub fn start_put(&self, key: &str, content_type: &str) -> StreamingPut {
        StreamingPut::new(self.client.clone(), self.bucket.clone(), key, content_type)
    }

    /// Deletes the current version (versioning keeps the bytes behind a
    /// delete marker).
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .traced(trace::s3("DeleteObject", &self.bucket))
            .await
            .map_err(|e| classify("s3 delete", e))?;
        Ok(())
    }

    /// Permanently deletes every version and delete marker of exactly
    /// `key` (a versioned DeleteObject per version id, so nothing is left
    /// for versioning to bring back); returns how many were deleted. Reads
    /// the listing in pages of up to 1,000 and deletes until none is left,
    /// so a run cut short is completed by the next; a key with none is a
    /// no-op (0).
    pub async fn delete_every_version(&self, key: &str) -> Result<u64> {
        let mut deleted = 0;
        for _ in 0..MAX_ERASE_ROUNDS {
            let output = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(key)
                .max_keys(1000)
                .send()
                .traced(trace::s3("ListObjectVersions", &self.bucket))
                .await
                .map_err(|e| classify("s3 list versions to erase", e))?;
            let ids: Vec<String> = output
                .versions()
                .iter()
                .filter(|v| v.key() == Some(key))
                .filter_map(|v| v.version_id().map(str::to_owned))
                .chain(
                    output
                        .delete_markers()
                        .iter()
                        .filter(|m| m.key() == Some(key))
                        .filter_map(|m| m.version_id().map(str::to_owned)),
                )
                .collect();
            if ids.is_empty() {
                return Ok(deleted);
            }
            for version_id in ids {
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .version_id(&version_id)
                    .send()
                    .traced(trace::s3("DeleteObject", &self.bucket))
                    .await
                    .map_err(|e| classify("s3 delete version", e))?;
                deleted += 1;
            }
        }
        Err(ServiceError::internal(anyhow::anyhow!(
            "s3 key still has versions after {MAX_ERASE_ROUNDS} rounds of deletes"
        )))
    }

    /// Up to `limit` versions of exactly `key`, newest first, after
    /// `after` (a version id); and whether more follow.
    pub async fn versions(
        &self,
        key: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<DocumentVersion>, bool)> {
        let output = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(key)
            .set_key_marker(after.as_ref().map(|_| key.to_owned()))
            .set_version_id_marker(after)
            .max_keys(limit as i32 + 1)
            .send()
            .traced(trace::s3("ListObjectVersions", &self.bucket))
            .await
            .map_err(|e| classify("s3 list versions", e))?;
        let time = |t: Option<&aws_sdk_s3::primitives::DateTime>| {
            t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                .unwrap_or_default()
        };
        let mut versions: Vec<DocumentVersion> = output
            .versions()
            .iter()
            .filter(|v| v.key() == Some(key))
            .map(|v| DocumentVersion {
                version_id: v.version_id().unwrap_or_default().to_owned(),
                size_bytes: v.size().unwrap_or_default(),
                sha256: None,
                delete_marker: false,
                created_at: time(v.last_modified()),
            })
            .chain(
                output
                    .delete_markers()
                    .iter()
                    .filter(|m| m.key() == Some(key))
                    .map(|m| DocumentVersion {
                        version_id: m.version_id().unwrap_or_default().to_owned(),
                        size_bytes: 0,
                        sha256: None,
                        delete_marker: true,
                        created_at: time(m.last_modified()),
                    }),
            )
            .collect();
        versions.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.delete_marker.cmp(&b.delete_marker).reverse())
        });
        let more = versions.len() > limit || output.is_truncated() == Some(true);
        versions.truncate(limit);
        for version in versions.iter_mut().filter(|v| !v.delete_marker) {
            let head = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .version_id(&version.version_id)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .traced(trace::s3("HeadObject", &self.bucket))
                .await
                .map_err(|e| classify("s3 head version", e))?;
            version.sha256 = head.checksum_sha256().and_then(Sha256Hex::from_base64);
        }
        Ok((versions, more))
    }
}
