//! The `cognito_sync` table: jobs that bring a Cognito user in line with
//! its tenants user, written in the transaction of the change
//! ([`OrgTx::enqueue_cognito_sync`]) and claimed by whoever applies them —
//! the request right after its commit ([`OrgTx::claim_cognito_sync`]) or
//! the relay ([`PgStore::claim_due_cognito_sync`]) — under a lease, so two
//! appliers never work on one job at once.

use std::time::Duration;

use treven_mesh::OrgId;
use treven_mesh::trace::{self, Traced as _};
use uuid::Uuid;

use super::{OrgTx, PgStore, Result};

const JOB_COLUMNS: &str = "id, org_id, user_id, username, actor_id, request_id, attempts";

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoSyncJob {
    /// Its id.
    pub id: Uuid,
    /// The organisation of the user.
    pub org_id: OrgId,
    /// The tenants user to follow (it may no longer exist).
    pub user_id: Uuid,
    /// The Cognito user to act on (the subject once known, else the e-mail).
    pub username: String,
    /// Who made the change.
    pub actor_id: String,
    /// In which request.
    pub request_id: String,
    /// Failed attempts so far.
    pub attempts: i32,
}

impl PgStore {
    /// Relay: claims up to `limit` due pending jobs of any organisation for
    /// `lease` (as `treven_worker`, which sees only this table).
    pub async fn claim_due_cognito_sync(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<CognitoSyncJob>> {
        let mut tx = treven_mesh::postgres::begin_background(&self.pool).await?;
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "UPDATE cognito_sync SET locked_until = now() + make_interval(secs => $2) \
             WHERE id IN (SELECT id FROM cognito_sync \
                          WHERE state = 'pending' AND next_attempt_at <= now() \
                            AND (locked_until IS NULL OR locked_until < now()) \
                          ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(i64::from(limit))
        .bind(lease.as_secs_f64())
        .fetch_all(&mut *tx)
        .traced(trace::postgres("tenants.claim_due_cognito_sync", "UPDATE"))
        .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

impl OrgTx {
    /// Queues a job for `user_id` acting on the Cognito user `username`,
    /// due after `grace` (the request applies it itself before then; the
    /// relay takes over if it could not).
    pub async fn enqueue_cognito_sync(
        &mut self,
        user_id: Uuid,
        username: &str,
        grace: Duration,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        let actor = self.tx.actor_id().to_owned();
        sqlx::query(
            "INSERT INTO cognito_sync (id, org_id, user_id, username, actor_id, request_id, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
        )
        .bind(id)
        .bind(self.tx.org_id().as_uuid())
        .bind(user_id)
        .bind(username)
        .bind(actor)
        .bind(&self.request_id)
        .bind(grace.as_secs_f64())
        .execute(&mut *self.tx)
        .traced(trace::postgres("tenants.enqueue_cognito_sync", "INSERT"))
        .await?;
        Ok(id)
    }

    /// Claims the pending job `id` for `lease` unless someone else holds it.
    pub async fn claim_cognito_sync(
        &mut self,
        id: Uuid,
        lease: Duration,
    ) -> Result<Option<CognitoSyncJob>> {
        let row: Option<JobRow> = sqlx::query_as(&format!(
            "UPDATE cognito_sync SET locked_until = now() + make_interval(secs => $3) \
             WHERE org_id = $1 AND id = $2 AND state = 'pending' \
               AND (locked_until IS NULL OR locked_until < now()) \
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .bind(lease.as_secs_f64())
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.claim_cognito_sync", "UPDATE"))
        .await?;
        Ok(row.map(Into::into))
    }

    /// Removes a job that was applied.
    pub async fn cognito_sync_done(&mut self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM cognito_sync WHERE org_id = $1 AND id = $2")
            .bind(self.tx.org_id().as_uuid())
            .bind(id)
            .execute(&mut *self.tx)
            .traced(trace::postgres("tenants.cognito_sync_done", "DELETE"))
            .await?;
        Ok(())
    }

    /// Records a failed attempt: the job is due again after `delay`.
    pub async fn cognito_sync_retry(
        &mut self,
        id: Uuid,
        error: &str,
        delay: Duration,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE cognito_sync SET attempts = attempts + 1, last_error = left($3, 1000), \
                 next_attempt_at = now() + make_interval(secs => $4), locked_until = NULL \
             WHERE org_id = $1 AND id = $2",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .bind(error)
        .bind(delay.as_secs_f64())
        .execute(&mut *self.tx)
        .traced(trace::postgres("tenants.cognito_sync_retry", "UPDATE"))
        .await?;
        Ok(())
    }

    /// Keeps a job Cognito refused for good, for an operator to read.
    pub async fn cognito_sync_failed(&mut self, id: Uuid, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE cognito_sync SET state = 'failed', attempts = attempts + 1, \
                 last_error = left($3, 1000), locked_until = NULL \
             WHERE org_id = $1 AND id = $2",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .bind(error)
        .execute(&mut *self.tx)
        .traced(trace::postgres("tenants.cognito_sync_failed", "UPDATE"))
        .await?;
        Ok(())
    }

    /// How many pending jobs of `user_id` there are besides `except`.
    pub async fn other_pending_cognito_sync(&mut self, user_id: Uuid, except: Uuid) -> Result<i64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cognito_sync \
             WHERE org_id = $1 AND user_id = $2 AND id <> $3 AND state = 'pending'",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(user_id)
        .bind(except)
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres(
            "tenants.other_pending_cognito_sync",
            "SELECT",
        ))
        .await?;
        Ok(count)
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    org_id: Uuid,
    user_id: Uuid,
    username: String,
    actor_id: String,
    request_id: String,
    attempts: i32,
}

impl From<JobRow> for CognitoSyncJob {
    fn from(row: JobRow) -> Self {
        Self {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            user_id: row.user_id,
            username: row.username,
            actor_id: row.actor_id,
            request_id: row.request_id,
            attempts: row.attempts,
        }
    }
}
