//! The gRPC adapter: proto requests to domain values, domain results to
//! proto responses (and PII findings to `PiiDetected` status details). No
//! business rule lives here.

use std::collections::HashMap;

use chrono::{Duration as ChronoDuration, Utc};
use prost::Message as _;
use tonic::{Request, Response, Status};
use treven_kj::proto::{confidence_to_pb, source_to_pb};
use treven_kj::{content_from_pb, content_to_pb};
use treven_mesh::context::context_of;
use treven_mesh::error::ERROR_DOMAIN;
use treven_mesh::wire::{from_timestamp, timestamp};
use treven_mesh::{ErrorCode, ServiceError};
use treven_proto::treven::reports::v1 as pb;
use treven_proto::treven::tenants::v1 as tenants;

use crate::diff::{Change, OpKind};
use crate::model::{
    ClientType, Content, ExploitationType, ExportFormat, PiiAction, PiiDecision, PiiFinding,
    QualityKind, Report, Scope, Section, Status as ReportStatus, Trend, Version, VersionCause,
    parse_country, parse_id, parse_reason,
};
use crate::service::{Reports, ReportsError, SectionEdit};
use crate::wire::{exploitation_to_pb, scope_to_pb};

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
/// `treven.reports.v1.PiiDetected` detail next to the `ErrorInfo`.
pub fn status_of(error: ReportsError) -> Status {
    match error {
        ReportsError::Service(error) => error.into(),
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
            let status = tonic_types::pb::Status {
                code: ErrorCode::PiiDetected.grpc_code() as i32,
                message: message.clone(),
                details: vec![
                    prost_types::Any {
                        type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                        value: info.encode_to_vec(),
                    },
                    prost_types::Any {
                        type_url: "type.googleapis.com/treven.reports.v1.PiiDetected".into(),
                        value: detected.encode_to_vec(),
                    },
                ],
            };
            Status::with_details(
                ErrorCode::PiiDetected.grpc_code(),
                message,
                status.encode_to_vec().into(),
            )
        }
    }
}

fn reply<T>(result: Result<T, ReportsError>) -> Reply<T> {
    result.map(Response::new).map_err(status_of)
}

fn finding_to_pb(f: PiiFinding) -> pb::PiiFinding {
    pb::PiiFinding {
        id: f.id,
        r#type: f.kind.proto_value(),
        section: f.section,
        field_path: f.field_path,
        start: f.start as i64,
        end: f.end as i64,
        placeholder: f.placeholder,
    }
}

