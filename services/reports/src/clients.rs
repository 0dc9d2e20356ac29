//! Calls to other services: tenants (audit log, report-access grants),
//! documents (artifacts), agents (generation) and Redis (progress events).
//!
//! Every call carries a mesh context token (the caller's, or one minted on
//! behalf of the requester for background work) and a deadline.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tonic::Request;
use tonic::transport::Channel;
use treven_mesh::client::{ChannelOptions, upstream};
use treven_mesh::context::attach_context;
use treven_mesh::events::{EventChannel, EventKind, EventPublisher};
use treven_mesh::wire::{from_timestamp, json_to_struct};
use treven_mesh::{ErrorCode, OrgId, ServiceError};
use treven_proto::treven::agents::v1 as agents;
use treven_proto::treven::agents::v1::agents_service_client::AgentsServiceClient;
use treven_proto::treven::documents::v1 as documents;
use treven_proto::treven::documents::v1::documents_service_client::DocumentsServiceClient;
use treven_proto::treven::tenants::v1 as tenants;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;
use uuid::Uuid;

use crate::config::ReportsConfig;
use crate::model::ExportFormat;

/// Bytes per PutArtifact chunk (the documents limit is 1 MiB).
const CHUNK_BYTES: usize = 512 * 1024;

/// An audit entry to record in tenants.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Dotted action, e.g. `report.section.update`.
    pub action: &'static str,
    /// The report (or other resource) id.
    pub resource_id: String,
    /// Details; never personal data.
    pub details: serde_json::Value,
}

impl AuditEntry {
    /// An entry about report `id`.
    pub fn report(action: &'static str, id: Uuid, details: serde_json::Value) -> Self {
        Self {
            action,
            resource_id: id.to_string(),
            details,
        }
    }
}

/// The clients of the services reports calls.
#[derive(Clone)]
pub struct Clients {
    tenants: TenantsServiceClient<Channel>,
    documents: DocumentsServiceClient<Channel>,
    agents: AgentsServiceClient<Channel>,
    events: EventPublisher,
    call_timeout: Duration,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").finish_non_exhaustive()
    }
}

/// A status from another service as an error for our caller: their
/// validation, not-found and precondition answers pass through; outages are
/// UNAVAILABLE; anything else (our token refused, a bug) is INTERNAL.
pub fn remote_error(service: &str, status: tonic::Status) -> ServiceError {
    let code = ErrorCode::of_status(&status);
    match code {
        ErrorCode::NotFound
        | ErrorCode::ValidationError
        | ErrorCode::Conflict
        | ErrorCode::FailedPrecondition
        | ErrorCode::Forbidden
        | ErrorCode::RateLimited => ServiceError::new(code, status.message().to_owned()),
        ErrorCode::Unavailable => {
            ServiceError::unavailable(anyhow::anyhow!("{service}: {}", status.message()))
        }
        _ => ServiceError::internal(anyhow::anyhow!(
            "{service} answered {code}: {}",
            status.message()
        )),
    }
}

impl Clients {
    /// Lazily connecting clients for the URLs in `config`.
    pub fn connect_lazy(config: &ReportsConfig) -> anyhow::Result<Self> {
        let unary = config.calls;
        let streaming = ChannelOptions {
            connect_timeout: unary.connect_timeout,
            call_timeout: config.workers.generation_timeout,
        };
        Ok(Self {
            tenants: TenantsServiceClient::new(upstream(
                "TREVEN_TENANTS_URL",
                &config.tenants_url,
                unary,
            )?),
            documents: DocumentsServiceClient::new(upstream(
                "TREVEN_DOCUMENTS_URL",
                &config.documents_url,
                unary,
            )?)
            .max_decoding_message_size(4 * 1024 * 1024),
            agents: AgentsServiceClient::new(upstream(
                "TREVEN_AGENTS_URL",
                &config.agents_url,
                streaming,
            )?)
            .max_decoding_message_size(8 * 1024 * 1024),
            events: EventPublisher::connect_lazy(&config.redis_url)?,
            call_timeout: unary.call_timeout,
        })
    }

    fn request<T>(&self, token: &str, message: T) -> Result<Request<T>, ServiceError> {
        let mut request = Request::new(message);
        request.set_timeout(self.call_timeout);
        attach_context(&mut request, token)?;
        Ok(request)
    }

    /// Appends `entry` to the audit log of the token's organisation.
    pub async fn audit(&self, token: &str, entry: &AuditEntry) -> Result<(), ServiceError> {
        let request = self.request(
            token,
            tenants::RecordAuditEventRequest {
                action: entry.action.to_owned(),
                resource_type: "report".to_owned(),
                resource_id: entry.resource_id.clone(),
                details: Some(json_to_struct(&entry.details)),
            },
        )?;
        self.tenants
            .clone()
            .record_audit_event(request)
            .await
            .map_err(|s| remote_error("tenants", s))?;
        Ok(())
    }

