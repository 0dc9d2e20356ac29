//! Writing an object of unknown length without holding it: S3 multipart
//! upload with at most one part in memory.
//!
//! Bytes are buffered up to [`PART_BYTES`]; a full part is sent (and
//! awaited) only when more bytes arrive, so the writer never holds more than
//! one part and an object that fits in one part is a single PutObject with
//! its whole SHA-256. Nothing is visible under the key before
//! [`StreamingPut::finish`] completes: parts of an unfinished upload are not
//! an object. Every way out other than `finish` aborts the upload:
//! [`StreamingPut::abort`], and dropping the writer (a cancelled call),
//! which aborts in the background.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};
use sha2::Digest as _;
use treven_mesh::ServiceError;
use treven_mesh::trace::{self, Traced as _};

use crate::aws::classify;
use crate::model::Sha256Hex;

type Result<T> = std::result::Result<T, ServiceError>;

/// Size of every part but the last (S3 wants at least 5 MiB for those).
/// It is also the most a [`StreamingPut`] holds in memory.
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// An object being written chunk by chunk (see the module docs).
#[derive(Debug)]
pub struct StreamingPut {
    client: Client,
    bucket: String,
    key: String,
    content_type: String,
    /// Bytes not yet sent: at most [`PART_BYTES`].
    buffer: Vec<u8>,
    /// The multipart upload, once a first part was sent.
    upload_id: Option<String>,
    /// Parts sent so far, in order.
    parts: Vec<CompletedPart>,
    /// SHA-256 of everything written.
    hasher: sha2::Sha256,
    written: u64,
}

impl StreamingPut {
    pub(super) fn new(client: Client, bucket: String, key: &str, content_type: &str) -> Self {
        Self {
            client,
            bucket,
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            hasher: sha2::Sha256::new(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// SHA-256 of everything written so far.
    pub fn sha256(&self) -> Sha256Hex {
        Sha256Hex::from_digest(&self.hasher.clone().finalize())
    }

    /// Appends `chunk`, first sending the buffered part if it is full. On an
    /// error the caller should [`abort`](Self::abort) (dropping also does).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.buffer.len() == PART_BYTES {
                self.send_part().await?;
            }
            if self.buffer.capacity() == 0 {
                self.buffer.reserve_exact(PART_BYTES);
            }
            let take = rest.len().min(PART_BYTES - self.buffer.len());
            self.buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(())
    }

    /// Makes the object visible: one PutObject when everything fit in one
    /// part, else the last part and CompleteMultipartUpload. Returns the
    /// new version id. On an error the upload is aborted.
    pub async fn finish(mut self) -> Result<String> {
        let result = if self.upload_id.is_some() {
            self.complete().await
        } else {
            self.put_whole().await
        };
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    /// Abandons the upload: parts already sent are deleted. Failing to
    /// abort is logged, not returned (the data bucket's lifecycle rule
    /// removes incomplete uploads after 7 days).
    pub async fn abort(&mut self) {
        self.buffer = Vec::new();
        if let Some(upload_id) = self.upload_id.take() {
            abort_upload(&self.client, &self.bucket, &self.key, &upload_id).await;
        }
    }

    async fn put_whole(&mut self) -> Result<String> {
        let body = std::mem::take(&mut self.buffer);
        let output = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type(&self.content_type)
            .checksum_sha256(Sha256Hex::of(&body).to_base64())
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(body))
            .send()
            .traced(trace::s3("PutObject", &self.bucket))
            .await
            .map_err(|e| classify("s3 put", e))?;
        Ok(output.version_id().unwrap_or_default().to_owned())
    }

    /// Sends the buffer as the next part, creating the multipart upload
    /// before the first one. The buffer is handed to the SDK, not copied.
    async fn send_part(&mut self) -> Result<()> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let created = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .content_type(&self.content_type)
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .server_side_encryption(ServerSideEncryption::Aes256)
                    .send()
                    .traced(trace::s3("CreateMultipartUpload", &self.bucket))
                    .await
                    .map_err(|e| classify("s3 create multipart upload", e))?;
                let id = created.upload_id().unwrap_or_default().to_owned();
                if id.is_empty() {
                    return Err(ServiceError::internal(anyhow::anyhow!(
                        "s3 create multipart upload returned no upload id"
                    )));
                }
                tracing::debug!(key = %self.key, "multipart upload started");
                self.upload_id = Some(id.clone());
                id
            }
        };
        let part_number = self.parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.buffer);
        let checksum = Sha256Hex::of(&body).to_base64();
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(part_number)
            .checksum_sha256(&checksum)
            .body(ByteStream::from(body))
            .send()
            .traced(trace::s3("UploadPart", &self.bucket))
            .await
            .map_err(|e| classify("s3 upload part", e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(output.e_tag().map(str::to_owned))
                .checksum_sha256(checksum)
                .build(),
        );
        Ok(())
    }

    async fn complete(&mut self) -> Result<String> {
        if !self.buffer.is_empty() {
            self.send_part().await?;
        }
        let Some(upload_id) = self.upload_id.clone() else {
            return Err(ServiceError::internal(anyhow::anyhow!(
                "completing a multipart upload that was never started"
            )));
        };
        let output = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .traced(trace::s3("CompleteMultipartUpload", &self.bucket))
            .await
            .map_err(|e| classify("s3 complete multipart upload", e))?;
        // Completed: nothing left to abort.
        self.upload_id = None;
        Ok(output.version_id().unwrap_or_default().to_owned())
    }
}

impl Drop for StreamingPut {
    /// A writer dropped with parts sent and not completed (its call was
    /// cancelled) aborts them in the background.
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime
                    .spawn(async move { abort_upload(&client, &bucket, &key, &upload_id).await });
            }
            Err(_) => {
                tracing::warn!(%key, %upload_id, "multipart upload left to the lifecycle rule")
            }
        }
    }
}

async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    match client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .traced(trace::s3("AbortMultipartUpload", bucket))
        .await
    {
        Ok(_) => tracing::info!(%key, "multipart upload aborted"),
        Err(e) => {
            let error = classify("s3 abort multipart upload", e);
            tracing::warn!(%key, %upload_id, error = ?error, "multipart upload not aborted");
        }
    }
}
