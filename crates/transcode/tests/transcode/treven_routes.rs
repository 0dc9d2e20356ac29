//! The REST surface of DESIGN.md against the real Treven protos.

use serde_json::json;
use treven_transcode::{MatchError, RequestLimits};

use crate::support::{rejected_field, request, request_json, request_with, rpc_of, treven};

/// DESIGN.md "The REST surface", one row per method and path, with a
/// concrete path and the RPC it must reach.
const REST_SURFACE: &[(&str, &str, &str)] = &[
    ("GET", "/api/me", "treven.tenants.v1.TenantsService.GetMe"),
    (
        "GET",
        "/api/users",
        "treven.tenants.v1.TenantsService.ListUsers",
    ),
    (
        "POST",
        "/api/users",
        "treven.tenants.v1.TenantsService.CreateUser",
    ),
    (
        "PATCH",
        "/api/users/u1",
        "treven.tenants.v1.TenantsService.UpdateUser",
    ),
    (
        "DELETE",
        "/api/users/u1",
        "treven.tenants.v1.TenantsService.DeleteUser",
    ),
    (
        "GET",
        "/api/partners",
        "treven.tenants.v1.TenantsService.ListPartners",
    ),
    (
        "POST",
        "/api/partners",
        "treven.tenants.v1.TenantsService.CreatePartner",
    ),
    (
        "DELETE",
        "/api/partners/p1",
        "treven.tenants.v1.TenantsService.DeletePartner",
    ),
    (
        "GET",
        "/api/audit",
        "treven.tenants.v1.TenantsService.ListAuditEvents",
    ),
    (
        "POST",
        "/api/documents/uploads",
        "treven.documents.v1.DocumentsService.CreateUpload",
    ),
    (
        "POST",
        "/api/documents/d1/complete",
        "treven.documents.v1.DocumentsService.CompleteUpload",
    ),
    (
        "GET",
        "/api/documents",
        "treven.documents.v1.DocumentsService.ListDocuments",
    ),
    (
        "GET",
        "/api/documents/d1",
        "treven.documents.v1.DocumentsService.GetDocument",
    ),
    (
        "DELETE",
        "/api/documents/d1",
        "treven.documents.v1.DocumentsService.DeleteDocument",
    ),
    (
        "GET",
        "/api/documents/d1/download",
        "treven.documents.v1.DocumentsService.GetDocumentDownload",
    ),
    (
        "POST",
        "/api/sources",
        "treven.documents.v1.DocumentsService.UpsertSource",
    ),
    (
        "POST",
        "/api/sources/search",
        "treven.documents.v1.DocumentsService.SearchSources",
    ),
    (
        "GET",
        "/api/reports",
        "treven.reports.v1.ReportsService.ListReports",
    ),
    (
        "POST",
        "/api/reports",
        "treven.reports.v1.ReportsService.CreateReport",
    ),
    (
        "GET",
        "/api/reports/r1",
        "treven.reports.v1.ReportsService.GetReport",
    ),
    (
        "PATCH",
        "/api/reports/r1/sections/money",
        "treven.reports.v1.ReportsService.UpdateSection",
    ),
    (
        "GET",
        "/api/reports/r1/versions",
        "treven.reports.v1.ReportsService.ListReportVersions",
    ),
    (
        "GET",
        "/api/reports/r1/diff",
        "treven.reports.v1.ReportsService.DiffReportVersions",
    ),
    (
        "POST",
        "/api/reports/r1/submit",
        "treven.reports.v1.ReportsService.SubmitReport",
    ),
    (
        "POST",
        "/api/reports/r1/approve",
        "treven.reports.v1.ReportsService.ApproveReport",
    ),
    (
        "POST",
        "/api/reports/r1/export",
        "treven.reports.v1.ReportsService.ExportReport",
    ),
    (
        "POST",
        "/api/reports/r1/share",
        "treven.reports.v1.ReportsService.ShareReport",
    ),
    (
        "GET",
        "/api/reports/r1/evidence",
        "treven.documents.v1.DocumentsService.GetEvidencePack",
    ),
    (
        "POST",
        "/api/conversations",
        "treven.agents.v1.AgentsService.CreateConversation",
    ),
    (
        "GET",
        "/api/conversations",
        "treven.agents.v1.AgentsService.ListConversations",
    ),
    (
        "GET",
        "/api/conversations/c1/messages",
        "treven.agents.v1.AgentsService.ListMessages",
    ),
    (
        "POST",
        "/api/conversations/c1/messages",
        "treven.agents.v1.AgentsService.SendMessage",
    ),
    (
        "GET",
        "/api/usage",
        "treven.agents.v1.AgentsService.GetUsage",
    ),
    (
        "GET",
        "/api/trends",
        "treven.reports.v1.ReportsService.ListTrends",
    ),
    // Partner links and the report lifecycle (#17).
    (
        "POST",
        "/api/reports/r1/access/g1/links",
        "treven.reports.v1.ReportsService.CreatePartnerLink",
    ),
    (
        "POST",
        "/api/reports/r1/archive",
        "treven.reports.v1.ReportsService.ArchiveReport",
    ),
    (
        "POST",
        "/api/reports/r1/unarchive",
        "treven.reports.v1.ReportsService.UnarchiveReport",
    ),
    (
        "DELETE",
        "/api/reports/r1",
        "treven.reports.v1.ReportsService.DeleteReport",
    ),
    // Made public by #19 (the edge serves only RPCs with a rule, and the
    // frontend needs these; #15 lists them).
    (
        "POST",
        "/api/reports/r1/sections/money/regenerate",
        "treven.reports.v1.ReportsService.RegenerateSection",
    ),
    (
        "POST",
        "/api/reports/r1/sections/money/reject",
        "treven.reports.v1.ReportsService.RejectSection",
    ),
    (
        "GET",
        "/api/documents/d1/versions",
        "treven.documents.v1.DocumentsService.ListDocumentVersions",
    ),
    (
        "GET",
        "/api/organisation",
        "treven.tenants.v1.TenantsService.GetOrganisation",
    ),
    (
        "PATCH",
        "/api/organisation",
        "treven.tenants.v1.TenantsService.UpdateOrganisation",
    ),
    (
        "POST",
        "/api/organisations",
        "treven.tenants.v1.TenantsService.CreateOrganisation",
    ),
    (
        "GET",
        "/api/users/u1",
        "treven.tenants.v1.TenantsService.GetUser",
    ),
    (
        "GET",
        "/api/partners/p1",
        "treven.tenants.v1.TenantsService.GetPartner",
    ),
    (
        "GET",
        "/api/report-access",
        "treven.tenants.v1.TenantsService.ListReportAccess",
    ),
    (
        "DELETE",
        "/api/report-access/g1",
        "treven.tenants.v1.TenantsService.RevokeReportAccess",
    ),
    (
        "GET",
        "/api/audit/export",
        "treven.tenants.v1.TenantsService.ExportAuditEvents",
    ),
    (
        "POST",
        "/api/agent-runs",
        "treven.agents.v1.AgentsService.RunAgent",
    ),
    (
        "GET",
        "/api/agent-runs/run1",
        "treven.agents.v1.AgentsService.GetRun",
    ), // The review workflow (#17).
    (
        "POST",
        "/api/reports/r1/comments",
        "treven.reports.v1.ReportsService.AddReviewComment",
    ),
    (
        "GET",
        "/api/reports/r1/comments",
        "treven.reports.v1.ReportsService.ListReviewComments",
    ),
    (
        "POST",
        "/api/reports/r1/comments/c1/resolve",
        "treven.reports.v1.ReportsService.ResolveReviewComment",
    ),
    (
        "POST",
        "/api/reports/r1/comments/c1/reopen",
        "treven.reports.v1.ReportsService.ReopenReviewComment",
    ),
    (
        "POST",
        "/api/reports/r1/request-changes",
        "treven.reports.v1.ReportsService.RequestChanges",
    ),
    (
        "PUT",
        "/api/reports/r1/reviewer",
        "treven.reports.v1.ReportsService.AssignReviewer",
    ),
    (
        "DELETE",
        "/api/reports/r1/reviewer",
        "treven.reports.v1.ReportsService.UnassignReviewer",
    ),
    (
        "GET",
        "/api/notifications",
        "treven.reports.v1.ReportsService.ListNotifications",
    ),
    (
        "POST",
        "/api/notifications/n1/read",
        "treven.reports.v1.ReportsService.MarkNotificationRead",
    ),
    (
        "POST",
        "/api/notifications/read-all",
        "treven.reports.v1.ReportsService.MarkAllNotificationsRead",
    ),
];

