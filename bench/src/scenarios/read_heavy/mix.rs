//! The request mix, sent to either side: which request a sequence number
//! is, and each side's worker, which records every request's latency by
//! kind (from its intended start) and, on Parallax's side, each write's
//! staleness: from its acknowledgement until the carts view has absorbed
//! it (`Freshness::wait` on the command's consistency token, woken by the
//! projector's commit, as `?consistent_with=` waits).

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parallax_core::{partition_for, Aggregate, ConsistencyToken};
use parallax_runtime::Freshness;
use serde::Serialize;
use shop::commands::ShopCommands;
use shop_domain::Cart;
use shop_read::queries::answered_by;
use shop_read::ShopQueries;
use sqlx::PgPool;
use tokio::time::Instant;

use super::relational;
use crate::load::{Target, Worker};
use crate::stats::Latencies;
use crate::workload::{self, CartOp, CartPlan};

/// How long a write's staleness is waited for at most.
const STALENESS_WAIT: Duration = Duration::from_secs(30);

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) enum Kind {
    /// A cart command: add an item, or check out.
    Write,
    /// A customer's newest orders with their lines and names.
    CustomerOrders,
    /// A cart with names and prices.
    Cart,
    /// Units and revenue per product.
    Sales,
}

/// Every kind, in the order of [`Recorded`]'s slots.
pub(super) const KINDS: [Kind; 4] = [Kind::Write, Kind::CustomerOrders, Kind::Cart, Kind::Sales];

/// The mix, per mille of requests: writes and sales reports; the rest is
/// half customers' orders, half carts.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Mix {
    pub(super) writes: u64,
    pub(super) sales: u64,
}

impl Mix {
    /// The kind of request `seq`. Each block of 1,000 requests has the
    /// mix's counts exactly, spread over the block (617 is prime to 1,000).
    fn kind(&self, seq: u64) -> Kind {
        let at = (seq % 1000).wrapping_mul(617) % 1000;
        let reads = 1000 - self.writes - self.sales;
        if at < self.writes {
            Kind::Write
        } else if at < self.writes + self.sales {
            Kind::Sales
        } else if at < self.writes + self.sales + reads / 2 {
            Kind::CustomerOrders
        } else {
            Kind::Cart
        }
    }
}

/// Which keys the reads take: customers `u0…`, the backlog's carts `k0…`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Keys {
    pub(super) customers: u64,
    pub(super) carts: u64,
    /// Orders per page of a customer's orders.
    pub(super) orders_page: usize,
    /// Products per page of the sales report.
    pub(super) sales_page: usize,
}

/// Latencies by kind, and writes' staleness.
#[derive(Default)]
pub(super) struct Recorded {
    kinds: Mutex<[Latencies; 4]>,
    staleness: Mutex<Latencies>,
    waiting: AtomicUsize,
    stale_failures: AtomicU64,
}

impl Recorded {
    fn record(&self, kind: Kind, latency: Duration) {
        let slot = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        self.kinds.lock().expect("not poisoned")[slot].record(latency);
    }

    /// Waits (bounded) until every write's staleness is known; returns the
    /// latencies by kind, the staleness, and the writes never seen in the view.
    pub(super) async fn finish(&self) -> ([Latencies; 4], Latencies, u64) {
        let deadline = Instant::now() + STALENESS_WAIT;
        while self.waiting.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let kinds = std::mem::take(&mut *self.kinds.lock().expect("not poisoned"));
        let staleness = std::mem::take(&mut *self.staleness.lock().expect("not poisoned"));
        let unseen =
            self.stale_failures.swap(0, Ordering::AcqRel) + self.waiting.load(Ordering::Acquire) as u64;
        (kinds, staleness, unseen)
    }
}

/// What both sides share: the mix, the keys, the cart plan of the writes
/// (its own sequence, so that each cart gets its items and then its checkout).
#[derive(Clone)]
pub(super) struct Common {
    pub(super) mix: Mix,
    pub(super) keys: Keys,
    pub(super) plan: CartPlan,
    pub(super) writes: Arc<AtomicU64>,
    pub(super) recorded: Arc<Recorded>,
}

impl Common {
    fn customer(&self, seq: u64) -> String {
        format!("u{}", seq % self.keys.customers.max(1))
    }

    fn cart(&self, seq: u64) -> String {
        format!("k{}", seq % self.keys.carts.max(1))
    }
}