    /// Grants `partner` access to `report` (tenants checks the partner is
    /// in the caller's organisation and audits the grant).
    pub async fn grant_access(
        &self,
        token: &str,
        report: Uuid,
        partner: Uuid,
        permission: tenants::ReportPermission,
    ) -> Result<tenants::ReportAccess, ServiceError> {
        let request = self.request(
            token,
            tenants::GrantReportAccessRequest {
                report_id: report.to_string(),
                partner_id: partner.to_string(),
                permission: permission.into(),
            },
        )?;
        let response = self
            .tenants
            .clone()
            .grant_report_access(request)
            .await
            .map_err(|s| remote_error("tenants", s))?;
        response
            .into_inner()
            .access
            .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("tenants returned no grant")))
    }

    /// Stores `bytes` as the `format` artifact of `report` version `version`.
    pub async fn put_artifact(
        &self,
        token: &str,
        report: Uuid,
        version: i32,
        format: ExportFormat,
        bytes: Vec<u8>,
    ) -> Result<(), ServiceError> {
        let sha256: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut messages = vec![documents::PutArtifactRequest {
            part: Some(documents::put_artifact_request::Part::Header(
                documents::ArtifactHeader {
                    report_id: report.to_string(),
                    version,
                    format: artifact_format(format).into(),
                    content_type: format.content_type().to_owned(),
                    sha256,
                },
            )),
        }];
        messages.extend(
            bytes
                .chunks(CHUNK_BYTES)
                .map(|chunk| documents::PutArtifactRequest {
                    part: Some(documents::put_artifact_request::Part::Chunk(chunk.to_vec())),
                }),
        );
        let request = self.request(token, tokio_stream::iter(messages))?;
        self.documents
            .clone()
            .put_artifact(request)
            .await
            .map_err(|s| remote_error("documents", s))?;
        Ok(())
    }

    /// Records `source_ids` as the evidence behind `report` version
    /// `version` (documents keeps them for the evidence pack). A source that
    /// does not exist is FAILED_PRECONDITION: the version cites it.
    pub async fn store_evidence(
        &self,
        token: &str,
        report: Uuid,
        version: i32,
        source_ids: Vec<String>,
    ) -> Result<(), ServiceError> {
        let request = self.request(
            token,
            documents::StoreEvidenceRequest {
                report_id: report.to_string(),
                version,
                source_ids,
            },
        )?;
        match self.documents.clone().store_evidence(request).await {
            Ok(_) => Ok(()),
            Err(status) => Err(match remote_error("documents", status) {
                error
                    if matches!(
                        error.code(),
                        ErrorCode::NotFound | ErrorCode::ValidationError
                    ) =>
                {
                    ServiceError::new(
                        ErrorCode::FailedPrecondition,
                        "the version cites a source that does not exist; edit the citation first",
                    )
                }
                error => error,
            }),
        }
    }

    /// A presigned download URL of a stored artifact and its expiry.
    pub async fn presign_artifact(
        &self,
        token: &str,
        report: Uuid,
        version: i32,
        format: ExportFormat,
        download_name: &str,
    ) -> Result<(String, DateTime<Utc>), ServiceError> {
        let request = self.request(
            token,
            documents::PresignArtifactRequest {
                report_id: report.to_string(),
                version,
                format: artifact_format(format).into(),
                download_name: download_name.to_owned(),
            },
        )?;
        let response = self
            .documents
            .clone()
            .presign_artifact(request)
            .await
            .map_err(|s| remote_error("documents", s))?
            .into_inner();
        let expires_at = response
            .expires_at
            .as_ref()
            .map(|ts| from_timestamp("expires_at", ts))
            .transpose()
            .map_err(ServiceError::internal)?
            .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("documents gave no expiry")))?;
        Ok((response.url, expires_at))
    }

    /// Starts a generation stream.
    pub async fn generate(
        &self,
        token: &str,
        message: agents::GenerateReportRequest,
        deadline: Duration,
    ) -> Result<tonic::Streaming<agents::GenerateReportResponse>, ServiceError> {
        let mut request = Request::new(message);
        request.set_timeout(deadline);
        attach_context(&mut request, token)?;
        let response = self
            .agents
            .clone()
            .generate_report(request)
            .await
            .map_err(|s| remote_error("agents", s))?;
        Ok(response.into_inner())
    }

    /// Publishes a `report:update` event; a Redis outage is logged, not
    /// fatal (clients reload the report).
    pub async fn publish(&self, org: OrgId, report: Uuid, data: serde_json::Value) {
        if let Err(error) = self
            .events
            .publish(
                org,
                &EventChannel::Report(report),
                EventKind::ReportUpdate,
                data,
            )
            .await
        {
            tracing::warn!(%org, report_id = %report, %error, "report event not published");
        }
    }
}

fn artifact_format(format: ExportFormat) -> documents::ArtifactFormat {
    match format {
        ExportFormat::Markdown => documents::ArtifactFormat::Markdown,
        ExportFormat::Pdf => documents::ArtifactFormat::Pdf,
        ExportFormat::Docx => documents::ArtifactFormat::Docx,
    }
}
