//! Every outbound call of the agents service: the documents service (the
//! tools' and the generator's sources, evidence) and the reports service
//! (the social agent's approved judgements). Each call carries a token the
//! agents service mints for that service, acting for the caller's user
//! (never the token it received), so it can only reach the caller's
//! organisation;
//! failures are typed ([`ClientError`], or a [`ServiceError`] with the
//! remote code), never a remote message shown as ours.

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tonic::transport::Channel;
use treven_mesh::{ErrorCode, MeshContext, Principal, ServiceError, Signer};
use treven_proto::treven::documents::v1 as docs;
use treven_proto::treven::documents::v1::documents_service_client::DocumentsServiceClient;
use treven_proto::treven::reports::v1 as reports;
use treven_proto::treven::reports::v1::reports_service_client::ReportsServiceClient;
use uuid::Uuid;

use crate::generator::{SourceBrief, dataset_label, url_label};

/// A failed call to another service.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The caller's mesh context could not be attached to the call.
    #[error("{0}")]
    Context(ServiceError),
    /// The service answered with an error status.
    #[error("{service}: {message}")]
    Remote {
        /// Which service (`documents`).
        service: &'static str,
        /// The status's code.
        code: ErrorCode,
        /// The status's message.
        message: String,
    },
}

impl ClientError {
    /// The error of `service` answering `status`.
    fn remote(service: &'static str, status: &tonic::Status) -> Self {
        Self::Remote {
            service,
            code: ErrorCode::of_status(status),
            message: status.message().to_owned(),
        }
    }
}

/// The documents service, as the tools and the generator use it.
#[derive(Debug, Clone)]
pub struct Documents {
    client: DocumentsServiceClient<Channel>,
    signer: Signer,
}

impl Documents {
    /// Calls the documents service on `channel`, with tokens minted by
    /// `signer` (the agents key).
    pub fn new(channel: Channel, signer: Signer) -> Self {
        Self {
            client: DocumentsServiceClient::new(channel),
            signer,
        }
    }

    fn call<T>(&self, context: &MeshContext, message: T) -> Result<tonic::Request<T>, ClientError> {
        let mut call = tonic::Request::new(message);
        self.signer
            .attach(&mut call, context, Principal::Documents)
            .map_err(ClientError::Context)?;
        Ok(call)
    }

    /// Sources matching the filters, highest trust first.
    pub async fn search(
        &self,
        context: &MeshContext,
        request: docs::SearchSourcesRequest,
    ) -> Result<Vec<SourceBrief>, ClientError> {
        let call = self.call(context, request)?;
        let response = self
            .client
            .clone()
            .search_sources(call)
            .await
            .map_err(|status| ClientError::remote("documents", &status))?;
        Ok(response.into_inner().items.into_iter().map(brief).collect())
    }

    /// Records the sources behind a report version.
    pub async fn store_evidence(
        &self,
        context: &MeshContext,
        request: docs::StoreEvidenceRequest,
    ) -> Result<i32, ClientError> {
        let call = self.call(context, request)?;
        let response = self
            .client
            .clone()
            .store_evidence(call)
            .await
            .map_err(|status| ClientError::remote("documents", &status))?;
        Ok(response.into_inner().source_count)
    }
}

fn time(ts: Option<&prost_types::Timestamp>) -> Option<chrono::DateTime<chrono::Utc>> {
    ts.and_then(|t| {
        chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
    })
}

/// A documents source as the generator and tools see it.
pub fn brief(source: docs::Source) -> SourceBrief {
    use chrono::Datelike as _;
    let (label, url) = match &source.locator {
        Some(docs::source::Locator::Dataset(d)) => {
            let range = d.date_range.as_ref();
            (
                dataset_label(
                    &d.dataset,
                    time(range.and_then(|r| r.start.as_ref())),
                    time(range.and_then(|r| r.end.as_ref())),
                ),
                String::new(),
            )
        }
        Some(docs::source::Locator::Url(url)) => (
            url_label(
                &source.publisher,
                &source.title,
                time(source.published_at.as_ref()).map(|t| t.year()),
            ),
            url.clone(),
        ),
        None => (
            url_label(&source.publisher, &source.title, None),
            String::new(),
        ),
    };
    SourceBrief {
        id: source.id,
        label,
        url,
        title: source.title,
        publisher: source.publisher,
        summary: source.summary.chars().take(400).collect(),
        trust: source.trust.map(|t| t.total).unwrap_or_default(),
    }
}

/// The reports service, as the social agent uses it.
pub trait ReportsLookup: Send + Sync + 'static {
    /// Whether report `id` of the caller is approved, with its key
    /// judgements; NOT_FOUND when the caller's organisation has no such
    /// report.
    fn approved_judgements(
        &self,
        context: &MeshContext,
        id: Uuid,
    ) -> futures::future::BoxFuture<'static, Result<(bool, Vec<String>), ServiceError>>;
}

/// The reports service over gRPC.
#[derive(Debug, Clone)]
pub struct ReportsClient {
    client: ReportsServiceClient<Channel>,
    signer: Signer,
}

impl ReportsClient {
    /// Calls the reports service on `channel`, with tokens minted by
    /// `signer` (the agents key).
    pub fn new(channel: Channel, signer: Signer) -> Self {
        Self {
            client: ReportsServiceClient::new(channel),
            signer,
        }
    }
}

impl ReportsLookup for ReportsClient {
    fn approved_judgements(
        &self,
        context: &MeshContext,
        id: Uuid,
    ) -> BoxFuture<'static, Result<(bool, Vec<String>), ServiceError>> {
        let mut client = self.client.clone();
        let mut request = tonic::Request::new(reports::GetReportRequest {
            id: id.to_string(),
            version: 0,
        });
        let attached = self
            .signer
            .attach(&mut request, context, Principal::Reports);
        async move {
            attached?;
            let response = client.get_report(request).await.map_err(|status| {
                match ErrorCode::of_status(&status) {
                    ErrorCode::NotFound => ServiceError::not_found("report"),
                    _ => ServiceError::from_remote("reports", &status),
                }
            })?;
            let response = response.into_inner();
            let status = response.report.map(|r| r.status).unwrap_or_default();
            let approved = status == i32::from(reports::ReportStatus::Approved)
                || status == i32::from(reports::ReportStatus::Exported);
            let judgements = response
                .content
                .map(|c| c.key_judgements.into_iter().map(|k| k.text).collect())
                .unwrap_or_default();
            Ok((approved, judgements))
        }
        .boxed()
    }
}
