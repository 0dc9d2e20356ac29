//! Partner links: an expiring, signed URL minted for one report-access
//! grant, through which the grant's partner reads exactly the approved
//! version that was shared — without an account.
//!
//! Minting ([`Reports::create_link`], analysts and admins) binds the
//! organisation, report, approved version, grant, partner, permission and
//! expiry into a token only this service can sign ([`crate::links`]).
//! Opening ([`Reports::open_link`], the gateway's unauthenticated
//! `GET /shared/{token}`) verifies the token, then acts for the owning
//! organisation as `partner:<id>` with the viewer role, and on EVERY access
//! checks that the report is not deleted, that the version is still the
//! approved one, and asks tenants that the grant still exists with the same
//! partner and permission. `view` gives the version rendered as markdown
//! (personal data not kept with a justification is redacted); `download`
//! also gives short-lived presigned URLs of the exported file and of the
//! evidence pack. Every access, and every refusal of a link that verified,
//! is audited in the owning organisation through the outbox.
//!
//! Answers: a token that does not verify is NOT_FOUND (no detail); an
//! expired link, a revoked or changed grant, a deleted report or a version
//! no longer approved are FORBIDDEN.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use treven_mesh::{ErrorCode, MeshContext, ServiceError};
use treven_proto::treven::tenants::v1 as tenants;
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::links::{DEFAULT_DAYS, LinkClaims, LinkPermission, MAX_DAYS};
use crate::model::{ExportFormat, PiiAction, PiiDecision, Report, Section, Status};
use crate::pii::{GateError, gate};
use crate::render;

use super::export::slug;
use super::{Reports, ReportsError, Result, failed_precondition};

/// A minted partner link.
#[derive(Debug, Clone)]
pub struct PartnerLink {
    /// What it binds.
    pub claims: LinkClaims,
    /// `/shared/{token}`.
    pub url: String,
}

/// What to open through a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedFile {
    /// The default of the link's permission.
    Default,
    /// The version inline (markdown).
    View,
    /// The exported file (download links).
    Report,
    /// The evidence pack (download links).
    Evidence,
}

impl SharedFile {
    fn as_str(self) -> &'static str {
        match self {
            SharedFile::Default => "default",
            SharedFile::View => "view",
            SharedFile::Report => "report",
            SharedFile::Evidence => "evidence",
        }
    }
}

/// What an access through a link gave.
#[derive(Debug, Clone)]
pub enum Opened {
    /// The version rendered as markdown.
    Markdown(String),
    /// A presigned download URL and its expiry.
    Download {
        /// The URL.
        url: String,
        /// When it stops working.
        expires_at: DateTime<Utc>,
    },
}

/// An access through a link: the report, the version and what was opened.
#[derive(Debug, Clone)]
pub struct LinkAccess {
    /// The report.
    pub report_id: Uuid,
    /// The version opened.
    pub version: i32,
    /// Its title.
    pub title: String,
    /// What was opened.
    pub opened: Opened,
}

/// The path a link is opened at, relative to the API's origin.
pub const SHARED_PATH: &str = "/shared/";

fn permission_of(raw: i32) -> Option<LinkPermission> {
    match tenants::ReportPermission::try_from(raw) {
        Ok(tenants::ReportPermission::View) => Some(LinkPermission::View),
        Ok(tenants::ReportPermission::Download) => Some(LinkPermission::Download),
        _ => None,
    }
}

fn link_not_found() -> ServiceError {
    ServiceError::not_found("link")
}

