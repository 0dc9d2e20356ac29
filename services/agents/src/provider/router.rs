//! Routing between the primary and secondary providers.
//!
//! Each request goes to the primary unless its circuit breaker is open.
//! Failures before the first output that may pass (throttling,
//! unavailability, a model not ready) are retried with exponential backoff;
//! when the attempts are used up the request moves to the secondary. Every
//! request that failed on the primary counts towards opening the breaker;
//! once open, new requests go straight to the secondary until the cooldown
//! has passed, when one request probes the primary (half-open): success
//! closes the breaker, failure opens it again.
//!
//! A stream that has produced text or a tool call is never switched: an
//! error after that ends the stream with the error.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use treven_mesh::metrics::{Counter, Gauge, Histogram, KeyValue};

use super::{ErrorKind, EventStream, ModelEvent, ModelRequest, Provider, ProviderError};
use crate::config::BreakerConfig;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests go to the primary; counts consecutive failures.
    Closed {
        /// Consecutive failed requests.
        failures: u32,
    },
    /// Requests go to the secondary until `until`.
    Open {
        /// When a probe may be let through.
        until: Instant,
    },
    /// One probe request is on the primary since `since`; others go to the
    /// secondary. A probe that never reports (its caller went away) is
    /// replaced after the cooldown.
    HalfOpen {
        /// When the probe started.
        since: Instant,
    },
}

#[derive(Debug)]
struct Breaker {
    state: BreakerState,
    threshold: u32,
    cooldown: Duration,
}

/// Where a request should go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Primary { probe: bool },
    Secondary,
}

impl Breaker {
    fn route(&mut self, now: Instant) -> Route {
        match self.state {
            BreakerState::Closed { .. } => Route::Primary { probe: false },
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen { since: now };
                Route::Primary { probe: true }
            }
            BreakerState::HalfOpen { since } if now >= since + self.cooldown => {
                self.state = BreakerState::HalfOpen { since: now };
                Route::Primary { probe: true }
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => Route::Secondary,
        }
    }

    fn success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    fn failure(&mut self, now: Instant, probe: bool) {
        self.state = match self.state {
            BreakerState::Closed { failures } if !probe && failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            _ => BreakerState::Open {
                until: now + self.cooldown,
            },
        };
    }
}

/// The model calls' metrics (see `docs/observability.md`).
struct ModelMetrics {
    ttft: Histogram<f64>,
    tokens: Counter<u64>,
    errors: Counter<u64>,
    breaker: Gauge<u64>,
    opened: Counter<u64>,
}

fn model_metrics() -> &'static ModelMetrics {
    static METRICS: OnceLock<ModelMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = treven_mesh::metrics::meter();
        ModelMetrics {
            ttft: treven_mesh::metrics::latency_histogram(
                "gen_ai.server.time_to_first_token",
                "Time from a model call to its first output, retries included, by provider and model",
            ),
            tokens: meter
                .u64_counter("treven.model.tokens")
                .with_description("Model tokens by provider, model and type (input, output, cache_read, cache_write)")
                .build(),
            errors: meter
                .u64_counter("treven.model.errors")
                .with_description("Failed model calls by provider, error type and stage (before or after output)")
                .build(),
            breaker: meter
                .u64_gauge("treven.model.breaker.state")
                .with_description("The primary provider's circuit breaker: 0 closed, 1 half-open, 2 open")
                .build(),
            opened: meter
                .u64_counter("treven.model.breaker.opened")
                .with_description("Times the primary provider's circuit breaker opened")
                .build(),
        }
    })
}

fn breaker_value(state: BreakerState) -> u64 {
    match state {
        BreakerState::Closed { .. } => 0,
        BreakerState::HalfOpen { .. } => 1,
        BreakerState::Open { .. } => 2,
    }
}

fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Throttled => "throttled",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::NotReady => "not_ready",
        ErrorKind::Invalid => "invalid",
        ErrorKind::Failed => "failed",
    }
}

