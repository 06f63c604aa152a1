//! A load run in another process: the bench writes a [`Request`] as JSON to
//! the process's standard input and reads its [`Answer`] as JSON from its
//! standard output; progress goes to standard error. The process makes its
//! target and calls [`run`], so the figures come from the same load
//! generator, measured the same way, as the bench's own.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::load::{self, Load, Search, Sequence, Target};
use crate::plan::CartPlan;
use crate::stats::Stats;

/// What the bench asks of the process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The database the target keeps its data in (one of its own, empty).
    pub postgres_url: String,
    /// Connections of the target's pool.
    pub pool_size: u32,
    /// Products in the catalog.
    pub products: u64,
    /// The commands to send.
    pub plan: CartPlan,
    /// Requests sent first, not measured (one per cart slot).
    pub warm_up: u64,
    /// The search's steps, limit, and the fixed-rate run's length.
    pub load: Load,
    /// Whether to search for the maximum.
    pub find_max: bool,
    /// The fixed-rate run, if any.
    pub fixed: Option<Fixed>,
}

/// A fixed-rate run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Fixed {
    /// Offered requests per second.
    pub rate: f64,
    /// Workers: requests in flight at most.
    pub concurrency: usize,
}

/// What the process measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// How long the warm-up took.
    pub warm_up: Duration,
    /// The search, if asked for.
    pub search: Option<Search>,
    /// The fixed-rate run, if asked for.
    pub fixed: Option<Stats>,
}

/// Runs what `request` asks of `target`: the warm-up (64 workers), the
/// search, then the fixed-rate run; `label` names the steps.
pub async fn run<T: Target>(label: &str, target: &T, request: &Request) -> anyhow::Result<Answer> {
    let sequence = Sequence::default();
    let warm_up = load::warm_up(target, request.warm_up, 64, &sequence).await?;
    let search = match request.find_max {
        true => Some(load::find_max(label, target, &request.load, &sequence).await?),
        false => None,
    };
    let fixed = match request.fixed {
        Some(fixed) => Some(
            load::fixed_rate(label, target, fixed.rate, fixed.concurrency, request.load.duration, &sequence)
                .await?,
        ),
        None => None,
    };
    Ok(Answer { warm_up, search, fixed })
}
