//! The generation jobs' metrics move as a report is generated: the queue
//! gauges (queued, running, age of the oldest) sampled from Postgres, and
//! the attempt, retry and outcome counters the workers move; the reports
//! server's RPCs are counted too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use treven_mesh::Role;
use treven_proto::treven::reports::v1 as pb;

use support::*;

/// The value of the sample of `name` whose labels include all of `labels`,
/// summed over the matching lines of the process's `/metrics` text.
fn sample(name: &str, labels: &[&str]) -> f64 {
    treven_mesh::metrics::render()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|l| rest.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}:\n{}", treven_mesh::metrics::render());
}

async fn create(stack: &Stack, token: &str, country: &str, sector: &str) -> String {
    stack
        .reports
        .clone()
        .create_report(authed(
            token,
            pb::CreateReportRequest {
                scope: Some(scope(country, sector)),
                document_ids: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap()
        .id
}

#[tokio::test]
async fn job_metrics_move_when_a_report_is_generated_or_fails() {
    // No workers yet: the job waits in the queue.
    let stack = Stack::start(0).await;
    tokio::spawn(treven_reports::worker::sample_queue(
        stack.app.store.clone(),
        Duration::from_millis(100),
        stack.shutdown.clone(),
    ));
    let org = stack.org("metrics").await;
    let analyst = stack.token(org, "analyst-1", Role::Analyst);
    let attempts = sample("treven_reports_jobs_attempts_total", &[]);
    let succeeded = [r#"outcome="succeeded""#];
    let failed = [r#"outcome="failed""#];
    let finished = "treven_reports_jobs_finished_total";
    let (succeeded_before, failed_before) =
        (sample(finished, &succeeded), sample(finished, &failed));
    let retries = sample("treven_reports_jobs_retries_total", &[]);

    let id = create(&stack, &analyst, "GB", "agriculture").await;
    eventually("one job queued", || {
        sample("treven_reports_jobs_queued", &[]) == 1.0
            && sample("treven_reports_jobs_running", &[]) == 0.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    eventually("the queued job ages", || {
        sample("treven_reports_jobs_oldest_age_seconds", &[]) > 0.2
    })
    .await;

    // A worker takes it and generates the report.
    tokio::spawn(stack.app.worker().run(stack.shutdown.clone()));
    let got = stack.wait_generated(&analyst, &id).await;
    assert_eq!(got.report.unwrap().status, pb::ReportStatus::Draft as i32);
    eventually("the job finished and counted", || {
        sample(finished, &succeeded) - succeeded_before == 1.0
            && sample("treven_reports_jobs_attempts_total", &[]) - attempts == 1.0
    })
    .await;
    eventually("the queue is empty again", || {
        sample("treven_reports_jobs_queued", &[]) == 0.0
            && sample("treven_reports_jobs_running", &[]) == 0.0
            && sample("treven_reports_jobs_oldest_age_seconds", &[]) == 0.0
    })
    .await;

    // A report whose generation always fails: retried, then failed.
    let failing = create(&stack, &analyst, "FR", SECTOR_FAIL).await;
    let got = stack.wait_generated(&analyst, &failing).await;
    assert_eq!(got.report.unwrap().status, pb::ReportStatus::Failed as i32);
    eventually("the failure counted with its retry", || {
        sample(finished, &failed) - failed_before == 1.0
            && sample("treven_reports_jobs_retries_total", &[]) - retries == 1.0
            && sample("treven_reports_jobs_attempts_total", &[]) - attempts == 3.0
    })
    .await;

    // The reports server's calls are counted by method and status.
    assert!(
        sample(
            "rpc_server_call_duration_seconds_count",
            &[
                r#"rpc_service="treven.reports.v1.ReportsService""#,
                r#"rpc_method="CreateReport""#,
                r#"rpc_grpc_status_code="0""#,
            ]
        ) >= 2.0
    );
    stack.stop().await;
}
