//! Postgres roles, against a real Postgres: every table of the `reports`
//! schema with `org_id` has row-level security enabled and forced, the
//! service's login role owns nothing and bypasses nothing, with no
//! organisation set it sees no row and writes none, and the workers'
//! cross-organisation path (`treven_worker`) reaches the job queue's lease
//! columns and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sqlx::Connection as _;
use treven_mesh::config::Env;
use treven_reports::config::LOGIN_ROLE;
use treven_testkit::TestDatabase;
use uuid::Uuid;

/// A migrated database (as the owner, with the login role created), one
/// report with a queued job in organisation `org`.
async fn migrated(org: Uuid) -> (TestDatabase, Env) {
    let db = TestDatabase::create("treven_reports_roles").await;
    let env = Env::from_pairs([
        ("TREVEN_REPORTS_DATABASE_URL", db.login_url(LOGIN_ROLE)),
        ("TREVEN_MIGRATE_DATABASE_USER", TestDatabase::owner_user()),
        ("TREVEN_REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
    ]);
    let owner = treven_reports::owner_config(&env).expect("owner config");
    treven_reports::migrate(&owner).await.expect("migrations");
    treven_reports::migrate(&owner)
        .await
        .expect("migrations again");
    let mut admin = db.owner().await;
    let report = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO reports.reports (id, org_id, scope, exploitation_type, status, created_by) \
         VALUES ($1, $2, '{}', 'labour', 'generating', 'ana')",
    )
    .bind(report)
    .bind(org)
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO reports.report_jobs (id, org_id, report_id, requested_by, state) \
         VALUES ($1, $2, $3, 'ana', 'queued')",
    )
    .bind(Uuid::now_v7())
    .bind(org)
    .bind(report)
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    (db, env)
}

async fn login(db: &TestDatabase) -> sqlx::PgConnection {
    use sqlx::ConnectOptions as _;
    treven_reports::database_options(
        &Env::from_pairs([("TREVEN_REPORTS_DATABASE_URL", db.login_url(LOGIN_ROLE))]),
        "TREVEN_REPORTS_DATABASE_URL",
    )
    .unwrap()
    .connect()
    .await
    .expect("the login role connects")
}

#[tokio::test]
async fn every_org_table_forces_row_level_security_and_the_login_role_owns_nothing() {
    let (db, _) = migrated(Uuid::now_v7()).await;
    let mut owner = db.owner().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = 'reports' AND column_name = 'org_id' ORDER BY 1",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    for expected in [
        "notifications",
        "report_comments",
        "report_job_sections",
        "report_jobs",
        "report_versions",
        "reports",
        "trends",
    ] {
        assert!(
            tables.iter().any(|t| t == expected),
            "{expected} in {tables:?}"
        );
    }
    for table in &tables {
        let (enabled, forced): (bool, bool) = sqlx::query_as(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class \
             WHERE oid = format('reports.%I', $1::text)::regclass",
        )
        .bind(table)
        .fetch_one(&mut owner)
        .await
        .unwrap();
        assert!(
            enabled && forced,
            "{table}: enabled {enabled}, forced {forced}"
        );
    }
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(LOGIN_ROLE)
            .fetch_one(&mut owner)
            .await
            .unwrap();
    assert!(!superuser && !bypass);
    let owned: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c WHERE pg_get_userbyid(c.relowner) = $1 \
         UNION ALL SELECT nspname::text FROM pg_namespace WHERE pg_get_userbyid(nspowner) = $1 \
         UNION ALL SELECT proname::text FROM pg_proc WHERE pg_get_userbyid(proowner) = $1",
    )
    .bind(LOGIN_ROLE)
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(owned.is_empty(), "the login role owns {owned:?}");
    owner.close().await.unwrap();
    db.drop().await;
}

#[tokio::test]
async fn with_no_organisation_set_the_login_role_sees_nothing_and_writes_nothing() {
    let org = Uuid::now_v7();
    let (db, _) = migrated(org).await;
    let mut conn = login(&db).await;
    for table in [
        "reports",
        "report_versions",
        "report_jobs",
        "report_job_sections",
        "trends",
        "report_comments",
        "notifications",
    ] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert_eq!(rows, 0, "{table}: visible with no organisation set");
    }
    let insert = sqlx::query(
        "INSERT INTO reports (id, org_id, scope, exploitation_type, status, created_by) \
         VALUES (gen_random_uuid(), $1, '{}', 'labour', 'draft', 'ana')",
    )
    .bind(org)
    .execute(&mut conn)
    .await;
    assert!(
        insert.is_err(),
        "an insert with no organisation set must fail"
    );
    let updated = sqlx::query("UPDATE report_jobs SET attempts = attempts + 1")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        updated.rows_affected(),
        0,
        "no job is writable without an organisation"
    );
    let created = sqlx::query("CREATE TABLE reports.mine (id int)")
        .execute(&mut conn)
        .await;
    assert!(created.is_err(), "the login role must not create tables");
    conn.close().await.unwrap();
    db.drop().await;
}

#[tokio::test]
async fn the_workers_role_reaches_only_the_job_leases_across_organisations() {
    let org = Uuid::now_v7();
    let (db, env) = migrated(org).await;
    let config = treven_reports::ReportsConfig::from_env(&env).unwrap();
    let store = treven_reports::store::PgStore::connect_lazy(config.database.clone(), &config.pool);
    let worker = Uuid::now_v7();
    let claim = store
        .claim_job(worker, Duration::from_secs(30))
        .await
        .expect("claim as the login role")
        .expect("the queued job of another organisation");
    assert_eq!(*claim.org_id.as_uuid(), org);
    assert!(
        store
            .heartbeat(claim.id, worker, Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert!(store.release(claim.id, worker).await.unwrap());

    // As treven_worker: the job's lease columns only, no other table.
    let mut tx = treven_mesh::postgres::begin_background(store.pool())
        .await
        .unwrap();
    let jobs: i64 = sqlx::query_scalar("SELECT count(id) FROM report_jobs")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(jobs, 1, "every organisation's jobs");
    for denied in [
        "SELECT count(*) FROM reports",
        "SELECT last_error FROM report_jobs",
        "UPDATE report_jobs SET last_error = 'x'",
        "SELECT count(*) FROM report_versions",
    ] {
        let mut savepoint = (*tx).begin().await.unwrap();
        let result = sqlx::query(denied).execute(&mut *savepoint).await;
        assert!(result.is_err(), "treven_worker: {denied} must be refused");
        drop(savepoint);
    }
    drop(tx);
    store.pool().close().await;
    db.drop().await;
}
