//! The tenants API end to end over gRPC, against a real Postgres.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;

use support::{TestApp, assert_code, authed, code_of, new_user, violated_fields};
use tonic::{Code, Request};
use treven_mesh::Principal;
use treven_mesh::{MeshKey, Role, Signer};
use treven_proto::treven::tenants::v1 as pb;

#[tokio::test]
async fn calls_without_a_valid_mesh_context_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let org = app.org("Acme").await;
    let mut client = app.client().await;

    let status = assert_code(
        client.get_me(Request::new(pb::GetMeRequest {})).await,
        Code::Unauthenticated,
    );
    assert_eq!(code_of(&status), "UNAUTHORIZED");

    // Signed by a key that is not the gateway's.
    let forged = Signer::new(Principal::Gateway, MeshKey::generate()).mint(
        Principal::Tenants,
        org,
        "sub",
        &[Role::Admin],
        "r",
        std::time::Duration::from_secs(60),
    );
    assert_code(
        client.get_me(authed(&forged, pb::GetMeRequest {})).await,
        Code::Unauthenticated,
    );
    assert_code(
        client.get_me(authed("garbage", pb::GetMeRequest {})).await,
        Code::Unauthenticated,
    );

    let token = app.member(org, "ann", Role::Admin).await;
    let me = client
        .get_me(authed(&token, pb::GetMeRequest {}))
        .await
        .expect("valid token")
        .into_inner();
    assert_eq!(me.user.unwrap().cognito_sub, "ann");
    assert_eq!(me.organisation.unwrap().name, "Acme");
    app.stop().await;
}

