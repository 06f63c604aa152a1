//! # peer-cqrs-es
//!
//! The peer `commands-postgres` compares the shop with: the same cart
//! commands (the bench's cart plan: add items, check out) decided by a cart
//! aggregate written with cqrs-es ([`cart`]) and stored by postgres-es in
//! PostgreSQL, the way their documentation sets them up: `postgres_cqrs`
//! over a `PostgresEventRepository` on the `events` and `snapshots` tables of
//! their schema, no snapshots, no queries. A command loads the cart's events,
//! decides, and inserts its event in a transaction of its own.
//!
//! The bench runs this binary as a separate process with a
//! [`bench_load::remote::Request`] (JSON) on standard input, in a database of
//! its own; it answers with a [`bench_load::remote::Answer`] (JSON) on
//! standard output, measured by the bench's own load generator, in this
//! process: a command's latency is measured where it is sent, as the shop's
//! is in the bench process.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use bench_load::load::{Target, Worker};
use bench_load::plan::{CartOp, CartPlan};
use bench_load::remote::{self, Request};
use postgres_es::PostgresCqrs;
use sqlx::postgres::PgPoolOptions;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use uuid::Uuid;

mod cart;

use cart::{Cart, CartCommand, Catalog};

/// The tables postgres-es reads and writes (its documented setup): all
/// events of every aggregate in one table keyed by aggregate and sequence,
/// and snapshots (unused here, created as documented).
const SCHEMA: &str = "
CREATE TABLE events (
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL CHECK (sequence >= 0),
    event_type     text   NOT NULL,
    event_version  text   NOT NULL,
    payload        json   NOT NULL,
    metadata       json   NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE TABLE snapshots (
    aggregate_type   text   NOT NULL,
    aggregate_id     text   NOT NULL,
    last_sequence    bigint NOT NULL CHECK (last_sequence >= 0),
    current_snapshot bigint NOT NULL CHECK (current_snapshot >= 0),
    payload          json   NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);
";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut input = String::new();
    tokio::io::stdin().read_to_string(&mut input).await.context("read the request")?;
    let request: Request = serde_json::from_str(&input).context("parse the request")?;
    let pool = PgPoolOptions::new()
        .max_connections(request.pool_size.max(1))
        .connect(&request.postgres_url)
        .await
        .context("connect to PostgreSQL")?;
    sqlx::raw_sql(SCHEMA).execute(&pool).await.context("create the tables")?;
    let cqrs = Arc::new(postgres_es::postgres_cqrs(pool, vec![], Catalog::new(request.products)));
    let target = Peer { cqrs, plan: request.plan };
    let answer = remote::run("cqrs-es commands", &target, &request).await?;
    println!("{}", serde_json::to_string(&answer)?);
    Ok(())
}

/// Cart commands through cqrs-es.
struct Peer {
    cqrs: Arc<PostgresCqrs<Cart>>,
    plan: CartPlan,
}

impl Target for Peer {
    type Worker = Peer;

    async fn worker(&self) -> anyhow::Result<Peer> {
        Ok(Peer { cqrs: Arc::clone(&self.cqrs), plan: self.plan })
    }
}

impl Worker for Peer {
    async fn call(&mut self, seq: u64, _intended: Instant) -> anyhow::Result<()> {
        let op = self.plan.op(seq);
        let command = match op.clone() {
            CartOp::AddItem { cart_id, sku, quantity } => CartCommand::AddItem { cart_id, sku, quantity },
            CartOp::CheckOut { cart_id, customer_id } => {
                CartCommand::CheckOut { cart_id, order_id: Uuid::now_v7(), customer_id }
            }
        };
        self.cqrs
            .execute_with_metadata(op.cart_id(), command, metadata())
            .await
            .map_err(|error| anyhow::anyhow!("{op:?}: {error}"))
    }
}

/// The ids the shop stores with every event (correlation, causation,
/// command), so that the rows are about the same size.
fn metadata() -> HashMap<String, String> {
    ["correlation_id", "causation_id", "command_id"]
        .into_iter()
        .map(|key| (key.to_owned(), Uuid::now_v7().to_string()))
        .collect()
}
