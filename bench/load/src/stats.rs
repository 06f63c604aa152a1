//! Latency histograms (HdrHistogram, microseconds) and the figures a report
//! shows of one measured step.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies in microseconds, 1 µs to 10 minutes, three significant digits.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    /// Records one latency (beyond the range: counted as the maximum).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        self.0.saturating_record(micros);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Latencies) {
        self.0.add(&other.0).expect("histograms of the same bounds merge");
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The summary in milliseconds.
    pub fn summary(&self) -> Percentiles {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Percentiles {
            mean_ms: self.0.mean() / 1000.0,
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p90_ms: ms(self.0.value_at_quantile(0.90)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            p999_ms: ms(self.0.value_at_quantile(0.999)),
            max_ms: ms(self.0.max()),
        }
    }
}

/// A latency distribution, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// One measured step: a target at a concurrency (closed loop) or an offered
/// rate (open loop).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    /// What was measured.
    pub label: String,
    /// Workers (connections, tasks) in flight at most.
    pub concurrency: usize,
    /// Requests per second offered (open loop only).
    pub offered_per_sec: Option<f64>,
    /// Requests answered successfully.
    pub ok: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Open loop only: requests not sent because the run passed twice its
    /// duration (the system fell that far behind).
    pub unsent: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// From the first intended start to the last answer, seconds.
    pub elapsed_secs: f64,
    /// Successful requests per second.
    pub per_sec: f64,
    /// Latency of the successful requests.
    pub latency: Percentiles,
    /// Cores the whole machine kept busy on average meanwhile (every process).
    pub cpu_busy_cores: f64,
    /// Open loop only: the worst latency (ms) of the answers of each 100 ms
    /// of the run, space-separated — where stalls happened.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timeline: String,
}

impl Stats {
    /// The figures of a finished step.
    pub fn new(
        label: impl Into<String>,
        concurrency: usize,
        offered_per_sec: Option<f64>,
        latencies: &Latencies,
        errors: u64,
        first_error: Option<String>,
        elapsed: Duration,
    ) -> Self {
        let ok = latencies.len();
        let secs = elapsed.as_secs_f64().max(1e-9);
        Self {
            label: label.into(),
            concurrency,
            offered_per_sec,
            ok,
            errors,
            unsent: 0,
            first_error,
            elapsed_secs: secs,
            per_sec: ok as f64 / secs,
            latency: latencies.summary(),
            cpu_busy_cores: 0.0,
            timeline: String::new(),
        }
    }

    /// Failed requests as a fraction of all.
    pub fn error_rate(&self) -> f64 {
        let total = self.ok + self.errors;
        if total == 0 {
            return 0.0;
        }
        self.errors as f64 / total as f64
    }
}
