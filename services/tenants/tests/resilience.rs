//! When Postgres goes away the service answers UNAVAILABLE (not INTERNAL,
//! not a hang), and recovers by itself when Postgres is back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{TestApp, authed, code_of};
use tonic::Code;
use treven_mesh::Role;
use treven_proto::treven::tenants::v1 as pb;

#[tokio::test]
async fn postgres_going_away_is_unavailable_and_the_service_recovers() {
    let app = TestApp::spawn().await;
    let org = app.org("Acme").await;
    let token = app.member(org, "ann", Role::Admin).await;
    let mut client = app.client().await;
    client
        .list_users(authed(&token, pb::ListUsersRequest::default()))
        .await
        .expect("healthy");

    // Take the database away: refuse new connections and kill existing ones
    // (what a Postgres restart or failover looks like to the pool).
    let name = app.db.name.clone();
    app.db
        .admin_exec(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await;
    app.db
        .admin_exec(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
        .await;

    let started = Instant::now();
    let status = client
        .list_users(authed(&token, pb::ListUsersRequest::default()))
        .await
        .expect_err("database is away");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(code_of(&status), "UNAVAILABLE");
    assert!(
        !status.message().contains("database \""),
        "no internal detail leaks: {}",
        status.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails fast, no hang"
    );

    // Bring it back: the next calls succeed without restarting the service.
    app.db
        .admin_exec(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client
            .list_users(authed(&token, pb::ListUsersRequest::default()))
            .await
        {
            Ok(page) => {
                assert_eq!(page.into_inner().items.len(), 1);
                break;
            }
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("did not recover: {status:?}"),
        }
    }
    app.stop().await;
}
