//! Metrics, traces and readiness of one shop process.
//!
//! **Metrics** go through the `metrics` facade into a Prometheus recorder of
//! this process's own ([`Metrics`]), rendered in the text format at
//! `/metrics`. The recorder is not installed globally: each
//! [`crate::start`] has its own, so several shops in one process (the tests)
//! do not mix their numbers; adapters take their handles from it when they
//! are opened inside [`Metrics::scope`]. What the process records:
//!
//! | series | kind | labels | from |
//! |---|---|---|---|
//! | `shop_command_duration_seconds` | histogram | `command`, `outcome` (`ok`, `refused`, `failed`) | the command API |
//! | `http_server_request_duration_seconds` | histogram | `method`, `route` (the matched route, `unmatched` for none), `status` | every HTTP request |
//! | `parallax_event_store_group_size` | histogram | `store` (`sqlite`, `postgres`) | each group commit of the event store |
//! | `parallax_event_store_head` | gauge | | the event store's head position (processes that open it) |
//! | `parallax_relay_active` | gauge | `relay` | 1 while this process's relay holds the lease |
//! | `parallax_relay_lag` | gauge | `relay` | head − last position published (0 on standby) |
//! | `parallax_projector_event_lag_seconds` | histogram | `projection` | each event a projector of this process applied: from its `recorded_at` to the commit of its batch into the views |
//! | `parallax_projector_lag` | gauge | `projection`, `partition` | events (embedded) or Kafka messages a projector of this process has yet to absorb in a partition it owns |
//! | `parallax_projection_dead_letters` | gauge | `projection` | dead letters in the read store (processes with projector or query role) |
//! | `parallax_process_dead_letters` | gauge | `manager` | events a process manager parked in the write DB: a command refused for good (processes with the saga role) |
//!
//! Gauges are set when `/metrics` is read (from the workers' status boards
//! and a few cheap queries); one that was not set within a second before
//! (a partition handed to another process) drops out.
//!
//! **Traces**: a command runs in the W3C trace its request's `traceparent`
//! header names (a new one without, or with an invalid one); its events
//! carry it in their metadata, the relay sends it as the Kafka `traceparent`
//! header, and the projector applies each event in a `project` span with the
//! `trace_id` (see `parallax_runtime::projector`).
//!
//! **Readiness** (`/ready`) is decided per role in `http::ops_api`; this
//! module keeps what it looks at ([`Telemetry`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;
use parallax_runtime::{Progress, WorkerStatus};

use crate::config::Role;

/// Histogram buckets of durations, in seconds.
const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Histogram buckets of the events' lag from their append to their view,
/// in seconds: finer around the 1 s that `bench pipeline` holds p99 under.
const EVENT_LAG_BUCKETS: &[f64] = &[
    0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
    10.0, 30.0, 60.0,
];
/// Histogram buckets of group commit sizes, in requests.
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Series names.
pub mod names {
    /// Command latency.
    pub const COMMAND_DURATION: &str = "shop_command_duration_seconds";
    /// HTTP request latency.
    pub const HTTP_DURATION: &str = "http_server_request_duration_seconds";
    /// Requests per group commit (recorded by the event stores).
    pub const GROUP_SIZE: &str = "parallax_event_store_group_size";
    /// Each applied event's lag from its append to its view (recorded by the projectors).
    pub const EVENT_LAG: &str = parallax_runtime::projector::EVENT_LAG;
    /// The event store's head position.
    pub const HEAD: &str = "parallax_event_store_head";
    /// Whether the relay holds the lease.
    pub const RELAY_ACTIVE: &str = "parallax_relay_active";
    /// Head − last position published.
    pub const RELAY_LAG: &str = "parallax_relay_lag";
    /// Records a projector has yet to absorb in a partition.
    pub const PROJECTOR_LAG: &str = "parallax_projector_lag";
    /// Dead letters of a projection.
    pub const DEAD_LETTERS: &str = "parallax_projection_dead_letters";
    /// Events a process manager parked.
    pub const PROCESS_DEAD_LETTERS: &str = "parallax_process_dead_letters";
    /// Whether a worker loop's last step failed.
    pub const WORKER_FAILING: &str = "parallax_worker_failing";
}

/// This process's metrics: a Prometheus recorder and its handle.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Metrics {
    /// A fresh recorder with the shop's buckets, and every series described.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(names::GROUP_SIZE.into()), GROUP_BUCKETS))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(names::EVENT_LAG.into()), EVENT_LAG_BUCKETS))
            .expect("the bucket lists are not empty")
            // Gauges are set at each scrape: one not set since is gone.
            .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(1)));
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let metrics = Self { recorder, handle };
        metrics.scope(describe);
        metrics
    }

    /// Runs `f` with this recorder as the `metrics` facade's recorder (on
    /// this thread, for the duration of the call): handles registered inside
    /// (an event store's, say) record here.
    pub fn scope<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// Records a command's latency.
    pub fn command(&self, command: &'static str, outcome: &'static str, elapsed: Duration) {
        self.scope(|| {
            metrics::histogram!(names::COMMAND_DURATION, "command" => command, "outcome" => outcome)
                .record(elapsed)
        });
    }

    /// Records an HTTP request's latency.
    pub fn http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let labels =
            [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
        self.scope(|| metrics::histogram!(names::HTTP_DURATION, &labels).record(elapsed));
    }

    /// Sets a gauge.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, String)], value: f64) {
        self.scope(|| metrics::gauge!(name, labels).set(value));
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram buffers and drops idle series; call every few seconds.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn describe() {
    use metrics::Unit;
    metrics::describe_histogram!(names::COMMAND_DURATION, Unit::Seconds, "Command latency, by command type");
    metrics::describe_histogram!(names::HTTP_DURATION, Unit::Seconds, "HTTP request latency");
    metrics::describe_histogram!(
        names::GROUP_SIZE,
        "Requests committed together in one event store transaction"
    );
    metrics::describe_histogram!(
        names::EVENT_LAG,
        Unit::Seconds,
        "Lag of each event a projector applied, from its recorded_at to its batch's commit"
    );
    metrics::describe_gauge!(names::HEAD, "Position of the newest event in the event store");
    metrics::describe_gauge!(names::RELAY_ACTIVE, "1 while this process's relay holds the lease");
    metrics::describe_gauge!(names::RELAY_LAG, "Events committed but not yet published by the relay");
    metrics::describe_gauge!(
        names::PROJECTOR_LAG,
        "Records of a source partition a projector of this process has yet to absorb"
    );
    metrics::describe_gauge!(names::DEAD_LETTERS, "Events a projection could not apply");
    metrics::describe_gauge!(
        names::WORKER_FAILING,
        "1 while a worker loop (relay, saga, projector) is failing, as /ready says why: a projector with a \
         partition stopped at a hole in the log stays failing until it is rebuilt"
    );
    metrics::describe_gauge!(
        names::PROCESS_DEAD_LETTERS,
        "Events a process manager parked: a command it sent was refused for good"
    );
}

/// What `/metrics` and `/ready` look at, besides the stores.
pub struct Telemetry {
    /// The recorder.
    pub metrics: Arc<Metrics>,
    /// The roles this process plays.
    pub roles: BTreeSet<Role>,
    /// The worker loops this process runs, by role.
    pub workers: Vec<(Role, Arc<WorkerStatus>)>,
    /// The projectors' checkpoints and lag.
    pub progress: Arc<Progress>,
    /// The query role is ready while every projection is at most this many
    /// positions behind the head.
    pub max_lag: u64,
}
