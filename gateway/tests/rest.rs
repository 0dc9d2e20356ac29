//! REST through the gateway to a real tenants service, as the frontend
//! calls it: Cognito ID token in, proto3 JSON out, errors in one shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::Edge;
use treven_mesh::Role;

#[tokio::test]
async fn me_users_and_errors_over_rest() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let other = edge.org("Other").await;
    let (_, admin) = edge
        .member("ann@acme.example", acme, Some(Role::Admin))
        .await;

    // Who am I.
    let me = edge
        .http
        .get(edge.url("/api/me"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert!(me.headers().contains_key("x-request-id"));
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["user"]["email"], "ann@acme.example");
    assert_eq!(me["user"]["role"], "ROLE_ADMIN");
    assert_eq!(me["organisation"]["name"], "Acme");

    // Identity headers sent by the client are ignored.
    let spoofed = edge
        .http
        .get(edge.url("/api/me"))
        .bearer_auth(&admin)
        .header("x-org-id", other.to_string())
        .header("x-treven-context", "forged")
        .send()
        .await
        .unwrap();
    let spoofed: Value = spoofed.json().await.unwrap();
    assert_eq!(spoofed["organisation"]["name"], "Acme");

    // No token, a bad token: 401 in the common error shape.
    for request in [
        edge.http.get(edge.url("/api/me")),
        edge.http.get(edge.url("/api/me")).bearer_auth("not-a-jwt"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "UNAUTHORIZED");
    }

    // Signed in, but not a member of the organisation in tenants: 403.
    let (_, stranger) = edge.member("sam@acme.example", acme, None).await;
    let response = edge
        .http
        .get(edge.url("/api/me"))
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "FORBIDDEN"
    );

    // Create: body "*" with lowerCamelCase; response_body is the user.
    let created = edge
        .http
        .post(edge.url("/api/users"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"email": "bob@acme.example", "name": "Bob", "role": "ROLE_ANALYST"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let bob: Value = created.json().await.unwrap();
    assert_eq!(bob["name"], "Bob");
    let bob_id = bob["id"].as_str().unwrap().to_owned();

    // Validation errors name the field.
    let invalid = edge
        .http
        .post(edge.url("/api/users"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"email": "not-an-email", "name": "X", "role": "ROLE_VIEWER"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let invalid: Value = invalid.json().await.unwrap();
    assert_eq!(invalid["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(invalid["error"]["details"]["fields"][0]["field"], "email");
    let duplicate = edge
        .http
        .post(edge.url("/api/users"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"email": "bob@acme.example", "name": "Bob 2", "role": "ROLE_VIEWER"}))
        .send()
        .await
        .unwrap();
    assert_eq!(duplicate.status(), 409);
    let malformed = edge
        .http
        .post(edge.url("/api/users"))
        .bearer_auth(&admin)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let huge = edge
        .http
        .post(edge.url("/api/users"))
        .bearer_auth(&admin)
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert!(
        huge.status() == 413 || huge.status() == 400,
        "{}",
        huge.status()
    );

    // PATCH with a field mask taken from the body: only the name changes.
    let patched = edge
        .http
        .patch(edge.url(&format!("/api/users/{bob_id}")))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "Robert"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(
        (patched["name"].as_str(), patched["role"].as_str()),
        (Some("Robert"), Some("ROLE_ANALYST"))
    );

    // Lists page with ?limit=&cursor= and answer {"items": [...], "nextCursor": "..."}.
    let mut names = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = edge
            .http
            .get(edge.url(&format!("/api/users?limit=1&cursor={cursor}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["name"].as_str().unwrap().to_owned()),
        );
        cursor = page["nextCursor"].as_str().unwrap().to_owned();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(names, ["Robert", "ann"]);
    let bad_limit = edge
        .http
        .get(edge.url("/api/users?limit=abc"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_limit.status(), 400);

    // Limits: URL length and header size.
    let long = edge
        .http
        .get(edge.url(&format!("/api/users?cursor={}", "a".repeat(9000))))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), 400);
    let heavy = edge
        .http
        .get(edge.url("/api/me"))
        .bearer_auth(&admin)
        .header("x-padding", "p".repeat(40_000))
        .send()
        .await
        .unwrap();
    assert!(
        heavy.status() == 400 || heavy.status() == 431,
        "{}",
        heavy.status()
    );

    // DELETE, and unknown routes.
    let deleted = edge
        .http
        .delete(edge.url(&format!("/api/users/{bob_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let missing = edge
        .http
        .get(edge.url("/api/nope"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["code"],
        "NOT_FOUND"
    );
    edge.stop().await;
}

#[tokio::test]
async fn health_readiness_and_openapi_need_no_token() {
    let edge = Edge::start(10_000).await;
    assert_eq!(
        edge.http
            .get(edge.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        edge.http
            .get(edge.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let doc: Value = edge
        .http
        .get(edge.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(
        doc["paths"]["/api/me"]["get"].is_object(),
        "{}",
        doc["paths"]
    );
    let docs = edge
        .http
        .get(edge.url("/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(docs.contains("/openapi.json"));
    edge.stop().await;
}

#[tokio::test]
async fn each_user_is_rate_limited_across_the_gateway() {
    let edge = Edge::start(5).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Viewer))
        .await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            edge.http
                .get(edge.url("/api/me"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        );
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(&codes[..5], &[200; 5]);
    assert_eq!(&codes[5..], &[429, 429], "{codes:?}");
    assert!(statuses[5].headers().contains_key("retry-after"));
    edge.stop().await;
}

#[tokio::test]
async fn only_valid_pool_tokens_get_through_the_edge() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (sub, valid) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let ok = edge
        .http
        .get(edge.url("/api/me"))
        .bearer_auth(&valid)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let now = support::chrono_now();
    let claims = |extra: serde_json::Value| {
        let mut base = serde_json::json!({"sub": sub, "custom:orgId": acme.to_string()});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    };
    let forged = edge
        .pool
        .forge(claims(serde_json::json!({})), "RS256", "dummy");
    assert_eq!(
        edge.http
            .get(edge.url("/api/me"))
            .bearer_auth(&forged)
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the test key is the pool's"
    );
    let (header, rest) = forged.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let other_org = serde_json::json!({"sub": sub, "custom:orgId": uuid::Uuid::now_v7().to_string(), "iss": edge.pool.issuer(), "aud": edge.pool.client_id, "token_use": "id", "exp": now + 600});
    use base64::Engine as _;
    let tampered = format!(
        "{header}.{}.{signature}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(other_org.to_string())
    );

    let refused = [
        ("expired", edge.pool.forge(claims(serde_json::json!({"exp": now - 3600})), "RS256", "dummy")),
        ("wrong issuer", edge.pool.forge(claims(serde_json::json!({"iss": "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_evil"})), "RS256", "dummy")),
        ("wrong client", edge.pool.forge(claims(serde_json::json!({"aud": "another-client"})), "RS256", "dummy")),
        ("alg none", edge.pool.forge(claims(serde_json::json!({})), "none", "dummy")),
        ("HS256 keyed with the public key", edge.pool.forge(claims(serde_json::json!({})), "HS256-PUBKEY", "dummy")),
        ("tampered payload", tampered),
        ("unknown kid", edge.pool.forge(claims(serde_json::json!({})), "RS256", "not-a-pool-key")),
    ];
    for (what, token) in refused {
        let response = edge
            .http
            .get(edge.url("/api/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"]["code"],
            "UNAUTHORIZED",
            "{what}"
        );
    }
    edge.stop().await;
}

#[tokio::test]
async fn the_organisation_limit_is_shared_by_gateway_instances() {
    let edge = Edge::start_with(100, 6).await;
    let second = edge.another_gateway().await;
    let acme = edge.org("Acme").await;
    let (_, ann) = edge
        .member("ann@acme.example", acme, Some(Role::Viewer))
        .await;
    let (_, bob) = edge
        .member("bob@acme.example", acme, Some(Role::Viewer))
        .await;
    let other = edge.org("Other").await;
    let (_, olga) = edge
        .member("olga@other.example", other, Some(Role::Viewer))
        .await;

    let mut codes = Vec::new();
    for i in 0..8 {
        // Alternate users and instances: the organisation's bucket is one.
        let (base, token) = if i % 2 == 0 {
            (edge.base.as_str(), &ann)
        } else {
            (second.as_str(), &bob)
        };
        codes.push(
            edge.http
                .get(format!("{base}/api/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(codes, [200, 200, 200, 200, 200, 200, 429, 429]);
    // Another organisation has its own bucket.
    let elsewhere = edge
        .http
        .get(format!("{second}/api/me"))
        .bearer_auth(&olga)
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 200);
    edge.stop().await;
}
