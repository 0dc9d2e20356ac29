//! Partner links and the report lifecycle (archive, soft delete) on real
//! Postgres, tenants and documents (moto), with the agents double: a link
//! opens exactly the version shared, inline or as files by permission, is
//! refused once expired, revoked, tampered with or pointed elsewhere, and
//! every access is audited in the sharing organisation; archived reports
//! leave the default list, deleted ones every read, each organisation
//! confined to its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use chrono::Utc;
use treven_mesh::wire::struct_to_json;
use treven_mesh::{OrgId, Principal, Role};
use treven_proto::treven::reports::v1 as pb;
use treven_proto::treven::tenants::v1 as tenants;
use treven_reports::links::{LinkClaims, LinkKey};
use uuid::Uuid;

use support::*;

async fn create(stack: &Stack, token: &str) -> String {
    let id = stack
        .reports
        .clone()
        .create_report(authed(
            token,
            pb::CreateReportRequest {
                scope: Some(scope("GB", "agriculture")),
                document_ids: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap()
        .id;
    stack.wait_generated(token, &id).await;
    id
}

/// Creates a report as analyst-1, analyst-2 submits it, analyst-3
/// approves it (four-eyes), analyst-1 exports it as PDF.
async fn approved_and_exported(stack: &Stack, org: OrgId) -> String {
    let author = stack.token(org, "analyst-1", Role::Analyst);
    let id = create(stack, &author).await;
    let mut reports = stack.reports.clone();
    reports
        .submit_report(authed(
            &stack.token(org, "analyst-2", Role::Analyst),
            pb::SubmitReportRequest {
                id: id.clone(),
                version: 1,
                override_justification: String::new(),
            },
        ))
        .await
        .unwrap();
    reports
        .approve_report(authed(
            &stack.token(org, "analyst-3", Role::Analyst),
            pb::ApproveReportRequest {
                id: id.clone(),
                version: 1,
            },
        ))
        .await
        .unwrap();
    reports
        .export_report(authed(
            &author,
            pb::ExportReportRequest {
                id: id.clone(),
                format: pb::ExportFormat::Pdf.into(),
                pii_decisions: vec![],
            },
        ))
        .await
        .unwrap();
    id
}

async fn partner(stack: &Stack, admin: &str, name: &str) -> String {
    stack
        .tenants
        .clone()
        .create_partner(authed(
            &stack.retarget(admin, Principal::Tenants),
            tenants::CreatePartnerRequest {
                name: name.into(),
                kind: tenants::OrganisationKind::Fi.into(),
                contact_email: "fiu@bank.example".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .partner
        .unwrap()
        .id
}

async fn share(
    stack: &Stack,
    token: &str,
    id: &str,
    partner: &str,
    permission: tenants::ReportPermission,
) -> String {
    stack
        .reports
        .clone()
        .share_report(authed(
            token,
            pb::ShareReportRequest {
                id: id.into(),
                partner_id: partner.into(),
                permission: permission.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .access
        .unwrap()
        .id
}

async fn link(
    stack: &Stack,
    token: &str,
    id: &str,
    grant: &str,
    days: i32,
) -> Result<pb::PartnerLink, tonic::Status> {
    stack
        .reports
        .clone()
        .create_partner_link(authed(
            token,
            pb::CreatePartnerLinkRequest {
                id: id.into(),
                grant_id: grant.into(),
                expires_in_days: days,
            },
        ))
        .await
        .map(|r| r.into_inner().link.unwrap())
}

/// Opens `token` as the gateway does for an unauthenticated request: a
/// context of no organisation and no role.
async fn open(
    stack: &Stack,
    token: &str,
    file: pb::SharedFile,
) -> Result<pb::OpenPartnerLinkResponse, tonic::Status> {
    let anonymous = stack.keys.signer(Principal::Gateway).unwrap().mint(
        Principal::Reports,
        OrgId::new(Uuid::nil()),
        "anonymous",
        &[],
        &Uuid::new_v4().to_string(),
        Duration::from_secs(60),
    );
    stack
        .reports
        .clone()
        .open_partner_link(authed(
            &anonymous,
            pb::OpenPartnerLinkRequest {
                token: token.into(),
                file: file.into(),
                format: 0,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn token_of(link: &pb::PartnerLink) -> &str {
    link.url.strip_prefix("/shared/").expect("a /shared/ url")
}

/// The key the stack's reports service signs links with (derived from its
/// mesh signing key, no `TREVEN_REPORTS_LINK_KEY` being set).
fn service_key(stack: &Stack) -> LinkKey {
    LinkKey::from_bytes(
        stack
            .keys
            .signer(Principal::Reports)
            .unwrap()
            .key()
            .derive("partner-links"),
    )
}

fn claims_of(stack: &Stack, link: &pb::PartnerLink) -> LinkClaims {
    service_key(stack).verify(token_of(link)).expect("verifies")
}

/// A blocking GET of a presigned URL: the first bytes of its body.
fn fetch(url: &str) -> Vec<u8> {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').unwrap();
    let mut socket = std::net::TcpStream::connect(host).unwrap();
    write!(
        socket,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    response[split + 4..].to_vec()
}

fn starts_with_after_chunk_size(body: &[u8], magic: &[u8]) -> bool {
    // A chunked body starts with a hex size line.
    body.starts_with(magic)
        || body
            .windows(2)
            .position(|w| w == b"\r\n")
            .is_some_and(|i| body[i + 2..].starts_with(magic))
}

async fn link_audit(stack: &Stack, token: &str, id: &str) -> Vec<tenants::AuditEvent> {
    stack
        .audit_actions(token, id)
        .await
        .into_iter()
        .filter(|e| e.action.starts_with("report.link."))
        .collect()
}

#[tokio::test]
async fn a_partner_link_opens_exactly_the_version_shared_until_its_grant_is_revoked() {
    let stack = Stack::start(1).await;
    let org = stack.org("sharing").await;
    let other = stack.org("elsewhere").await;
    let analyst = stack.token(org, "analyst-1", Role::Analyst);
    let admin = stack.token(org, "admin-1", Role::Admin);
    let viewer = stack.token(org, "viewer-1", Role::Viewer);
    let id = approved_and_exported(&stack, org).await;
    let bank = partner(&stack, &admin, "Bank").await;
    let ngo = partner(&stack, &admin, "Shelter").await;
    let view_grant = share(&stack, &analyst, &id, &ngo, tenants::ReportPermission::View).await;
    let download_grant = share(
        &stack,
        &analyst,
        &id,
        &bank,
        tenants::ReportPermission::Download,
    )
    .await;

    // Minting: editors only, bounded expiry (default 7 days), on a grant of
    // this report.
    let denied = link(&stack, &viewer, &id, &view_grant, 0)
        .await
        .expect_err("viewer");
    assert_eq!(code_of(&denied), "FORBIDDEN");
    let too_long = link(&stack, &analyst, &id, &view_grant, 31)
        .await
        .expect_err("31 days");
    assert_eq!(code_of(&too_long), "VALIDATION_ERROR", "{too_long:?}");
    let unknown = link(&stack, &analyst, &id, &Uuid::now_v7().to_string(), 0)
        .await
        .expect_err("no such grant");
    assert_eq!(code_of(&unknown), "NOT_FOUND", "{unknown:?}");
    let view = link(&stack, &analyst, &id, &view_grant, 0).await.unwrap();
    assert!(view.url.starts_with("/shared/"), "{}", view.url);
    assert_eq!(view.version, 1);
    assert_eq!(view.partner_id, ngo);
    assert_eq!(view.permission, tenants::ReportPermission::View as i32);
    let expires = view.expires_at.unwrap().seconds - Utc::now().timestamp();
    assert!(
        (7 * 86_400 - 60..=7 * 86_400).contains(&expires),
        "{expires}"
    );
    let download = link(&stack, &analyst, &id, &download_grant, 30)
        .await
        .unwrap();
    assert_eq!(
        download.permission,
        tenants::ReportPermission::Download as i32
    );

    // View: the approved version inline; files are not for a view link.
    let opened = open(&stack, token_of(&view), pb::SharedFile::Unspecified)
        .await
        .unwrap();
    assert_eq!(
        (opened.report_id.as_str(), opened.version),
        (id.as_str(), 1)
    );
    let Some(pb::open_partner_link_response::Opened::Markdown(markdown)) = opened.opened else {
        panic!("inline view expected: {opened:?}");
    };
    assert!(markdown.contains("KEY JUDGEMENTS"), "{markdown}");
    assert!(markdown.contains("We assess as follows:"));
    let not_permitted = open(&stack, token_of(&view), pb::SharedFile::Report)
        .await
        .expect_err("view link, file asked");
    assert_eq!(code_of(&not_permitted), "FORBIDDEN");

    // Download: the exported PDF by default, the evidence pack on request.
    let opened = open(&stack, token_of(&download), pb::SharedFile::Unspecified)
        .await
        .unwrap();
    let Some(pb::open_partner_link_response::Opened::DownloadUrl(url)) = opened.opened else {
        panic!("a download expected: {opened:?}");
    };
    assert!(opened.expires_at.is_some());
    assert!(starts_with_after_chunk_size(&fetch(&url), b"%PDF"));
    // The double's citations name no documents source, so this version has
    // no evidence pack: documents says so (the e2e test downloads one).
    let evidence = open(&stack, token_of(&download), pb::SharedFile::Evidence)
        .await
        .expect_err("no evidence stored for the version");
    assert_eq!(code_of(&evidence), "NOT_FOUND", "{evidence:?}");

    // Tampered, forged and redirected tokens.
    let token = token_of(&view);
    let (payload, tag) = token.split_once('.').unwrap();
    let mut flipped = payload.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
    let claims = claims_of(&stack, &view);
    let mut other_version = claims.clone();
    other_version.version = 2;
    let forged_key = LinkKey::from_secret("not-the-service-key-but-long-enough").unwrap();
    for bad in [
        tampered,
        format!("{payload}.{}", &tag[1..]),
        "garbage".to_owned(),
        forged_key.sign(&other_version),
        forged_key.sign(&claims),
    ] {
        let refused = open(&stack, &bad, pb::SharedFile::Unspecified)
            .await
            .expect_err("bad token");
        assert_eq!(code_of(&refused), "NOT_FOUND", "{bad}: {refused:?}");
        assert_eq!(refused.message(), "link not found", "no detail");
    }
    // Even signed with the service's own key, a link never opens another
    // version, another organisation's report, or with another grant.
    let key = service_key(&stack);
    let refused = open(&stack, &key.sign(&other_version), pb::SharedFile::View)
        .await
        .expect_err("other version");
    assert_eq!(code_of(&refused), "FORBIDDEN", "{refused:?}");
    let other_report = approved_and_exported(&stack, other).await;
    let mut elsewhere = claims.clone();
    elsewhere.org = other;
    elsewhere.report_id = other_report.parse().unwrap();
    let refused = open(&stack, &key.sign(&elsewhere), pb::SharedFile::View)
        .await
        .expect_err("the other organisation's report with this one's grant");
    assert_eq!(code_of(&refused), "FORBIDDEN", "{refused:?}");
    let mut wrong_org = claims.clone();
    wrong_org.org = other;
    let refused = open(&stack, &key.sign(&wrong_org), pb::SharedFile::View)
        .await
        .expect_err("this report under the other organisation");
    assert_eq!(code_of(&refused), "NOT_FOUND", "{refused:?}");
    let mut other_grant = claims.clone();
    other_grant.grant_id = download_grant.parse().unwrap();
    let refused = open(&stack, &key.sign(&other_grant), pb::SharedFile::View)
        .await
        .expect_err("another partner's grant");
    assert_eq!(code_of(&refused), "FORBIDDEN", "{refused:?}");

    // Expired.
    let mut expired = claims.clone();
    expired.exp = Utc::now().timestamp() - 1;
    let refused = open(&stack, &key.sign(&expired), pb::SharedFile::View)
        .await
        .expect_err("expired");
    assert_eq!(code_of(&refused), "FORBIDDEN");
    assert!(refused.message().contains("expired"), "{refused:?}");

    // Revoked grant: refused on the next access.
    stack
        .tenants
        .clone()
        .revoke_report_access(authed(
            &stack.retarget(&analyst, Principal::Tenants),
            tenants::RevokeReportAccessRequest {
                id: view_grant.clone(),
            },
        ))
        .await
        .unwrap();
    let refused = open(&stack, token_of(&view), pb::SharedFile::View)
        .await
        .expect_err("revoked");
    assert_eq!(code_of(&refused), "FORBIDDEN");
    assert!(refused.message().contains("revoked"), "{refused:?}");
    // The other partner's link still works; a permission change (download
    // → view) ends it.
    open(&stack, token_of(&download), pb::SharedFile::View)
        .await
        .unwrap();
    share(
        &stack,
        &analyst,
        &id,
        &bank,
        tenants::ReportPermission::View,
    )
    .await;
    let refused = open(&stack, token_of(&download), pb::SharedFile::View)
        .await
        .expect_err("permission changed");
    assert_eq!(code_of(&refused), "FORBIDDEN");

    // Every access and refusal of a verified link is audited in the sharing
    // organisation, as the partner; nothing in the other organisation.
    let audit = link_audit(&stack, &analyst, &id).await;
    let count = |action: &str| audit.iter().filter(|e| e.action == action).count();
    assert_eq!(count("report.link.create"), 2, "{audit:?}");
    assert_eq!(count("report.link.open"), 3, "{audit:?}");
    let reasons: Vec<String> = audit
        .iter()
        .filter(|e| e.action == "report.link.refused")
        .map(|e| {
            struct_to_json(e.details.as_ref().unwrap())["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for reason in [
        "not_permitted",
        "version_superseded",
        "grant_changed",
        "expired",
        "grant_revoked",
    ] {
        assert!(reasons.iter().any(|r| r == reason), "{reason}: {reasons:?}");
    }
    let opened = audit
        .iter()
        .find(|e| e.action == "report.link.open")
        .unwrap();
    let details = struct_to_json(opened.details.as_ref().unwrap());
    assert_eq!(details["version"].as_f64(), Some(1.0), "{details}");
    assert!(opened.actor_id.starts_with("partner:"), "{opened:?}");
    assert!(
        [format!("partner:{ngo}"), format!("partner:{bank}")].contains(&opened.actor_id),
        "{opened:?}"
    );
    assert_eq!(details["partner_id"], opened.actor_id["partner:".len()..]);
    let other_analyst = stack.token(other, "analyst-1", Role::Analyst);
    assert!(link_audit(&stack, &other_analyst, &id).await.is_empty());

    // Deleting the report ends every link to it.
    let fresh = link(&stack, &analyst, &id, &download_grant, 1)
        .await
        .unwrap();
    open(&stack, token_of(&fresh), pb::SharedFile::View)
        .await
        .unwrap();
    stack
        .reports
        .clone()
        .delete_report(authed(&admin, pb::DeleteReportRequest { id: id.clone() }))
        .await
        .unwrap();
    let refused = open(&stack, token_of(&fresh), pb::SharedFile::View)
        .await
        .expect_err("deleted");
    assert_eq!(code_of(&refused), "FORBIDDEN", "{refused:?}");
    stack.stop().await;
}

async fn list(stack: &Stack, token: &str, include_archived: bool, q: &str) -> Vec<String> {
    stack
        .reports
        .clone()
        .list_reports(authed(
            token,
            pb::ListReportsRequest {
                limit: 100,
                include_archived,
                q: q.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .items
        .into_iter()
        .map(|r| r.id)
        .collect()
}

async fn get(stack: &Stack, token: &str, id: &str) -> Result<pb::Report, tonic::Status> {
    stack
        .reports
        .clone()
        .get_report(authed(
            token,
            pb::GetReportRequest {
                id: id.into(),
                version: 0,
            },
        ))
        .await
        .map(|r| r.into_inner().report.unwrap())
}

#[tokio::test]
async fn archived_reports_leave_the_default_list_and_deleted_ones_every_read() {
    let stack = Stack::start(1).await;
    let org = stack.org("lifecycle").await;
    let other = stack.org("neighbour").await;
    let analyst = stack.token(org, "analyst-1", Role::Analyst);
    let admin = stack.token(org, "admin-1", Role::Admin);
    let viewer = stack.token(org, "viewer-1", Role::Viewer);
    let intruder = stack.token(other, "admin-1", Role::Admin);
    let kept = create(&stack, &analyst).await;
    let archived = create(&stack, &analyst).await;
    let mut reports = stack.reports.clone();

    // Archive: editors; hidden from the default list and search, readable.
    let denied = reports
        .archive_report(authed(
            &viewer,
            pb::ArchiveReportRequest {
                id: archived.clone(),
            },
        ))
        .await
        .expect_err("viewer");
    assert_eq!(code_of(&denied), "FORBIDDEN");
    let foreign = reports
        .archive_report(authed(
            &intruder,
            pb::ArchiveReportRequest {
                id: archived.clone(),
            },
        ))
        .await
        .expect_err("other organisation");
    assert_eq!(code_of(&foreign), "NOT_FOUND");
    let report = reports
        .archive_report(authed(
            &analyst,
            pb::ArchiveReportRequest {
                id: archived.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(report.archived_by, "analyst-1");
    assert!(report.archived_at.is_some());
    assert_eq!(list(&stack, &viewer, false, "").await, vec![kept.clone()]);
    assert_eq!(
        list(&stack, &viewer, true, "").await,
        vec![archived.clone(), kept.clone()]
    );
    assert_eq!(
        list(&stack, &viewer, false, "agriculture").await,
        vec![kept.clone()]
    );
    assert_eq!(list(&stack, &viewer, true, "agriculture").await.len(), 2);
    assert_eq!(
        get(&stack, &viewer, &archived).await.unwrap().archived_by,
        "analyst-1"
    );
    let back = reports
        .unarchive_report(authed(
            &analyst,
            pb::UnarchiveReportRequest {
                id: archived.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert!(back.archived_at.is_none() && back.archived_by.is_empty());
    assert_eq!(list(&stack, &viewer, false, "").await.len(), 2);

    // Delete: admins of the organisation only; then gone from every read.
    let denied = reports
        .delete_report(authed(
            &analyst,
            pb::DeleteReportRequest {
                id: archived.clone(),
            },
        ))
        .await
        .expect_err("analyst");
    assert_eq!(code_of(&denied), "FORBIDDEN");
    let foreign = reports
        .delete_report(authed(
            &intruder,
            pb::DeleteReportRequest {
                id: archived.clone(),
            },
        ))
        .await
        .expect_err("other organisation");
    assert_eq!(code_of(&foreign), "NOT_FOUND");
    reports
        .delete_report(authed(
            &admin,
            pb::DeleteReportRequest {
                id: archived.clone(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        code_of(&get(&stack, &viewer, &archived).await.unwrap_err()),
        "NOT_FOUND"
    );
    assert_eq!(list(&stack, &viewer, true, "").await, vec![kept.clone()]);
    assert_eq!(
        list(&stack, &viewer, true, "agriculture").await,
        vec![kept.clone()]
    );
    for refused in [
        reports
            .delete_report(authed(
                &admin,
                pb::DeleteReportRequest {
                    id: archived.clone(),
                },
            ))
            .await
            .map(|_| ())
            .unwrap_err(),
        reports
            .archive_report(authed(
                &admin,
                pb::ArchiveReportRequest {
                    id: archived.clone(),
                },
            ))
            .await
            .map(|_| ())
            .unwrap_err(),
        reports
            .list_report_versions(authed(
                &viewer,
                pb::ListReportVersionsRequest {
                    id: archived.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert_eq!(code_of(&refused), "NOT_FOUND", "{refused:?}");
    }
    // The other organisation's list never held either; the kept report is
    // untouched.
    assert!(list(&stack, &intruder, true, "").await.is_empty());
    assert_eq!(get(&stack, &viewer, &kept).await.unwrap().id, kept);

    // The row is kept, with who deleted it; each step is audited.
    let pool = sqlx::PgPool::connect(&stack.db.url).await.unwrap();
    let (deleted_by, versions): (String, i64) = sqlx::query_as(
        "SELECT r.deleted_by, (SELECT count(*) FROM reports.report_versions v WHERE v.report_id = r.id) \
         FROM reports.reports r WHERE r.id = $1::uuid",
    )
    .bind(&archived)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((deleted_by.as_str(), versions), ("admin-1", 1));
    pool.close().await;
    let actions: Vec<String> = stack
        .audit_actions(&admin, &archived)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in ["report.archive", "report.unarchive", "report.delete"] {
        assert_eq!(
            actions.iter().filter(|a| *a == action).count(),
            1,
            "{action}: {actions:?}"
        );
    }
    stack.stop().await;
}
