//! Metadata in DynamoDB, single-table: every item's partition key is
//! `ORG#<org>`, so a query can never leave the caller's organisation. Sort
//! keys: `DOC#<id>`, `SRC#<id>`, `EVID#<report>#<version>#<source>`,
//! `EXPORT#<id>`, `ART#<report>#<version>#<ext>`. Creates are conditional
//! (`attribute_not_exists`), so nothing is silently overwritten.
//!
//! A pending upload carries `expires_at` (epoch seconds, the table's TTL
//! attribute): one never completed is deleted by DynamoDB after
//! [`PENDING_UPLOAD_TTL`], and hidden from lists once past it (TTL deletion
//! lags). Completing the upload removes the attribute.

use std::collections::HashMap;
use treven_mesh::trace::{self, Traced as _};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use treven_mesh::{OrgId, ServiceError};
use uuid::Uuid;

use crate::aws::classify;
use crate::model::{Artifact, ArtifactFormat, Document, DocumentStatus, FileName, Sha256Hex};
use crate::sources::Source;

type Item = HashMap<String, AttributeValue>;
type Result<T> = std::result::Result<T, ServiceError>;

/// Most DynamoDB pages one list call reads while filling a page (bounds the
/// work a sparse filter can cause).
const MAX_QUERY_ROUNDS: usize = 10;
/// How long a pending upload that is never completed is kept.
pub const PENDING_UPLOAD_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Most sources one organisation's search ranks.
pub const MAX_SOURCES_SCANNED: usize = 10_000;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn pk(org: OrgId) -> AttributeValue {
    s(format!("ORG#{org}"))
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("item attribute {name} missing")))
}

fn get_n(item: &Item, name: &str) -> Result<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("item attribute {name} missing")))
}

fn get_time(item: &Item, name: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(get_s(item, name)?)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ServiceError::internal(anyhow::anyhow!("item attribute {name}: {e}")))
}

fn bad_item(what: &str) -> ServiceError {
    ServiceError::internal(anyhow::anyhow!("stored {what} does not parse"))
}

