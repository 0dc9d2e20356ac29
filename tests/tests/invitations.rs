//! Onboarding and invitations that sign in, end to end through the gateway
//! against moto's Cognito:
//!
//! the platform owner's admin creates an organisation (REST) → its first
//! admin accepts the invitation and signs in → `/api/me` shows the new
//! organisation and `admin` → they invite an analyst (REST) → the analyst
//! signs in → `/api/me` shows the organisation and `analyst` → a role change
//! shows in `/api/me` → removal closes the analyst's open WebSocket (1008)
//! and their next sign-in fails. A non-owner admin cannot create
//! organisations (403).
//!
//! moto sends no e-mail: the test stands in for the invitation e-mail by
//! setting the temporary password Cognito would have mailed
//! (`AdminSetUserPassword`, not permanent, so the user is still in
//! FORCE_CHANGE_PASSWORD), then signs in exactly as the hosted UI would
//! after the e-mail: `AdminInitiateAuth` → `NEW_PASSWORD_REQUIRED` →
//! `AdminRespondToAuthChallenge` with a new password.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use support::client::{Api, Socket};
use support::mesh::{Mesh, MeshOptions, User};

/// One Cognito call to moto (JSON protocol; moto does not check the
/// signature). The status and the JSON answer.
async fn cognito(mesh: &Mesh, action: &str, body: Value) -> (u16, Value) {
    let endpoint = mesh
        .env
        .iter()
        .find(|(k, _)| *k == "AWS_ENDPOINT_URL")
        .map(|(_, v)| v.clone())
        .expect("moto's endpoint");
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .header(
            "X-Amz-Target",
            format!("AWSCognitoIdentityProviderService.{action}"),
        )
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/eu-west-2/cognito-idp/aws4_request, SignedHeaders=host, Signature=x",
        )
        .body(body.to_string())
        .send()
        .await
        .expect("moto answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn cognito_ok(mesh: &Mesh, action: &str, body: Value) -> Value {
    let (status, json) = cognito(mesh, action, body).await;
    assert_eq!(status, 200, "{action}: {json}");
    json
}

const NEW_PASSWORD: &str = "Chosen-Passw0rd!2026";