fn record_usage(provider: &dyn Provider, usage: &super::Usage) {
    let metrics = model_metrics();
    for (kind, tokens) in [
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
        ("cache_read", usage.cache_read_tokens),
        ("cache_write", usage.cache_write_tokens),
    ] {
        if tokens > 0 {
            metrics.tokens.add(
                tokens as u64,
                &[
                    KeyValue::new("gen_ai.provider.name", provider.name()),
                    KeyValue::new("gen_ai.request.model", provider.model_id().to_owned()),
                    KeyValue::new("gen_ai.token.type", kind),
                ],
            );
        }
    }
}

fn record_error(provider: &dyn Provider, error: &ProviderError, stage: &'static str) {
    model_metrics().errors.add(
        1,
        &[
            KeyValue::new("gen_ai.provider.name", provider.name()),
            KeyValue::new("error.type", error_type(error.kind)),
            KeyValue::new("stage", stage),
        ],
    );
}

/// The primary and optional secondary behind a breaker.
#[derive(Clone)]
pub struct Router {
    primary: Arc<dyn Provider>,
    secondary: Option<Arc<dyn Provider>>,
    breaker: Arc<Mutex<Breaker>>,
    attempts: u32,
    retry_base: Duration,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("primary", &self.primary.name())
            .field("secondary", &self.secondary.as_ref().map(|s| s.name()))
            .finish_non_exhaustive()
    }
}

impl Router {
    /// Routes between `primary` and `secondary`.
    pub fn new(
        primary: Arc<dyn Provider>,
        secondary: Option<Arc<dyn Provider>>,
        config: BreakerConfig,
    ) -> Self {
        model_metrics()
            .breaker
            .record(0, &[KeyValue::new("gen_ai.provider.name", primary.name())]);
        Self {
            primary,
            secondary,
            breaker: Arc::new(Mutex::new(Breaker {
                state: BreakerState::Closed { failures: 0 },
                threshold: config.failure_threshold,
                cooldown: config.cooldown,
            })),
            attempts: config.attempts,
            retry_base: config.retry_base,
        }
    }

