//! Calls to other services: tenants (audit log, report-access grants),
//! documents (artifacts), agents (generation) and Redis (progress events).
//!
//! Every call carries a mesh context token minted here for its audience,
//! acting for the caller's user (or, for background work, the requester):
//! a received token is never forwarded. And a deadline.

mod partner_links;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tonic::Request;
use tonic::transport::Channel;
use treven_mesh::client::ChannelOptions;
use treven_mesh::discovery::upstream;
use treven_mesh::events::{EventChannel, EventKind, EventPublisher};
use treven_mesh::wire::{from_timestamp, json_to_struct};
use treven_mesh::{ErrorCode, MeshContext, OrgId, Principal, ServiceError, Signer};
use treven_proto::treven::agents::v1 as agents;
use treven_proto::treven::agents::v1::agents_service_client::AgentsServiceClient;
use treven_proto::treven::documents::v1 as documents;
use treven_proto::treven::documents::v1::documents_service_client::DocumentsServiceClient;
use treven_proto::treven::tenants::v1 as tenants;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;
use uuid::Uuid;

use crate::config::ReportsConfig;
use crate::model::{Content, ExportFormat, Report, Section};
use crate::wire::scope_to_pb;
use tokio_stream::StreamExt as _;
use treven_kj::{content_from_pb, content_to_pb};

mod review;

pub use review::OrgUser;

/// Bytes per PutArtifact chunk (the documents limit is 1 MiB).
const CHUNK_BYTES: usize = 512 * 1024;

/// An audit entry to record in tenants (stored in the outbox as JSON, and
/// delivered from there).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// Dotted action, e.g. `report.section.update`.
    pub action: String,
    /// The kind of resource (`report`).
    pub resource_type: String,
    /// The report (or other resource) id.
    pub resource_id: String,
    /// Details; never personal data.
    pub details: serde_json::Value,
}

impl AuditEntry {
    /// An entry about report `id`.
    pub fn report(action: &str, id: Uuid, details: serde_json::Value) -> Self {
        Self {
            action: action.to_owned(),
            resource_type: "report".to_owned(),
            resource_id: id.to_string(),
            details,
        }
    }
}

/// What to ask the generator for.
#[derive(Debug, Clone, Copy)]
pub struct GenerationRequest<'a> {
    /// The report (its id and scope are sent).
    pub report: &'a Report,
    /// The documents attached to it.
    pub documents: &'a [Uuid],
    /// The sections wanted; empty for every generated section.
    pub sections: &'a [Section],
    /// The current content, when rewriting part of it.
    pub current: Option<&'a Content>,
    /// Extra instructions (may be empty).
    pub instructions: &'a str,
}

/// One event of a generation stream, decoded.
#[derive(Debug, Clone)]
pub enum GeneratorEvent {
    /// A section written: its key as sent, and the content it came in.
    Section {
        /// The section key as the generator sent it (may be unknown).
        key: String,
        /// The content holding the section (boxed: it dwarfs the others).
        content: Box<Content>,
    },
    /// The generator finished.
    Done,
    /// The generator gave up.
    Failed {
        /// The error reason, e.g. `VALIDATION_ERROR`.
        code: String,
        /// What went wrong.
        message: String,
    },
}

/// A running GenerateReport stream, read one decoded event at a time.
#[derive(Debug)]
pub struct GenerationStream {
    inner: tonic::Streaming<agents::GenerateReportResponse>,
}

impl GenerationStream {
    /// The next section, done or failure (other events are skipped);
    /// `None` when the stream ends; a broken stream is a remote error.
    pub async fn next(&mut self) -> Option<Result<GeneratorEvent, ServiceError>> {
        use agents::generate_report_response::Event;
        while let Some(message) = self.inner.next().await {
            let message = match message {
                Ok(message) => message,
                Err(status) => return Some(Err(remote_error("agents", status))),
            };
            match message.event {
                Some(Event::Section(generated)) => {
                    return Some(Ok(GeneratorEvent::Section {
                        key: generated.section,
                        content: Box::new(content_from_pb(generated.content.unwrap_or_default())),
                    }));
                }
                Some(Event::Done(_)) => return Some(Ok(GeneratorEvent::Done)),
                Some(Event::Error(error)) => {
                    return Some(Ok(GeneratorEvent::Failed {
                        code: error.code,
                        message: error.message,
                    }));
                }
                Some(_) | None => {}
            }
        }
        None
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
    signer: Signer,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").finish_non_exhaustive()
    }
}

/// A status from another service as an error for our caller (see
/// [`ServiceError::from_remote`]).
pub fn remote_error(service: &str, status: tonic::Status) -> ServiceError {
    ServiceError::from_remote(service, &status)
}