impl Reports {
    /// Mints a link for grant `grant_id` of report `id` (analysts, admins),
    /// valid `days` days (0 → 7, at most 30). The report must be approved
    /// or exported; the link opens its approved version only. Audited as
    /// `report.link.create`.
    pub async fn create_link(
        &self,
        context: &MeshContext,
        id: Uuid,
        grant_id: Uuid,
        days: i32,
    ) -> Result<PartnerLink> {
        let days = match u32::try_from(days) {
            Ok(0) => DEFAULT_DAYS,
            Ok(days) if days <= MAX_DAYS => days,
            _ => {
                return Err(ServiceError::invalid_field(
                    "expires_in_days",
                    format!("must be between 1 and {MAX_DAYS} (0 means {DEFAULT_DAYS})"),
                )
                .into());
            }
        };
        let report = {
            let mut tx = self.begin(context).await?;
            self.existing(&mut tx, id).await?
        };
        let version = approved_version(&report).ok_or_else(|| {
            failed_precondition(format!(
                "the report is {}; only approved reports can be shared",
                report.status
            ))
        })?;
        // The grant must be this organisation's (tenants answers inside the
        // caller's organisation only) and on this report.
        let grant = self.clients.get_report_access(context, grant_id).await?;
        if grant.report_id != id.to_string() {
            return Err(ServiceError::not_found("report access").into());
        }
        let partner_id: Uuid = grant.partner_id.parse().map_err(|_| {
            ServiceError::internal(anyhow::anyhow!("tenants gave a bad partner id"))
        })?;
        let permission = permission_of(grant.permission).ok_or_else(|| {
            ServiceError::internal(anyhow::anyhow!("tenants gave an unknown permission"))
        })?;
        let claims = LinkClaims {
            link_id: Uuid::now_v7(),
            org: context.org_id(),
            report_id: id,
            version,
            grant_id,
            partner_id,
            permission,
            exp: (Utc::now() + Duration::days(i64::from(days))).timestamp(),
        };
        let token = self.link_key.sign(&claims);
        let mut tx = self.begin(context).await?;
        // Re-checked under the lock: still approved at that version.
        let current = self.existing_locked(&mut tx, id).await?;
        if approved_version(&current) != Some(version) {
            return Err(ServiceError::conflict_on(
                "id",
                "the report changed while the link was made; retry",
            )
            .into());
        }
        self.audit(
            &mut tx,
            context,
            AuditEntry::report(
                "report.link.create",
                id,
                json!({
                    "link_id": claims.link_id,
                    "grant_id": grant_id,
                    "partner_id": partner_id,
                    "version": version,
                    "permission": permission.as_str(),
                    "expires_at": claims.expires_at().to_rfc3339(),
                }),
            ),
        )
        .await?;
        self.commit(tx).await?;
        tracing::info!(report_id = %id, link_id = %claims.link_id, grant_id = %grant_id, version, days, "partner link created");
        Ok(PartnerLink {
            url: format!("{SHARED_PATH}{token}"),
            claims,
        })
    }

    /// Opens a link: see the module documentation. `caller` is the
    /// gateway's context of the unauthenticated request (its organisation
    /// is not used; only its request id is kept).
    pub async fn open_link(
        &self,
        caller: &MeshContext,
        token: &str,
        file: SharedFile,
        format: Option<ExportFormat>,
    ) -> Result<LinkAccess> {
        let Some(claims) = self.link_key.verify(token) else {
            tracing::info!("partner link refused: the token does not verify");
            return Err(link_not_found().into());
        };
        let actor = format!("partner:{}", claims.partner_id);
        let context = self
            .clients
            .acting_for_partner(claims.org, &actor, caller.request_id());
        let refuse = |reason: &'static str, message: &'static str| {
            let context = context.clone();
            let claims = claims.clone();
            async move {
                self.audit_link(&context, &claims, "report.link.refused", file, reason)
                    .await?;
                tracing::info!(report_id = %claims.report_id, link_id = %claims.link_id, reason, "partner link refused");
                Err::<LinkAccess, ReportsError>(ServiceError::forbidden(message).into())
            }
        };
        if claims.is_expired(Utc::now()) {
            return refuse("expired", "this link has expired").await;
        }
        let (report, deleted_at) = {
            let mut tx = self.begin(&context).await?;
            tx.report_with_deletion(claims.report_id)
                .await?
                .ok_or_else(link_not_found)?
        };
        if deleted_at.is_some() {
            return refuse("report_deleted", "this link has been revoked").await;
        }
        if approved_version(&report) != Some(claims.version) {
            return refuse(
                "version_superseded",
                "this link has been revoked: the report changed since it was shared",
            )
            .await;
        }
        let grant = match self
            .clients
            .get_report_access(&context, claims.grant_id)
            .await
        {
            Ok(grant) => grant,
            Err(error) if error.code() == ErrorCode::NotFound => {
                return refuse("grant_revoked", "this link has been revoked").await;
            }
            Err(error) => return Err(error.into()),
        };
        if grant.report_id != claims.report_id.to_string()
            || grant.partner_id != claims.partner_id.to_string()
            || permission_of(grant.permission) != Some(claims.permission)
        {
            return refuse("grant_changed", "this link has been revoked").await;
        }
        let file = match (file, claims.permission) {
            (SharedFile::Default, LinkPermission::View) => SharedFile::View,
            (SharedFile::Default, LinkPermission::Download) => SharedFile::Report,
            (other, _) => other,
        };
        if claims.permission == LinkPermission::View && file != SharedFile::View {
            return refuse(
                "not_permitted",
                "this link lets its holder view the report, not download files",
            )
            .await;
        }
        let opened = match file {
            SharedFile::View | SharedFile::Default => {
                Opened::Markdown(self.shared_markdown(&context, &claims).await?)
            }
            SharedFile::Report => {
                let formats = match format {
                    Some(format) => vec![format],
                    None => vec![
                        ExportFormat::Pdf,
                        ExportFormat::Docx,
                        ExportFormat::Markdown,
                    ],
                };
                let mut found = None;
                for format in formats {
                    let name = format!(
                        "{}-v{}.{}",
                        slug(&report.title),
                        claims.version,
                        format.extension()
                    );
                    match self
                        .clients
                        .presign_artifact(&context, claims.report_id, claims.version, format, &name)
                        .await
                    {
                        Ok(presigned) => {
                            found = Some(presigned);
                            break;
                        }
                        Err(error) if error.code() == ErrorCode::NotFound => {}
                        Err(error) => return Err(error.into()),
                    }
                }
                let Some((url, expires_at)) = found else {
                    self.audit_link(
                        &context,
                        &claims,
                        "report.link.refused",
                        file,
                        "not_exported",
                    )
                    .await?;
                    return Err(ServiceError::new(
                        ErrorCode::NotFound,
                        "the shared version has not been exported in that format",
                    )
                    .into());
                };
                Opened::Download { url, expires_at }
            }
            SharedFile::Evidence => {
                let (url, expires_at) = self
                    .clients
                    .evidence_pack(&context, claims.report_id, claims.version)
                    .await?;
                Opened::Download { url, expires_at }
            }
        };
        self.audit_link(&context, &claims, "report.link.open", file, "")
            .await?;
        tracing::info!(report_id = %claims.report_id, link_id = %claims.link_id, file = file.as_str(), "partner link opened");
        Ok(LinkAccess {
            report_id: claims.report_id,
            version: claims.version,
            title: report.title,
            opened,
        })
    }

