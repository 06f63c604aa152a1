//! The operations API, served by every process whatever its roles:
//! `/health` (the process is alive), `/ready` (its roles can serve; per
//! role, with the reasons, for a key with `admin`) and `/metrics`
//! (Prometheus text format; see [`crate::telemetry`] for the series).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Extension, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parallax_runtime::{WorkerReport, WorkerState};
use serde_json::{json, Value};

use super::access::Caller;
use super::ApiState;
use crate::config::Role;
use crate::lag;
use crate::saga::CheckoutSaga;
use crate::telemetry::{names, Metrics};

/// How long a probe waits for a store.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The Prometheus text format's media type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Alive: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, description = "`{\"status\": \"ok\"}`", content_type = "application/json")))]
pub async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// How long one readiness measurement answers `/ready`.
const MEASURED_FOR: Duration = Duration::from_secs(1);

/// The last readiness measurement: calls within `MEASURED_FOR` of it are
/// answered from it, and calls during a measurement wait for it.
#[derive(Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<Arc<Measured>>>,
}

struct Measured {
    at: Instant,
    ready: bool,
    /// `{"ready", "roles", "measured_at"}`.
    details: Value,
}

impl Readiness {
    async fn measure(&self, state: &ApiState) -> Arc<Measured> {
        let mut last = self.last.lock().await;
        if let Some(measured) = last.as_ref().filter(|measured| measured.at.elapsed() < MEASURED_FOR) {
            return measured.clone();
        }
        let measured = Arc::new(measure(state).await);
        *last = Some(measured.clone());
        measured
    }
}

/// 200 when every role of the process can serve, 503 otherwise; the body
/// is `{"ready": bool}`, and for a key with `admin` says, per role, whether
/// it is ready and why not. Calls within a second share one measurement.
#[utoipa::path(get, path = "/ready", tag = "ops", responses((status = 200, description = "Every role can serve: `{\"ready\": true}`; for `admin`, per role, why", content_type = "application/json"), (status = 503, description = "A role cannot serve: `{\"ready\": false}`; for `admin`, per role, why", content_type = "application/json")))]
pub async fn ready(State(state): State<Arc<ApiState>>, caller: Option<Extension<Caller>>) -> Response {
    let measured = state.readiness.measure(&state).await;
    let status = if measured.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if caller.is_some_and(|caller| caller.admin) {
        (status, Json(measured.details.clone())).into_response()
    } else {
        (status, Json(json!({ "ready": measured.ready }))).into_response()
    }
}

/// Asks every role of the process.
async fn measure(state: &ApiState) -> Measured {
    let mut roles = serde_json::Map::new();
    let mut all_ready = true;
    for &role in &state.telemetry.roles {
        let report = match role {
            Role::Command => command_ready(state).await,
            Role::Query => query_ready(state).await,
            Role::Relay | Role::Projector | Role::Saga => workers_ready(state, role),
        };
        all_ready &= report["ready"] == json!(true);
        roles.insert(role_name(role).to_owned(), report);
    }
    let measured_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Measured {
        at: Instant::now(),
        ready: all_ready,
        details: json!({ "ready": all_ready, "roles": roles, "measured_at": measured_at }),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Command => "command",
        Role::Relay => "relay",
        Role::Projector => "projector",
        Role::Saga => "saga",
        Role::Query => "query",
    }
}

/// Runs a store call with the probe's time limit; the error as text.
async fn probe<T, E: std::error::Error + 'static>(
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(parallax_runtime::error_chain(&error)),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

fn not_ready(reason: String) -> Value {
    json!({ "ready": false, "reason": reason })
}

/// Command: the event store answers.
async fn command_ready(state: &ApiState) -> Value {
    let Some(store) = &state.event_store else { return not_ready("the event store is not open".into()) };
    match probe(store.head()).await {
        Ok(head) => json!({ "ready": true, "head": head }),
        Err(error) => not_ready(format!("the event store does not answer: {error}")),
    }
}

/// Query: the read store answers and every projection is within the lag
/// bound in every partition (a stuck partition must not hide behind a
/// healthy one: [`crate::lag`]).
async fn query_ready(state: &ApiState) -> Value {
    let Some(views) = &state.read_store else { return not_ready("the read store is not open".into()) };
    let Some(log_ends) = &state.log_ends else { return not_ready("the log is not open".into()) };
    let ends = match probe(log_ends.read()).await {
        Ok(ends) => ends,
        Err(error) => return not_ready(error),
    };
    let max_lag = state.telemetry.max_lag;
    let mut projections = Vec::new();
    let mut behind = Vec::new();
    for projection in &state.projections {
        let name = projection.name();
        let checkpoints = match probe(views.checkpoints(name)).await {
            Ok(checkpoints) => checkpoints,
            Err(error) => return not_ready(format!("the read store does not answer: {error}")),
        };
        let partitions = lag::partitions(log_ends.by_offset(), &checkpoints, Some(&ends));
        let worst = lag::worst(&partitions).unwrap_or(u64::MAX);
        let ready = worst <= max_lag;
        for row in partitions.iter().filter(|row| row.lag.is_none_or(|lag| lag > max_lag)) {
            let lag = row.lag.map_or_else(|| "?".to_owned(), |lag| lag.to_string());
            behind.push(format!("{name} is {lag} behind in partition {}", row.partition));
        }
        let partitions: Vec<Value> = partitions
            .iter()
            .map(|row| json!({ "partition": row.partition, "position": row.position, "lag": row.lag }))
            .collect();
        projections.push(json!({ "name": name, "lag": worst, "ready": ready, "partitions": partitions }));
    }
    let mut report = json!({
        "ready": behind.is_empty(),
        "max_lag": max_lag,
        "projections": projections,
    });
    if !behind.is_empty() {
        report["reason"] = Value::String(format!("{} (the bound is {max_lag})", behind.join(", ")));
    }
    report
}

