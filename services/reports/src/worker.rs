//! Generation workers: claim jobs with `FOR UPDATE SKIP LOCKED`, heartbeat
//! their lease, stream the report from the agents service saving each
//! section as it arrives, retry with backoff, and fail the report after the
//! last attempt. A worker that dies stops heartbeating; once its lease
//! lapses another worker takes the job and asks only for the sections not
//! yet saved. The version is written and the job finished in one
//! transaction that re-checks the lease, so a job completes exactly once.
//! Each step's audit entries are stored in the outbox of the step's own
//! transaction (no call to tenants while the job row is locked) and the
//! relay is woken after the commit.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use serde_json::json;
use tokio::sync::Notify;
use tracing::Instrument as _;
use treven_mesh::metrics::{Counter, Gauge, KeyValue};
use treven_mesh::trace::{self, Traced as _};
use treven_mesh::{CancellationToken, ErrorCode, MeshContext, ServiceError, Signer};
use uuid::Uuid;

use crate::clients::{AuditEntry, Clients, GenerationRequest, GeneratorEvent};
use crate::config::WorkerOptions;
use crate::model::{Content, DISCLAIMER, Report, Section, Status, VersionCause};
use crate::outbox::enqueue_audit;
use crate::pii::redact_all;
use crate::quality;
use crate::store::{JobClaim, NewVersion, PgStore};

/// The generation jobs' metrics (`treven.reports.jobs.*`, see
/// `docs/observability.md`): counters moved by the workers as jobs change
/// state, gauges set by [`sample_queue`].
struct JobMetrics {
    attempts: Counter<u64>,
    retries: Counter<u64>,
    finished: Counter<u64>,
    queued: Gauge<u64>,
    running: Gauge<u64>,
    oldest_age: Gauge<f64>,
}

fn job_metrics() -> &'static JobMetrics {
    static METRICS: OnceLock<JobMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = treven_mesh::metrics::meter();
        JobMetrics {
            attempts: meter
                .u64_counter("treven.reports.jobs.attempts")
                .with_description("Generation attempts started (a job claimed by a worker)")
                .build(),
            retries: meter
                .u64_counter("treven.reports.jobs.retries")
                .with_description("Generation attempts that failed and were scheduled again")
                .build(),
            finished: meter
                .u64_counter("treven.reports.jobs.finished")
                .with_description("Generation jobs finished, by outcome (succeeded or failed)")
                .build(),
            queued: meter
                .u64_gauge("treven.reports.jobs.queued")
                .with_description("Generation jobs waiting for a worker (all instances)")
                .build(),
            running: meter
                .u64_gauge("treven.reports.jobs.running")
                .with_description("Generation jobs a worker holds (all instances)")
                .build(),
            oldest_age: meter
                .f64_gauge("treven.reports.jobs.oldest_age")
                .with_unit("s")
                .with_description("Age of the oldest queued or running generation job; 0 when none")
                .build(),
        }
    })
}

