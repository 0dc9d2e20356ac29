//! Cognito JWT verification against real tokens from the emulator's user
//! pool, and forged ones signed with the same key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{Moto, Pool};
use treven_gateway::auth::{AuthError, JwtVerifier};

fn verifier(pool: &Pool, jwks_url: String, min_refresh: Duration) -> JwtVerifier {
    JwtVerifier::new(
        pool.issuer(),
        pool.client_id.clone(),
        jwks_url,
        min_refresh,
        1000,
    )
}

#[tokio::test]
async fn a_cognito_id_token_verifies_and_names_the_organisation() {
    let moto = Moto::start();
    let pool = Pool::create(&moto).await;
    let org = uuid::Uuid::now_v7().to_string();
    let (sub, id_token, access_token) = pool.sign_in("ann@example.org", &org).await;
    let verifier = verifier(&pool, pool.jwks_url(), Duration::from_secs(60));

    let identity = verifier
        .verify(&id_token)
        .await
        .expect("a real ID token verifies");
    assert_eq!(identity.sub, sub);
    assert_eq!(identity.org_id.to_string(), org);
    assert_eq!(identity.email.as_deref(), Some("ann@example.org"));
    // Verified tokens are cached: the same token verifies again without the JWKS.
    assert_eq!(verifier.verify(&id_token).await, Ok(identity));

    match verifier.verify(&access_token).await {
        Err(AuthError::Invalid(reason)) => assert!(
            reason.contains("token_use") || reason.contains("aud"),
            "{reason}"
        ),
        other => panic!("access tokens are refused: {other:?}"),
    }
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_refused() {
    let moto = Moto::start();
    let pool = Pool::create(&moto).await;
    let verifier = verifier(&pool, pool.jwks_url(), Duration::from_secs(60));
    let now = support::chrono_now();

    let good = pool.forge(serde_json::json!({}), "RS256", "dummy");
    assert!(
        verifier.verify(&good).await.is_ok(),
        "the harness signs like the pool"
    );

    let cases = [
        ("expired", serde_json::json!({"exp": now - 3600})),
        ("not yet valid", serde_json::json!({"nbf": now + 3600})),
        (
            "another issuer",
            serde_json::json!({"iss": "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_other"}),
        ),
        (
            "another client",
            serde_json::json!({"aud": "some-other-client"}),
        ),
        (
            "an access token",
            serde_json::json!({"token_use": "access"}),
        ),
        ("no organisation", serde_json::json!({"custom:orgId": null})),
        (
            "a malformed organisation",
            serde_json::json!({"custom:orgId": "acme"}),
        ),
        ("no expiry", serde_json::json!({"exp": null})),
    ];
    for (what, claims) in cases {
        let token = pool.forge(claims, "RS256", "dummy");
        assert!(verifier.verify(&token).await.is_err(), "{what} is refused");
    }
    let hs256 = pool.forge(serde_json::json!({}), "HS256", "dummy");
    assert!(
        matches!(verifier.verify(&hs256).await, Err(AuthError::Malformed(_))),
        "algorithm confusion is refused"
    );
    let mut tampered = good.clone();
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    assert!(
        verifier.verify(&tampered).await.is_err(),
        "a changed signature is refused"
    );
    for garbage in ["", "abc", "a.b.c", &"x".repeat(20_000)] {
        assert!(verifier.verify(garbage).await.is_err(), "{garbage:?}");
    }
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_at_most_once_per_interval() {
    let moto = Moto::start();
    let pool = Pool::create(&moto).await;
    // Serve the pool's JWKS through a counting proxy.
    let jwks = reqwest::get(pool.jwks_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let fetches = Arc::new(AtomicUsize::new(0));
    let app = {
        let fetches = fetches.clone();
        axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = jwks.clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let good = pool.forge(serde_json::json!({}), "RS256", "dummy");
    let rotated = pool.forge(serde_json::json!({"sub": "other"}), "RS256", "rotated-key");

    let patient = verifier(&pool, url.clone(), Duration::from_secs(3600));
    patient.verify(&good).await.expect("valid");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    for _ in 0..5 {
        assert_eq!(patient.verify(&rotated).await, Err(AuthError::UnknownKey));
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "unknown kids within the interval do not refetch"
    );

    let eager = verifier(&pool, url, Duration::from_millis(1));
    eager.verify(&good).await.expect("valid");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(eager.verify(&rotated).await, Err(AuthError::UnknownKey));
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        3,
        "after the interval, an unknown kid refetches once"
    );
}