/// Accepts the invitation of `email` (see the module documentation) and
/// returns the signed-in user.
async fn accept_invitation(mesh: &Mesh, email: &str) -> User {
    let user = cognito_ok(
        mesh,
        "AdminGetUser",
        json!({"UserPoolId": mesh.pool_id, "Username": email}),
    )
    .await;
    assert_eq!(user["UserStatus"], "FORCE_CHANGE_PASSWORD", "{user}");
    let temporary = "Mailed-Temp0rary!";
    cognito_ok(
        mesh,
        "AdminSetUserPassword",
        json!({"UserPoolId": mesh.pool_id, "Username": email, "Password": temporary, "Permanent": false}),
    )
    .await;
    let challenge = cognito_ok(
        mesh,
        "AdminInitiateAuth",
        json!({
            "UserPoolId": mesh.pool_id, "ClientId": mesh.client_id,
            "AuthFlow": "ADMIN_USER_PASSWORD_AUTH",
            "AuthParameters": {"USERNAME": email, "PASSWORD": temporary},
        }),
    )
    .await;
    assert_eq!(
        challenge["ChallengeName"], "NEW_PASSWORD_REQUIRED",
        "{challenge}"
    );
    let signed = cognito_ok(
        mesh,
        "AdminRespondToAuthChallenge",
        json!({
            "UserPoolId": mesh.pool_id, "ClientId": mesh.client_id,
            "ChallengeName": "NEW_PASSWORD_REQUIRED", "Session": challenge["Session"],
            "ChallengeResponses": {"USERNAME": email, "NEW_PASSWORD": NEW_PASSWORD},
        }),
    )
    .await;
    let attributes = |user: &Value, name: &str| {
        user["UserAttributes"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["Name"] == name))
            .and_then(|a| a["Value"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    User {
        org_id: attributes(&user, "custom:orgId"),
        sub: attributes(&user, "sub"),
        token: signed["AuthenticationResult"]["IdToken"]
            .as_str()
            .expect("an ID token")
            .to_owned(),
    }
}

/// Signs `email` in with the password they chose: the status of
/// `AdminInitiateAuth`.
async fn sign_in_again(mesh: &Mesh, email: &str) -> (u16, Value) {
    cognito(
        mesh,
        "AdminInitiateAuth",
        json!({
            "UserPoolId": mesh.pool_id, "ClientId": mesh.client_id,
            "AuthFlow": "ADMIN_USER_PASSWORD_AUTH",
            "AuthParameters": {"USERNAME": email, "PASSWORD": NEW_PASSWORD},
        }),
    )
    .await
}

/// `/api/me` as `api` until its role is `role` (the gateway caches roles
/// for `TREVEN_ROLE_CACHE_SECS`, 1 s here).
async fn me_with_role(api: &Api, role: &str) -> Value {
    let started = Instant::now();
    loop {
        let me = api.ok(Method::GET, "/api/me", None).await;
        if me["user"]["role"] == role {
            return me;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "/api/me never showed {role}: {me}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invited_user_signs_in_with_their_role_and_removal_locks_them_out() {
    let mesh = Mesh::start_with(
        "invitations",
        MeshOptions {
            env: vec![
                ("TREVEN_GATEWAY_WS_RECHECK_SECS", "1".to_owned()),
                ("TREVEN_ROLE_CACHE_SECS", "1".to_owned()),
            ],
            ..MeshOptions::default()
        },
    )
    .await;

    // The platform owner creates an organisation; its first admin signs in.
    let root = mesh.sign_in("Treven", "owner", "root@treven.example", "admin");
    let owner = Api::new(&mesh, &root);
    let created = owner
        .ok(
            Method::POST,
            "/api/organisations",
            Some(json!({
                "name": "Harbour Bank", "kind": "ORGANISATION_KIND_FI",
                "adminEmail": "erin@harbour.example", "adminName": "Erin",
            })),
        )
        .await;
    let org_id = created["organisation"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    assert_eq!(created["admin"]["role"], "ROLE_ADMIN", "{created}");
    assert_eq!(
        created["admin"]["identityState"], "IDENTITY_STATE_SYNCED",
        "{created}"
    );
    let erin = accept_invitation(&mesh, "erin@harbour.example").await;
    assert_eq!(erin.org_id, org_id, "custom:orgId is the new organisation");
    let admin = Api::new(&mesh, &erin);
    let me = me_with_role(&admin, "ROLE_ADMIN").await;
    assert_eq!(me["organisation"]["id"], org_id.as_str(), "{me}");
    assert_eq!(me["organisation"]["kind"], "ORGANISATION_KIND_FI", "{me}");

    // Only the platform owner's admins create organisations.
    let (status, body) = admin
        .post(
            "/api/organisations",
            json!({"name": "Rogue Org", "kind": "ORGANISATION_KIND_NGO",
                   "adminEmail": "x@rogue.example", "adminName": "X"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "FORBIDDEN", "{body}");

    // The admin invites an analyst, who signs in with the invitation.
    let invited = admin
        .ok(
            Method::POST,
            "/api/users",
            Some(
                json!({"email": "frank@harbour.example", "name": "Frank", "role": "ROLE_ANALYST"}),
            ),
        )
        .await;
    let frank_id = invited["id"].as_str().expect("a user id").to_owned();
    assert_eq!(
        invited["identityState"], "IDENTITY_STATE_SYNCED",
        "{invited}"
    );
    // A retried invitation returns the same user.
    let again = admin
        .ok(
            Method::POST,
            "/api/users",
            Some(
                json!({"email": "frank@harbour.example", "name": "Frank", "role": "ROLE_ANALYST"}),
            ),
        )
        .await;
    assert_eq!(again["id"], frank_id.as_str());
    let frank = accept_invitation(&mesh, "frank@harbour.example").await;
    assert_eq!(frank.org_id, org_id);
    let analyst = Api::new(&mesh, &frank);
    let me = me_with_role(&analyst, "ROLE_ANALYST").await;
    assert_eq!(me["organisation"]["id"], org_id.as_str(), "{me}");
    assert_eq!(me["user"]["id"], frank_id.as_str(), "{me}");

    // A role change shows in /api/me.
    admin
        .ok(
            Method::PATCH,
            &format!("/api/users/{frank_id}"),
            Some(json!({"role": "ROLE_VIEWER"})),
        )
        .await;
    me_with_role(&analyst, "ROLE_VIEWER").await;
    let groups = cognito_ok(
        &mesh,
        "AdminListGroupsForUser",
        json!({"UserPoolId": mesh.pool_id, "Username": "frank@harbour.example"}),
    )
    .await;
    let names: Vec<&str> = groups["Groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["GroupName"].as_str())
        .collect();
    assert_eq!(names, vec!["viewer"], "{groups}");

    // Removal closes their open WebSocket and blocks the next sign-in.
    let mut socket = Socket::connect(&mesh, &frank).await;
    let (status, body) = admin
        .send(Method::DELETE, &format!("/api/users/{frank_id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (code, reason, _) = socket.closed(Duration::from_secs(15)).await;
    assert_eq!(code, 1008, "{reason}");
    let (status, body) = sign_in_again(&mesh, "frank@harbour.example").await;
    assert_eq!(status, 400, "the removed user cannot sign in: {body}");
    assert!(
        body.to_string().contains("NotAuthorized"),
        "refused as not authorized: {body}"
    );
    let (status, _) = analyst.get("/api/me").await;
    assert!(
        matches!(status, 401 | 403 | 404),
        "the old token no longer reaches /api/me: {status}"
    );

    // Everything is in the organisation's audit log.
    let audit = admin.ok(Method::GET, "/api/audit?limit=100", None).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in [
        "organisation.create",
        "user.create",
        "user.update",
        "user.delete",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    mesh.stop().await;
}