/// `GetMe` reads the caller and their organisation in one statement: it
/// returns the same organisation as `GetOrganisation`, and a subject that
/// belongs to another organisation is not found in this one.
#[tokio::test]
async fn get_me_is_the_caller_with_their_whole_organisation_and_nobody_elses() {
    let app = TestApp::spawn().await;
    let acme = app.org("Acme").await;
    let other = app.org("Other").await;
    let ann = app.member(acme, "ann", Role::Analyst).await;
    app.member(other, "bob", Role::Admin).await;
    let mut client = app.client().await;

    let me = client
        .get_me(authed(&ann, pb::GetMeRequest {}))
        .await
        .expect("ann is a member")
        .into_inner();
    let organisation = client
        .get_organisation(authed(&ann, pb::GetOrganisationRequest {}))
        .await
        .expect("her organisation")
        .into_inner()
        .organisation;
    assert!(organisation.is_some());
    assert_eq!(me.organisation, organisation);
    let user = me.user.expect("the user");
    assert_eq!(
        (user.cognito_sub.as_str(), user.org_id, user.role),
        ("ann", acme.to_string(), pb::Role::Analyst as i32)
    );

    // Bob's subject, presented as a member of Acme: no such user there.
    let bob_in_acme = app.token(acme, "bob", &[Role::Admin]);
    assert_code(
        client
            .get_me(authed(&bob_in_acme, pb::GetMeRequest {}))
            .await,
        Code::NotFound,
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_invalid_argument_with_the_field_named() {
    let app = TestApp::spawn().await;
    let org = app.org("Acme").await;
    let admin = app.member(org, "ann", Role::Admin).await;
    let mut client = app.client().await;

    let cases = [
        (new_user("bob@example.org", "", pb::Role::Analyst), "name"),
        (
            new_user("bob@example.org", &"x".repeat(201), pb::Role::Analyst),
            "name",
        ),
        (new_user("not-an-email", "Bob", pb::Role::Analyst), "email"),
        (new_user("", "Bob", pb::Role::Analyst), "email"),
        (
            new_user("bob@example.org", "Bob", pb::Role::Unspecified),
            "role",
        ),
        (
            pb::CreateUserRequest {
                role: 99,
                ..new_user("bob@example.org", "Bob", pb::Role::Analyst)
            },
            "role",
        ),
        (
            pb::CreateUserRequest {
                cognito_sub: "a b".into(),
                ..new_user("bob@example.org", "Bob", pb::Role::Analyst)
            },
            "cognito_sub",
        ),
    ];
    for (request, field) in cases {
        let status = assert_code(
            client.create_user(authed(&admin, request)).await,
            Code::InvalidArgument,
        );
        assert_eq!(
            violated_fields(&status),
            vec![field.to_owned()],
            "{status:?}"
        );
        assert_eq!(code_of(&status), "VALIDATION_ERROR");
    }

    for id in ["", "123", "not-a-uuid", "'; DROP TABLE users; --"] {
        let status = assert_code(
            client
                .get_user(authed(
                    &app.via(Principal::Operator, &admin),
                    pb::GetUserRequest { id: id.into() },
                ))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["id".to_owned()]);
    }
    for cursor in ["x", "abc.def", &"A".repeat(5000)] {
        let request = pb::ListUsersRequest {
            cursor: cursor.into(),
            ..Default::default()
        };
        let status = assert_code(
            client.list_users(authed(&admin, request)).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["cursor".to_owned()]);
    }
    let status = assert_code(
        client
            .list_users(authed(
                &admin,
                pb::ListUsersRequest {
                    limit: 1000,
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["limit".to_owned()]);

    client
        .create_user(authed(
            &admin,
            new_user("bob@example.org", "Bob", pb::Role::Analyst),
        ))
        .await
        .expect("created");
    let status = assert_code(
        client
            .create_user(authed(
                &admin,
                new_user("BOB@example.org", "Bobby", pb::Role::Viewer),
            ))
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(violated_fields(&status), vec!["email".to_owned()]);
    assert_eq!(code_of(&status), "CONFLICT");

    let status = assert_code(
        client
            .update_user(authed(
                &admin,
                pb::UpdateUserRequest {
                    id: uuid::Uuid::now_v7().to_string(),
                    user: Some(pb::User {
                        name: "X".into(),
                        ..Default::default()
                    }),
                    // Not a field of the user (output-only ones, such as
                    // `org_id`, are ignored).
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["org_role".into()],
                    }),
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["update_mask".to_owned()]);
    app.stop().await;
}

#[tokio::test]
async fn only_admins_manage_users_and_partners() {
    let app = TestApp::spawn().await;
    let org = app.org("Acme").await;
    let analyst = app.member(org, "ana", Role::Analyst).await;
    let viewer = app.member(org, "vic", Role::Viewer).await;
    let mut client = app.client().await;

    for token in [&analyst, &viewer] {
        let status = assert_code(
            client
                .create_user(authed(
                    token,
                    new_user("x@example.org", "X", pb::Role::Admin),
                ))
                .await,
            Code::PermissionDenied,
        );
        assert_eq!(code_of(&status), "FORBIDDEN");
        let partner = pb::CreatePartnerRequest {
            name: "Bank".into(),
            kind: pb::OrganisationKind::Fi.into(),
            contact_email: "b@bank.example".into(),
        };
        assert_code(
            client.create_partner(authed(token, partner)).await,
            Code::PermissionDenied,
        );
    }
    // Viewers read users, but not the audit trail.
    client
        .list_users(authed(&viewer, pb::ListUsersRequest::default()))
        .await
        .expect("viewers list users");
    assert_code(
        client
            .list_audit_events(authed(&viewer, pb::ListAuditEventsRequest::default()))
            .await,
        Code::PermissionDenied,
    );
    client
        .list_audit_events(authed(&analyst, pb::ListAuditEventsRequest::default()))
        .await
        .expect("analysts read audit");

    // A token with no role (the gateway's first call) may only look itself up.
    let bare = app.token(org, "ana", &[]);
    assert_code(
        client
            .list_users(authed(&bare, pb::ListUsersRequest::default()))
            .await,
        Code::PermissionDenied,
    );
    let found = client
        .lookup_user_by_sub(authed(
            &bare,
            pb::LookupUserBySubRequest {
                cognito_sub: "ana".into(),
                email: String::new(),
            },
        ))
        .await
        .expect("self lookup")
        .into_inner();
    assert_eq!(found.user.unwrap().role, pb::Role::Analyst as i32);
    assert_code(
        client
            .lookup_user_by_sub(authed(
                &bare,
                pb::LookupUserBySubRequest {
                    cognito_sub: "vic".into(),
                    email: String::new(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    app.stop().await;
}

#[tokio::test]
async fn an_invited_user_is_linked_on_first_lookup_and_audited() {
    let app = TestApp::spawn().await;
    let org = app.org("Acme").await;
    let admin = app.member(org, "ann", Role::Admin).await;
    let mut client = app.client().await;
    let invited = client
        .create_user(authed(
            &admin,
            new_user("Carol@Example.org", "Carol", pb::Role::Analyst),
        ))
        .await
        .expect("invite")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(invited.cognito_sub, "");

    let first_call = app.token(org, "cognito-carol", &[]);
    let lookup = pb::LookupUserBySubRequest {
        cognito_sub: "cognito-carol".into(),
        email: "carol@example.org".into(),
    };
    let linked = client
        .lookup_user_by_sub(authed(&first_call, lookup.clone()))
        .await
        .expect("linked")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        (linked.id.as_str(), linked.cognito_sub.as_str()),
        (invited.id.as_str(), "cognito-carol")
    );
    // A second subject cannot claim the same invitation.
    let intruder = app.token(org, "cognito-mallory", &[]);
    let claim = pb::LookupUserBySubRequest {
        cognito_sub: "cognito-mallory".into(),
        email: "carol@example.org".into(),
    };
    assert_code(
        client.lookup_user_by_sub(authed(&intruder, claim)).await,
        Code::NotFound,
    );

    let audit = client
        .list_audit_events(authed(
            &admin,
            pb::ListAuditEventsRequest {
                resource_type: "user".into(),
                resource_id: invited.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("audit")
        .into_inner();
    let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["user.link", "user.create"], "newest first");
    assert_eq!(audit.items[1].actor_id, "ann");
    app.stop().await;
}

#[tokio::test]
async fn pagination_returns_every_user_exactly_once_in_order() {
    let app = TestApp::spawn().await;
    let org = app.org("Acme").await;
    let admin = app.member(org, "admin", Role::Admin).await;
    let mut client = app.client().await;
    for i in 0..23 {
        // Duplicate names make the id tie-break matter.
        let name = format!("User {:02}", i % 10);
        client
            .create_user(authed(
                &admin,
                new_user(&format!("u{i}@example.org"), &name, pb::Role::Viewer),
            ))
            .await
            .expect("create");
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_users(authed(
                &admin,
                pb::ListUsersRequest {
                    limit: 7,
                    cursor: cursor.clone(),
                    role: pb::Role::Viewer.into(),
                },
            ))
            .await
            .expect("page")
            .into_inner();
        pages += 1;
        assert!(page.items.len() <= 7);
        seen.extend(page.items.into_iter().map(|u| (u.name, u.id)));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(pages, 4);
    assert_eq!(seen.len(), 23);
    assert_eq!(
        seen.iter().map(|(_, id)| id).collect::<HashSet<_>>().len(),
        23,
        "no duplicates"
    );
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ordered by name, then id");

    // A cursor of the viewer-filtered list is not valid for the unfiltered one.
    let first = client
        .list_users(authed(
            &admin,
            pb::ListUsersRequest {
                limit: 2,
                cursor: String::new(),
                role: pb::Role::Viewer.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let status = assert_code(
        client
            .list_users(authed(
                &admin,
                pb::ListUsersRequest {
                    limit: 2,
                    cursor: first.next_cursor,
                    role: 0,
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["cursor".to_owned()]);
    app.stop().await;
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_or_removed() {
    let app = TestApp::spawn().await;
    let org = app.org("Acme").await;
    let admin = app.member(org, "ann", Role::Admin).await;
    let mut client = app.client().await;
    let me = client
        .get_me(authed(&admin, pb::GetMeRequest {}))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();

    let demote = pb::UpdateUserRequest {
        id: me.id.clone(),
        user: Some(pb::User {
            role: pb::Role::Viewer.into(),
            ..Default::default()
        }),
        update_mask: None,
    };
    // An update that names nothing (output-only fields are ignored)
    // changes nothing and returns the user.
    let unchanged = client
        .update_user(authed(
            &admin,
            pb::UpdateUserRequest {
                id: me.id.clone(),
                user: Some(pb::User {
                    id: "ignored".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["id".into(), "updated_at".into()],
                }),
            },
        ))
        .await
        .expect("a no-op")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(unchanged, me);
    let status = assert_code(
        client.update_user(authed(&admin, demote.clone())).await,
        Code::FailedPrecondition,
    );
    assert_eq!(code_of(&status), "FAILED_PRECONDITION");
    assert_code(
        client
            .delete_user(authed(&admin, pb::DeleteUserRequest { id: me.id.clone() }))
            .await,
        Code::FailedPrecondition,
    );

    // With a second admin, the change goes through and is audited.
    client
        .create_user(authed(
            &admin,
            new_user("bea@example.org", "Bea", pb::Role::Admin),
        ))
        .await
        .unwrap();
    let updated = client
        .update_user(authed(&admin, demote))
        .await
        .expect("demoted")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(updated.role, pb::Role::Viewer as i32);
    let audit = client
        .list_audit_events(authed(
            &app.token(org, "bea", &[Role::Admin]),
            pb::ListAuditEventsRequest {
                resource_type: "user".into(),
                resource_id: me.id,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(audit.items[0].action, "user.update");
    app.stop().await;
}

#[tokio::test]
async fn partners_grants_and_audit_work_together() {
    let app = TestApp::spawn().await;
    let org = app.org("Acme").await;
    let admin = app.member(org, "ann", Role::Admin).await;
    let analyst = app.member(org, "ana", Role::Analyst).await;
    let mut client = app.client().await;

    let partner = client
        .create_partner(authed(
            &admin,
            pb::CreatePartnerRequest {
                name: "Bank of Example".into(),
                kind: pb::OrganisationKind::Fi.into(),
                contact_email: "fiu@bank.example".into(),
            },
        ))
        .await
        .expect("partner")
        .into_inner()
        .partner
        .unwrap();
    let owner = pb::CreatePartnerRequest {
        name: "Owner".into(),
        kind: pb::OrganisationKind::Owner.into(),
        contact_email: "o@x.example".into(),
    };
    assert_code(
        client.create_partner(authed(&admin, owner)).await,
        Code::InvalidArgument,
    );

    let report = uuid::Uuid::now_v7().to_string();
    let grant = |permission: pb::ReportPermission| pb::GrantReportAccessRequest {
        report_id: report.clone(),
        partner_id: partner.id.clone(),
        permission: permission.into(),
    };
    client
        .grant_report_access(authed(
            &app.via(Principal::Reports, &analyst),
            grant(pb::ReportPermission::View),
        ))
        .await
        .expect("grant");
    let regrant = client
        .grant_report_access(authed(
            &app.via(Principal::Reports, &analyst),
            grant(pb::ReportPermission::Download),
        ))
        .await
        .expect("regrant");
    assert_eq!(
        regrant.into_inner().access.unwrap().permission,
        pb::ReportPermission::Download as i32
    );
    let listed = client
        .list_report_access(authed(
            &analyst,
            pb::ListReportAccessRequest {
                report_id: report.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.items.len(),
        1,
        "re-granting changes the grant, it does not add one"
    );

    let recorded = client
        .record_audit_event(authed(
            &app.via(Principal::Reports, &analyst),
            pb::RecordAuditEventRequest {
                action: "report.pii_kept".into(),
                resource_type: "report".into(),
                resource_id: report.clone(),
                details: None,
                ..Default::default()
            },
        ))
        .await
        .expect("record")
        .into_inner()
        .event
        .unwrap();
    assert_eq!(
        recorded.actor_id, "ana",
        "the actor is the caller, never a request field"
    );

    // Deleting the partner removes its grants.
    client
        .delete_partner(authed(
            &admin,
            pb::DeletePartnerRequest {
                id: partner.id.clone(),
            },
        ))
        .await
        .expect("delete");
    let listed = client
        .list_report_access(authed(
            &analyst,
            pb::ListReportAccessRequest {
                report_id: report.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.items.is_empty());

    let audit = client
        .list_audit_events(authed(
            &analyst,
            pb::ListAuditEventsRequest {
                resource_type: "report".into(),
                resource_id: report,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "report.pii_kept",
            "report_access.grant",
            "report_access.grant"
        ]
    );

    // The audit log refuses changes even from the owner.
    let mut owner = app.db.owner().await;
    let update = sqlx::query("UPDATE audit_log SET action = 'x'")
        .execute(&mut owner)
        .await;
    assert!(update.is_err(), "audit log is append-only");
    let delete = sqlx::query("DELETE FROM audit_log")
        .execute(&mut owner)
        .await;
    assert!(delete.is_err(), "audit log is append-only");
    app.stop().await;
}

#[tokio::test]
async fn an_audit_event_delivered_twice_is_recorded_once() {
    let app = TestApp::spawn().await;
    let org = app.org("Acme").await;
    let other = app.org("Other").await;
    let analyst = app.member(org, "ann", Role::Analyst).await;
    let stranger = app.member(other, "sam", Role::Analyst).await;
    let reports = app.via(Principal::Reports, &analyst);
    let mut client = app.client().await;
    let event_id = uuid::Uuid::now_v7().to_string();
    let happened = chrono::Utc::now() - chrono::Duration::minutes(5);
    let event = |id: &str, action: &str| pb::RecordAuditEventRequest {
        action: action.into(),
        resource_type: "report".into(),
        resource_id: "r-1".into(),
        details: Some(treven_mesh::wire::json_to_struct(
            &serde_json::json!({"version": 2}),
        )),
        event_id: id.into(),
        occurred_at: Some(treven_mesh::wire::timestamp(happened)),
    };

    // The first delivery stores the entry under the event id, at the time
    // the change happened; redeliveries (a relay that crashed before it
    // marked the event delivered) return that entry and store nothing.
    let first = client
        .record_audit_event(authed(&reports, event(&event_id, "report.approve")))
        .await
        .expect("first delivery")
        .into_inner()
        .event
        .unwrap();
    assert_eq!(first.id, event_id);
    let occurred =
        treven_mesh::wire::from_timestamp("occurred_at", first.occurred_at.as_ref().unwrap())
            .unwrap();
    assert!(
        (occurred - happened).num_milliseconds().abs() < 5,
        "{occurred} vs {happened}"
    );
    let mut again = Vec::new();
    for _ in 0..3 {
        let mut client = client.clone();
        let request = authed(&reports, event(&event_id, "report.approve"));
        again.push(tokio::spawn(async move {
            client.record_audit_event(request).await
        }));
    }
    for delivery in again {
        let entry = delivery
            .await
            .unwrap()
            .expect("redelivery")
            .into_inner()
            .event
            .unwrap();
        assert_eq!(entry, first, "the entry recorded the first time");
    }
    let mut owner = app.db.owner().await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE id = $1")
        .bind(uuid::Uuid::parse_str(&event_id).unwrap())
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(count, 1, "one entry however often it is delivered");

    // The same id for another action, or from another organisation: a
    // conflict, and nothing is written.
    let status = assert_code(
        client
            .record_audit_event(authed(&reports, event(&event_id, "report.export")))
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(code_of(&status), "CONFLICT");
    assert_eq!(violated_fields(&status), ["event_id"]);
    assert_code(
        client
            .record_audit_event(authed(
                &app.via(Principal::Reports, &stranger),
                event(&event_id, "report.approve"),
            ))
            .await,
        Code::AlreadyExists,
    );

    // A malformed id is refused naming the field; none at all lets the
    // server choose one (callers that never redeliver).
    for bad in ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "1234"] {
        let status = assert_code(
            client
                .record_audit_event(authed(&reports, event(bad, "report.approve")))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), ["event_id"], "{bad}");
    }
    let fresh = || pb::RecordAuditEventRequest {
        occurred_at: None,
        ..event("", "report.submit")
    };
    let one = client
        .record_audit_event(authed(&reports, fresh()))
        .await
        .expect("no event id")
        .into_inner()
        .event
        .unwrap();
    let two = client
        .record_audit_event(authed(&reports, fresh()))
        .await
        .expect("no event id")
        .into_inner()
        .event
        .unwrap();
    assert_ne!(
        one.id, two.id,
        "without an event id every call is a new entry"
    );
    assert_ne!(one.id, event_id);
    app.stop().await;
}

#[tokio::test]
async fn every_rpc_answers_each_principal_and_role_as_its_table_says() {
    let app = TestApp::spawn().await;
    let org = app.org("Acme").await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.address))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let calls =
        treven_testkit::policy::walk(&channel, &treven_tenants::policy::POLICY, &app.keys, org)
            .await;
    assert!(calls > 100, "walked {calls} calls");

    // The calls the issue names: a user at the edge cannot write the audit
    // log or share, whatever their role; the reports service can.
    let admin = app.member(org, "ann", Role::Admin).await;
    let mut client = app.client().await;
    let audit = || pb::RecordAuditEventRequest {
        action: "report.approve".into(),
        resource_type: "report".into(),
        resource_id: uuid::Uuid::now_v7().to_string(),
        details: None,
        ..Default::default()
    };
    assert_code(
        client.record_audit_event(authed(&admin, audit())).await,
        Code::PermissionDenied,
    );
    client
        .record_audit_event(authed(&app.via(Principal::Reports, &admin), audit()))
        .await
        .expect("the reports service records for its user");
    // The gateway's key claiming to be the reports service: refused, the
    // signature is checked against the issuer's own key.
    let gateway_key = app.keys.signer(Principal::Gateway).unwrap().key().clone();
    let forged = Signer::new(Principal::Reports, gateway_key).mint(
        Principal::Tenants,
        org,
        "ann",
        &[Role::Admin],
        "forged",
        std::time::Duration::from_secs(60),
    );
    assert_code(
        client.record_audit_event(authed(&forged, audit())).await,
        Code::Unauthenticated,
    );
    app.stop().await;
}

fn timestamp_of(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

#[tokio::test]
async fn an_admin_exports_a_time_range_of_the_audit_log_oldest_first_and_the_export_is_audited() {
    use tokio_stream::StreamExt as _;
    let app = TestApp::spawn().await;
    let a = app.org("Export A").await;
    let b = app.org("Export B").await;
    let admin_a = app.member(a, "ann", Role::Admin).await;
    let analyst_a = app.member(a, "ana", Role::Analyst).await;
    let admin_b = app.member(b, "bob", Role::Admin).await;
    let mut client = app.client().await;
    let record = |token: &str, n: usize| {
        authed(
            &app.via(Principal::Reports, token),
            pb::RecordAuditEventRequest {
                action: "report.exported".into(),
                resource_type: "report".into(),
                resource_id: format!("r{n}"),
                ..Default::default()
            },
        )
    };
    let started = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    // More than one page (500) of entries in A, a few in B.
    const IN_A: usize = 620;
    for n in 0..IN_A {
        client
            .record_audit_event(record(&analyst_a, n))
            .await
            .unwrap();
    }
    for n in 0..3 {
        client
            .record_audit_event(record(&admin_b, n))
            .await
            .unwrap();
    }
    let range = |resource_type: &str| pb::ExportAuditEventsRequest {
        since: Some(timestamp_of(started)),
        until: Some(timestamp_of(
            chrono::Utc::now() + chrono::TimeDelta::minutes(1),
        )),
        resource_type: resource_type.into(),
        resource_id: String::new(),
    };
    let export = |token: String, request: pb::ExportAuditEventsRequest| {
        let mut client = client.clone();
        async move {
            let mut stream = client
                .export_audit_events(authed(&token, request))
                .await?
                .into_inner();
            let mut events = Vec::new();
            while let Some(event) = stream.next().await {
                events.push(event?.event.expect("an entry"));
            }
            Ok::<_, tonic::Status>(events)
        }
    };

    let exported = export(admin_a.clone(), range("report")).await.unwrap();
    assert_eq!(exported.len(), IN_A, "every entry, across pages, once");
    let order: Vec<(i64, i32, &str)> = exported
        .iter()
        .map(|e| {
            let at = e.occurred_at.as_ref().unwrap();
            (at.seconds, at.nanos, e.id.as_str())
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert!(exported.iter().all(|e| e.org_id == a.to_string()));
    assert_eq!(exported[0].resource_id, "r0");
    assert_eq!(exported[IN_A - 1].resource_id, format!("r{}", IN_A - 1));

    // B exports its own three only.
    let theirs = export(admin_b.clone(), range("report")).await.unwrap();
    assert_eq!(theirs.len(), 3);
    assert!(theirs.iter().all(|e| e.org_id == b.to_string()));

    // Admins only; the range is required, ordered and bounded.
    let denied = export(analyst_a.clone(), range("report"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let mut open_ended = range("report");
    open_ended.until = None;
    let refused = export(admin_a.clone(), open_ended).await.unwrap_err();
    assert_eq!(violated_fields(&refused), vec!["until".to_owned()]);
    let mut backwards = range("report");
    backwards.until = backwards.since;
    let refused = export(admin_a.clone(), backwards).await.unwrap_err();
    assert_eq!(violated_fields(&refused), vec!["until".to_owned()]);
    let mut too_long = range("report");
    too_long.since = Some(timestamp_of(started - chrono::TimeDelta::days(367)));
    let refused = export(admin_a.clone(), too_long).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    // Each export that ran is itself in the log, by the admin who ran it.
    let audited = client
        .list_audit_events(authed(
            &admin_a,
            pb::ListAuditEventsRequest {
                resource_type: "audit_log".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let exports: Vec<&str> = audited
        .items
        .iter()
        .filter(|e| e.action == "audit.export")
        .map(|e| e.actor_id.as_str())
        .collect();
    assert_eq!(exports, ["ann"], "one successful export in A, by ann");
    app.stop().await;
}