fn decisions_from_pb(raw: &[pb::PiiDecision]) -> Result<Vec<PiiDecision>, ServiceError> {
    if raw.len() > 500 {
        return Err(ServiceError::invalid_field(
            "pii_decisions",
            "at most 500 decisions",
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, d)| {
            let action = match pb::PiiAction::try_from(d.action) {
                Ok(pb::PiiAction::Redact) => Some(PiiAction::Redact),
                Ok(pb::PiiAction::Keep) => Some(PiiAction::Keep),
                _ => None,
            };
            PiiDecision::parse(i, &d.finding_id, action, &d.justification)
        })
        .collect()
}

fn decision_to_pb(d: &PiiDecision) -> pb::PiiDecision {
    pb::PiiDecision {
        finding_id: d.finding_id.clone(),
        action: match d.action {
            PiiAction::Redact => pb::PiiAction::Redact,
            PiiAction::Keep => pb::PiiAction::Keep,
        }
        .into(),
        justification: d.justification.clone(),
    }
}

fn exploitation_from_pb(raw: i32) -> Option<ExploitationType> {
    match pb::ExploitationType::try_from(raw) {
        Ok(pb::ExploitationType::Labour) => Some(ExploitationType::Labour),
        Ok(pb::ExploitationType::Sexual) => Some(ExploitationType::Sexual),
        Ok(pb::ExploitationType::Online) => Some(ExploitationType::Online),
        Ok(pb::ExploitationType::Criminal) => Some(ExploitationType::Criminal),
        Ok(pb::ExploitationType::Mixed) => Some(ExploitationType::Mixed),
        Ok(pb::ExploitationType::Other) => Some(ExploitationType::Other),
        _ => None,
    }
}

fn short_text(field: &str, raw: &str, max: usize) -> Result<String, ServiceError> {
    let text = raw.trim();
    if text.chars().count() > max {
        return Err(ServiceError::invalid_field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(text.to_owned())
}

fn scope_from_pb(scope: Option<pb::ReportScope>) -> Result<Scope, ServiceError> {
    let s = scope.ok_or_else(|| ServiceError::invalid_field("scope", "is required"))?;
    let region = short_text("scope.region", &s.region, 200)?;
    let country = if s.country.trim().is_empty() {
        String::new()
    } else {
        parse_country("scope.country", &s.country)?
    };
    if country.is_empty() && region.is_empty() {
        return Err(ServiceError::invalid_field(
            "scope.country",
            "a country or a region is required",
        ));
    }
    let sector = short_text("scope.sector", &s.sector, 200)?;
    if sector.is_empty() {
        return Err(ServiceError::invalid_field("scope.sector", "is required"));
    }
    let exploitation_type = exploitation_from_pb(s.exploitation_type).ok_or_else(|| {
        ServiceError::invalid_field(
            "scope.exploitation_type",
            "is required (labour, sexual, online, criminal, mixed or other)",
        )
    })?;
    let client_type = match tenants::OrganisationKind::try_from(s.client_type) {
        Ok(tenants::OrganisationKind::Fi) => ClientType::Fi,
        Ok(tenants::OrganisationKind::Ngo) => ClientType::Ngo,
        Ok(tenants::OrganisationKind::Le) => ClientType::Le,
        _ => {
            return Err(ServiceError::invalid_field(
                "scope.client_type",
                "must be fi, ngo or le",
            ));
        }
    };
    let now = Utc::now();
    let (time_start, time_end) = match s.time_range {
        None => (now - ChronoDuration::days(365), now),
        Some(range) => {
            let end = match &range.end {
                Some(ts) => from_timestamp("scope.time_range.end", ts)?,
                None => now,
            };
            let start = match &range.start {
                Some(ts) => from_timestamp("scope.time_range.start", ts)?,
                None => end - ChronoDuration::days(365),
            };
            if start >= end {
                return Err(ServiceError::invalid_field(
                    "scope.time_range",
                    "start must be before end",
                ));
            }
            (start, end)
        }
    };
    Ok(Scope {
        country,
        region,
        sector,
        exploitation_type,
        time_start,
        time_end,
        client_type,
    })
}

fn status_to_pb(s: ReportStatus) -> pb::ReportStatus {
    match s {
        ReportStatus::Generating => pb::ReportStatus::Generating,
        ReportStatus::Draft => pb::ReportStatus::Draft,
        ReportStatus::InReview => pb::ReportStatus::InReview,
        ReportStatus::Approved => pb::ReportStatus::Approved,
        ReportStatus::Exported => pb::ReportStatus::Exported,
        ReportStatus::Failed => pb::ReportStatus::Failed,
    }
}

fn status_from_pb(raw: i32) -> Result<Option<ReportStatus>, ServiceError> {
    Ok(match pb::ReportStatus::try_from(raw) {
        Ok(pb::ReportStatus::Unspecified) => None,
        Ok(pb::ReportStatus::Generating) => Some(ReportStatus::Generating),
        Ok(pb::ReportStatus::Draft) => Some(ReportStatus::Draft),
        Ok(pb::ReportStatus::InReview) => Some(ReportStatus::InReview),
        Ok(pb::ReportStatus::Approved) => Some(ReportStatus::Approved),
        Ok(pb::ReportStatus::Exported) => Some(ReportStatus::Exported),
        Ok(pb::ReportStatus::Failed) => Some(ReportStatus::Failed),
        Err(_) => return Err(ServiceError::invalid_field("status", "unknown status")),
    })
}

fn report_to_pb(r: Report) -> pb::Report {
    pb::Report {
        id: r.id.to_string(),
        org_id: r.org_id.to_string(),
        title: r.title,
        scope: Some(scope_to_pb(&r.scope)),
        status: status_to_pb(r.status).into(),
        latest_version: r.latest_version,
        approval: r.approval.map(|a| pb::Approval {
            approved_by: a.approved_by,
            approved_at: Some(timestamp(a.approved_at)),
            version: a.version,
        }),
        failure_reason: r.failure_reason,
        created_by: r.created_by,
        created_at: Some(timestamp(r.created_at)),
        updated_at: Some(timestamp(r.updated_at)),
    }
}

fn quality_kind_to_pb(k: QualityKind) -> pb::QualityCheckKind {
    match k {
        QualityKind::SectionOrder => pb::QualityCheckKind::SectionOrder,
        QualityKind::KeyJudgementCount => pb::QualityCheckKind::KeyJudgementCount,
        QualityKind::HeadlineCardCount => pb::QualityCheckKind::HeadlineCardCount,
        QualityKind::WordCount => pb::QualityCheckKind::WordCount,
        QualityKind::DisclaimerPresent => pb::QualityCheckKind::DisclaimerPresent,
        QualityKind::ClaimsCited => pb::QualityCheckKind::ClaimsCited,
        QualityKind::RedFlagCount => pb::QualityCheckKind::RedFlagCount,
    }
}

fn version_to_pb(v: Version) -> pb::ReportVersion {
    pb::ReportVersion {
        report_id: v.report_id.to_string(),
        number: v.number,
        content_hash: v.content_hash,
        cause: match v.cause {
            VersionCause::Generated => pb::VersionCause::Generated,
            VersionCause::Edited => pb::VersionCause::Edited,
            VersionCause::Regenerated => pb::VersionCause::Regenerated,
            VersionCause::Rejected => pb::VersionCause::Rejected,
        }
        .into(),
        section: v.section.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        author_id: v.author_id,
        reason: v.reason,
        change_summary: v.change_summary,
        rejected_sections: v
            .rejected_sections
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        quality_checks: v
            .quality_checks
            .into_iter()
            .map(|q| pb::QualityCheck {
                kind: quality_kind_to_pb(q.kind).into(),
                passed: q.passed,
                detail: q.detail,
            })
            .collect(),
        pii_decisions: v.pii_decisions.iter().map(decision_to_pb).collect(),
        created_at: Some(timestamp(v.created_at)),
    }
}

fn trend_to_pb(t: Trend) -> pb::Trend {
    pb::Trend {
        id: t.id.to_string(),
        country: t.country,
        exploitation_type: exploitation_to_pb(t.exploitation_type).into(),
        statement: t.statement,
        confidence: confidence_to_pb(t.confidence).into(),
        tags: t.tags,
        sources: t.sources.iter().map(source_to_pb).collect(),
        report_id: t.report_id.to_string(),
        report_version: t.report_version,
        updated_at: Some(timestamp(t.updated_at)),
    }
}

fn format_from_pb(raw: i32) -> Result<ExportFormat, ServiceError> {
    match pb::ExportFormat::try_from(raw) {
        Ok(pb::ExportFormat::Markdown) => Ok(ExportFormat::Markdown),
        Ok(pb::ExportFormat::Pdf) => Ok(ExportFormat::Pdf),
        Ok(pb::ExportFormat::Docx) => Ok(ExportFormat::Docx),
        _ => Err(ServiceError::invalid_field(
            "format",
            "must be markdown, pdf or docx",
        )),
    }
}

fn format_to_pb(f: ExportFormat) -> pb::ExportFormat {
    match f {
        ExportFormat::Markdown => pb::ExportFormat::Markdown,
        ExportFormat::Pdf => pb::ExportFormat::Pdf,
        ExportFormat::Docx => pb::ExportFormat::Docx,
    }
}

fn optional_country(raw: &str) -> Result<Option<String>, ServiceError> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        parse_country("country", raw).map(Some)
    }
}

fn edited(version: Version, content: Content) -> (pb::ReportVersion, pb::ReportContent) {
    let content = content_to_pb(&content);
    (version_to_pb(version), content)
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
            self.reports
                .list(&context, status, country, m.limit, &m.cursor)
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
            self.reports.submit(&context, id, m.version).await
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
}
