//! Rows 6 and 7's floors: exactly the SQL that one `GetReport` and one
//! `GetMe` send, as pgbench scripts, so each row's ratio is what the
//! service adds over its own database work.
//!
//! Taken from the stores (`services/reports/src/store/reports.rs`:
//! `report`, `version`; `services/tenants/src/store/users.rs`:
//! `user_and_organisation_by_sub`; the transaction start
//! of `treven_mesh::postgres::org_transaction_start`) and checked against
//! what the services really send with `log_statement = 'all'` on the bench
//! database (2026-12-06; `GetMe`'s single statement and the columns added
//! since, 2026-12-07). sqlx sends the transaction start as one simple
//! query (`BEGIN; SELECT set_config(…)`, one round trip) and the reads as
//! prepared statements; pgbench cannot mix protocols, so the script runs
//! with `-M prepared` and sends `BEGIN` and the settings in one pipeline
//! (one round trip, as the service). A `GetReport` never commits (the
//! transaction is dropped: sqlx sends `ROLLBACK`), nor does a `GetMe`
//! (its read-only transaction ends the same way).
//!
//! What the scripts leave out is the service's: the pool's connection
//! checks (sqlx pings a connection when it is taken, when
//! `test_before_acquire` is on, and always when it is given back), gRPC,
//! the mesh context, tracing and row decoding.
//!
//! Variables (`pgbench -D`): `org`, `report`, `number` (the report's latest
//! version) and `sub` (the user's Cognito subject).

/// The settings that confine a transaction to `:org` (the same text as
/// `org_transaction_start`, the organisation as a parameter).
const ORG_TRANSACTION_START: &str = "\\startpipeline
BEGIN;
SELECT set_config('role', 'treven_app', true), set_config('app.org_id', :org, true), set_config('statement_timeout', '5000', true);
\\endpipeline
";

/// One `GetReport` of the latest version: the report row, the version row
/// with its content, and the rollback of the dropped transaction.
pub(super) fn get_report() -> String {
    format!(
        "{ORG_TRANSACTION_START}\
SELECT id, org_id, title, scope, status, latest_version, approved_by, approved_at, approved_version, submitted_by, submitted_at, submitted_version, failure_reason, created_by, created_at, updated_at, reviewer_id, reviewer_user_id, reviewer_assigned_by, reviewer_assigned_at, archived_at, archived_by FROM reports WHERE org_id = :org AND id = :report AND deleted_at IS NULL;
SELECT content, report_id, number, content_hash, cause, section, author_id, reason, change_summary, rejected_sections, quality_checks, pii_decisions, created_at FROM report_versions WHERE org_id = :org AND report_id = :report AND number = :number;
ROLLBACK;
"
    )
}

/// One `GetMe`: the user by Cognito subject with their organisation, and
/// the rollback of the read-only transaction.
pub(super) fn get_me() -> String {
    format!(
        "{ORG_TRANSACTION_START}\
SELECT u.id, u.org_id, u.cognito_sub, u.email, u.name, u.role, u.identity_state, u.created_at, u.updated_at, o.name AS org_name, o.kind AS org_kind, o.settings AS org_settings, o.created_at AS org_created_at, o.updated_at AS org_updated_at FROM users u LEFT JOIN organisations o ON o.id = u.org_id WHERE u.org_id = :org AND u.cognito_sub = :sub;
ROLLBACK;
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_open_confined_transactions_and_end_them() {
        for script in [get_report(), get_me()] {
            assert!(script.starts_with("\\startpipeline\nBEGIN;\n"));
            assert!(script.contains("set_config('app.org_id', :org, true)"));
            assert!(script.trim_end().ends_with("ROLLBACK;"));
            // Every read is confined to the organisation as the store's is.
            assert!(
                script
                    .lines()
                    .filter(|line| line.starts_with("SELECT ") && !line.contains("set_config"))
                    .all(|line| line.contains(":org"))
            );
        }
    }
}
