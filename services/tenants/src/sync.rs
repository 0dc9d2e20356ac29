//! Keeping the Cognito user pool in line with the tenants users.
//!
//! Every change Cognito must follow (an invitation, a role or e-mail
//! change, a removal) writes its `users` row and a `cognito_sync` job in
//! one transaction. Right after the commit, the request applies the job
//! itself ([`IdentitySync::apply_now`]); the [`IdentitySync::run`] relay
//! applies whatever is still due — jobs whose request could not reach
//! Cognito, crashed, or timed out — retrying with a backoff that doubles per
//! failure up to [`SyncOptions::max_backoff`]. Nothing is ever dropped: a
//! job leaves the table only once Cognito matches the tenants row, or is
//! kept as `failed` (with the user's `identity_state` FAILED and an audit
//! entry) when Cognito refuses for good.
//!
//! Jobs are state-based: applying one reads the user's current row and
//! makes Cognito match it (present: invited, e-mail and group right,
//! enabled; absent: disabled and signed out everywhere). So applying one
//! twice, or two of one user in any order, ends the same way; and the job
//! completes only if the row is still what was applied (read again under a
//! row lock), else it is applied again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use treven_mesh::{CancellationToken, OrgId, ServiceError};
use uuid::Uuid;

use crate::cognito::{DesiredUser, Directory, DirectoryError};
use crate::model::{IdentityState, NewAuditEvent, User};
use crate::store::{CognitoSyncJob, PgStore};

/// Timing of the Cognito sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// How long an applier holds a claimed job.
    pub lease: Duration,
    /// How long the relay leaves a new job to its request.
    pub grace: Duration,
    /// How often the relay looks for due jobs.
    pub sweep: Duration,
    /// The first retry's delay; doubled per failure.
    pub base_backoff: Duration,
    /// The longest delay between two attempts
    /// (`TREVEN_COGNITO_SYNC_MAX_BACKOFF_MILLIS`).
    pub max_backoff: Duration,
    /// The longest a request waits for Cognito after its commit before it
    /// answers with the user still PENDING (the relay finishes).
    pub request_budget: Duration,
    /// Jobs claimed per relay pass.
    pub batch: u32,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(10),
            sweep: Duration::from_secs(2),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            request_budget: Duration::from_secs(8),
            batch: 20,
        }
    }
}

impl SyncOptions {
    /// The delay after `failures` failed attempts.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How applying one job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Cognito matches the tenants row; the job is gone.
    Done,
    /// Cognito could not be reached or failed; the job is due again later.
    Retry,
    /// Cognito refused for good; the job is kept as failed.
    Failed,
}

/// The Cognito sync of one tenants process.
#[derive(Debug, Clone)]
pub struct IdentitySync {
    store: PgStore,
    directory: Directory,
    options: SyncOptions,
    wake: Arc<Notify>,
}

