//! The generation job queue: workers claim jobs across organisations with
//! `FOR UPDATE SKIP LOCKED`, heartbeat and release their lease, each in a
//! background transaction as `treven_worker` (which may read and write only
//! the lease columns of `report_jobs`); inside an [`OrgTx`] they check the
//! lease, save sections and finish or retry the job.

use std::time::Duration;
use treven_mesh::trace::{self, Traced as _};

use treven_mesh::{OrgId, Role};
use uuid::Uuid;

use crate::model::{Content, Section};

use super::{OrgTx, PgStore, Result, StoreError, from_json, to_json};

/// A job a worker holds the lease of.
#[derive(Debug, Clone)]
pub struct JobClaim {
    /// The job.
    pub id: Uuid,
    /// Its organisation.
    pub org_id: OrgId,
    /// The report it generates.
    pub report_id: Uuid,
    /// Who asked for the report.
    pub requested_by: String,
    /// Their roles when they asked.
    pub requester_roles: Vec<Role>,
    /// The request it came from.
    pub request_id: String,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// The W3C trace context of the request that queued it (empty if none).
    pub traceparent: String,
}

/// The queue at one moment, across organisations (for the job metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueStats {
    /// Jobs waiting for a worker (due or backing off).
    pub queued: i64,
    /// Jobs a worker holds.
    pub running: i64,
    /// Seconds since the oldest unfinished job was created; 0 when none is.
    pub oldest_age_secs: f64,
}

