//! Organisation B can never read, list, change or page through anything of
//! organisation A — at the RPC and at the row-level-security level.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sqlx::Row as _;
use support::{TestApp, assert_code, authed, new_user, violated_fields};
use tonic::Code;
use treven_mesh::Principal;
use treven_mesh::Role;
use treven_proto::treven::tenants::v1 as pb;

#[tokio::test]
async fn organisation_b_cannot_touch_organisation_a_over_rpc() {
    let app = TestApp::spawn().await;
    let org_a = app.org("Alpha").await;
    let org_b = app.org("Bravo").await;
    let a = app.member(org_a, "a-admin", Role::Admin).await;
    let b = app.member(org_b, "b-admin", Role::Admin).await;
    let mut client = app.client().await;

    // Organisation A's data.
    let user = client
        .create_user(authed(
            &a,
            new_user("x@alpha.example", "Xavier", pb::Role::Analyst),
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    for i in 0..3 {
        client
            .create_user(authed(
                &a,
                new_user(
                    &format!("p{i}@alpha.example"),
                    &format!("P{i}"),
                    pb::Role::Viewer,
                ),
            ))
            .await
            .unwrap();
    }
    let partner = client
        .create_partner(authed(
            &a,
            pb::CreatePartnerRequest {
                name: "Alpha Bank".into(),
                kind: 1,
                contact_email: "b@alpha.example".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .partner
        .unwrap();
    let report = uuid::Uuid::now_v7().to_string();
    let grant = client
        .grant_report_access(authed(
            &app.via(Principal::Reports, &a),
            pb::GrantReportAccessRequest {
                report_id: report.clone(),
                partner_id: partner.id.clone(),
                permission: 1,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .access
        .unwrap();

    // Read.
    assert_code(
        client
            .get_user(authed(
                &app.via(Principal::Operator, &b),
                pb::GetUserRequest {
                    id: user.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
    );
    assert_code(
        client
            .get_partner(authed(
                &app.via(Principal::Operator, &b),
                pb::GetPartnerRequest {
                    id: partner.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
    );
    // List.
    let users = client
        .list_users(authed(&b, pb::ListUsersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        users
            .items
            .iter()
            .map(|u| u.email.as_str())
            .collect::<Vec<_>>(),
        ["b-admin@example.org"]
    );
    assert!(
        client
            .list_partners(authed(&b, pb::ListPartnersRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .items
            .is_empty()
    );
    let grants = client
        .list_report_access(authed(
            &b,
            pb::ListReportAccessRequest {
                report_id: report.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert!(grants.into_inner().items.is_empty());
    let audit = client
        .list_audit_events(authed(&b, pb::ListAuditEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(
        audit.items.iter().all(|e| e.org_id == org_b.to_string()),
        "only B's own entries"
    );
    // Change.
    let rename = pb::UpdateUserRequest {
        id: user.id.clone(),
        user: Some(pb::User {
            name: "Owned".into(),
            ..Default::default()
        }),
        update_mask: None,
    };
    assert_code(client.update_user(authed(&b, rename)).await, Code::NotFound);
    assert_code(
        client
            .delete_user(authed(
                &b,
                pb::DeleteUserRequest {
                    id: user.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
    );
    assert_code(
        client
            .delete_partner(authed(
                &b,
                pb::DeletePartnerRequest {
                    id: partner.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
    );
    assert_code(
        client
            .revoke_report_access(authed(
                &b,
                pb::RevokeReportAccessRequest {
                    id: grant.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
    );
    // B cannot grant its report to A's partner.
    let steal = pb::GrantReportAccessRequest {
        report_id: uuid::Uuid::now_v7().to_string(),
        partner_id: partner.id.clone(),
        permission: 2,
    };
    assert_code(
        client
            .grant_report_access(authed(&app.via(Principal::Reports, &b), steal))
            .await,
        Code::NotFound,
    );
    // A cursor minted for A is refused for B.
    let page = client
        .list_users(authed(
            &a,
            pb::ListUsersRequest {
                limit: 2,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!page.next_cursor.is_empty());
    let status = assert_code(
        client
            .list_users(authed(
                &b,
                pb::ListUsersRequest {
                    limit: 2,
                    cursor: page.next_cursor,
                    role: 0,
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["cursor".to_owned()]);
    // The same e-mail may exist in both organisations.
    client
        .create_user(authed(
            &b,
            new_user("x@alpha.example", "Xavier B", pb::Role::Viewer),
        ))
        .await
        .expect("per-org uniqueness");

    // A's data is untouched.
    let still = client
        .get_user(authed(
            &app.via(Principal::Operator, &a),
            pb::GetUserRequest { id: user.id },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(still.name, "Xavier");
    let grants = client
        .list_report_access(authed(
            &a,
            pb::ListReportAccessRequest {
                report_id: report,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(grants.into_inner().items.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn row_level_security_confines_the_service_role_even_without_org_filters() {
    let app = TestApp::spawn().await;
    let org_a = app.org("Alpha").await;
    let org_b = app.org("Bravo").await;
    app.member(org_a, "a-admin", Role::Admin).await;
    app.member(org_b, "b-admin", Role::Admin).await;
    let mut conn = app.db.owner().await;

    let as_org = |org: Option<treven_mesh::OrgId>| {
        format!(
            "SELECT set_config('role', 'treven_app', true), set_config('app.org_id', '{}', true)",
            org.map(|o| o.to_string()).unwrap_or_default()
        )
    };
    // As B, with no WHERE clause at all: only B's rows exist.
    let mut tx = sqlx::Connection::begin(&mut conn).await.unwrap();
    sqlx::query(&as_org(Some(org_b)))
        .execute(&mut *tx)
        .await
        .unwrap();
    for table in ["organisations", "users", "audit_log"] {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{table}: B sees its own rows");
        let column = if table == "organisations" {
            "id"
        } else {
            "org_id"
        };
        for row in rows {
            let org: uuid::Uuid = row.get(column);
            assert_eq!(org, *org_b.as_uuid(), "{table}: only B's rows are visible");
        }
    }
    let touched = sqlx::query("UPDATE users SET name = 'pwned' WHERE org_id = $1")
        .bind(org_a.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(touched.rows_affected(), 0, "B cannot update A's users");
    let deleted = sqlx::query("DELETE FROM users")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 1, "only B's own user");
    tx.rollback().await.unwrap();

    // Writing a row into A while acting as B is refused by the policy.
    let mut tx = sqlx::Connection::begin(&mut conn).await.unwrap();
    sqlx::query(&as_org(Some(org_b)))
        .execute(&mut *tx)
        .await
        .unwrap();
    let insert = sqlx::query("INSERT INTO users (id, org_id, email, name, role) VALUES ($1, $2, 'e@x.example', 'E', 'admin')")
        .bind(uuid::Uuid::now_v7())
        .bind(org_a.as_uuid())
        .execute(&mut *tx)
        .await;
    let error = insert.expect_err("policy refuses the row");
    assert!(error.to_string().contains("row-level security"), "{error}");
    tx.rollback().await.unwrap();

    // With no organisation set, nothing is visible, and the log stays append-only.
    let mut tx = sqlx::Connection::begin(&mut conn).await.unwrap();
    sqlx::query(&as_org(None)).execute(&mut *tx).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(count, 0);
    tx.rollback().await.unwrap();
    let mut tx = sqlx::Connection::begin(&mut conn).await.unwrap();
    sqlx::query(&as_org(Some(org_b)))
        .execute(&mut *tx)
        .await
        .unwrap();
    let update = sqlx::query("UPDATE audit_log SET action = 'x'")
        .execute(&mut *tx)
        .await;
    assert!(
        update.is_err(),
        "the service role has no UPDATE on the audit log"
    );
    tx.rollback().await.unwrap();
    app.stop().await;
}
