//! The gRPC adapter of the documents service: the handlers here, the proto ⇄
//! domain conversions in `convert`. No business rule lives here.

mod convert;

use std::collections::HashMap;

use futures::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};
use treven_mesh::ServiceError;
use treven_mesh::context::context_of;
use treven_mesh::wire::timestamp;
use treven_proto::treven::documents::v1 as pb;

use self::convert::{
    document_to_pb, format_from_pb, format_to_pb, source_from_pb, source_to_pb, status_from_pb,
    version_to_pb,
};
use crate::app::Documents;
use crate::model::{FileName, Sha256Hex, parse_id, parse_version};
use crate::sources::{self, SourceQuery};

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
            // The content type and size were checked against documents.proto's
            // rules before the handler ran.
            let sha256 = Sha256Hex::parse("sha256", &message.sha256)?;
            self.documents
                .create_upload(
                    &context,
                    file_name,
                    message.content_type,
                    message.size_bytes,
                    sha256,
                )
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
            // A filter, not an upload: a type no upload may have simply
            // matches no document (the allowed types are configuration,
            // which the OpenAPI document cannot know).
            let content_type =
                Some(message.content_type.trim().to_ascii_lowercase()).filter(|t| !t.is_empty());
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
            // At most 20 tags and a trust score of 0–100: proto rules,
            // checked before this handler runs.
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
            // Each source id's shape is the proto's rule (checked before).
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
            // The rest of the stream, as chunks; the app streams them to S3.
            let chunks = stream.map(|message| {
                match message
                    .map_err(|s| ServiceError::invalid_field("chunk", s.message().to_owned()))?
                    .part
                {
                    Some(pb::put_artifact_request::Part::Chunk(chunk)) => Ok(chunk),
                    _ => Err(ServiceError::invalid_field(
                        "header",
                        "only the first message may be a header",
                    )),
                }
            });
            self.documents
                .put_artifact(&context, report, version, format, declared, chunks)
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
