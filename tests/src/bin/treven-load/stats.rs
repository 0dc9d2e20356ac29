//! Closed-loop load: `concurrency` workers each repeat one call for a fixed
//! time; latencies of successful calls are kept and summarised.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What one load run measured.
#[derive(Debug, Serialize)]
pub struct LoadStats {
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed (any error).
    pub errors: u64,
    /// Successful calls per second over the measured window.
    pub rps: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// The first error seen, to tell a broken setup from a slow one.
    pub first_error: Option<String>,
}

/// Options common to every closed-loop run.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LoadOptions {
    /// Workers calling in a loop.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Seconds of calls before measuring (connections, caches).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
}

/// Runs `call` from `options.concurrency` workers; `make` gives each worker
/// its own state (a client, a connection).
pub async fn closed_loop<S, M, C, F, E>(options: LoadOptions, make: M, call: C) -> LoadStats
where
    S: Send + 'static,
    M: Fn() -> S,
    C: Fn(&mut S) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    let warmup = Duration::from_secs_f64(options.warmup);
    let measured = Duration::from_secs_f64(options.seconds);
    let start = Instant::now();
    let (measure_from, measure_until) = (start + warmup, start + warmup + measured);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.concurrency.max(1) {
        let mut state = make();
        let call = call.clone();
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let (mut errors, mut first_error) = (0u64, None);
            loop {
                let began = Instant::now();
                if began >= measure_until {
                    break;
                }
                let result = call(&mut state).await;
                let counted = began >= measure_from;
                match result {
                    Ok(()) if counted => latencies.push(began.elapsed()),
                    Ok(()) => {}
                    Err(err) => {
                        if counted {
                            errors += 1;
                        }
                        first_error.get_or_insert_with(|| err.to_string());
                    }
                }
            }
            (latencies, errors, first_error)
        });
    }
    let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0, None);
    while let Some(joined) = workers.join_next().await {
        if let Ok((worker, worker_errors, worker_error)) = joined {
            latencies.extend(worker);
            errors += worker_errors;
            first_error = first_error.or(worker_error);
        }
    }
    summarise(latencies, errors, first_error, measured)
}

fn summarise(
    mut latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
    window: Duration,
) -> LoadStats {
    latencies.sort_unstable();
    LoadStats {
        ok: latencies.len() as u64,
        errors,
        rps: latencies.len() as f64 / window.as_secs_f64(),
        p50_us: percentile_us(&latencies, 0.50),
        p99_us: percentile_us(&latencies, 0.99),
        first_error,
    }
}

/// The `q` quantile of sorted `latencies` (nearest rank), in microseconds;
/// 0 when there are none.
pub fn percentile_us(latencies: &[Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
    latencies[rank - 1].as_secs_f64() * 1e6
}

/// Prints `value` as one JSON line on stdout.
pub fn emit<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let latencies: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile_us(&latencies, 0.5), 50.0);
        assert_eq!(percentile_us(&latencies, 0.99), 99.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }
}