/// Sets the queue gauges (queued, running, age of the oldest) from the
/// database every `every` until `shutdown`: the whole queue, so every
/// instance reports the same figures (alarms take the maximum).
pub async fn sample_queue(store: PgStore, every: std::time::Duration, shutdown: CancellationToken) {
    let metrics = job_metrics();
    loop {
        match store.queue_stats().await {
            Ok(stats) => {
                metrics.queued.record(stats.queued.max(0) as u64, &[]);
                metrics.running.record(stats.running.max(0) as u64, &[]);
                metrics.oldest_age.record(stats.oldest_age_secs, &[]);
            }
            Err(error) => tracing::warn!(%error, "cannot sample the report job queue"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Why an attempt did not finish.
#[derive(Debug)]
enum AttemptError {
    /// Worth another attempt after a backoff.
    Retry(String),
    /// Will not get better: fail the report now.
    Permanent(String),
    /// Another worker holds the job now.
    LeaseLost,
}

impl From<ServiceError> for AttemptError {
    fn from(error: ServiceError) -> Self {
        match error.code() {
            ErrorCode::ValidationError | ErrorCode::Forbidden | ErrorCode::NotFound => {
                AttemptError::Permanent(error.to_string())
            }
            _ => AttemptError::Retry(error.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for AttemptError {
    fn from(error: crate::store::StoreError) -> Self {
        AttemptError::Retry(error.to_string())
    }
}

/// The span of one step of a job (`reports.job.generate`), a child of the
/// job's span.
fn step(name: &'static str) -> tracing::Span {
    tracing::info_span!(
        "job_step",
        otel.name = name,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// One generation worker.
#[derive(Debug, Clone)]
pub struct Worker {
    id: Uuid,
    store: PgStore,
    clients: Clients,
    options: WorkerOptions,
    signer: Signer,
    wake: Arc<Notify>,
    relay: Arc<Notify>,
}

impl Worker {
    /// A worker with a fresh id; `wake` wakes it for a new job, `relay` is
    /// the outbox relay it wakes after committing audit entries.
    pub fn new(
        store: PgStore,
        clients: Clients,
        options: WorkerOptions,
        signer: Signer,
        wake: Arc<Notify>,
        relay: Arc<Notify>,
    ) -> Self {
        Self {
            id: Uuid::new_v4(),
            store,
            clients,
            options,
            signer,
            wake,
            relay,
        }
    }

    /// Its id (the lease owner it writes).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Claims and runs jobs until `shutdown`; then stops claiming and gives
    /// back the job it holds.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(worker_id = %self.id, "report worker started");
        while !shutdown.is_cancelled() {
            match self
                .store
                .claim_job(self.id, self.options.lease_timeout)
                .await
            {
                Ok(Some(job)) => self.process(job, &shutdown).await,
                Ok(None) => {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.options.poll_interval) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(worker_id = %self.id, %error, "cannot claim report jobs");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(self.options.poll_interval) => {}
                    }
                }
            }
        }
        tracing::info!(worker_id = %self.id, "report worker stopped");
    }

    /// The job's context: the reports service acting for the user who asked
    /// for the report, with the roles they had then.
    fn context(&self, job: &JobClaim) -> MeshContext {
        self.signer.acting_for(
            job.org_id,
            &job.requested_by,
            &job.requester_roles,
            &job.request_id,
        )
    }

    /// Runs one job in its span, which continues the trace of the request
    /// that queued it: every step, store call and onward call of the job
    /// is part of that request's trace.
    async fn process(&self, job: JobClaim, shutdown: &CancellationToken) {
        let span = tracing::info_span!(
            "report_job",
            otel.name = "reports.generate_job",
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            org_id = %job.org_id,
            job_id = %job.id,
            report_id = %job.report_id,
            attempt = job.attempts,
            worker_id = %self.id,
            outcome = tracing::field::Empty,
        );
        trace::continue_traceparent(&span, &job.traceparent);
        self.process_in_span(job, shutdown).instrument(span).await;
    }

    async fn process_in_span(&self, job: JobClaim, shutdown: &CancellationToken) {
        tracing::info!(worker_id = %self.id, job_id = %job.id, report_id = %job.report_id, org_id = %job.org_id, attempt = job.attempts, "report job claimed");
        let context = self.context(&job);
        let metrics = job_metrics();
        metrics.attempts.add(1, &[]);
        let outcome = if job.attempts > self.options.max_attempts {
            Err(AttemptError::Permanent(format!(
                "generation gave up after {} attempts",
                self.options.max_attempts
            )))
        } else {
            let heartbeat = async {
                loop {
                    tokio::time::sleep(self.options.heartbeat_interval).await;
                    match self
                        .store
                        .heartbeat(job.id, self.id, self.options.lease_timeout)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(error) => {
                            tracing::warn!(job_id = %job.id, %error, "heartbeat failed")
                        }
                    }
                }
            };
            tokio::select! {
                outcome = self.attempt(&job, &context) => outcome,
                () = heartbeat => Err(AttemptError::LeaseLost),
                () = shutdown.cancelled() => {
                    match self.store.release(job.id, self.id).await {
                        Ok(_) => tracing::info!(job_id = %job.id, "report job released at shutdown"),
                        Err(error) => tracing::warn!(job_id = %job.id, %error, "cannot release report job; its lease will lapse"),
                    }
                    return;
                }
            }
        };
        let span = tracing::Span::current();
        let result = match outcome {
            Ok(()) => {
                span.record("outcome", "succeeded");
                metrics
                    .finished
                    .add(1, &[KeyValue::new("outcome", "succeeded")]);
                Ok(())
            }
            Err(AttemptError::LeaseLost) => {
                span.record("outcome", "lease_lost");
                tracing::warn!(job_id = %job.id, "report job lease lost; another worker has it");
                Ok(())
            }
            Err(AttemptError::Retry(reason)) if job.attempts < self.options.max_attempts => {
                span.record("outcome", "retry");
                let retried = self
                    .retry(&job, &reason)
                    .traced(step("reports.job.retry"))
                    .await;
                metrics.retries.add(1, &[]);
                retried
            }
            Err(AttemptError::Retry(reason) | AttemptError::Permanent(reason)) => {
                span.record("outcome", "failed");
                span.record("otel.status_code", "error");
                let failed = self
                    .fail(&job, &context, &reason)
                    .traced(step("reports.job.fail"))
                    .await;
                if failed.is_ok() {
                    metrics
                        .finished
                        .add(1, &[KeyValue::new("outcome", "failed")]);
                }
                failed
            }
        };
        if let Err(error) = result {
            tracing::warn!(job_id = %job.id, error = ?error, "report job bookkeeping failed; the lease will lapse and the job be retried");
        }
    }

    async fn retry(&self, job: &JobClaim, reason: &str) -> Result<(), AttemptError> {
        let delay = self.options.backoff(job.attempts);
        tracing::warn!(job_id = %job.id, report_id = %job.report_id, attempt = job.attempts, delay_ms = delay.as_millis() as u64, reason, "report generation attempt failed, retrying");
        let mut tx = self.store.begin(job.org_id, &job.requested_by).await?;
        if tx.holds_lease(job.id, self.id).await? {
            tx.retry_job(job.id, delay, reason).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    async fn fail(
        &self,
        job: &JobClaim,
        context: &MeshContext,
        reason: &str,
    ) -> Result<(), AttemptError> {
        tracing::warn!(job_id = %job.id, report_id = %job.report_id, attempt = job.attempts, reason, "report generation failed");
        let mut tx = self.store.begin(job.org_id, &job.requested_by).await?;
        if !tx.holds_lease(job.id, self.id).await? {
            return Ok(());
        }
        let reason: String = reason.chars().take(500).collect();
        tx.set_status(job.report_id, Status::Failed, None, &reason)
            .await?;
        tx.finish_job(job.id, false, &reason).await?;
        enqueue_audit(
            &mut tx,
            context,
            &AuditEntry::report(
                "report.generate.fail",
                job.report_id,
                json!({"attempts": job.attempts, "reason": reason}),
            ),
        )
        .await?;
        tx.commit().await?;
        self.relay.notify_one();
        self.clients
            .publish(
                job.org_id,
                job.report_id,
                json!({"report_id": job.report_id, "status": "failed", "failure_reason": reason}),
            )
            .await;
        Ok(())
    }

    async fn attempt(&self, job: &JobClaim, context: &MeshContext) -> Result<(), AttemptError> {
        let (report, documents, saved) = async {
            let mut tx = self.store.begin(job.org_id, &job.requested_by).await?;
            let report = tx
                .report(job.report_id, false)
                .await?
                .ok_or_else(|| AttemptError::Permanent("the report no longer exists".into()))?;
            let documents = tx.document_ids(job.report_id).await?;
            let saved: HashSet<Section> = tx
                .job_sections(job.id)
                .await?
                .into_iter()
                .map(|(s, _, _)| s)
                .collect();
            Ok::<_, AttemptError>((report, documents, saved))
        }
        .traced(step("reports.job.load"))
        .await?;
        if report.status != Status::Generating {
            // Finished by an earlier holder that lost its lease after
            // committing: nothing left to do.
            let mut tx = self.store.begin(job.org_id, &job.requested_by).await?;
            if tx.holds_lease(job.id, self.id).await? {
                tx.finish_job(job.id, true, "").await?;
                tx.commit().await?;
            }
            return Ok(());
        }
        let wanted = Section::generated();
        let missing: Vec<Section> = wanted
            .iter()
            .copied()
            .filter(|s| !saved.contains(s))
            .collect();
        if !missing.is_empty() {
            self.stream(
                job,
                context,
                &report,
                &documents,
                &missing,
                saved.len(),
                wanted.len(),
            )
            .traced(step("reports.job.generate"))
            .await?;
        }
        self.complete(job, context)
            .traced(step("reports.job.complete"))
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        job: &JobClaim,
        context: &MeshContext,
        report: &Report,
        documents: &[Uuid],
        missing: &[Section],
        mut done: usize,
        total: usize,
    ) -> Result<(), AttemptError> {
        let sections: &[Section] = if done == 0 { &[] } else { missing };
        let request = GenerationRequest {
            report,
            documents,
            sections,
            current: None,
            instructions: "",
        };
        let deadline = self.options.generation_timeout;
        let run = async {
            let mut stream = self.clients.generate(context, request, deadline).await?;
            while let Some(event) = stream.next().await {
                match event? {
                    GeneratorEvent::Section { key, content: full } => {
                        let Ok(section) = key.parse::<Section>() else {
                            tracing::warn!(section = %key, "generator sent an unknown section");
                            continue;
                        };
                        if section == Section::Disclaimer || !missing.contains(&section) {
                            continue;
                        }
                        let mut part = Content::default();
                        part.replace_section(section, &full);
                        let redacted = redact_all(&mut part, section)?;
                        let mut tx = self.store.begin(job.org_id, &job.requested_by).await?;
                        if !tx.holds_lease(job.id, self.id).await? {
                            return Err(AttemptError::LeaseLost);
                        }
                        tx.save_job_section(job.id, section, &part, redacted.len())
                            .await?;
                        for d in &redacted {
                            enqueue_audit(
                                &mut tx,
                                context,
                                &AuditEntry::report(
                                    "report.pii_decision",
                                    report.id,
                                    json!({
                                        "finding_id": d.finding.id,
                                        "type": d.finding.kind.as_str(),
                                        "section": d.finding.section,
                                        "field_path": d.finding.field_path,
                                        "action": "redact",
                                        "automatic": true,
                                        "during": "generated",
                                    }),
                                ),
                            )
                            .await?;
                        }
                        tx.commit().await?;
                        if !redacted.is_empty() {
                            self.relay.notify_one();
                        }
                        done += 1;
                        tracing::info!(job_id = %job.id, report_id = %report.id, section = %section, done, total, "report section saved");
                        self.clients
                            .publish(
                                job.org_id,
                                report.id,
                                json!({
                                    "report_id": report.id,
                                    "status": "generating",
                                    "section": section.as_str(),
                                    "sections_done": done,
                                    "sections_total": total,
                                }),
                            )
                            .await;
                    }
                    GeneratorEvent::Done => return Ok(()),
                    GeneratorEvent::Failed { code, message } => {
                        let message = format!("generator error {code}: {message}");
                        return Err(match ErrorCode::from_reason(&code) {
                            Some(ErrorCode::ValidationError | ErrorCode::Forbidden) => {
                                AttemptError::Permanent(message)
                            }
                            _ => AttemptError::Retry(message),
                        });
                    }
                }
            }
            Err(AttemptError::Retry(
                "the generation stream ended without done".into(),
            ))
        };
        match tokio::time::timeout(deadline, run).await {
            Ok(result) => result,
            Err(_) => Err(AttemptError::Retry(format!(
                "generation took longer than {} s",
                deadline.as_secs()
            ))),
        }
    }

    async fn complete(&self, job: &JobClaim, context: &MeshContext) -> Result<(), AttemptError> {
        let mut tx = self.store.begin(job.org_id, &job.requested_by).await?;
        if !tx.holds_lease(job.id, self.id).await? {
            return Err(AttemptError::LeaseLost);
        }
        let report = tx
            .report(job.report_id, true)
            .await?
            .ok_or_else(|| AttemptError::Permanent("the report no longer exists".into()))?;
        if report.status != Status::Generating || report.latest_version > 0 {
            tx.finish_job(job.id, true, "").await?;
            tx.commit().await?;
            return Ok(());
        }
        let saved = tx.job_sections(job.id).await?;
        let mut content = Content::default();
        let mut redactions = 0;
        let mut have = HashSet::new();
        for (section, part, redacted) in &saved {
            content.replace_section(*section, part);
            redactions += redacted;
            have.insert(*section);
        }
        let absent: Vec<&str> = Section::generated()
            .into_iter()
            .filter(|s| !have.contains(s))
            .map(Section::as_str)
            .collect();
        if !absent.is_empty() {
            // Start over for the rest on the next attempt.
            return Err(AttemptError::Retry(format!(
                "the generator did not write {}",
                absent.join(", ")
            )));
        }
        content.disclaimer = DISCLAIMER.to_owned();
        let checks = quality::checks(&content);
        let words = quality::word_count(&content);
        let summary = format!(
            "generated {} sections, {} words{}",
            saved.len(),
            quality::thousands(words),
            if redactions > 0 {
                format!(", {redactions} personal data findings redacted")
            } else {
                String::new()
            }
        );
        let (version, _) = tx
            .insert_version(
                &NewVersion {
                    report_id: report.id,
                    number: 1,
                    content: &content,
                    cause: VersionCause::Generated,
                    section: None,
                    author_id: &job.requested_by,
                    reason: "generated",
                    change_summary: &summary,
                    rejected_sections: &[],
                    quality_checks: &checks,
                    pii_decisions: &[],
                },
                Status::Draft,
            )
            .await?;
        tx.finish_job(job.id, true, "").await?;
        enqueue_audit(
            &mut tx,
            context,
            &AuditEntry::report(
                "report.generate",
                report.id,
                json!({"version": 1, "content_hash": version.content_hash, "attempts": job.attempts, "words": words}),
            ),
        )
        .await?;
        tx.commit().await?;
        self.relay.notify_one();
        tracing::info!(job_id = %job.id, report_id = %report.id, attempts = job.attempts, words, "report generated");
        self.clients
            .publish(
                job.org_id,
                report.id,
                json!({"report_id": report.id, "status": "draft", "version": 1}),
            )
            .await;
        Ok(())
    }
}