    /// The breaker's current state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .state
    }

    /// The primary's default model.
    pub fn primary_model(&self) -> &str {
        self.primary.model_id()
    }

    /// Model ids a request may name: each provider's default.
    pub fn known_models(&self) -> Vec<String> {
        let mut models = vec![self.primary.model_id().to_owned()];
        if let Some(secondary) = &self.secondary {
            models.push(secondary.model_id().to_owned());
        }
        models
    }

    fn with_breaker<T>(&self, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        let before = breaker_value(breaker.state);
        let result = f(&mut breaker);
        let after = breaker_value(breaker.state);
        drop(breaker);
        if before != after {
            let metrics = model_metrics();
            let provider = [KeyValue::new("gen_ai.provider.name", self.primary.name())];
            metrics.breaker.record(after, &provider);
            if after == 2 {
                metrics.opened.add(1, &provider);
            }
        }
        result
    }

    /// Streams `request` from the provider the breaker picks, starting with
    /// [`ModelEvent::Started`] naming the model that answers. A request
    /// naming the secondary's model goes to the secondary only.
    pub fn stream(&self, request: ModelRequest) -> EventStream {
        let router = self.clone();
        Box::pin(async_stream::stream! {
            let pinned_secondary = match (&request.model_override, &router.secondary) {
                (Some(model), Some(secondary)) => secondary.model_id() == model && router.primary.model_id() != model,
                _ => false,
            };
            let mut request = request;
            if request.model_override.as_deref() == Some(router.primary.model_id()) {
                request.model_override = None;
            }
            let mut plan: Vec<(Arc<dyn Provider>, bool, bool)> = Vec::new();
            if pinned_secondary {
                request.model_override = None;
                if let Some(secondary) = &router.secondary {
                    plan.push((secondary.clone(), false, false));
                }
            } else {
                let route = router.with_breaker(|b| b.route(Instant::now()));
                match route {
                    Route::Primary { probe } => plan.push((router.primary.clone(), true, probe)),
                    Route::Secondary => tracing::info!(primary = router.primary.name(), "breaker open, using the secondary"),
                }
                if let Some(secondary) = &router.secondary {
                    plan.push((secondary.clone(), false, false));
                } else if route == Route::Secondary {
                    // No secondary: the primary is all there is.
                    plan.push((router.primary.clone(), true, false));
                }
            }
            let mut last_error = ProviderError::new(ErrorKind::Unavailable, "no provider configured");
            for (provider, is_primary, probe) in plan {
                let mut secondary_request = request.clone();
                if !is_primary {
                    secondary_request.model_override = None;
                }
                let started = Instant::now();
                match router.first_output(provider.as_ref(), secondary_request).await {
                    Ok((first, mut rest)) => {
                        if is_primary {
                            router.with_breaker(Breaker::success);
                        }
                        let model_id = request.model_override.clone().filter(|_| is_primary).unwrap_or_else(|| provider.model_id().to_owned());
                        // Labelled with the provider's configured model, a
                        // bounded set whatever a request names.
                        model_metrics().ttft.record(
                            started.elapsed().as_secs_f64(),
                            &[
                                KeyValue::new("gen_ai.provider.name", provider.name()),
                                KeyValue::new("gen_ai.request.model", provider.model_id().to_owned()),
                            ],
                        );
                        if let ModelEvent::Usage(usage) = &first {
                            record_usage(provider.as_ref(), usage);
                        }
                        yield Ok(ModelEvent::Started { model_id });
                        yield Ok(first);
                        while let Some(item) = rest.next().await {
                            match item {
                                Ok(event) => {
                                    if let ModelEvent::Usage(usage) = &event {
                                        record_usage(provider.as_ref(), usage);
                                    }
                                    yield Ok(event)
                                }
                                Err(error) => {
                                    record_error(provider.as_ref(), &error, "after_output");
                                    tracing::warn!(provider = provider.name(), error = %error, "model stream failed after output");
                                    if is_primary {
                                        router.with_breaker(|b| b.failure(Instant::now(), probe));
                                    }
                                    yield Err(error);
                                    return;
                                }
                            }
                        }
                        return;
                    }
                    Err(error) => {
                        record_error(provider.as_ref(), &error, "before_output");
                        tracing::warn!(provider = provider.name(), error = %error, "model call failed before output");
                        if is_primary {
                            if error.retryable() {
                                router.with_breaker(|b| b.failure(Instant::now(), probe));
                            } else {
                                // It answered: the primary is up, the request was bad.
                                router.with_breaker(Breaker::success);
                            }
                        }
                        let retryable = error.retryable();
                        last_error = error;
                        if !retryable {
                            break;
                        }
                    }
                }
            }
            yield Err(last_error);
        })
    }

    /// Calls `provider` until it yields its first event, retrying failures
    /// that may pass; returns that event and the rest of the stream.
    async fn first_output(
        &self,
        provider: &dyn Provider,
        request: ModelRequest,
    ) -> Result<(ModelEvent, EventStream), ProviderError> {
        let mut delay = self.retry_base;
        let mut attempt = 1;
        loop {
            let model = request
                .model_override
                .clone()
                .unwrap_or_else(|| provider.model_id().to_owned());
            let mut stream =
                super::traced(provider.name(), &model, provider.stream(request.clone()));
            let error = match stream.next().await {
                Some(Ok(event)) => return Ok((event, stream)),
                Some(Err(error)) => error,
                None => ProviderError::new(ErrorKind::Failed, "the model stream ended empty"),
            };
            if !error.retryable() || attempt >= self.attempts {
                return Err(error);
            }
            tracing::info!(provider = provider.name(), attempt, error = %error, "retrying model call");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::VecDeque;

    use super::*;
    use crate::provider::{StopReason, Usage};

    type Outcome = Result<Vec<Result<ModelEvent, ProviderError>>, ProviderError>;

    /// A provider answering from a queue of canned outcomes (unit tests of
    /// the routing logic; the wire is tested against the fakes).
    struct Canned {
        name: &'static str,
        outcomes: Mutex<VecDeque<Outcome>>,
        calls: Mutex<u32>,
    }

    impl Canned {
        fn new(name: &'static str) -> Arc<Self> {
            Arc::new(Self {
                name,
                outcomes: Mutex::new(VecDeque::new()),
                calls: Mutex::new(0),
            })
        }
        fn push(&self, outcome: Outcome) {
            self.outcomes.lock().unwrap().push_back(outcome);
        }
        fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }
    }

    impl Provider for Canned {
        fn name(&self) -> &'static str {
            self.name
        }
        fn model_id(&self) -> &str {
            self.name
        }
        fn stream(&self, _request: ModelRequest) -> EventStream {
            *self.calls.lock().unwrap() += 1;
            let outcome = self
                .outcomes
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| {
                    Ok(vec![
                        Ok(ModelEvent::Text("ok".into())),
                        Ok(ModelEvent::Stop(StopReason::EndTurn)),
                    ])
                });
            let items = match outcome {
                Ok(items) => items,
                Err(error) => vec![Err(error)],
            };
            Box::pin(futures::stream::iter(items))
        }
    }

    fn config(threshold: u32, cooldown: Duration) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: threshold,
            cooldown,
            attempts: 2,
            retry_base: Duration::from_millis(1),
        }
    }

    fn throttled() -> ProviderError {
        ProviderError::new(ErrorKind::Throttled, "slow down")
    }

    async fn collect(router: &Router) -> Vec<Result<ModelEvent, ProviderError>> {
        router.stream(ModelRequest::default()).collect().await
    }

    /// The sum of the samples of `name` with all of `labels`.
    fn sample(name: &str, labels: &[&str]) -> f64 {
        treven_mesh::metrics::render()
            .lines()
            .filter(|l| l.split([' ', '{']).next() == Some(name))
            .filter(|l| labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    #[tokio::test]
    async fn model_calls_record_tokens_errors_time_to_first_token_and_the_breaker() {
        // Names of their own: other tests of this binary record too.
        let primary = Canned::new("metered-primary");
        let secondary = Canned::new("metered-secondary");
        let router = Router::new(
            primary.clone(),
            Some(secondary.clone()),
            config(1, Duration::from_secs(60)),
        );
        let p = r#"gen_ai_provider_name="metered-primary""#;
        assert_eq!(sample("treven_model_breaker_state", &[p]), 0.0);
        primary.push(Ok(vec![
            Ok(ModelEvent::Text("hi".into())),
            Ok(ModelEvent::Usage(Usage {
                input_tokens: 12,
                output_tokens: 5,
                cache_read_tokens: 3,
                cache_write_tokens: 0,
            })),
            Ok(ModelEvent::Stop(StopReason::EndTurn)),
        ]));
        collect(&router).await;
        let tokens = |kind: &str| {
            sample(
                "treven_model_tokens_total",
                &[p, &format!(r#"gen_ai_token_type="{kind}""#)],
            )
        };
        assert_eq!(
            (
                tokens("input"),
                tokens("output"),
                tokens("cache_read"),
                tokens("cache_write")
            ),
            (12.0, 5.0, 3.0, 0.0)
        );
        assert_eq!(
            sample("gen_ai_server_time_to_first_token_seconds_count", &[p]),
            1.0
        );

        // One request failing on the primary (both attempts) opens the breaker.
        primary.push(Err(throttled()));
        primary.push(Err(throttled()));
        collect(&router).await;
        assert!(matches!(router.breaker_state(), BreakerState::Open { .. }));
        assert_eq!(
            sample(
                "treven_model_errors_total",
                &[p, r#"error_type="throttled""#, r#"stage="before_output""#]
            ),
            1.0
        );
        assert_eq!(sample("treven_model_breaker_state", &[p]), 2.0);
        assert_eq!(sample("treven_model_breaker_opened_total", &[p]), 1.0);
        // The secondary answered it.
        assert_eq!(
            sample(
                "gen_ai_server_time_to_first_token_seconds_count",
                &[r#"gen_ai_provider_name="metered-secondary""#]
            ),
            1.0
        );
    }

    #[tokio::test]
    async fn breaker_opens_then_half_open_probe_closes_it() {
        let primary = Canned::new("primary");
        let secondary = Canned::new("secondary");
        let router = Router::new(
            primary.clone(),
            Some(secondary.clone()),
            config(2, Duration::from_millis(50)),
        );
        for _ in 0..4 {
            primary.push(Err(throttled()));
        }
        // Two requests, each failing twice on the primary, then served by the secondary.
        for _ in 0..2 {
            let events = collect(&router).await;
            assert_eq!(
                events[0].as_ref().unwrap(),
                &ModelEvent::Started {
                    model_id: "secondary".into()
                }
            );
        }
        assert_eq!(primary.calls(), 4);
        assert!(matches!(router.breaker_state(), BreakerState::Open { .. }));
        // Open: straight to the secondary.
        collect(&router).await;
        assert_eq!(primary.calls(), 4);
        tokio::time::sleep(Duration::from_millis(60)).await;
        // Half-open probe succeeds on the primary and closes the breaker.
        let events = collect(&router).await;
        assert_eq!(
            events[0].as_ref().unwrap(),
            &ModelEvent::Started {
                model_id: "primary".into()
            }
        );
        assert_eq!(router.breaker_state(), BreakerState::Closed { failures: 0 });
    }

    #[tokio::test]
    async fn failed_probe_reopens_and_invalid_requests_do_not_switch() {
        let primary = Canned::new("primary");
        let secondary = Canned::new("secondary");
        let router = Router::new(
            primary.clone(),
            Some(secondary.clone()),
            config(1, Duration::from_millis(20)),
        );
        primary.push(Err(throttled()));
        primary.push(Err(throttled()));
        collect(&router).await;
        assert!(matches!(router.breaker_state(), BreakerState::Open { .. }));
        tokio::time::sleep(Duration::from_millis(30)).await;
        primary.push(Err(throttled()));
        primary.push(Err(throttled()));
        collect(&router).await;
        assert!(
            matches!(router.breaker_state(), BreakerState::Open { .. }),
            "probe failed"
        );

        let router = Router::new(
            primary.clone(),
            Some(secondary.clone()),
            config(3, Duration::from_secs(5)),
        );
        let before = secondary.calls();
        primary.push(Err(ProviderError::new(ErrorKind::Invalid, "bad request")));
        let events = collect(&router).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].as_ref().unwrap_err().kind, ErrorKind::Invalid);
        assert_eq!(
            secondary.calls(),
            before,
            "an invalid request is not retried elsewhere"
        );
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_the_cooldown() {
        let mut breaker = Breaker {
            state: BreakerState::Closed { failures: 0 },
            threshold: 1,
            cooldown: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        breaker.failure(t0, false);
        assert_eq!(breaker.route(t0), Route::Secondary);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(breaker.route(t1), Route::Primary { probe: true });
        // The probe's caller went away: others use the secondary meanwhile…
        assert_eq!(breaker.route(t1 + Duration::from_secs(1)), Route::Secondary);
        // …until the cooldown has passed again, when a new probe goes.
        assert_eq!(
            breaker.route(t1 + Duration::from_secs(10)),
            Route::Primary { probe: true }
        );
        breaker.success();
        assert_eq!(
            breaker.route(t1 + Duration::from_secs(11)),
            Route::Primary { probe: false }
        );
    }

    #[tokio::test]
    async fn an_error_after_output_is_not_switched() {
        let primary = Canned::new("primary");
        let secondary = Canned::new("secondary");
        let router = Router::new(
            primary.clone(),
            Some(secondary.clone()),
            config(3, Duration::from_secs(5)),
        );
        primary.push(Ok(vec![
            Ok(ModelEvent::Text("Hel".into())),
            Err(ProviderError::new(ErrorKind::Unavailable, "gone")),
        ]));
        let events = collect(&router).await;
        assert_eq!(events.len(), 3);
        assert_eq!(events[1].as_ref().unwrap(), &ModelEvent::Text("Hel".into()));
        assert!(events[2].is_err());
        assert_eq!(secondary.calls(), 0);
        let _ = Usage::default();
    }
}