#[test]
fn every_rest_path_of_the_design_reaches_its_rpc() {
    for (method, path, rpc) in REST_SURFACE {
        assert_eq!(
            rpc_of(treven(), method, path).as_deref(),
            Ok(*rpc),
            "{method} {path}"
        );
    }
}

#[test]
fn the_protos_expose_no_route_beyond_the_design() {
    let routes = treven().routes().routes();
    assert_eq!(routes.len(), REST_SURFACE.len(), "one route per design row");
    for route in routes {
        assert!(
            REST_SURFACE
                .iter()
                .any(|(method, _, rpc)| *method == route.method().as_str()
                    && *rpc == route.rpc().full_name()),
            "{route} is not in DESIGN.md"
        );
    }
}

#[test]
fn gateway_paths_and_unknown_paths_are_not_routes() {
    for path in [
        "/openapi.json",
        "/healthz",
        "/readyz",
        "/api",
        "/api/users/u1/x",
        "api/me",
    ] {
        assert_eq!(
            rpc_of(treven(), "GET", path),
            Err(MatchError::NotFound),
            "{path}"
        );
    }
    assert_eq!(
        rpc_of(treven(), "PUT", "/api/users/u1"),
        Err(MatchError::MethodNotAllowed {
            allowed: vec![http::Method::DELETE, http::Method::GET, http::Method::PATCH]
        })
    );
}