/// Whether a DynamoDB error is a failed condition.
fn condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    error: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> bool {
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

/// The documents table.
#[derive(Debug, Clone)]
pub struct MetaStore {
    client: Client,
    table: String,
}

/// A document's item plus its S3 key.
#[derive(Debug, Clone)]
pub struct DocumentRecord {
    /// The document.
    pub document: Document,
    /// Where its bytes are.
    pub s3_key: String,
}

impl MetaStore {
    /// Uses `table` through `client`.
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// Registers a new document; fails if the id exists.
    pub async fn create_document(&self, record: &DocumentRecord) -> Result<()> {
        let d = &record.document;
        let mut item = HashMap::from([
            ("PK".into(), pk(d.org_id)),
            ("SK".into(), s(format!("DOC#{}", d.id))),
            ("kind".into(), s("document")),
            ("id".into(), s(d.id.to_string())),
            ("file_name".into(), s(d.file_name.as_str())),
            ("content_type".into(), s(&d.content_type)),
            ("size_bytes".into(), n(d.size_bytes)),
            ("sha256".into(), s(d.sha256.as_str())),
            ("status".into(), s(d.status.as_str())),
            ("s3_key".into(), s(&record.s3_key)),
            ("created_by".into(), s(&d.created_by)),
            ("created_at".into(), s(d.created_at.to_rfc3339())),
            ("updated_at".into(), s(d.updated_at.to_rfc3339())),
        ]);
        if d.status == DocumentStatus::Pending {
            let expires = d.created_at + PENDING_UPLOAD_TTL;
            item.insert("expires_at".into(), n(expires.timestamp()));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .traced(trace::dynamodb("PutItem", &self.table))
            .await
            .map_err(|e| {
                if condition_failed(&e) {
                    ServiceError::conflict_on("id", "already exists")
                } else {
                    classify("dynamodb put document", e)
                }
            })?;
        Ok(())
    }

    fn document_from(org: OrgId, item: &Item) -> Result<DocumentRecord> {
        let document = Document {
            id: Uuid::parse_str(get_s(item, "id")?).map_err(|_| bad_item("document id"))?,
            org_id: org,
            file_name: FileName::parse("file_name", get_s(item, "file_name")?)
                .map_err(|_| bad_item("file name"))?,
            content_type: get_s(item, "content_type")?.to_owned(),
            size_bytes: get_n(item, "size_bytes")?,
            sha256: Sha256Hex::parse("sha256", get_s(item, "sha256")?)
                .map_err(|_| bad_item("sha256"))?,
            status: get_s(item, "status")?
                .parse()
                .map_err(|_| bad_item("status"))?,
            rejection_reason: get_s(item, "rejection_reason")
                .unwrap_or_default()
                .to_owned(),
            version_id: get_s(item, "version_id").unwrap_or_default().to_owned(),
            created_by: get_s(item, "created_by")?.to_owned(),
            created_at: get_time(item, "created_at")?,
            updated_at: get_time(item, "updated_at")?,
            erased_at: item
                .contains_key("erased_at")
                .then(|| get_time(item, "erased_at"))
                .transpose()?,
        };
        // A tombstone has no key: its bytes are gone.
        let s3_key = if document.erased_at.is_some() {
            get_s(item, "s3_key").unwrap_or_default().to_owned()
        } else {
            get_s(item, "s3_key")?.to_owned()
        };
        Ok(DocumentRecord { document, s3_key })
    }

    /// One document of `org`, deleted ones included.
    pub async fn document(&self, org: OrgId, id: Uuid) -> Result<Option<DocumentRecord>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", pk(org))
            .key("SK", s(format!("DOC#{id}")))
            .consistent_read(true)
            .send()
            .traced(trace::with_org(
                trace::dynamodb("GetItem", &self.table),
                org,
            ))
            .await
            .map_err(|e| classify("dynamodb get document", e))?;
        output
            .item
            .as_ref()
            .map(|item| Self::document_from(org, item))
            .transpose()
    }

    /// Moves a document from `from` to `to` (with a reason and the verified
    /// S3 version). `None` if it was no longer in `from`.
    pub async fn transition(
        &self,
        org: OrgId,
        id: Uuid,
        from: DocumentStatus,
        to: DocumentStatus,
        reason: &str,
        version_id: &str,
    ) -> Result<Option<DocumentRecord>> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", pk(org))
            .key("SK", s(format!("DOC#{id}")))
            .update_expression("SET #status = :to, rejection_reason = :reason, version_id = :version, updated_at = :now REMOVE expires_at")
            .condition_expression("#status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":version", s(version_id))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .traced(trace::with_org(trace::dynamodb("UpdateItem", &self.table), org))
            .await;
        match result {
            Ok(output) => output
                .attributes
                .as_ref()
                .map(|item| Self::document_from(org, item))
                .transpose(),
            Err(e) if condition_failed(&e) => Ok(None),
            Err(e) => Err(classify("dynamodb update document", e)),
        }
    }

    /// Marks a document deleted; `false` if it was already deleted or absent.
    pub async fn mark_deleted(&self, org: OrgId, id: Uuid) -> Result<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", pk(org))
            .key("SK", s(format!("DOC#{id}")))
            .update_expression("SET #status = :deleted, updated_at = :now")
            .condition_expression("attribute_exists(PK) AND #status <> :deleted")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":deleted", s(DocumentStatus::Deleted.as_str()))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()))
            .send()
            .traced(trace::with_org(
                trace::dynamodb("UpdateItem", &self.table),
                org,
            ))
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(classify("dynamodb delete document", e)),
        }
    }

    /// Turns a document that is `was` into a tombstone after its bytes were
    /// erased: `erased_at` set, size 0, no S3 key and no version; the status
    /// becomes `erased` (a deleted document stays `deleted`, hidden as
    /// before). `false` if it is already a tombstone, absent, or no longer
    /// `was` (a re-run finds it again), so a re-run changes nothing.
    pub async fn mark_erased(
        &self,
        org: OrgId,
        id: Uuid,
        was: DocumentStatus,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let to = if was == DocumentStatus::Deleted {
            DocumentStatus::Deleted
        } else {
            DocumentStatus::Erased
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", pk(org))
            .key("SK", s(format!("DOC#{id}")))
            .update_expression(
                "SET #status = :to, erased_at = :at, size_bytes = :zero, \
                 version_id = :none, updated_at = :at REMOVE s3_key, expires_at",
            )
            .condition_expression(
                "attribute_exists(PK) AND attribute_not_exists(erased_at) AND #status = :was",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":was", s(was.as_str()))
            .expression_attribute_values(":at", s(at.to_rfc3339()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":none", s(""))
            .send()
            .traced(trace::with_org(
                trace::dynamodb("UpdateItem", &self.table),
                org,
            ))
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(classify("dynamodb erase document", e)),
        }
    }

    /// Up to `limit` documents of `org` registered before `cutoff` whose
    /// bytes are not erased yet, oldest first, deleted ones included, after
    /// sort key `after`; and the sort key to continue after (`None` once
    /// the range is exhausted). Ids are UUIDv7, so the sort key range
    /// `DOC#` ..= the largest id of the cutoff's millisecond reads only
    /// documents old enough; `created_at` is checked again on each. Reads
    /// at most [`MAX_QUERY_ROUNDS`] pages of 100.
    pub async fn documents_registered_before(
        &self,
        org: OrgId,
        cutoff: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<DocumentRecord>, Option<String>)> {
        let millis = u128::try_from(cutoff.timestamp_millis().max(0)).unwrap_or(0);
        let last_id = Uuid::from_u128((millis << 80) | ((1u128 << 80) - 1));
        let mut start: Option<Item> =
            after.map(|sk| HashMap::from([("PK".to_owned(), pk(org)), ("SK".to_owned(), s(sk))]));
        let mut found = Vec::new();
        for _ in 0..MAX_QUERY_ROUNDS {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :first AND :last")
                .filter_expression("attribute_not_exists(erased_at)")
                .expression_attribute_values(":pk", pk(org))
                .expression_attribute_values(":first", s("DOC#"))
                .expression_attribute_values(":last", s(format!("DOC#{last_id}")))
                .consistent_read(true)
                .limit(100)
                .set_exclusive_start_key(start.take())
                .send()
                .traced(trace::with_org(trace::dynamodb("Query", &self.table), org))
                .await
                .map_err(|e| classify("dynamodb query documents to erase", e))?;
            for item in output.items() {
                let record = Self::document_from(org, item)?;
                if record.document.created_at < cutoff {
                    found.push(record);
                    if found.len() == limit {
                        let next = get_s(item, "SK")?.to_owned();
                        return Ok((found, Some(next)));
                    }
                }
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok((found, None)),
            }
        }
        let next = start.and_then(|key| key.get("SK")?.as_s().ok().cloned());
        Ok((found, next))
    }

    /// Up to `limit` visible documents, newest first, after sort key `after`,
    /// with an optional status and content-type filter. Also returns whether
    /// more may follow.
    pub async fn documents(
        &self,
        org: OrgId,
        status: Option<DocumentStatus>,
        content_type: Option<&str>,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Document>, bool)> {
        let mut filter = vec![
            "#status <> :deleted".to_owned(),
            "(attribute_not_exists(expires_at) OR expires_at > :now)".to_owned(),
        ];
        let mut values = HashMap::from([
            (":pk".to_owned(), pk(org)),
            (":doc".to_owned(), s("DOC#")),
            (":deleted".to_owned(), s(DocumentStatus::Deleted.as_str())),
            (":now".to_owned(), n(Utc::now().timestamp())),
        ]);
        if let Some(status) = status {
            filter.push("#status = :status".into());
            values.insert(":status".into(), s(status.as_str()));
        }
        if let Some(content_type) = content_type {
            filter.push("content_type = :ct".into());
            values.insert(":ct".into(), s(content_type));
        }
        let mut start =
            after.map(|sk| HashMap::from([("PK".to_owned(), pk(org)), ("SK".to_owned(), s(sk))]));
        let mut found = Vec::new();
        for _ in 0..MAX_QUERY_ROUNDS {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :doc)")
                .filter_expression(filter.join(" AND "))
                .expression_attribute_names("#status", "status")
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .limit((limit + 1) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .traced(trace::with_org(trace::dynamodb("Query", &self.table), org))
                .await
                .map_err(|e| classify("dynamodb query documents", e))?;
            for item in output.items() {
                found.push(Self::document_from(org, item)?.document);
            }
            if found.len() > limit {
                found.truncate(limit);
                return Ok((found, true));
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok((found, false)),
            }
        }
        // The round budget ran out: hand back what we have; the cursor
        // continues from the last item.
        let more = !found.is_empty();
        Ok((found, more))
    }

    /// Creates or replaces a source (sources are keyed by their locator, so
    /// an upsert is the point).
    pub async fn put_source(&self, org: OrgId, source: &Source) -> Result<()> {
        let data = serde_json::to_string(source).map_err(ServiceError::internal)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", pk(org))
            .item("SK", s(format!("SRC#{}", source.id)))
            .item("kind", s("source"))
            .item("data", s(data))
            .send()
            .traced(trace::with_org(
                trace::dynamodb("PutItem", &self.table),
                org,
            ))
            .await
            .map_err(|e| classify("dynamodb put source", e))?;
        Ok(())
    }

    /// One source.
    pub async fn source(&self, org: OrgId, id: &str) -> Result<Option<Source>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", pk(org))
            .key("SK", s(format!("SRC#{id}")))
            .send()
            .traced(trace::with_org(
                trace::dynamodb("GetItem", &self.table),
                org,
            ))
            .await
            .map_err(|e| classify("dynamodb get source", e))?;
        output
            .item
            .as_ref()
            .map(|item| serde_json::from_str(get_s(item, "data")?).map_err(|_| bad_item("source")))
            .transpose()
    }

    /// Every source of `org` (up to [`MAX_SOURCES_SCANNED`]).
    pub async fn sources(&self, org: OrgId) -> Result<Vec<Source>> {
        let items = self.query_prefix(org, "SRC#", MAX_SOURCES_SCANNED).await?;
        items
            .iter()
            .map(|item| serde_json::from_str(get_s(item, "data")?).map_err(|_| bad_item("source")))
            .collect()
    }

    async fn query_prefix(&self, org: OrgId, prefix: &str, cap: usize) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(":pk", pk(org))
                .expression_attribute_values(":prefix", s(prefix))
                .set_exclusive_start_key(start)
                .send()
                .traced(trace::with_org(trace::dynamodb("Query", &self.table), org))
                .await
                .map_err(|e| classify("dynamodb query", e))?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(key) if items.len() < cap => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// Records that `source_id`'s evidence for a report version is stored
    /// at S3 version `version_id`. `false` if it was already recorded.
    pub async fn record_evidence(
        &self,
        org: OrgId,
        report: Uuid,
        version: u32,
        source_id: &str,
        s3_key: &str,
        version_id: &str,
    ) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("PK", pk(org))
            .item("SK", s(format!("EVID#{report}#{version:05}#{source_id}")))
            .item("kind", s("evidence"))
            .item("source_id", s(source_id))
            .item("version", n(version))
            .item("s3_key", s(s3_key))
            .item("version_id", s(version_id))
            .item("stored_at", s(Utc::now().to_rfc3339()))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .traced(trace::with_org(
                trace::dynamodb("PutItem", &self.table),
                org,
            ))
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(classify("dynamodb put evidence", e)),
        }
    }

    /// The evidence of one report version (`None`: the newest version that
    /// has evidence): the version and its (source id, S3 key, S3 version).
    pub async fn evidence(
        &self,
        org: OrgId,
        report: Uuid,
        version: Option<u32>,
    ) -> Result<Option<(u32, Vec<(String, String, String)>)>> {
        let items = self
            .query_prefix(org, &format!("EVID#{report}#"), 100_000)
            .await?;
        let mut rows = Vec::with_capacity(items.len());
        for item in &items {
            let v =
                u32::try_from(get_n(item, "version")?).map_err(|_| bad_item("evidence version"))?;
            rows.push((
                v,
                get_s(item, "source_id")?.to_owned(),
                get_s(item, "s3_key")?.to_owned(),
                get_s(item, "version_id")?.to_owned(),
            ));
        }
        let Some(chosen) = version.or_else(|| rows.iter().map(|r| r.0).max()) else {
            return Ok(None);
        };
        let selected: Vec<_> = rows
            .into_iter()
            .filter(|r| r.0 == chosen)
            .map(|(_, a, b, c)| (a, b, c))
            .collect();
        Ok((!selected.is_empty()).then_some((chosen, selected)))
    }

    /// Records an evidence-pack export.
    pub async fn record_export(
        &self,
        org: OrgId,
        export: Uuid,
        report: Uuid,
        version: u32,
        s3_key: &str,
        created_by: &str,
    ) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", pk(org))
            .item("SK", s(format!("EXPORT#{export}")))
            .item("kind", s("export"))
            .item("report_id", s(report.to_string()))
            .item("version", n(version))
            .item("s3_key", s(s3_key))
            .item("created_by", s(created_by))
            .item("created_at", s(Utc::now().to_rfc3339()))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .traced(trace::with_org(
                trace::dynamodb("PutItem", &self.table),
                org,
            ))
            .await
            .map_err(|e| classify("dynamodb put export", e))?;
        Ok(())
    }

    /// Records an artifact. A second artifact for the same report version
    /// and format is accepted only with identical bytes (a retry).
    pub async fn record_artifact(
        &self,
        org: OrgId,
        artifact: &Artifact,
        s3_key: &str,
    ) -> Result<Artifact> {
        let sk = format!(
            "ART#{}#{:05}#{}",
            artifact.report_id,
            artifact.version,
            artifact.format.extension()
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("PK", pk(org))
            .item("SK", s(&sk))
            .item("kind", s("artifact"))
            .item("report_id", s(artifact.report_id.to_string()))
            .item("version", n(artifact.version))
            .item("format", s(artifact.format.extension()))
            .item("size_bytes", n(artifact.size_bytes))
            .item("sha256", s(artifact.sha256.as_str()))
            .item("s3_key", s(s3_key))
            .item("version_id", s(&artifact.version_id))
            .item("stored_at", s(artifact.stored_at.to_rfc3339()))
            .condition_expression("attribute_not_exists(PK) OR sha256 = :sha")
            .expression_attribute_values(":sha", s(artifact.sha256.as_str()))
            .send()
            .traced(trace::with_org(
                trace::dynamodb("PutItem", &self.table),
                org,
            ))
            .await;
        match result {
            Ok(_) => Ok(artifact.clone()),
            Err(e) if condition_failed(&e) => Err(ServiceError::conflict_on(
                "header",
                "this report version already has a different artifact in this format",
            )),
            Err(e) => Err(classify("dynamodb put artifact", e)),
        }
    }

    /// A stored artifact and its S3 key.
    pub async fn artifact(
        &self,
        org: OrgId,
        report: Uuid,
        version: u32,
        format: ArtifactFormat,
    ) -> Result<Option<(Artifact, String)>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", pk(org))
            .key(
                "SK",
                s(format!("ART#{report}#{version:05}#{}", format.extension())),
            )
            .consistent_read(true)
            .send()
            .traced(trace::with_org(
                trace::dynamodb("GetItem", &self.table),
                org,
            ))
            .await
            .map_err(|e| classify("dynamodb get artifact", e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let artifact = Artifact {
            report_id: report,
            version,
            format,
            size_bytes: get_n(&item, "size_bytes")?,
            sha256: Sha256Hex::parse("sha256", get_s(&item, "sha256")?)
                .map_err(|_| bad_item("sha256"))?,
            version_id: get_s(&item, "version_id")?.to_owned(),
            stored_at: get_time(&item, "stored_at")?,
        };
        Ok(Some((artifact, get_s(&item, "s3_key")?.to_owned())))
    }
}
