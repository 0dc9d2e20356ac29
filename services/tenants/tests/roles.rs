//! Postgres roles, against a real Postgres: every table with `org_id` has
//! row-level security enabled and forced, the service's login role owns
//! nothing and bypasses nothing, and with no organisation set it sees no
//! row and writes none. The operator's cross-organisation path is open to
//! the owner only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::Connection as _;
use treven_mesh::Role;
use treven_mesh::config::Env;
use treven_tenants::model::{CognitoSub, Email, Name, OrgKind};
use treven_testkit::TestDatabase;

/// A migrated database (as the owner, with the login role created) and the
/// owner's store.
async fn migrated() -> (TestDatabase, treven_tenants::store::PgStore) {
    let db = TestDatabase::create("treven_roles").await;
    let env = Env::from_pairs([
        (
            "TREVEN_TENANTS_DATABASE_URL",
            db.login_url(treven_tenants::LOGIN_ROLE),
        ),
        ("TREVEN_MIGRATE_DATABASE_USER", TestDatabase::owner_user()),
    ]);
    let owner = treven_tenants::owner_config(&env).expect("owner config");
    treven_tenants::migrate(&owner).await.expect("migrations");
    // Twice: updating an existing login role works too.
    treven_tenants::migrate(&owner)
        .await
        .expect("migrations again");
    (db, treven_tenants::owner_store(&owner))
}

async fn login(db: &TestDatabase) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&db.login_url(treven_tenants::LOGIN_ROLE))
        .await
        .expect("the login role connects")
}

#[tokio::test]
async fn every_org_table_forces_row_level_security_and_the_login_role_owns_nothing() {
    let (db, store) = migrated().await;
    let mut owner = db.owner().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_name = 'org_id' ORDER BY 1",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    for expected in ["audit_log", "partners", "report_access", "users"] {
        assert!(
            tables.iter().any(|t| t == expected),
            "{expected} in {tables:?}"
        );
    }
    for table in tables.iter().map(String::as_str).chain(["organisations"]) {
        let (enabled, forced): (bool, bool) = sqlx::query_as(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class \
             WHERE oid = format('public.%I', $1::text)::regclass",
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

    let (superuser, bypass, can_login): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1",
    )
    .bind(treven_tenants::LOGIN_ROLE)
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert!(can_login && !superuser && !bypass);
    let owned: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c WHERE pg_get_userbyid(c.relowner) = $1 \
         UNION ALL SELECT nspname::text FROM pg_namespace WHERE pg_get_userbyid(nspowner) = $1 \
         UNION ALL SELECT proname::text FROM pg_proc WHERE pg_get_userbyid(proowner) = $1",
    )
    .bind(treven_tenants::LOGIN_ROLE)
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(owned.is_empty(), "the login role owns {owned:?}");
    // Tables, sequences, views of the schema all belong to someone else.
    let kinds: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S', 'v', 'p') \
           AND pg_get_userbyid(c.relowner) <> $1",
    )
    .bind(treven_tenants::LOGIN_ROLE)
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert!(kinds >= 6, "the schema's objects are the owner's");
    drop(owner);
    store.pool().close().await;
    db.drop().await;
}

#[tokio::test]
async fn with_no_organisation_set_the_login_role_sees_nothing_and_writes_nothing() {
    let (db, store) = migrated().await;
    let org = store
        .admin_ensure_org(&Name::parse("name", "Alpha").unwrap(), OrgKind::Ngo)
        .await
        .expect("org as the operator");
    store
        .admin_ensure_user(
            org.id,
            &Email::parse("email", "ana@example.org").unwrap(),
            &Name::parse("name", "Ana").unwrap(),
            Role::Admin,
            Some(&CognitoSub::parse("sub", "ana").unwrap()),
        )
        .await
        .expect("user as the operator");

    let mut conn = login(&db).await;
    for table in [
        "organisations",
        "users",
        "audit_log",
        "partners",
        "report_access",
    ] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert_eq!(rows, 0, "{table}: visible with no organisation set");
    }
    let insert = sqlx::query(
        "INSERT INTO partners (id, org_id, name, kind, contact_email) \
         VALUES (gen_random_uuid(), $1, 'P', 'ngo', 'p@example.org')",
    )
    .bind(org.id.as_uuid())
    .execute(&mut conn)
    .await;
    assert!(
        insert.is_err(),
        "an insert with no organisation set must fail"
    );
    let updated = sqlx::query("UPDATE users SET name = 'X'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 0);

    // With the organisation set, its rows (and only those) are there.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.org_id', $1, true)")
        .bind(org.id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(users, 1);
    tx.rollback().await.unwrap();

    // The operator role and the owner's privileges are out of its reach.
    let operator = sqlx::query("SET ROLE treven_operator")
        .execute(&mut conn)
        .await;
    assert!(
        operator.is_err(),
        "the login role must not enter treven_operator"
    );
    let created = sqlx::query("CREATE TABLE mine (id int)")
        .execute(&mut conn)
        .await;
    assert!(created.is_err(), "the login role must not create tables");
    // Background work sees no tenant data.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE treven_worker")
        .execute(&mut *tx)
        .await
        .unwrap();
    let seen = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM users")
        .fetch_one(&mut *tx)
        .await;
    assert!(seen.is_err(), "treven_worker may not read users");
    drop(tx);

    conn.close().await.unwrap();
    store.pool().close().await;
    db.drop().await;
}

#[tokio::test]
async fn the_owner_is_confined_too_and_ensure_org_goes_through_the_operator_role() {
    let (db, store) = migrated().await;
    let first = store
        .admin_ensure_org(&Name::parse("name", "Bravo").unwrap(), OrgKind::Ngo)
        .await
        .unwrap();
    let again = store
        .admin_ensure_org(&Name::parse("name", "bravo").unwrap(), OrgKind::Fi)
        .await
        .unwrap();
    assert_eq!(first.id, again.id, "found by name across organisations");

    // A non-superuser owner (as in RDS) is confined by the forced policies.
    let owner_role = format!("treven_owner_{}", uuid::Uuid::new_v4().simple());
    let mut admin = db.owner().await;
    sqlx::query(&format!("CREATE ROLE {owner_role} LOGIN"))
        .execute(&mut admin)
        .await
        .unwrap();
    for sql in [
        format!("ALTER TABLE organisations OWNER TO {owner_role}"),
        format!("GRANT treven_app TO {owner_role}"),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.unwrap();
    }
    let mut as_owner =
        sqlx::PgConnection::connect(&treven_testkit::with_user(&db.url, &owner_role))
            .await
            .unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM organisations")
        .fetch_one(&mut as_owner)
        .await
        .unwrap();
    assert_eq!(
        visible, 0,
        "forced: the table's owner sees nothing without an organisation"
    );
    as_owner.close().await.unwrap();
    sqlx::query(&format!(
        "ALTER TABLE organisations OWNER TO {}",
        TestDatabase::owner_user()
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(&format!("DROP ROLE {owner_role}"))
        .execute(&mut admin)
        .await
        .ok();
    drop(admin);
    store.pool().close().await;
    db.drop().await;
}