impl IdentitySync {
    /// Syncs `store`'s users into `directory`.
    pub fn new(store: PgStore, directory: Directory, options: SyncOptions) -> Self {
        Self {
            store,
            directory,
            options,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The timing.
    pub fn options(&self) -> &SyncOptions {
        &self.options
    }

    /// Applies job `id` of `org`, queued by `actor` in `request_id`, right
    /// after the commit that queued it, within the request budget. A job
    /// someone else holds is left to them; a failure is recorded on the job
    /// for the relay (which this wakes).
    pub async fn apply_now(&self, org: OrgId, actor: &str, request_id: &str, id: Uuid) {
        let claimed = async {
            let mut tx = self.store.begin_as(org, actor, request_id).await?;
            let job = tx.claim_cognito_sync(id, self.options.lease).await?;
            tx.commit().await?;
            Ok::<_, ServiceError>(job)
        }
        .await;
        let job = match claimed {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(job_id = %id, %error, "cognito sync job not claimed; the relay applies it");
                self.wake.notify_one();
                return;
            }
        };
        match tokio::time::timeout(self.options.request_budget, self.apply(&job)).await {
            Ok(Ok(Applied::Done | Applied::Failed)) => {}
            Ok(Ok(Applied::Retry)) | Err(_) => self.wake.notify_one(),
            Ok(Err(error)) => {
                tracing::warn!(job_id = %id, %error, "cognito sync job not recorded; the relay applies it after its lease");
                self.wake.notify_one();
            }
        }
    }

    /// Applies due jobs until `shutdown`: every sweep interval, and when a
    /// request could not finish its own.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            pool_id = self.directory.pool_id(),
            sweep_ms = self.options.sweep.as_millis() as u64,
            "cognito sync relay started"
        );
        while !shutdown.is_cancelled() {
            let full = match self.apply_due().await {
                Ok(claimed) => claimed == self.options.batch as usize,
                Err(error) => {
                    tracing::warn!(%error, "cognito sync relay cannot read its jobs; retrying at the next sweep");
                    false
                }
            };
            if full {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {
                    // Let the failed job's backoff start before looking.
                    tokio::time::sleep(self.options.base_backoff).await;
                }
                () = tokio::time::sleep(self.options.sweep) => {}
            }
        }
        tracing::info!("cognito sync relay stopped");
    }

    /// One relay pass: claims due jobs of every organisation and applies
    /// them one at a time; how many it claimed.
    pub async fn apply_due(&self) -> Result<usize, ServiceError> {
        let jobs = self
            .store
            .claim_due_cognito_sync(self.options.batch, self.options.lease)
            .await?;
        for job in &jobs {
            match self.apply(job).await {
                Ok(applied) => {
                    tracing::debug!(job_id = %job.id, org_id = %job.org_id, ?applied, "cognito sync job applied by the relay");
                }
                Err(error) => {
                    tracing::warn!(job_id = %job.id, org_id = %job.org_id, %error, "cognito sync job not recorded; retried after its lease");
                }
            }
        }
        Ok(jobs.len())
    }

    /// Makes Cognito match the user of `job` and records the outcome.
    async fn apply(&self, job: &CognitoSyncJob) -> Result<Applied, ServiceError> {
        // A row that changes while Cognito is called is applied again; three
        // rounds are plenty (each change queues its own job besides).
        for _ in 0..3 {
            let mut tx = self
                .store
                .begin_as(job.org_id, &job.actor_id, &job.request_id)
                .await?;
            let user = tx.user(job.user_id).await?;
            tx.commit().await?;
            let outcome = match &user {
                Some(user) => self
                    .directory
                    .ensure_user(&DesiredUser {
                        username: user.cognito_sub.as_deref().unwrap_or(&job.username),
                        email: &user.email,
                        org_id: job.org_id,
                        role: user.role,
                    })
                    .await
                    .map(Some),
                None => self
                    .directory
                    .disable_user(&job.username, job.org_id)
                    .await
                    .map(|()| None),
            };
            match outcome {
                Ok(sub) => {
                    if self.complete(job, user.as_ref(), sub.as_deref()).await? {
                        tracing::info!(job_id = %job.id, org_id = %job.org_id, user_id = %job.user_id, removed = user.is_none(), "cognito user in line with tenants");
                        return Ok(Applied::Done);
                    }
                }
                Err(DirectoryError::Retry(error)) => {
                    let failures = u32::try_from(job.attempts).unwrap_or(0).saturating_add(1);
                    let delay = self.options.backoff(failures);
                    tracing::warn!(job_id = %job.id, org_id = %job.org_id, failures, retry_in_ms = delay.as_millis() as u64, error = format!("{error:#}"), "cognito sync failed; retrying");
                    let mut tx = self
                        .store
                        .begin_as(job.org_id, &job.actor_id, &job.request_id)
                        .await?;
                    tx.cognito_sync_retry(job.id, &format!("{error:#}"), delay)
                        .await?;
                    tx.commit().await?;
                    return Ok(Applied::Retry);
                }
                Err(DirectoryError::Refused(reason)) => {
                    tracing::error!(job_id = %job.id, org_id = %job.org_id, user_id = %job.user_id, %reason, "cognito refused the change; the user cannot sign in");
                    self.refused(job, &reason).await?;
                    return Ok(Applied::Failed);
                }
            }
        }
        // Still changing: leave it to the next pass.
        let mut tx = self
            .store
            .begin_as(job.org_id, &job.actor_id, &job.request_id)
            .await?;
        tx.cognito_sync_retry(job.id, "the user kept changing", self.options.base_backoff)
            .await?;
        tx.commit().await?;
        Ok(Applied::Retry)
    }

    /// Completes `job` when the user is still as `applied` was read (same
    /// e-mail and role, or still absent); false when it changed.
    async fn complete(
        &self,
        job: &CognitoSyncJob,
        applied: Option<&User>,
        sub: Option<&str>,
    ) -> Result<bool, ServiceError> {
        let mut tx = self
            .store
            .begin_as(job.org_id, &job.actor_id, &job.request_id)
            .await?;
        let now = tx.lock_user(job.user_id).await?;
        let same = match (applied, &now) {
            (None, None) => true,
            (Some(before), Some(now)) => before.email == now.email && before.role == now.role,
            _ => false,
        };
        if !same {
            return Ok(false);
        }
        if now.is_some() {
            let state = if tx.other_pending_cognito_sync(job.user_id, job.id).await? > 0 {
                IdentityState::Pending
            } else {
                IdentityState::Synced
            };
            tx.set_identity(job.user_id, state, sub).await?;
        }
        tx.cognito_sync_done(job.id).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Keeps `job` as failed, marks the user FAILED and audits it.
    async fn refused(&self, job: &CognitoSyncJob, reason: &str) -> Result<(), ServiceError> {
        let mut tx = self
            .store
            .begin_as(job.org_id, &job.actor_id, &job.request_id)
            .await?;
        tx.cognito_sync_failed(job.id, reason).await?;
        if tx.lock_user(job.user_id).await?.is_some() {
            tx.set_identity(job.user_id, IdentityState::Failed, None)
                .await?;
        }
        tx.audit(&NewAuditEvent::of(
            "user.identity_failed",
            "user",
            job.user_id,
            serde_json::json!({"reason": reason}),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