    /// The linked version as markdown, after the PII gate: findings kept
    /// with a justification stay, every other one is redacted (a partner
    /// never sees personal data nobody decided to keep).
    async fn shared_markdown(&self, context: &MeshContext, claims: &LinkClaims) -> Result<String> {
        let (mut content, kept) = {
            let mut tx = self.begin(context).await?;
            let (_, content) = tx
                .version(claims.report_id, claims.version)
                .await?
                .ok_or_else(link_not_found)?;
            let kept = tx.kept_findings(claims.report_id, claims.version).await?;
            (content, kept)
        };
        redact_undecided(&mut content, &kept)?;
        let bytes =
            render::render(&content, ExportFormat::Markdown).map_err(ServiceError::internal)?;
        Ok(String::from_utf8(bytes).map_err(ServiceError::internal)?)
    }

    async fn existing_locked(&self, tx: &mut crate::store::OrgTx, id: Uuid) -> Result<Report> {
        Ok(tx.report(id, true).await?.ok_or_else(super::not_found)?)
    }

    /// Audits an access (or refusal) through a link in the owning
    /// organisation, as the partner, in a transaction of its own.
    async fn audit_link(
        &self,
        context: &MeshContext,
        claims: &LinkClaims,
        action: &str,
        file: SharedFile,
        reason: &str,
    ) -> Result<()> {
        let mut details = json!({
            "link_id": claims.link_id,
            "grant_id": claims.grant_id,
            "partner_id": claims.partner_id,
            "version": claims.version,
            "permission": claims.permission.as_str(),
            "file": file.as_str(),
        });
        if !reason.is_empty() {
            details["reason"] = json!(reason);
        }
        self.audit_alone(
            context,
            vec![AuditEntry::report(action, claims.report_id, details)],
        )
        .await
    }
}

/// The approved version of an approved or exported report.
fn approved_version(report: &Report) -> Option<i32> {
    match (&report.status, &report.approval) {
        (Status::Approved | Status::Exported, Some(approval)) => Some(approval.version),
        _ => None,
    }
}

/// Redacts every finding in `content` not in `kept`.
fn redact_undecided(
    content: &mut crate::model::Content,
    kept: &HashSet<String>,
) -> std::result::Result<(), ServiceError> {
    let findings = match gate(content, &Section::ALL, &[], kept) {
        Ok(_) => return Ok(()),
        Err(GateError::Service(error)) => return Err(error),
        Err(GateError::Undecided(findings)) => findings,
    };
    let decisions: Vec<PiiDecision> = findings
        .iter()
        .map(|f| PiiDecision {
            finding_id: f.id.clone(),
            action: PiiAction::Redact,
            justification: String::new(),
            saved_finding_id: String::new(),
        })
        .collect();
    match gate(content, &Section::ALL, &decisions, kept) {
        Ok(_) => Ok(()),
        Err(GateError::Service(error)) => Err(error),
        Err(GateError::Undecided(_)) => Err(ServiceError::internal(anyhow::anyhow!(
            "redaction left undecided findings"
        ))),
    }
}
