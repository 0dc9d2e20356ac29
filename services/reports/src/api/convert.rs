//! Proto ⇄ domain conversions of the reports API: requests to validated
//! domain values, domain results to responses. The KJ content itself
//! converts in `treven_kj::proto`; the scope sent to other services in
//! `crate::wire`.

use chrono::{Duration as ChronoDuration, Utc};
use treven_kj::content_to_pb;
use treven_kj::proto::{confidence_to_pb, source_to_pb};
use treven_mesh::ServiceError;
use treven_mesh::wire::{from_timestamp, timestamp};
use treven_proto::treven::reports::v1 as pb;
use treven_proto::treven::tenants::v1 as tenants;

use crate::model::{
    ClientType, Content, ExploitationType, ExportFormat, PiiAction, PiiDecision, PiiFinding,
    QualityCheck, QualityKind, Report, Scope, Status as ReportStatus, Trend, Version, VersionCause,
    parse_country,
};
use crate::wire::{exploitation_to_pb, scope_to_pb};

pub(super) fn finding_to_pb(f: PiiFinding) -> pb::PiiFinding {
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

pub(super) fn decisions_from_pb(raw: &[pb::PiiDecision]) -> Result<Vec<PiiDecision>, ServiceError> {
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

pub(super) fn decision_to_pb(d: &PiiDecision) -> pb::PiiDecision {
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

pub(super) fn exploitation_from_pb(raw: i32) -> Option<ExploitationType> {
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

pub(super) fn short_text(field: &str, raw: &str, max: usize) -> Result<String, ServiceError> {
    let text = raw.trim();
    if text.chars().count() > max {
        return Err(ServiceError::invalid_field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(text.to_owned())
}

pub(super) fn scope_from_pb(scope: Option<pb::ReportScope>) -> Result<Scope, ServiceError> {
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
            // The period between the two instants, whichever is written
            // first: the OpenAPI document cannot say "start before end"
            // (JSON Schema does not compare two fields), and refusing a
            // range written the other way round helps nobody.
            (start.min(end), start.max(end))
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

pub(super) fn status_to_pb(s: ReportStatus) -> pb::ReportStatus {
    match s {
        ReportStatus::Generating => pb::ReportStatus::Generating,
        ReportStatus::Draft => pb::ReportStatus::Draft,
        ReportStatus::InReview => pb::ReportStatus::InReview,
        ReportStatus::Approved => pb::ReportStatus::Approved,
        ReportStatus::Exported => pb::ReportStatus::Exported,
        ReportStatus::Failed => pb::ReportStatus::Failed,
    }
}

pub(super) fn status_from_pb(raw: i32) -> Result<Option<ReportStatus>, ServiceError> {
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

pub(super) fn report_to_pb(r: Report) -> pb::Report {
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
        submission: r.submission.map(|s| pb::Submission {
            submitted_by: s.submitted_by,
            submitted_at: Some(timestamp(s.submitted_at)),
            version: s.version,
        }),
        failure_reason: r.failure_reason,
        created_by: r.created_by,
        created_at: Some(timestamp(r.created_at)),
        updated_at: Some(timestamp(r.updated_at)),
        reviewer: r.reviewer.map(|a| pb::ReviewerAssignment {
            reviewer_id: a.reviewer_id,
            reviewer_user_id: a.user_id.to_string(),
            assigned_by: a.assigned_by,
            assigned_at: Some(timestamp(a.assigned_at)),
        }),
        archived_at: r.archival.as_ref().map(|a| timestamp(a.archived_at)),
        archived_by: r.archival.map(|a| a.archived_by).unwrap_or_default(),
    }
}

pub(super) fn quality_kind_to_pb(k: QualityKind) -> pb::QualityCheckKind {
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

pub(super) fn quality_check_to_pb(q: QualityCheck) -> pb::QualityCheck {
    pb::QualityCheck {
        kind: quality_kind_to_pb(q.kind).into(),
        passed: q.passed,
        detail: q.detail,
        blocking: q.kind.is_blocking(),
    }
}

pub(super) fn version_to_pb(v: Version) -> pb::ReportVersion {
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
            .map(quality_check_to_pb)
            .collect(),
        pii_decisions: v.pii_decisions.iter().map(decision_to_pb).collect(),
        created_at: Some(timestamp(v.created_at)),
    }
}

pub(super) fn trend_to_pb(t: Trend) -> pb::Trend {
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

pub(super) fn format_from_pb(raw: i32) -> Result<ExportFormat, ServiceError> {
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

pub(super) fn format_to_pb(f: ExportFormat) -> pb::ExportFormat {
    match f {
        ExportFormat::Markdown => pb::ExportFormat::Markdown,
        ExportFormat::Pdf => pb::ExportFormat::Pdf,
        ExportFormat::Docx => pb::ExportFormat::Docx,
    }
}

pub(super) fn optional_country(raw: &str) -> Result<Option<String>, ServiceError> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        parse_country("country", raw).map(Some)
    }
}

/// The search query of a list request: `None` when blank, trimmed
/// otherwise (its length and characters are the proto's rules, checked
/// before the handler runs).
pub(super) fn optional_query(raw: &str) -> Option<String> {
    let query = raw.trim();
    (!query.is_empty()).then(|| query.to_owned())
}

pub(super) fn edited(version: Version, content: Content) -> (pb::ReportVersion, pb::ReportContent) {
    let content = content_to_pb(&content);
    (version_to_pb(version), content)
}