impl PgStore {
    /// Worker path (`treven_worker`, across organisations): how many jobs are queued
    /// and running, and the age of the oldest of them. Counts only; no
    /// organisation or report leaves this function.
    pub async fn queue_stats(&self) -> Result<QueueStats> {
        let mut tx = treven_mesh::postgres::begin_background(&self.pool).await?;
        let (queued, running, oldest): (i64, i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'queued'), \
                    count(*) FILTER (WHERE state = 'running'), \
                    extract(epoch FROM clock_timestamp() - min(created_at))::float8 \
             FROM report_jobs WHERE state IN ('queued', 'running')",
        )
        .fetch_one(&mut *tx)
        .traced(trace::postgres("reports.queue_stats", "SELECT"))
        .await?;
        tx.commit().await?;
        Ok(QueueStats {
            queued,
            running,
            oldest_age_secs: oldest.unwrap_or(0.0).max(0.0),
        })
    }

    /// Worker path (`treven_worker`, across organisations): leases the next job that
    /// is due, or whose worker's lease lapsed, to `worker` for `lease`.
    pub async fn claim_job(&self, worker: Uuid, lease: Duration) -> Result<Option<JobClaim>> {
        let mut tx = treven_mesh::postgres::begin_background(&self.pool).await?;
        let row: Option<JobRow> = sqlx::query_as(
            "UPDATE report_jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1, \
                    lease_expires_at = clock_timestamp() + $2 * interval '1 millisecond', \
                    heartbeat_at = clock_timestamp() \
             WHERE id = ( \
                 SELECT id FROM report_jobs \
                 WHERE (state = 'queued' AND run_after <= clock_timestamp()) \
                    OR (state = 'running' AND lease_expires_at < clock_timestamp()) \
                 ORDER BY run_after LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, org_id, report_id, requested_by, requester_roles, request_id, attempts, \
                traceparent",
        )
        .bind(worker)
        .bind(lease.as_millis() as f64)
        .fetch_optional(&mut *tx)
        .traced(trace::postgres("reports.claim_job", "UPDATE"))
        .await?;
        tx.commit().await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Worker path: extends `worker`'s lease on `job`; false when the lease
    /// was lost (lapsed and taken, or the job ended).
    pub async fn heartbeat(&self, job: Uuid, worker: Uuid, lease: Duration) -> Result<bool> {
        let mut tx = treven_mesh::postgres::begin_background(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE report_jobs SET lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond', \
                    heartbeat_at = clock_timestamp() \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(job)
        .bind(worker)
        .bind(lease.as_millis() as f64)
        .execute(&mut *tx)
        .traced(trace::postgres("reports.heartbeat", "UPDATE"))
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Worker path: gives `job` back (shutdown) without counting the attempt.
    pub async fn release(&self, job: Uuid, worker: Uuid) -> Result<bool> {
        let mut tx = treven_mesh::postgres::begin_background(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE report_jobs SET state = 'queued', attempts = greatest(attempts - 1, 0), \
                    lease_owner = NULL, lease_expires_at = NULL, run_after = clock_timestamp() \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(job)
        .bind(worker)
        .execute(&mut *tx)
        .traced(trace::postgres("reports.release", "UPDATE"))
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}

impl OrgTx {
    /// Whether `worker` still holds the lease of `job`; locks the job row
    /// until the transaction ends.
    pub async fn holds_lease(&mut self, job: Uuid, worker: Uuid) -> Result<bool> {
        let held: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM report_jobs WHERE org_id = $1 AND id = $2 AND lease_owner = $3 \
               AND state = 'running' FOR UPDATE",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(job)
        .bind(worker)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("reports.holds_lease", "SELECT"))
        .await?;
        Ok(held.is_some())
    }

    /// Saves one generated section of `job` (replacing an earlier save).
    pub async fn save_job_section(
        &mut self,
        job: Uuid,
        section: Section,
        content: &Content,
        redactions: usize,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO report_job_sections (org_id, job_id, section, content, redactions) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (job_id, section) DO UPDATE SET content = EXCLUDED.content, \
                 redactions = EXCLUDED.redactions, saved_at = clock_timestamp()",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(job)
        .bind(section.as_str())
        .bind(to_json(content)?)
        .bind(redactions as i32)
        .execute(&mut *self.tx)
        .traced(trace::postgres("reports.save_job_section", "INSERT"))
        .await?;
        Ok(())
    }

    /// The sections `job` has saved, with the redactions made in each.
    pub async fn job_sections(&mut self, job: Uuid) -> Result<Vec<(Section, Content, i32)>> {
        let rows: Vec<(String, serde_json::Value, i32)> = sqlx::query_as(
            "SELECT section, content, redactions FROM report_job_sections WHERE org_id = $1 AND job_id = $2",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(job)
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("reports.job_sections", "SELECT"))
        .await?;
        rows.into_iter()
            .map(|(section, content, redactions)| {
                let section: Section = section.parse().map_err(|()| {
                    StoreError::Internal(sqlx::Error::Decode(format!("section {section:?}").into()))
                })?;
                Ok((section, from_json("content", content)?, redactions))
            })
            .collect()
    }

    /// Ends `job` as `succeeded` or `failed`.
    pub async fn finish_job(&mut self, job: Uuid, succeeded: bool, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE report_jobs SET state = $3, last_error = $4, lease_owner = NULL, lease_expires_at = NULL, \
                    finished_at = clock_timestamp() WHERE org_id = $1 AND id = $2",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(job)
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(error)
        .execute(&mut *self.tx)
        .traced(trace::postgres("reports.finish_job", "UPDATE"))
        .await?;
        Ok(())
    }

    /// Puts `job` back in the queue to run after `delay`.
    pub async fn retry_job(&mut self, job: Uuid, delay: Duration, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE report_jobs SET state = 'queued', last_error = $3, lease_owner = NULL, lease_expires_at = NULL, \
                    run_after = clock_timestamp() + $4 * interval '1 millisecond' WHERE org_id = $1 AND id = $2",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(job)
        .bind(error)
        .bind(delay.as_millis() as f64)
        .execute(&mut *self.tx)
        .traced(trace::postgres("reports.retry_job", "UPDATE"))
        .await?;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    org_id: Uuid,
    report_id: Uuid,
    requested_by: String,
    requester_roles: serde_json::Value,
    request_id: String,
    attempts: i32,
    traceparent: String,
}

impl TryFrom<JobRow> for JobClaim {
    type Error = StoreError;
    fn try_from(row: JobRow) -> Result<Self> {
        Ok(JobClaim {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            report_id: row.report_id,
            requested_by: row.requested_by,
            requester_roles: from_json("requester_roles", row.requester_roles)?,
            request_id: row.request_id,
            attempts: row.attempts,
            traceparent: row.traceparent,
        })
    }
}