#[test]
fn path_variables_fill_their_fields() {
    assert_eq!(
        request_json(treven(), "GET", "/api/reports/r%201/evidence", ""),
        json!({"reportId": "r 1", "version": 0})
    );
    assert_eq!(
        request_json(
            treven(),
            "PATCH",
            "/api/reports/r1/sections/money",
            r#"{"reason":"typo","baseVersion":3}"#
        )["section"],
        "money"
    );
}

#[test]
fn patch_user_fills_the_update_mask_from_the_body() {
    let message = request_json(
        treven(),
        "PATCH",
        "/api/users/u1",
        r#"{"name": "Ann", "role": "ROLE_VIEWER", "email": null}"#,
    );
    assert_eq!(message["id"], "u1");
    assert_eq!(message["user"]["name"], "Ann");
    assert_eq!(message["user"]["role"], "ROLE_VIEWER");
    // The members present and not null or their default (AIP-134's implied
    // mask): `"email": null` changes nothing.
    assert_eq!(message["updateMask"], "name,role");

    // A mask the client sets is kept as it is.
    let message = request_json(
        treven(),
        "PATCH",
        "/api/users/u1?updateMask=name",
        r#"{"name": "Ann", "role": "ROLE_VIEWER"}"#,
    );
    assert_eq!(message["updateMask"], "name");
}

#[test]
fn audit_query_builds_the_list_request() {
    let message = request_json(
        treven(),
        "GET",
        "/api/audit?resourceType=user&resourceId=x&since=2026-01-01T00:00:00Z&limit=10",
        "",
    );
    assert_eq!(
        message,
        json!({
            "limit": 10,
            "cursor": "",
            "resourceType": "user",
            "resourceId": "x",
            "since": "2026-01-01T00:00:00Z",
        })
    );
    // Proto names work too.
    let message = request_json(treven(), "GET", "/api/audit?resource_type=user", "");
    assert_eq!(message["resourceType"], "user");
}

#[test]
fn report_filters_take_enums_by_name_or_number() {
    let by_name = request_json(
        treven(),
        "GET",
        "/api/reports?status=REPORT_STATUS_DRAFT&country=GB",
        "",
    );
    assert_eq!(by_name["status"], "REPORT_STATUS_DRAFT");
    assert_eq!(by_name["country"], "GB");
    let by_number = request_json(treven(), "GET", "/api/reports?status=2", "");
    assert_eq!(by_number["status"], "REPORT_STATUS_DRAFT");
    // The design's `?status=&country=`: empty values leave fields unset.
    let empty = request_json(treven(), "GET", "/api/reports?status=&country=", "");
    assert_eq!(empty["status"], "REPORT_STATUS_UNSPECIFIED");
    let trends = request_json(
        treven(),
        "GET",
        "/api/trends?exploitationType=EXPLOITATION_TYPE_LABOUR",
        "",
    );
    assert_eq!(trends["exploitationType"], "EXPLOITATION_TYPE_LABOUR");
}

