//! The gRPC adapter: proto requests to domain values, domain results to
//! proto responses (and PII findings to `PiiDetected` status details). No
//! business rule lives here; conversions are in [`convert`].

mod convert;
mod links;
mod review;

use std::collections::HashMap;

use prost::Message as _;
use tonic::{Request, Response, Status};
use treven_kj::{content_from_pb, content_to_pb};
use treven_mesh::context::context_of;
use treven_mesh::error::ERROR_DOMAIN;
use treven_mesh::wire::timestamp;
use treven_mesh::{ErrorCode, ServiceError};
use treven_proto::treven::reports::v1 as pb;
use treven_proto::treven::tenants::v1 as tenants;

use crate::app::{Reports, ReportsError, SectionEdit};
use crate::diff::{Change, OpKind};
use crate::model::{Section, parse_id, parse_override_justification, parse_reason};
use crate::store::ReportFilter;
use convert::{
    decisions_from_pb, edited, exploitation_from_pb, finding_to_pb, format_from_pb, format_to_pb,
    optional_country, optional_query, quality_check_to_pb, report_to_pb, scope_from_pb, short_text,
    status_from_pb, trend_to_pb, version_to_pb,
};
use links::{link_access_to_pb, partner_link_to_pb, shared_file_from_pb};

/// `treven.reports.v1.ReportsService` over [`Reports`].
#[derive(Debug, Clone)]
pub struct ReportsGrpc {
    reports: Reports,
    regenerate_deadline: std::time::Duration,
}

impl ReportsGrpc {
    /// Serves `reports`; regenerations wait at most `regenerate_deadline`.
    pub fn new(reports: Reports, regenerate_deadline: std::time::Duration) -> Self {
        Self {
            reports,
            regenerate_deadline,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The status of a failed call: PII findings travel as a typed
/// `treven.reports.v1.PiiDetected` detail next to the `ErrorInfo`, failed
/// blocking quality checks as a `treven.reports.v1.QualityChecksFailed`
/// detail (and their names in the `ErrorInfo` metadata `failed_checks`).
pub fn status_of(error: ReportsError) -> Status {
    match error {
        ReportsError::Service(error) => error.into(),
        ReportsError::QualityFailed(failed) => {
            let names: Vec<&str> = failed.iter().map(|c| c.kind.as_str()).collect();
            let message = format!(
                "the version fails blocking quality checks: {}; fix them, or an admin may \
                 override with a justification",
                names.join(", ")
            );
            let info = tonic_types::pb::ErrorInfo {
                reason: ErrorCode::FailedPrecondition.as_str().to_owned(),
                domain: ERROR_DOMAIN.to_owned(),
                metadata: HashMap::from([("failed_checks".to_owned(), names.join(","))]),
            };
            let detail = pb::QualityChecksFailed {
                checks: failed.into_iter().map(quality_check_to_pb).collect(),
            };
            typed_status(
                ErrorCode::FailedPrecondition,
                message,
                info,
                "treven.reports.v1.QualityChecksFailed",
                detail.encode_to_vec(),
            )
        }
        ReportsError::Pii(findings) => {
            let info = tonic_types::pb::ErrorInfo {
                reason: ErrorCode::PiiDetected.as_str().to_owned(),
                domain: ERROR_DOMAIN.to_owned(),
                metadata: HashMap::new(),
            };
            let detected = pb::PiiDetected {
                findings: findings.into_iter().map(finding_to_pb).collect(),
            };
            let message = format!(
                "personal data found ({} findings): redact each or keep it with a justification",
                detected.findings.len()
            );
            typed_status(
                ErrorCode::PiiDetected,
                message,
                info,
                "treven.reports.v1.PiiDetected",
                detected.encode_to_vec(),
            )
        }
    }
}

/// A status of `code` whose details are the `ErrorInfo` and one typed
/// message of this package (which the gateway renders as JSON).
fn typed_status(
    code: ErrorCode,
    message: String,
    info: tonic_types::pb::ErrorInfo,
    type_name: &str,
    value: Vec<u8>,
) -> Status {
    let status = tonic_types::pb::Status {
        code: code.grpc_code() as i32,
        message: message.clone(),
        details: vec![
            prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                value: info.encode_to_vec(),
            },
            prost_types::Any {
                type_url: format!("type.googleapis.com/{type_name}"),
                value,
            },
        ],
    };
    Status::with_details(code.grpc_code(), message, status.encode_to_vec().into())
}

fn reply<T>(result: Result<T, ReportsError>) -> Reply<T> {
    result.map(Response::new).map_err(status_of)
}

#[tonic::async_trait]
impl pb::reports_service_server::ReportsService for ReportsGrpc {
    async fn list_reports(
        &self,
        request: Request<pb::ListReportsRequest>,
    ) -> Reply<pb::ListReportsResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let status = status_from_pb(m.status)?;
            let country = optional_country(&m.country)?;
            let query = optional_query(&m.q);
            let filter = ReportFilter {
                status,
                country: country.as_deref(),
                include_archived: m.include_archived,
            };
            self.reports
                .list(&context, filter, query.as_deref(), m.limit, &m.cursor)
                .await
        }
        .await;
        reply(result.map(|page| pb::ListReportsResponse {
            items: page.items.into_iter().map(report_to_pb).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    async fn create_report(
        &self,
        request: Request<pb::CreateReportRequest>,
    ) -> Reply<pb::CreateReportResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let scope = scope_from_pb(m.scope)?;
            let documents = m
                .document_ids
                .iter()
                .enumerate()
                .map(|(i, raw)| parse_id(&format!("document_ids[{i}]"), raw))
                .collect::<Result<Vec<_>, _>>()?;
            self.reports.create(&context, scope, documents).await
        }
        .await;
        reply(result.map(|r| pb::CreateReportResponse {
            report: Some(report_to_pb(r)),
        }))
    }

    async fn get_report(
        &self,
        request: Request<pb::GetReportRequest>,
    ) -> Reply<pb::GetReportResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            self.reports.get(&context, id, m.version).await
        }
        .await;
        reply(result.map(|(report, version)| {
            let (version, content) = match version {
                Some((v, c)) => (Some(version_to_pb(v)), Some(content_to_pb(&c))),
                None => (None, None),
            };
            pb::GetReportResponse {
                report: Some(report_to_pb(report)),
                version,
                content,
            }
        }))
    }