impl Clients {
    /// Lazily connecting clients for the URLs in `config`, minting their
    /// calls' tokens with `signer` (the reports key).
    pub fn connect_lazy(config: &ReportsConfig, signer: Signer) -> anyhow::Result<Self> {
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
            signer,
        })
    }

    /// A call to `audience` for the user `context` acts for: a token of
    /// our own for that audience (the received one is never forwarded) and
    /// the unary timeout.
    fn request<T>(
        &self,
        context: &MeshContext,
        audience: Principal,
        message: T,
    ) -> Result<Request<T>, ServiceError> {
        let mut request = Request::new(message);
        request.set_timeout(self.call_timeout);
        self.signer.attach(&mut request, context, audience)?;
        Ok(request)
    }

    /// Appends `entry` to the audit log of the context's organisation as
    /// event `event_id` (tenants stores one entry per event id, however
    /// often it is delivered) that happened at `occurred_at`. Only the
    /// outbox relay calls this, after the change committed.
    pub async fn record_audit(
        &self,
        context: &MeshContext,
        entry: &AuditEntry,
        event_id: Uuid,
        occurred_at: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let request = self.request(
            context,
            Principal::Tenants,
            tenants::RecordAuditEventRequest {
                action: entry.action.clone(),
                resource_type: entry.resource_type.clone(),
                resource_id: entry.resource_id.clone(),
                details: Some(json_to_struct(&entry.details)),
                event_id: event_id.to_string(),
                occurred_at: Some(treven_mesh::wire::timestamp(occurred_at)),
            },
        )?;
        self.tenants
            .clone()
            .record_audit_event(request)
            .await
            .map_err(|s| remote_error("tenants", s))?;
        Ok(())
    }

    /// Whether the context's organisation lets the analyst who submitted or
    /// wrote a version approve it: its settings' `allow_self_approval`,
    /// false when absent or not `true`.
    pub async fn allows_self_approval(&self, context: &MeshContext) -> Result<bool, ServiceError> {
        let request = self.request(
            context,
            Principal::Tenants,
            tenants::GetOrganisationRequest {},
        )?;
        let organisation = self
            .tenants
            .clone()
            .get_organisation(request)
            .await
            .map_err(|s| remote_error("tenants", s))?
            .into_inner()
            .organisation
            .unwrap_or_default();
        let settings =
            treven_mesh::wire::struct_to_json(&organisation.settings.unwrap_or_default());
        Ok(settings.get("allow_self_approval") == Some(&serde_json::Value::Bool(true)))
    }

    /// Grants `partner` access to `report` (tenants checks the partner is
    /// in the caller's organisation and audits the grant).
    pub async fn grant_access(
        &self,
        context: &MeshContext,
        report: Uuid,
        partner: Uuid,
        permission: tenants::ReportPermission,
    ) -> Result<tenants::ReportAccess, ServiceError> {
        let request = self.request(
            context,
            Principal::Tenants,
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
        context: &MeshContext,
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
        let request = self.request(context, Principal::Documents, tokio_stream::iter(messages))?;
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
        context: &MeshContext,
        report: Uuid,
        version: i32,
        source_ids: Vec<String>,
    ) -> Result<(), ServiceError> {
        let request = self.request(
            context,
            Principal::Documents,
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
        context: &MeshContext,
        report: Uuid,
        version: i32,
        format: ExportFormat,
        download_name: &str,
    ) -> Result<(String, DateTime<Utc>), ServiceError> {
        let request = self.request(
            context,
            Principal::Documents,
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

    /// Starts a generation stream for `request`; the whole stream must end
    /// within `deadline` (the caller enforces it around its reading).
    pub async fn generate(
        &self,
        context: &MeshContext,
        request: GenerationRequest<'_>,
        deadline: Duration,
    ) -> Result<GenerationStream, ServiceError> {
        let message = agents::GenerateReportRequest {
            report_id: request.report.id.to_string(),
            scope: Some(scope_to_pb(&request.report.scope)),
            document_ids: request.documents.iter().map(Uuid::to_string).collect(),
            sections: (request.sections.iter())
                .map(|s| s.as_str().to_owned())
                .collect(),
            current: request.current.map(content_to_pb),
            instructions: request.instructions.to_owned(),
        };
        let mut request = Request::new(message);
        request.set_timeout(deadline);
        self.signer
            .attach(&mut request, context, Principal::Agents)?;
        let response = self
            .agents
            .clone()
            .generate_report(request)
            .await
            .map_err(|s| remote_error("agents", s))?;
        Ok(GenerationStream {
            inner: response.into_inner(),
        })
    }

    /// Asks the generator to rewrite one `section` of `current` and returns
    /// content holding only that section (for RegenerateSection); the whole
    /// call ends within `deadline`.
    pub async fn generate_section(
        &self,
        context: &MeshContext,
        request: GenerationRequest<'_>,
        section: Section,
        deadline: Duration,
    ) -> Result<Content, ServiceError> {
        let run = async {
            let mut stream = self.generate(context, request, deadline).await?;
            let mut found: Option<Content> = None;
            while let Some(event) = stream.next().await {
                match event? {
                    GeneratorEvent::Section { key, content } if key == section.as_str() => {
                        let mut part = Content::default();
                        part.replace_section(section, &content);
                        found = Some(part);
                    }
                    GeneratorEvent::Section { .. } => {}
                    GeneratorEvent::Done => break,
                    GeneratorEvent::Failed { code, message } => {
                        return Err(ServiceError::unavailable(anyhow::anyhow!(
                            "generator error {code}: {message}"
                        )));
                    }
                }
            }
            found.ok_or_else(|| {
                ServiceError::unavailable(anyhow::anyhow!("the generator did not write {section}"))
            })
        };
        tokio::time::timeout(deadline, run)
            .await
            .map_err(|_| ServiceError::unavailable(anyhow::anyhow!("regeneration took too long")))?
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
