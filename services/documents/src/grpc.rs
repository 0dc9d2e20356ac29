//! The gRPC adapter of the documents service.

use std::collections::HashMap;

use futures::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};
use treven_mesh::ServiceError;
use treven_mesh::context::context_of;
use treven_mesh::wire::{from_timestamp, timestamp};
use treven_proto::treven::common::v1::TimeRange;
use treven_proto::treven::documents::v1 as pb;

use crate::model::{
    ArtifactFormat, Document, DocumentStatus, DocumentVersion, FileName, Sha256Hex, parse_id,
    parse_version,
};
use crate::service::Documents;
use crate::sources::{self, Locator, PublisherKind, Source, SourceQuery, TrustScore};

/// `treven.documents.v1.DocumentsService` over [`Documents`].
#[derive(Debug, Clone)]
pub struct DocumentsGrpc {
    documents: Documents,
}

impl DocumentsGrpc {
    /// Serves `documents`.
    pub fn new(documents: Documents) -> Self {
        Self { documents }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(result: Result<T, ServiceError>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

fn status_to_pb(status: DocumentStatus) -> pb::DocumentStatus {
    match status {
        DocumentStatus::Pending => pb::DocumentStatus::Pending,
        DocumentStatus::Available => pb::DocumentStatus::Available,
        DocumentStatus::Rejected => pb::DocumentStatus::Rejected,
        DocumentStatus::Deleted => pb::DocumentStatus::Deleted,
    }
}

fn status_from_pb(raw: i32) -> Result<Option<DocumentStatus>, ServiceError> {
    match pb::DocumentStatus::try_from(raw) {
        Ok(pb::DocumentStatus::Unspecified) => Ok(None),
        Ok(pb::DocumentStatus::Pending) => Ok(Some(DocumentStatus::Pending)),
        Ok(pb::DocumentStatus::Available) => Ok(Some(DocumentStatus::Available)),
        Ok(pb::DocumentStatus::Rejected) => Ok(Some(DocumentStatus::Rejected)),
        Ok(pb::DocumentStatus::Deleted) => Ok(Some(DocumentStatus::Deleted)),
        Err(_) => Err(ServiceError::invalid_field("status", "unknown status")),
    }
}

fn format_from_pb(field: &str, raw: i32) -> Result<ArtifactFormat, ServiceError> {
    match pb::ArtifactFormat::try_from(raw) {
        Ok(pb::ArtifactFormat::Markdown) => Ok(ArtifactFormat::Md),
        Ok(pb::ArtifactFormat::Pdf) => Ok(ArtifactFormat::Pdf),
        Ok(pb::ArtifactFormat::Docx) => Ok(ArtifactFormat::Docx),
        _ => Err(ServiceError::invalid_field(
            field,
            "must be markdown, pdf or docx",
        )),
    }
}

fn format_to_pb(format: ArtifactFormat) -> pb::ArtifactFormat {
    match format {
        ArtifactFormat::Md => pb::ArtifactFormat::Markdown,
        ArtifactFormat::Pdf => pb::ArtifactFormat::Pdf,
        ArtifactFormat::Docx => pb::ArtifactFormat::Docx,
    }
}

fn kind_from_pb(raw: i32) -> Result<PublisherKind, ServiceError> {
    use pb::PublisherKind as K;
    Ok(match K::try_from(raw) {
        Ok(K::Government) => PublisherKind::Government,
        Ok(K::Intergovernmental) => PublisherKind::Intergovernmental,
        Ok(K::Research) => PublisherKind::Research,
        Ok(K::Ngo) => PublisherKind::Ngo,
        Ok(K::BusinessHumanRights) => PublisherKind::BusinessHumanRights,
        Ok(K::Journalism) => PublisherKind::Journalism,
        Ok(K::Other) => PublisherKind::Other,
        Ok(K::Internal) => PublisherKind::Internal,
        Ok(K::AnonymousBlog) => PublisherKind::AnonymousBlog,
        Ok(K::UnverifiedSocial) => PublisherKind::UnverifiedSocial,
        Ok(K::Unspecified) => {
            return Err(ServiceError::invalid_field("publisher_kind", "is required"));
        }
        Err(_) => {
            return Err(ServiceError::invalid_field(
                "publisher_kind",
                "unknown publisher kind",
            ));
        }
    })
}

fn kind_to_pb(kind: PublisherKind) -> pb::PublisherKind {
    use pb::PublisherKind as K;
    match kind {
        PublisherKind::Government => K::Government,
        PublisherKind::Intergovernmental => K::Intergovernmental,
        PublisherKind::Research => K::Research,
        PublisherKind::Ngo => K::Ngo,
        PublisherKind::BusinessHumanRights => K::BusinessHumanRights,
        PublisherKind::Journalism => K::Journalism,
        PublisherKind::Other => K::Other,
        PublisherKind::Internal => K::Internal,
        PublisherKind::AnonymousBlog => K::AnonymousBlog,
        PublisherKind::UnverifiedSocial => K::UnverifiedSocial,
    }
}

fn document_to_pb(document: Document) -> pb::Document {
    pb::Document {
        id: document.id.to_string(),
        org_id: document.org_id.to_string(),
        file_name: document.file_name.as_str().to_owned(),
        content_type: document.content_type,
        size_bytes: document.size_bytes,
        sha256: document.sha256.as_str().to_owned(),
        status: status_to_pb(document.status).into(),
        rejection_reason: document.rejection_reason,
        version_id: document.version_id,
        created_by: document.created_by,
        created_at: Some(timestamp(document.created_at)),
        updated_at: Some(timestamp(document.updated_at)),
    }
}

fn version_to_pb(version: DocumentVersion) -> pb::DocumentVersion {
    pb::DocumentVersion {
        version_id: version.version_id,
        size_bytes: version.size_bytes,
        sha256: version
            .sha256
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        delete_marker: version.delete_marker,
        created_at: Some(timestamp(version.created_at)),
    }
}

fn source_to_pb(org: &str, source: Source, score: TrustScore) -> pb::Source {
    let locator = match source.locator {
        Locator::Url(url) => pb::source::Locator::Url(url),
        Locator::Dataset { dataset, from, to } => {
            pb::source::Locator::Dataset(pb::DatasetReference {
                dataset,
                date_range: Some(TimeRange {
                    start: from.map(timestamp),
                    end: to.map(timestamp),
                }),
            })
        }
    };
    let tier = match source.publisher_kind.tier() {
        Ok(1) => pb::PublisherTier::PublisherTier1,
        Ok(2) => pb::PublisherTier::PublisherTier2,
        _ => pb::PublisherTier::PublisherTier3,
    };
    pb::Source {
        id: source.id,
        org_id: org.to_owned(),
        locator: Some(locator),
        title: source.title,
        publisher: source.publisher,
        publisher_kind: kind_to_pb(source.publisher_kind).into(),
        publisher_tier: tier.into(),
        published_at: source.published_at.map(timestamp),
        summary: source.summary,
        tags: source.tags,
        countries: source.countries,
        sectors: source.sectors,
        primary_data: source.primary_data,
        methodology_documented: source.methodology_documented,
        trust: Some(pb::TrustScore {
            total: score.total.into(),
            publisher_tier: score.publisher_tier.into(),
            recency: score.recency.into(),
            primary_data: score.primary_data.into(),
            methodology: score.methodology.into(),
            geographic_match: score.geographic_match.into(),
            scored_at: Some(timestamp(chrono::Utc::now())),
        }),
        created_at: Some(timestamp(source.created_at)),
        updated_at: Some(timestamp(source.updated_at)),
    }
}

fn source_from_pb(message: pb::UpsertSourceRequest) -> Result<Source, ServiceError> {
    let locator = match message.locator {
        Some(pb::upsert_source_request::Locator::Url(url)) => Locator::url(&url)?,
        Some(pb::upsert_source_request::Locator::Dataset(dataset)) => {
            let range = dataset.date_range.unwrap_or_default();
            Locator::Dataset {
                dataset: sources::text("dataset.dataset", &dataset.dataset, 1, 200)?,
                from: range
                    .start
                    .as_ref()
                    .map(|t| from_timestamp("dataset.date_range.start", t))
                    .transpose()?,
                to: range
                    .end
                    .as_ref()
                    .map(|t| from_timestamp("dataset.date_range.end", t))
                    .transpose()?,
            }
        }
        None => {
            return Err(ServiceError::invalid_field(
                "url",
                "a url or a dataset reference is required",
            ));
        }
    };
    let publisher_kind = kind_from_pb(message.publisher_kind)?;
    publisher_kind
        .tier()
        .map_err(|reason| ServiceError::invalid_field("publisher_kind", reason))?;
    let limited =
        |field: &str, values: Vec<String>, max: usize| -> Result<Vec<String>, ServiceError> {
            if values.len() > max {
                return Err(ServiceError::invalid_field(
                    field,
                    format!("at most {max} values"),
                ));
            }
            Ok(values)
        };
    let tags = limited("tags", message.tags, 20)?
        .iter()
        .map(|t| sources::tag("tags", t))
        .collect::<Result<Vec<_>, _>>()?;
    let countries = limited("countries", message.countries, 60)?
        .iter()
        .map(|c| sources::country_code("countries", c))
        .collect::<Result<Vec<_>, _>>()?;
    let sectors = limited("sectors", message.sectors, 20)?
        .iter()
        .map(|s| sources::text("sectors", s, 1, 60))
        .collect::<Result<Vec<_>, _>>()?;
    let now = chrono::Utc::now();
    Ok(Source {
        id: locator.source_id(),
        locator,
        title: sources::text("title", &message.title, 1, 300)?,
        publisher: sources::text("publisher", &message.publisher, 1, 200)?,
        publisher_kind,
        published_at: message
            .published_at
            .as_ref()
            .map(|t| from_timestamp("published_at", t))
            .transpose()?,
        summary: sources::text("summary", &message.summary, 0, 2000)?,
        tags,
        countries,
        sectors,
        primary_data: message.primary_data,
        methodology_documented: message.methodology_documented,
        created_at: now,
        updated_at: now,
    })
}

#[tonic::async_trait]
impl pb::documents_service_server::DocumentsService for DocumentsGrpc {
    async fn create_upload(
        &self,
        request: Request<pb::CreateUploadRequest>,
    ) -> Reply<pb::CreateUploadResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let file_name = FileName::parse("file_name", &message.file_name)?;
            let content_type = self.documents.content_type(&message.content_type)?;
            let size = self.documents.size(message.size_bytes)?;
            let sha256 = Sha256Hex::parse("sha256", &message.sha256)?;
            self.documents
                .create_upload(&context, file_name, content_type, size, sha256)
                .await
        }
        .await;
        reply(result.map(|upload| {
            pb::CreateUploadResponse {
                document: Some(document_to_pb(upload.document)),
                upload_url: upload.presigned.url,
                upload_headers: upload
                    .presigned
                    .headers
                    .into_iter()
                    .collect::<HashMap<_, _>>(),
                expires_at: Some(timestamp(upload.presigned.expires_at)),
            }
        }))
    }

    async fn complete_upload(
        &self,
        request: Request<pb::CompleteUploadRequest>,
    ) -> Reply<pb::CompleteUploadResponse> {
        let context = context_of(&request)?;
        let result = async {
            let id = parse_id("id", &request.get_ref().id)?;
            self.documents.complete_upload(&context, id).await
        }
        .await;
        reply(result.map(|d| pb::CompleteUploadResponse {
            document: Some(document_to_pb(d)),
        }))
    }

    async fn list_documents(
        &self,
        request: Request<pb::ListDocumentsRequest>,
    ) -> Reply<pb::ListDocumentsResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let status = status_from_pb(message.status)?;
            let content_type = if message.content_type.is_empty() {
                None
            } else {
                Some(self.documents.content_type(&message.content_type)?)
            };
            self.documents
                .list(
                    &context,
                    status,
                    content_type,
                    message.limit,
                    &message.cursor,
                )
                .await
        }
        .await;
        reply(
            result.map(|(items, next_cursor)| pb::ListDocumentsResponse {
                items: items.into_iter().map(document_to_pb).collect(),
                next_cursor,
            }),
        )
    }

    async fn get_document(
        &self,
        request: Request<pb::GetDocumentRequest>,
    ) -> Reply<pb::GetDocumentResponse> {
        let context = context_of(&request)?;
        let result = async {
            let id = parse_id("id", &request.get_ref().id)?;
            self.documents.document(&context, id).await
        }
        .await;
        reply(result.map(|d| pb::GetDocumentResponse {
            document: Some(document_to_pb(d)),
        }))
    }

    async fn delete_document(
        &self,
        request: Request<pb::DeleteDocumentRequest>,
    ) -> Reply<pb::DeleteDocumentResponse> {
        let context = context_of(&request)?;
        let result = async {
            let id = parse_id("id", &request.get_ref().id)?;
            self.documents.delete(&context, id).await
        }
        .await;
        reply(result.map(|()| pb::DeleteDocumentResponse {}))
    }

    async fn get_document_download(
        &self,
        request: Request<pb::GetDocumentDownloadRequest>,
    ) -> Reply<pb::GetDocumentDownloadResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let id = parse_id("id", &message.id)?;
            let version = Some(message.version_id).filter(|v| !v.is_empty());
            if version
                .as_ref()
                .is_some_and(|v| v.len() > 1024 || v.chars().any(|c| c.is_control()))
            {
                return Err(ServiceError::invalid_field(
                    "version_id",
                    "not a version id",
                ));
            }
            self.documents.download(&context, id, version).await
        }
        .await;
        reply(result.map(|p| pb::GetDocumentDownloadResponse {
            url: p.url,
            expires_at: Some(timestamp(p.expires_at)),
        }))
    }

    async fn list_document_versions(
        &self,
        request: Request<pb::ListDocumentVersionsRequest>,
    ) -> Reply<pb::ListDocumentVersionsResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let id = parse_id("document_id", &message.document_id)?;
            self.documents
                .versions(&context, id, message.limit, &message.cursor)
                .await
        }
        .await;
        reply(
            result.map(|(items, next_cursor)| pb::ListDocumentVersionsResponse {
                items: items.into_iter().map(version_to_pb).collect(),
                next_cursor,
            }),
        )
    }

    async fn upsert_source(
        &self,
        request: Request<pb::UpsertSourceRequest>,
    ) -> Reply<pb::UpsertSourceResponse> {
        let context = context_of(&request)?;
        let org = context.org_id().to_string();
        let result = async {
            let source = source_from_pb(request.into_inner())?;
            self.documents.upsert_source(&context, source).await
        }
        .await;
        reply(result.map(|(source, score)| pb::UpsertSourceResponse {
            source: Some(source_to_pb(&org, source, score)),
        }))
    }

    async fn search_sources(
        &self,
        request: Request<pb::SearchSourcesRequest>,
    ) -> Reply<pb::SearchSourcesResponse> {
        let context = context_of(&request)?;
        let org = context.org_id().to_string();
        let message = request.into_inner();
        let result = async {
            if message.tags.len() > 20 {
                return Err(ServiceError::invalid_field("tags", "at most 20 tags"));
            }
            if !(0..=100).contains(&message.min_trust_score) {
                return Err(ServiceError::invalid_field(
                    "min_trust_score",
                    "must be between 0 and 100",
                ));
            }
            let text = sources::text("text", &message.text, 0, 200)?;
            let query = SourceQuery {
                country: Some(message.country)
                    .filter(|c| !c.is_empty())
                    .map(|c| sources::country_code("country", &c))
                    .transpose()?,
                sector: Some(sources::text("sector", &message.sector, 0, 60)?)
                    .filter(|s| !s.is_empty()),
                tags: message
                    .tags
                    .iter()
                    .map(|t| sources::tag("tags", t))
                    .collect::<Result<_, _>>()?,
                words: text
                    .to_lowercase()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                min_trust: message.min_trust_score as u8,
            };
            self.documents
                .search_sources(&context, query, message.limit, &message.cursor)
                .await
        }
        .await;
        reply(result.map(|(items, next_cursor)| {
            pb::SearchSourcesResponse {
                items: items
                    .into_iter()
                    .map(|(s, score)| source_to_pb(&org, s, score))
                    .collect(),
                next_cursor,
            }
        }))
    }

    async fn store_evidence(
        &self,
        request: Request<pb::StoreEvidenceRequest>,
    ) -> Reply<pb::StoreEvidenceResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let report = parse_id("report_id", &message.report_id)?;
            let version = parse_version("version", message.version)?;
            for (index, id) in message.source_ids.iter().enumerate() {
                if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ServiceError::invalid_field(
                        format!("source_ids[{index}]"),
                        "not a source id",
                    ));
                }
            }
            self.documents
                .store_evidence(&context, report, version, message.source_ids)
                .await
        }
        .await;
        reply(result.map(|count| pb::StoreEvidenceResponse {
            source_count: count as i32,
            stored_at: Some(timestamp(chrono::Utc::now())),
        }))
    }

    async fn get_evidence_pack(
        &self,
        request: Request<pb::GetEvidencePackRequest>,
    ) -> Reply<pb::GetEvidencePackResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let report = parse_id("report_id", &message.report_id)?;
            let version = if message.version == 0 {
                None
            } else {
                Some(parse_version("version", message.version)?)
            };
            self.documents
                .evidence_pack(&context, report, version)
                .await
        }
        .await;
        reply(result.map(|pack| pb::GetEvidencePackResponse {
            export_id: pack.export_id.to_string(),
            version: pack.version as i32,
            source_count: pack.source_count as i32,
            url: pack.presigned.url,
            expires_at: Some(timestamp(pack.presigned.expires_at)),
        }))
    }

    async fn put_artifact(
        &self,
        request: Request<Streaming<pb::PutArtifactRequest>>,
    ) -> Reply<pb::PutArtifactResponse> {
        let context = context_of(&request)?;
        let max = self.documents.config().max_artifact_bytes;
        let mut stream = request.into_inner();
        let result = async {
            let header = match stream.next().await {
                Some(Ok(pb::PutArtifactRequest {
                    part: Some(pb::put_artifact_request::Part::Header(header)),
                })) => header,
                Some(Err(status)) => {
                    return Err(ServiceError::invalid_field(
                        "header",
                        status.message().to_owned(),
                    ));
                }
                _ => {
                    return Err(ServiceError::invalid_field(
                        "header",
                        "the first message must be the header",
                    ));
                }
            };
            let report = parse_id("header.report_id", &header.report_id)?;
            let version = parse_version("header.version", header.version)?;
            let format = format_from_pb("header.format", header.format)?;
            if !header.content_type.is_empty() && header.content_type != format.content_type() {
                return Err(ServiceError::invalid_field(
                    "header.content_type",
                    format!("must be {} for this format", format.content_type()),
                ));
            }
            let declared = if header.sha256.is_empty() {
                None
            } else {
                Some(Sha256Hex::parse("header.sha256", &header.sha256)?)
            };
            let mut bytes = Vec::new();
            while let Some(message) = stream.next().await {
                match message
                    .map_err(|s| ServiceError::invalid_field("chunk", s.message().to_owned()))?
                    .part
                {
                    Some(pb::put_artifact_request::Part::Chunk(chunk)) => {
                        if bytes.len() + chunk.len() > max {
                            return Err(ServiceError::invalid_field(
                                "chunk",
                                format!("the artifact exceeds {max} bytes"),
                            ));
                        }
                        bytes.extend_from_slice(&chunk);
                    }
                    _ => {
                        return Err(ServiceError::invalid_field(
                            "header",
                            "only the first message may be a header",
                        ));
                    }
                }
            }
            self.documents
                .put_artifact(&context, report, version, format, bytes, declared)
                .await
        }
        .await;
        reply(result.map(|a| pb::PutArtifactResponse {
            report_id: a.report_id.to_string(),
            version: a.version as i32,
            format: format_to_pb(a.format).into(),
            size_bytes: a.size_bytes,
            sha256: a.sha256.as_str().to_owned(),
            stored_at: Some(timestamp(a.stored_at)),
        }))
    }

    async fn presign_artifact(
        &self,
        request: Request<pb::PresignArtifactRequest>,
    ) -> Reply<pb::PresignArtifactResponse> {
        let context = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let report = parse_id("report_id", &message.report_id)?;
            let version = parse_version("version", message.version)?;
            let format = format_from_pb("format", message.format)?;
            let name = if message.download_name.is_empty() {
                None
            } else {
                Some(FileName::parse("download_name", &message.download_name)?)
            };
            self.documents
                .presign_artifact(&context, report, version, format, name)
                .await
        }
        .await;
        reply(result.map(|p| pb::PresignArtifactResponse {
            url: p.url,
            expires_at: Some(timestamp(p.expires_at)),
        }))
    }
}