    async fn update_section(
        &self,
        request: Request<pb::UpdateSectionRequest>,
    ) -> Reply<pb::UpdateSectionResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            let section = Section::parse_editable("section", &m.section)?;
            let reason = parse_reason("reason", &m.reason)?;
            let content = m
                .content
                .map(content_from_pb)
                .ok_or_else(|| ServiceError::invalid_field("content", "is required"))?;
            let decisions = decisions_from_pb(&m.pii_decisions)?;
            self.reports
                .update_section(
                    &context,
                    id,
                    SectionEdit { section, content },
                    reason,
                    m.base_version,
                    decisions,
                )
                .await
        }
        .await;
        reply(result.map(|(v, c)| {
            let (version, content) = edited(v, c);
            pb::UpdateSectionResponse {
                version: Some(version),
                content: Some(content),
            }
        }))
    }

    async fn regenerate_section(
        &self,
        request: Request<pb::RegenerateSectionRequest>,
    ) -> Reply<pb::RegenerateSectionResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            let section = Section::parse_editable("section", &m.section)?;
            let reason = parse_reason("reason", &m.reason)?;
            let instructions = short_text(
                "instructions",
                &m.instructions,
                crate::model::MAX_INSTRUCTIONS_CHARS,
            )?;
            let decisions = decisions_from_pb(&m.pii_decisions)?;
            self.reports
                .regenerate_section(
                    &context,
                    id,
                    section,
                    reason,
                    m.base_version,
                    instructions,
                    decisions,
                    self.regenerate_deadline,
                )
                .await
        }
        .await;
        reply(result.map(|(v, c)| {
            let (version, content) = edited(v, c);
            pb::RegenerateSectionResponse {
                version: Some(version),
                content: Some(content),
            }
        }))
    }

    async fn reject_section(
        &self,
        request: Request<pb::RejectSectionRequest>,
    ) -> Reply<pb::RejectSectionResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            let section = Section::parse_editable("section", &m.section)?;
            let reason = parse_reason("reason", &m.reason)?;
            self.reports
                .reject_section(&context, id, section, reason, m.base_version)
                .await
        }
        .await;
        reply(result.map(|(v, c)| {
            let (version, content) = edited(v, c);
            pb::RejectSectionResponse {
                version: Some(version),
                content: Some(content),
            }
        }))
    }

    async fn list_report_versions(
        &self,
        request: Request<pb::ListReportVersionsRequest>,
    ) -> Reply<pb::ListReportVersionsResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            self.reports
                .versions(&context, id, m.limit, &m.cursor)
                .await
        }
        .await;
        reply(result.map(|page| pb::ListReportVersionsResponse {
            items: page.items.into_iter().map(version_to_pb).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    async fn diff_report_versions(
        &self,
        request: Request<pb::DiffReportVersionsRequest>,
    ) -> Reply<pb::DiffReportVersionsResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            self.reports.diff(&context, id, m.from, m.to).await
        }
        .await;
        reply(result.map(|(from, to, sections)| {
            pb::DiffReportVersionsResponse {
                from: Some(version_to_pb(from)),
                to: Some(version_to_pb(to)),
                sections: sections
                    .into_iter()
                    .map(|s| pb::SectionDiff {
                        section: s.section.as_str().to_owned(),
                        change: match s.change {
                            Change::Unchanged => pb::SectionChange::Unchanged,
                            Change::Added => pb::SectionChange::Added,
                            Change::Removed => pb::SectionChange::Removed,
                            Change::Modified => pb::SectionChange::Modified,
                        }
                        .into(),
                        ops: s
                            .ops
                            .into_iter()
                            .map(|(kind, text)| pb::DiffOp {
                                kind: match kind {
                                    OpKind::Equal => pb::DiffOpKind::Equal,
                                    OpKind::Insert => pb::DiffOpKind::Insert,
                                    OpKind::Delete => pb::DiffOpKind::Delete,
                                }
                                .into(),
                                text,
                            })
                            .collect(),
                    })
                    .collect(),
            }
        }))
    }

    async fn submit_report(
        &self,
        request: Request<pb::SubmitReportRequest>,
    ) -> Reply<pb::SubmitReportResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            let justification =
                parse_override_justification("override_justification", &m.override_justification)?;
            self.reports
                .submit(&context, id, m.version, justification.as_deref())
                .await
        }
        .await;
        reply(result.map(|r| pb::SubmitReportResponse {
            report: Some(report_to_pb(r)),
        }))
    }

    async fn approve_report(
        &self,
        request: Request<pb::ApproveReportRequest>,
    ) -> Reply<pb::ApproveReportResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            self.reports.approve(&context, id, m.version).await
        }
        .await;
        reply(result.map(|r| pb::ApproveReportResponse {
            report: Some(report_to_pb(r)),
        }))
    }

    async fn export_report(
        &self,
        request: Request<pb::ExportReportRequest>,
    ) -> Reply<pb::ExportReportResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            let format = format_from_pb(m.format)?;
            let decisions = decisions_from_pb(&m.pii_decisions)?;
            self.reports.export(&context, id, format, decisions).await
        }
        .await;
        reply(result.map(|e| pb::ExportReportResponse {
            version: e.version,
            format: format_to_pb(e.format).into(),
            url: e.url,
            expires_at: Some(timestamp(e.expires_at)),
        }))
    }

    async fn share_report(
        &self,
        request: Request<pb::ShareReportRequest>,
    ) -> Reply<pb::ShareReportResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            let partner = parse_id("partner_id", &m.partner_id)?;
            let permission = match tenants::ReportPermission::try_from(m.permission) {
                Ok(p @ (tenants::ReportPermission::View | tenants::ReportPermission::Download)) => {
                    p
                }
                _ => {
                    return Err(ServiceError::invalid_field(
                        "permission",
                        "must be view or download",
                    )
                    .into());
                }
            };
            self.reports.share(&context, id, partner, permission).await
        }
        .await;
        reply(result.map(|access| pb::ShareReportResponse {
            access: Some(access),
        }))
    }

    async fn create_partner_link(
        &self,
        request: Request<pb::CreatePartnerLinkRequest>,
    ) -> Reply<pb::CreatePartnerLinkResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let id = parse_id("id", &m.id)?;
            let grant = parse_id("grant_id", &m.grant_id)?;
            self.reports
                .create_link(&context, id, grant, m.expires_in_days)
                .await
        }
        .await;
        reply(result.map(|link| pb::CreatePartnerLinkResponse {
            link: Some(partner_link_to_pb(link)),
        }))
    }

    async fn open_partner_link(
        &self,
        request: Request<pb::OpenPartnerLinkRequest>,
    ) -> Reply<pb::OpenPartnerLinkResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let file = shared_file_from_pb(m.file)?;
            let format = match m.format {
                0 => None,
                raw => Some(format_from_pb(raw)?),
            };
            self.reports
                .open_link(&context, &m.token, file, format)
                .await
        }
        .await;
        reply(result.map(link_access_to_pb))
    }

    async fn archive_report(
        &self,
        request: Request<pb::ArchiveReportRequest>,
    ) -> Reply<pb::ArchiveReportResponse> {
        let context = context_of(&request)?;
        let result = async {
            let id = parse_id("id", &request.get_ref().id)?;
            self.reports.set_archived(&context, id, true).await
        }
        .await;
        reply(result.map(|r| pb::ArchiveReportResponse {
            report: Some(report_to_pb(r)),
        }))
    }

    async fn unarchive_report(
        &self,
        request: Request<pb::UnarchiveReportRequest>,
    ) -> Reply<pb::UnarchiveReportResponse> {
        let context = context_of(&request)?;
        let result = async {
            let id = parse_id("id", &request.get_ref().id)?;
            self.reports.set_archived(&context, id, false).await
        }
        .await;
        reply(result.map(|r| pb::UnarchiveReportResponse {
            report: Some(report_to_pb(r)),
        }))
    }

    async fn delete_report(
        &self,
        request: Request<pb::DeleteReportRequest>,
    ) -> Reply<pb::DeleteReportResponse> {
        let context = context_of(&request)?;
        let result = async {
            let id = parse_id("id", &request.get_ref().id)?;
            self.reports.delete(&context, id).await
        }
        .await;
        reply(result.map(|()| pb::DeleteReportResponse {}))
    }

    async fn list_trends(
        &self,
        request: Request<pb::ListTrendsRequest>,
    ) -> Reply<pb::ListTrendsResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = async {
            let country = optional_country(&m.country)?;
            let exploitation_type = match m.exploitation_type {
                0 => None,
                raw => Some(exploitation_from_pb(raw).ok_or_else(|| {
                    ServiceError::invalid_field("exploitation_type", "unknown exploitation type")
                })?),
            };
            self.reports
                .trends(&context, country, exploitation_type, m.limit, &m.cursor)
                .await
        }
        .await;
        reply(result.map(|page| pb::ListTrendsResponse {
            items: page.items.into_iter().map(trend_to_pb).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    async fn add_review_comment(
        &self,
        request: Request<pb::AddReviewCommentRequest>,
    ) -> Reply<pb::AddReviewCommentResponse> {
        self.handle_add_review_comment(request).await
    }

    async fn list_review_comments(
        &self,
        request: Request<pb::ListReviewCommentsRequest>,
    ) -> Reply<pb::ListReviewCommentsResponse> {
        self.handle_list_review_comments(request).await
    }

    async fn resolve_review_comment(
        &self,
        request: Request<pb::ResolveReviewCommentRequest>,
    ) -> Reply<pb::ResolveReviewCommentResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = self
            .handle_set_comment_resolved(context, &m.report_id, &m.comment_id, true)
            .await;
        review::resolved_reply(result, |c| pb::ResolveReviewCommentResponse {
            comment: Some(c),
        })
    }

    async fn reopen_review_comment(
        &self,
        request: Request<pb::ReopenReviewCommentRequest>,
    ) -> Reply<pb::ReopenReviewCommentResponse> {
        let context = context_of(&request)?;
        let m = request.into_inner();
        let result = self
            .handle_set_comment_resolved(context, &m.report_id, &m.comment_id, false)
            .await;
        review::resolved_reply(result, |c| pb::ReopenReviewCommentResponse {
            comment: Some(c),
        })
    }

    async fn request_changes(
        &self,
        request: Request<pb::RequestChangesRequest>,
    ) -> Reply<pb::RequestChangesResponse> {
        self.handle_request_changes(request).await
    }

    async fn assign_reviewer(
        &self,
        request: Request<pb::AssignReviewerRequest>,
    ) -> Reply<pb::AssignReviewerResponse> {
        self.handle_assign_reviewer(request).await
    }

    async fn unassign_reviewer(
        &self,
        request: Request<pb::UnassignReviewerRequest>,
    ) -> Reply<pb::UnassignReviewerResponse> {
        self.handle_unassign_reviewer(request).await
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Reply<pb::ListNotificationsResponse> {
        self.handle_list_notifications(request).await
    }

    async fn mark_notification_read(
        &self,
        request: Request<pb::MarkNotificationReadRequest>,
    ) -> Reply<pb::MarkNotificationReadResponse> {
        self.handle_mark_notification_read(request).await
    }

    async fn mark_all_notifications_read(
        &self,
        request: Request<pb::MarkAllNotificationsReadRequest>,
    ) -> Reply<pb::MarkAllNotificationsReadResponse> {
        self.handle_mark_all_notifications_read(request).await
    }
}