/// Relay, projector, saga: every loop of the role is running (or, for a
/// leased one, standing by); none is starting, failing or stopped. The
/// projector role runs one loop per projection (its serving generation's).
fn workers_ready(state: &ApiState, role: Role) -> Value {
    let telemetry = &state.telemetry;
    let reports: Vec<WorkerReport> = match role {
        Role::Projector => {
            let attached = telemetry.progress.workers();
            state
                .projections
                .iter()
                .map(|projection| match attached.get(projection.name()) {
                    Some(status) => status.report(),
                    None => WorkerReport {
                        kind: "projector",
                        name: projection.name().to_owned(),
                        state: WorkerState::Starting,
                        position: None,
                    },
                })
                .collect()
        }
        _ => telemetry.workers.iter().filter(|(of, _)| *of == role).map(|(_, s)| s.report()).collect(),
    };
    let mut reasons = Vec::new();
    let workers: Vec<Value> = reports
        .iter()
        .map(|report| {
            let mut worker =
                json!({ "kind": report.kind, "name": report.name, "state": report.state.name() });
            if let WorkerState::Failing(error) = &report.state {
                worker["error"] = Value::String(error.clone());
            }
            if !report.state.is_ready() {
                reasons.push(format!("{} {} is {}", report.kind, report.name, report.state.name()));
            }
            worker
        })
        .collect();
    let mut answer = json!({ "ready": reasons.is_empty(), "workers": workers });
    if reports.is_empty() {
        answer["note"] = Value::String(match role {
            Role::Relay => "no relay in the embedded shape: projectors tail the event store".into(),
            _ => format!("no {} loop runs here", role_name(role)),
        });
    }
    if !reasons.is_empty() {
        answer["reason"] = Value::String(reasons.join("; "));
    }
    answer
}

/// The Prometheus text exposition of this process's metrics, with its
/// gauges set now.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let telemetry = &state.telemetry;
    let metrics = &telemetry.metrics;
    let head = match &state.event_store {
        Some(store) => match probe(store.head()).await {
            Ok(head) => Some(head),
            Err(error) => {
                tracing::warn!(%error, "metrics: the event store's head is unknown");
                None
            }
        },
        None => None,
    };
    if let Some(head) = head {
        metrics.gauge(names::HEAD, &[], head as f64);
    }
    for (_, status) in &telemetry.workers {
        let report = status.report();
        if report.kind != "relay" {
            continue;
        }
        let labels = [("relay", report.name.clone())];
        let active = report.state == WorkerState::Running;
        metrics.gauge(names::RELAY_ACTIVE, &labels, if active { 1.0 } else { 0.0 });
        let lag = match (active, head, report.position) {
            (true, Some(head), Some(published)) => head.saturating_sub(published),
            _ => 0,
        };
        metrics.gauge(names::RELAY_LAG, &labels, lag as f64);
    }
    worker_gauges(telemetry);
    for (projection, partitions) in telemetry.progress.lag() {
        for (partition, lag) in partitions {
            let labels = [("projection", projection.clone()), ("partition", partition.to_string())];
            metrics.gauge(names::PROJECTOR_LAG, &labels, lag as f64);
        }
    }
    let keeps_views = telemetry.roles.contains(&Role::Projector) || telemetry.roles.contains(&Role::Query);
    if let (true, Some(views)) = (keeps_views, &state.read_store) {
        for projection in &state.projections {
            match probe(views.dead_letters(projection.name())).await {
                Ok(dead) => {
                    let labels = [("projection", projection.name().to_owned())];
                    metrics.gauge(names::DEAD_LETTERS, &labels, dead.len() as f64);
                }
                Err(error) => {
                    tracing::warn!(projection = projection.name(), %error, "metrics: dead letters unknown");
                }
            }
        }
    }
    if let (true, Some(events)) = (telemetry.roles.contains(&Role::Saga), &state.event_store) {
        match probe(events.parked(CheckoutSaga::NAME)).await {
            Ok(parked) => {
                let labels = [("manager", CheckoutSaga::NAME.to_owned())];
                metrics.gauge(names::PROCESS_DEAD_LETTERS, &labels, parked.len() as f64);
            }
            Err(error) => tracing::warn!(%error, "metrics: the saga's parked events unknown"),
        }
    }
    let mut response = metrics.render().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
    response
}

/// Whether each worker loop of this process (relay, saga, the serving
/// projectors) is failing: a projector with a partition stopped at a hole
/// in the log stays failing until it is rebuilt.
fn worker_gauges(telemetry: &crate::telemetry::Telemetry) {
    let projectors = telemetry.progress.workers().into_values();
    for status in telemetry.workers.iter().map(|(_, status)| Arc::clone(status)).chain(projectors) {
        let report = status.report();
        let failing = matches!(report.state, WorkerState::Failing(_));
        let labels = [("kind", report.kind.to_owned()), ("name", report.name)];
        telemetry.metrics.gauge(names::WORKER_FAILING, &labels, if failing { 1.0 } else { 0.0 });
    }
}

/// Middleware: records every request's latency by method, matched route
/// (never the raw path: `unmatched` for the fallback) and status.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics.http(
        method.as_str(),
        route.as_deref().unwrap_or("unmatched"),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
