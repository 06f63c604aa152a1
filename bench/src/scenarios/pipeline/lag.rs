//! The per-event lag, as the projector process records it: the histogram
//! `parallax_projector_event_lag_seconds` of its `/metrics` (one sample
//! per event applied, from the event's `recorded_at` to the commit of its
//! batch into the views), read before and after a run; the difference is
//! the run's events.

use std::collections::BTreeMap;

use hyper::Method;
use serde::Serialize;

use crate::http::Client;

/// The series.
const SERIES: &str = "parallax_projector_event_lag_seconds";

/// Cumulative bucket counts of the histogram, summed over the projections:
/// upper bound in seconds (`+Inf` as infinity) → events at or below it.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct LagHistogram {
    /// `(le, count)`, ascending by `le`.
    buckets: Vec<(f64, f64)>,
    /// Sum of the lags, seconds.
    sum: f64,
}

impl LagHistogram {
    /// Reads it from the `/metrics` of the process `client` talks to.
    pub(super) async fn scrape(client: &Client) -> anyhow::Result<Self> {
        let body = client.connect().await?.expect_ok(Method::GET, "/metrics", None).await?;
        Ok(Self::parse(&String::from_utf8_lossy(&body)))
    }

    fn parse(text: &str) -> Self {
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        let mut sum = 0.0;
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let value = || line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            if let Some(rest) = line.strip_prefix(SERIES) {
                if let Some(labels) = rest.strip_prefix("_bucket{") {
                    let Some(le) = label(labels, "le") else { continue };
                    let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
                    let entry = buckets.entry(le.to_bits()).or_insert((le, 0.0));
                    entry.1 += value();
                } else if rest.starts_with("_sum") {
                    sum += value();
                }
            }
        }
        let mut buckets: Vec<(f64, f64)> = buckets.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self { buckets, sum }
    }

    /// What was recorded between `earlier` and `self`.
    pub(super) fn since(&self, earlier: &LagHistogram) -> LagHistogram {
        let before = |le: f64| {
            earlier.buckets.iter().find(|(l, _)| l.to_bits() == le.to_bits()).map_or(0.0, |(_, n)| *n)
        };
        LagHistogram {
            buckets: self.buckets.iter().map(|&(le, n)| (le, n - before(le))).collect(),
            sum: self.sum - earlier.sum,
        }
    }

    /// Events counted.
    pub(super) fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |(_, n)| *n)
    }

    /// Mean lag, seconds.
    pub(super) fn mean(&self) -> f64 {
        crate::scenarios::ratio(self.sum, self.count())
    }

    /// The fraction of events whose lag was at most `le` seconds (a bucket bound).
    pub(super) fn fraction_within(&self, le: f64) -> f64 {
        let within =
            self.buckets.iter().filter(|(l, _)| *l <= le + 1e-12).map(|(_, n)| *n).fold(0.0, f64::max);
        crate::scenarios::ratio(within, self.count())
    }

    /// The `q` quantile in seconds, interpolated linearly within its bucket
    /// (so as precise as the buckets: 2, 5, 10, 20, 30, 50, 75, 100, 150,
    /// 200, 300, 500, 750 ms, 1, 1.5, 2, 3, 5, 10 s …); infinite if it lies
    /// beyond the last finite bound.
    pub(super) fn quantile(&self, q: f64) -> f64 {
        let total = self.count();
        if total <= 0.0 {
            return 0.0;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(le, n) in &self.buckets {
            if n >= rank {
                if le.is_infinite() {
                    return f64::INFINITY;
                }
                let within = n - below;
                let share = if within > 0.0 { (rank - below) / within } else { 1.0 };
                return lower + (le - lower) * share;
            }
            (lower, below) = (le, n);
        }
        f64::INFINITY
    }
}

/// The value of label `name` in `labels` (`a="x",le="0.5"} 12`).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')? + start;
    Some(&labels[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE parallax_projector_event_lag_seconds histogram
parallax_projector_event_lag_seconds_bucket{projection=\"carts\",le=\"0.01\"} 50
parallax_projector_event_lag_seconds_bucket{projection=\"carts\",le=\"0.1\"} 90
parallax_projector_event_lag_seconds_bucket{projection=\"carts\",le=\"1\"} 99
parallax_projector_event_lag_seconds_bucket{projection=\"carts\",le=\"+Inf\"} 100
parallax_projector_event_lag_seconds_sum{projection=\"carts\"} 4
parallax_projector_event_lag_seconds_count{projection=\"carts\"} 100
parallax_projector_event_lag_seconds_bucket{projection=\"orders\",le=\"0.01\"} 100
parallax_projector_event_lag_seconds_bucket{projection=\"orders\",le=\"0.1\"} 100
parallax_projector_event_lag_seconds_bucket{projection=\"orders\",le=\"1\"} 100
parallax_projector_event_lag_seconds_bucket{projection=\"orders\",le=\"+Inf\"} 100
parallax_projector_event_lag_seconds_sum{projection=\"orders\"} 1
";

    #[test]
    fn buckets_sum_over_projections_and_give_quantiles() {
        let lag = LagHistogram::parse(TEXT);
        assert_eq!(lag.count(), 200.0);
        assert!((lag.mean() - 0.025).abs() < 1e-9);
        assert!(lag.quantile(0.5) > 0.0 && lag.quantile(0.5) <= 0.01, "{}", lag.quantile(0.5));
        assert!(lag.quantile(0.99) <= 1.0 && lag.quantile(0.99) > 0.1);
        assert!(lag.quantile(0.999).is_infinite());
        assert!((lag.fraction_within(1.0) - 0.995).abs() < 1e-9);
        let none = lag.since(&lag);
        assert_eq!(none.count(), 0.0);
        assert_eq!(none.quantile(0.99), 0.0);
    }
}