/// One side's answers to the four kinds of request.
pub(super) trait Answers: Clone + Send + Sync + 'static {
    /// Sends a cart command; the common part records nothing of it but its latency.
    fn write(&self, op: &CartOp) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// A customer's newest `page` orders.
    fn customer_orders(&self, customer: &str, page: usize)
        -> impl Future<Output = anyhow::Result<()>> + Send;
    /// A cart.
    fn cart(&self, cart_id: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Sales of the first `page` products.
    fn sales(&self, page: usize) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A side under the mix: each worker a clone.
#[derive(Clone)]
pub(super) struct Mixed<A> {
    pub(super) answers: A,
    pub(super) common: Common,
}

impl<A: Answers> Target for Mixed<A> {
    type Worker = Mixed<A>;

    async fn worker(&self) -> anyhow::Result<Mixed<A>> {
        Ok(self.clone())
    }
}

impl<A: Answers> Worker for Mixed<A> {
    async fn call(&mut self, seq: u64, intended: Instant) -> anyhow::Result<()> {
        let c = &self.common;
        let kind = c.mix.kind(seq);
        match kind {
            Kind::Write => self.answers.write(&c.plan.op(c.writes.fetch_add(1, Ordering::Relaxed))).await?,
            Kind::CustomerOrders => {
                self.answers.customer_orders(&c.customer(seq), c.keys.orders_page).await?
            }
            Kind::Cart => self.answers.cart(&c.cart(seq)).await?,
            Kind::Sales => self.answers.sales(c.keys.sales_page).await?,
        }
        c.recorded.record(kind, intended.elapsed());
        Ok(())
    }
}

/// The normalized schema, through a pool of the bench.
#[derive(Clone)]
pub(super) struct Relational {
    pub(super) pool: PgPool,
}

impl Answers for Relational {
    async fn write(&self, op: &CartOp) -> anyhow::Result<()> {
        relational::execute(&self.pool, op).await
    }

    async fn customer_orders(&self, customer: &str, page: usize) -> anyhow::Result<()> {
        relational::customer_orders(&self.pool, customer, i64::try_from(page)?).await.map(drop)
    }

    async fn cart(&self, cart_id: &str) -> anyhow::Result<()> {
        relational::cart(&self.pool, cart_id).await.map(drop)
    }

    async fn sales(&self, page: usize) -> anyhow::Result<()> {
        relational::sales(&self.pool, i64::try_from(page)?).await.map(drop)
    }
}

/// Parallax: commands through `ShopCommands`, reads through `ShopQueries`
/// on the views; each write's staleness recorded into `recorded`.
#[derive(Clone)]
pub(super) struct Parallax {
    pub(super) commands: Arc<ShopCommands>,
    pub(super) queries: ShopQueries,
    pub(super) freshness: Freshness,
    pub(super) partitions: u32,
    pub(super) recorded: Arc<Recorded>,
}

impl Answers for Parallax {
    async fn write(&self, op: &CartOp) -> anyhow::Result<()> {
        let executed = workload::execute(&self.commands, op).await?;
        let acked = Instant::now();
        let partition = partition_for(&Cart::stream_id(op.cart_id()), self.partitions);
        self.staleness(ConsistencyToken::at(partition, executed.position()), acked);
        Ok(())
    }

    async fn customer_orders(&self, customer: &str, page: usize) -> anyhow::Result<()> {
        self.queries.customer_orders(customer, page, None).await.map(drop).map_err(Into::into)
    }

    async fn cart(&self, cart_id: &str) -> anyhow::Result<()> {
        self.queries.cart(cart_id).await.map(drop).map_err(Into::into)
    }

    async fn sales(&self, page: usize) -> anyhow::Result<()> {
        self.queries.sales(page, None).await.map(drop).map_err(Into::into)
    }
}

impl Parallax {
    /// Records, in a task of its own, how long after `acked` the carts
    /// view absorbs `token`.
    fn staleness(&self, token: ConsistencyToken, acked: Instant) {
        let recorded = self.recorded.clone();
        let freshness = self.freshness.clone();
        recorded.waiting.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            match freshness.wait(answered_by::CARTS, token, STALENESS_WAIT).await {
                Ok(()) => recorded.staleness.lock().expect("not poisoned").record(acked.elapsed()),
                Err(_) => {
                    recorded.stale_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            recorded.waiting.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_of_a_thousand_has_the_mix() {
        let mix = Mix { writes: 50, sales: 10 };
        let mut counts = [0; 4];
        for seq in 3000..4000 {
            counts[KINDS.iter().position(|k| *k == mix.kind(seq)).unwrap()] += 1;
        }
        assert_eq!(counts, [50, 470, 470, 10]);
        // Spread: no more than two writes among ten consecutive requests.
        assert!((0..990).all(|s| (s..s + 10).filter(|&q| mix.kind(q) == Kind::Write).count() <= 2));
    }
}