#[test]
fn bodies_map_to_the_whole_request_or_one_field() {
    let create = request_json(
        treven(),
        "POST",
        "/api/users",
        r#"{"email": "a@b.c", "name": "A", "role": "ROLE_ADMIN", "cognito_sub": "s"}"#,
    );
    assert_eq!(create["cognitoSub"], "s");
    let share = request_json(
        treven(),
        "POST",
        "/api/reports/r1/share",
        r#"{"partnerId": "p1", "permission": 2}"#,
    );
    assert_eq!(share["id"], "r1");
    assert_eq!(share["permission"], "REPORT_PERMISSION_DOWNLOAD");
    // An empty body on a body route is an empty message.
    let submit = request_json(treven(), "POST", "/api/reports/r1/submit", "");
    assert_eq!(submit["id"], "r1");
}

#[test]
fn a_body_id_that_disagrees_with_the_path_is_refused() {
    let result = request(
        treven(),
        "POST",
        "/api/reports/r1/submit",
        r#"{"id": "r2"}"#,
    );
    assert_eq!(rejected_field(result), (400, "id".to_owned()));
    // The same id is fine.
    assert!(
        request(
            treven(),
            "POST",
            "/api/reports/r1/submit",
            r#"{"id": "r1"}"#
        )
        .is_ok()
    );
}

#[test]
fn errors_name_the_field() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("GET", "/api/audit?limit=ten", "", "limit"),
        ("GET", "/api/audit?limit=99999999999", "", "limit"),
        ("GET", "/api/audit?limit=1.5", "", "limit"),
        (
            "GET",
            "/api/reports?status=REPORT_STATUS_NOPE",
            "",
            "status",
        ),
        ("GET", "/api/reports?status=99", "", "status"),
        ("GET", "/api/audit?since=yesterday", "", "since"),
        ("GET", "/api/audit?since=2026-13-01T00:00:00Z", "", "since"),
        ("GET", "/api/audit?nope=1", "", "nope"),
        ("GET", "/api/audit?resourceType.x=1", "", "resourceType.x"),
        ("GET", "/api/audit?limit=1&limit=2", "", "limit"),
        ("POST", "/api/users", "{\"name\": ", "body"),
        ("POST", "/api/users", "[1]", "body"),
        ("POST", "/api/users", r#"{"name": 5}"#, "name"),
        ("POST", "/api/users", r#"{"nmae": "x"}"#, "nmae"),
        ("POST", "/api/users", r#"{"role": "ROLE_KING"}"#, "role"),
        (
            "POST",
            "/api/users",
            r#"{"cognitoSub": "a", "cognito_sub": "b"}"#,
            "cognito_sub",
        ),
        ("POST", "/api/users?name=x", "{}", "name"),
        ("PATCH", "/api/users/u1", "{oops}", "user"),
        (
            "PATCH",
            "/api/users/u1",
            r#"{"createdAt": "noon"}"#,
            "user.created_at",
        ),
        ("PATCH", "/api/users/u1?user.name=x", "{}", "user.name"),
        ("PATCH", "/api/users/u1?id=u2", "{}", "id"),
        ("GET", "/api/me", "{}", "body"),
        (
            "POST",
            "/api/reports",
            r#"{"documentIds": ["a", null]}"#,
            "document_ids[1]",
        ),
        (
            "POST",
            "/api/documents/uploads",
            r#"{"sizeBytes": "12x"}"#,
            "size_bytes",
        ),
    ];
    for (method, uri, body, field) in cases {
        let (status, named) = rejected_field(request(treven(), method, uri, body));
        assert_eq!(
            (status, named.as_str()),
            (400, *field),
            "{method} {uri} {body}"
        );
    }
}

#[test]
fn limits_are_enforced_with_field_errors() {
    let small = RequestLimits {
        max_body_bytes: 16,
        max_query_bytes: 40,
        max_query_params: 3,
        max_repeated: 2,
    };
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "POST",
            "/api/users",
            r#"{"name": "a very long name indeed"}"#,
            "body",
        ),
        (
            "PATCH",
            "/api/users/u1",
            r#"{"name": "a very long name indeed"}"#,
            "user",
        ),
        (
            "GET",
            "/api/audit?resourceType=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "",
            "query",
        ),
        (
            "GET",
            "/api/audit?limit=1&cursor=a&resourceId=b&since=",
            "",
            "query",
        ),
    ];
    for (method, uri, body, field) in cases {
        let (status, named) = rejected_field(request_with(treven(), method, uri, body, &small));
        assert_eq!((status, named.as_str()), (400, *field), "{method} {uri}");
    }
}
