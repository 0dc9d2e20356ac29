//! Invitations that sign in: users' Cognito accounts follow their tenants
//! rows, against moto's Cognito through the real SDK.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{TestApp, TestCognito, assert_code, authed, new_user};
use tonic::Code;
use treven_mesh::Role;
use treven_proto::treven::tenants::v1 as pb;
use treven_tenants::model::{Name, OrgKind};

async fn audit_actions(app: &TestApp, token: &str) -> Vec<String> {
    let mut client = app.client().await;
    let page = client
        .list_audit_events(authed(
            token,
            pb::ListAuditEventsRequest {
                limit: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("audit")
        .into_inner();
    page.items.into_iter().map(|e| e.action).collect()
}

#[tokio::test]
async fn an_invitation_creates_the_cognito_user_and_role_changes_and_removal_follow() {
    let cognito = TestCognito::start().await;
    let app = TestApp::spawn_with_cognito(&cognito).await;
    let org = app.org("Invitations NGO").await;
    let admin = app.member(org, "ann", Role::Admin).await;
    let mut client = app.client().await;

    let bob = client
        .create_user(authed(
            &admin,
            new_user("bob@example.org", "Bob", pb::Role::Analyst),
        ))
        .await
        .expect("invited")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(bob.identity_state(), pb::IdentityState::Synced, "{bob:?}");
    assert!(!bob.cognito_sub.is_empty(), "the subject is linked at once");

    let (enabled, attributes) = cognito
        .attributes("bob@example.org")
        .await
        .expect("a cognito user");
    assert!(enabled);
    assert_eq!(attributes["custom:orgId"], org.to_string());
    assert_eq!(attributes["email"], "bob@example.org");
    assert_eq!(attributes["email_verified"], "true");
    assert_eq!(attributes["sub"], bob.cognito_sub);
    assert_eq!(cognito.groups("bob@example.org").await, vec!["analyst"]);

    // A retried invitation neither fails nor duplicates anything.
    let again = client
        .create_user(authed(
            &admin,
            new_user("bob@example.org", "Bob", pb::Role::Analyst),
        ))
        .await
        .expect("a retry succeeds")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(again.id, bob.id);
    assert_eq!(cognito.users_with_email("bob@example.org").await, 1);
    let users = client
        .list_users(authed(&admin, pb::ListUsersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(
        users
            .iter()
            .filter(|u| u.email == "bob@example.org")
            .count(),
        1
    );

    // A role change moves the group.
    let changed = client
        .update_user(authed(
            &admin,
            pb::UpdateUserRequest {
                id: bob.id.clone(),
                user: Some(pb::User {
                    role: pb::Role::Viewer.into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["role".into()],
                }),
            },
        ))
        .await
        .expect("role changed")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(changed.identity_state(), pb::IdentityState::Synced);
    assert_eq!(cognito.groups("bob@example.org").await, vec!["viewer"]);

    // Removal disables the Cognito user (and signs them out everywhere).
    client
        .delete_user(authed(&admin, pb::DeleteUserRequest { id: bob.id.clone() }))
        .await
        .expect("removed");
    let (enabled, _) = cognito
        .attributes("bob@example.org")
        .await
        .expect("kept, disabled");
    assert!(!enabled, "a removed user cannot sign in");

    // Invited again: the same Cognito user, enabled again.
    let back = client
        .create_user(authed(
            &admin,
            new_user("bob@example.org", "Bob", pb::Role::Analyst),
        ))
        .await
        .expect("invited again")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(back.identity_state(), pb::IdentityState::Synced);
    assert_eq!(back.cognito_sub, bob.cognito_sub);
    let (enabled, _) = cognito.attributes("bob@example.org").await.unwrap();
    assert!(enabled);
    assert_eq!(cognito.users_with_email("bob@example.org").await, 1);

    // A subject sent with the invitation that the pool does not know is
    // replaced by the pool's, so the user can sign in.
    let mut sent = new_user("gail@example.org", "Gail", pb::Role::Viewer);
    sent.cognito_sub = "stale-subject".into();
    let gail = client
        .create_user(authed(&admin, sent))
        .await
        .expect("invited")
        .into_inner()
        .user
        .unwrap();
    let (_, attributes) = cognito.attributes("gail@example.org").await.unwrap();
    assert_eq!(gail.cognito_sub, attributes["sub"]);
    assert_ne!(gail.cognito_sub, "stale-subject");

    let actions = audit_actions(&app, &admin).await;
    for action in ["user.create", "user.update", "user.delete"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn while_cognito_is_down_the_user_waits_pending_and_the_relay_invites_them() {
    let cognito = TestCognito::start().await;
    let app = TestApp::spawn_with_cognito(&cognito).await;
    let org = app.org("Outage NGO").await;
    let admin = app.member(org, "ann", Role::Admin).await;
    let mut client = app.client().await;

    cognito.link.cut();
    let carol = client
        .create_user(authed(
            &admin,
            new_user("carol@example.org", "Carol", pb::Role::Viewer),
        ))
        .await
        .expect("the tenants user is kept while Cognito is down")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(carol.identity_state(), pb::IdentityState::Pending);
    assert!(cognito.attributes("carol@example.org").await.is_none());
    // The relay keeps trying while the link is down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(cognito.attributes("carol@example.org").await.is_none());

    cognito.link.restore();
    let started = Instant::now();
    let synced = loop {
        let user = client
            .get_user(authed(
                &admin,
                pb::GetUserRequest {
                    id: carol.id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        if user.identity_state() == pb::IdentityState::Synced {
            break user;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the relay did not invite the user: {user:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (enabled, attributes) = cognito
        .attributes("carol@example.org")
        .await
        .expect("invited");
    assert!(enabled);
    assert_eq!(attributes["custom:orgId"], org.to_string());
    assert_eq!(attributes["sub"], synced.cognito_sub);
    assert_eq!(cognito.groups("carol@example.org").await, vec!["viewer"]);

    // A removal while Cognito is down is applied once it is back.
    cognito.link.cut();
    client
        .delete_user(authed(
            &admin,
            pb::DeleteUserRequest {
                id: carol.id.clone(),
            },
        ))
        .await
        .expect("removed in tenants at once");
    assert!(
        cognito.attributes("carol@example.org").await.unwrap().0,
        "not yet"
    );
    cognito.link.restore();
    let started = Instant::now();
    while cognito.attributes("carol@example.org").await.unwrap().0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the relay did not disable the removed user"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn an_email_of_another_organisation_is_never_taken_over() {
    use aws_sdk_cognitoidentityprovider::types::AttributeType;
    let cognito = TestCognito::start().await;
    let app = TestApp::spawn_with_cognito(&cognito).await;
    let org = app.org("Careful NGO").await;
    let admin = app.member(org, "ann", Role::Admin).await;
    let other = uuid::Uuid::now_v7().to_string();
    cognito
        .client
        .admin_create_user()
        .user_pool_id(&cognito.pool_id)
        .username("dan@example.org")
        .user_attributes(
            AttributeType::builder()
                .name("email")
                .value("dan@example.org")
                .build()
                .unwrap(),
        )
        .user_attributes(
            AttributeType::builder()
                .name("custom:orgId")
                .value(&other)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let mut client = app.client().await;
    let dan = client
        .create_user(authed(
            &admin,
            new_user("dan@example.org", "Dan", pb::Role::Analyst),
        ))
        .await
        .expect("the tenants user is created")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(dan.identity_state(), pb::IdentityState::Failed, "{dan:?}");
    let (_, attributes) = cognito.attributes("dan@example.org").await.unwrap();
    assert_eq!(attributes["custom:orgId"], other, "left alone");
    assert!(cognito.groups("dan@example.org").await.is_empty());
    assert!(
        audit_actions(&app, &admin)
            .await
            .iter()
            .any(|a| a == "user.identity_failed")
    );

    // Removing the tenants user leaves the other organisation's user alone.
    client
        .delete_user(authed(&admin, pb::DeleteUserRequest { id: dan.id }))
        .await
        .unwrap();
    assert!(
        cognito.attributes("dan@example.org").await.unwrap().0,
        "still enabled"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_platform_owner_creates_organisations_with_their_first_admin() {
    let cognito = TestCognito::start().await;
    let app = TestApp::spawn_with_cognito(&cognito).await;
    let owner = app
        .store
        .admin_ensure_org(&Name::parse("name", "Treven").unwrap(), OrgKind::Owner)
        .await
        .unwrap()
        .id;
    let root = app.member(owner, "root", Role::Admin).await;
    let owner_analyst = app.member(owner, "ada", Role::Analyst).await;
    let mut client = app.client().await;
    let request = || pb::CreateOrganisationRequest {
        name: "Harbour Bank".into(),
        kind: pb::OrganisationKind::Fi.into(),
        admin_email: "erin@harbour.example".into(),
        admin_name: "Erin".into(),
    };
    let created = client
        .create_organisation(authed(&root, request()))
        .await
        .expect("created")
        .into_inner();
    let org = created.organisation.unwrap();
    let admin = created.admin.unwrap();
    assert_eq!(org.name, "Harbour Bank");
    assert_eq!(org.kind(), pb::OrganisationKind::Fi);
    assert_eq!(admin.org_id, org.id);
    assert_eq!(admin.role(), pb::Role::Admin);
    assert_eq!(admin.identity_state(), pb::IdentityState::Synced);
    let (enabled, attributes) = cognito.attributes("erin@harbour.example").await.unwrap();
    assert!(enabled);
    assert_eq!(attributes["custom:orgId"], org.id);
    assert_eq!(cognito.groups("erin@harbour.example").await, vec!["admin"]);

    // The first admin works in their organisation, and only there.
    let new_org = treven_mesh::OrgId::new(org.id.parse().unwrap());
    let erin = app.token(new_org, &admin.cognito_sub, &[Role::Admin]);
    let me = client
        .get_me(authed(&erin, pb::GetMeRequest {}))
        .await
        .expect("the admin exists")
        .into_inner();
    assert_eq!(me.organisation.unwrap().id, org.id);
    let theirs = audit_actions(&app, &erin).await;
    assert!(
        theirs.iter().any(|a| a == "organisation.create"),
        "{theirs:?}"
    );
    assert!(theirs.iter().any(|a| a == "user.create"), "{theirs:?}");
    let ours = audit_actions(&app, &root).await;
    assert!(ours.iter().any(|a| a == "organisation.create"), "{ours:?}");

    // Only the owner's admins; a name is taken once.
    let status = assert_code(
        client
            .create_organisation(authed(
                &erin,
                pb::CreateOrganisationRequest {
                    name: "Another".into(),
                    ..request()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(support::code_of(&status), "FORBIDDEN");
    assert_code(
        client
            .create_organisation(authed(
                &owner_analyst,
                pb::CreateOrganisationRequest {
                    name: "Another".into(),
                    ..request()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    let status = assert_code(
        client
            .create_organisation(authed(
                &root,
                pb::CreateOrganisationRequest {
                    name: "harbour bank".into(),
                    admin_email: "someone@harbour.example".into(),
                    ..request()
                },
            ))
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(support::violated_fields(&status), vec!["name".to_owned()]);
    assert_code(
        client
            .create_organisation(authed(
                &root,
                pb::CreateOrganisationRequest {
                    name: "Owner Two".into(),
                    kind: pb::OrganisationKind::Owner.into(),
                    ..request()
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    app.stop().await;
}

#[tokio::test]
async fn a_request_can_create_only_the_organisation_it_is_confined_to_and_sees_only_its_jobs() {
    use sqlx::Connection as _;
    let app = TestApp::spawn().await;
    let org = app.org("Confined NGO").await;
    let mut conn = sqlx::PgConnection::connect(&app.db.login_url(treven_tenants::LOGIN_ROLE))
        .await
        .unwrap();
    let confine = |org: String| {
        format!(
            "SELECT set_config('role', 'treven_app', true), set_config('app.org_id', '{org}', true)"
        )
    };
    let fresh = uuid::Uuid::now_v7();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(&confine(fresh.to_string()))
        .execute(&mut *tx)
        .await
        .unwrap();
    let other =
        sqlx::query("INSERT INTO organisations (id, name, kind) VALUES ($1, 'Elsewhere', 'ngo')")
            .bind(uuid::Uuid::now_v7())
            .execute(&mut *tx)
            .await;
    assert!(
        other.is_err(),
        "another id than the confined one is refused"
    );
    tx.rollback().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(&confine(fresh.to_string()))
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO organisations (id, name, kind) VALUES ($1, 'Fresh', 'ngo')")
        .bind(fresh)
        .execute(&mut *tx)
        .await
        .expect("the confined id can be created");
    sqlx::query("INSERT INTO cognito_sync (id, org_id, user_id, username, actor_id) VALUES ($1, $2, $3, 'x@example.org', 'a')")
        .bind(uuid::Uuid::now_v7())
        .bind(fresh)
        .bind(uuid::Uuid::now_v7())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(&confine(fresh.to_string()))
        .execute(&mut *tx)
        .await
        .unwrap();
    let foreign = sqlx::query("INSERT INTO cognito_sync (id, org_id, user_id, username, actor_id) VALUES ($1, $2, $3, 'x@example.org', 'a')")
        .bind(uuid::Uuid::now_v7())
        .bind(org.as_uuid())
        .bind(uuid::Uuid::now_v7())
        .execute(&mut *tx)
        .await;
    assert!(foreign.is_err(), "a job of another organisation is refused");
    tx.rollback().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(&confine(org.to_string()))
        .execute(&mut *tx)
        .await
        .unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM cognito_sync")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, 0, "another organisation's jobs are invisible");
    tx.rollback().await.unwrap();
    drop(conn);
    app.stop().await;
}
