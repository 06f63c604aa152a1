//! The shop workload the command scenarios share: a catalog of products,
//! and the cart plan ([`bench_load::plan`]: a request's sequence number turned
//! into a cart command) sent through the shop's own code paths, in-process
//! or over HTTP.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use hyper::Method;
use parallax_runtime::{CommandContext, Executed};
use serde::Serialize;
use shop::commands::ShopCommands;
use shop_domain::{CartId, CustomerId, ProductCommand, Quantity, Sku};
use tokio::time::Instant;
use uuid::Uuid;

use crate::http::{Client, Conn};
use crate::load::{Target, Worker};

pub use bench_load::plan::{price_cents, product_name, sku, CartOp, CartPlan, Then};

/// Stock of every product: enough that no add-item is refused for stock.
const STOCK: i64 = 1_000_000_000;

/// The carts an add-item scenario fills: options those scenarios share.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct CartArgs {
    /// Cart slots, taken round-robin.
    #[arg(long, default_value_t = 10_000)]
    pub carts: u64,
    /// Products, registered first.
    #[arg(long, default_value_t = 100)]
    pub products: u64,
    /// Items each cart gets.
    #[arg(long, default_value_t = 4)]
    pub items_per_cart: u64,
}

impl CartArgs {
    /// The plan these carts follow: `then` after the last item, checkouts
    /// spread over `customers`.
    pub fn plan(&self, then: Then, customers: u64) -> CartPlan {
        CartPlan {
            carts: self.carts,
            products: self.products,
            items_per_cart: self.items_per_cart,
            then,
            customers,
        }
    }
}

/// Registers `count` products through the command side.
pub async fn register_products(commands: &ShopCommands, count: u64) -> anyhow::Result<()> {
    stream::iter(0..count)
        .map(|i| async move {
            let command = ProductCommand::Register {
                sku: Sku::parse(sku(i)).expect("a SKU of the rule"),
                name: product_name(i),
                price_cents: price_cents(i),
                stock: STOCK,
            };
            commands.product(&sku(i), command, &CommandContext::new()).await.map(drop)
        })
        .buffer_unordered(256)
        .try_collect::<()>()
        .await
        .context("register the products")
}

/// Registers `count` products over HTTP.
pub async fn register_products_http(client: &Client, count: u64) -> anyhow::Result<()> {
    let conns =
        stream::iter(0..64.min(count.max(1))).then(|_| client.connect()).try_collect::<Vec<_>>().await?;
    let per = count.div_ceil(conns.len() as u64);
    let tasks = conns.into_iter().enumerate().map(|(c, mut conn)| async move {
        for i in (c as u64 * per)..((c as u64 + 1) * per).min(count) {
            let body = serde_json::json!({
                "sku": sku(i), "name": product_name(i), "price_cents": price_cents(i), "stock": STOCK,
            });
            conn.expect_ok(Method::POST, "/api/products", Some(Bytes::from(body.to_string()))).await?;
        }
        anyhow::Ok(())
    });
    futures::future::try_join_all(tasks).await.context("register the products over HTTP")?;
    Ok(())
}

/// Sends one cart command in-process.
pub async fn execute(commands: &ShopCommands, op: &CartOp) -> anyhow::Result<Executed> {
    let context = CommandContext::new();
    let executed = match op {
        CartOp::AddItem { cart_id, sku, quantity } => {
            let (cart_id, sku) = (CartId::parse(cart_id.as_str())?, Sku::parse(sku.as_str())?);
            commands.add_item(&cart_id, &sku, Quantity::parse(*quantity)?, &context).await
        }
        CartOp::CheckOut { cart_id, customer_id } => {
            let (cart_id, customer_id) =
                (CartId::parse(cart_id.as_str())?, CustomerId::parse(customer_id.as_str())?);
            commands.check_out(&cart_id, &customer_id, None, Uuid::now_v7(), &context).await
        }
    };
    executed.with_context(|| format!("{op:?}"))
}

/// Sends one cart command over HTTP; returns the answer's body.
pub async fn send(conn: &mut Conn, op: &CartOp) -> anyhow::Result<Bytes> {
    let (path, body) = match op {
        CartOp::AddItem { cart_id, sku, quantity } => {
            (format!("/api/carts/{cart_id}/items"), serde_json::json!({ "sku": sku, "quantity": quantity }))
        }
        CartOp::CheckOut { cart_id, customer_id } => {
            (format!("/api/carts/{cart_id}/checkout"), serde_json::json!({ "customer_id": customer_id }))
        }
    };
    conn.expect_ok(Method::POST, &path, Some(Bytes::from(body.to_string()))).await
}

/// Cart commands in-process, through `ShopCommands`.
pub struct InProcess {
    /// The command side.
    pub commands: Arc<ShopCommands>,
    /// What to send.
    pub plan: CartPlan,
}

/// A task sending cart commands in-process.
pub struct InProcessWorker {
    commands: Arc<ShopCommands>,
    plan: CartPlan,
}

impl Target for InProcess {
    type Worker = InProcessWorker;

    async fn worker(&self) -> anyhow::Result<InProcessWorker> {
        Ok(InProcessWorker { commands: Arc::clone(&self.commands), plan: self.plan })
    }
}

impl Worker for InProcessWorker {
    async fn call(&mut self, seq: u64, _intended: Instant) -> anyhow::Result<()> {
        execute(&self.commands, &self.plan.op(seq)).await.map(drop)
    }
}

/// Cart commands over HTTP.
pub struct OverHttp {
    /// Makes the connections.
    pub client: Client,
    /// What to send.
    pub plan: CartPlan,
}

/// A connection sending cart commands.
pub struct OverHttpWorker {
    conn: Conn,
    plan: CartPlan,
}

impl Target for OverHttp {
    type Worker = OverHttpWorker;

    async fn worker(&self) -> anyhow::Result<OverHttpWorker> {
        Ok(OverHttpWorker { conn: self.client.connect().await?, plan: self.plan })
    }
}

impl Worker for OverHttpWorker {
    async fn call(&mut self, seq: u64, _intended: Instant) -> anyhow::Result<()> {
        send(&mut self.conn, &self.plan.op(seq)).await.map(drop)
    }
}

/// `GET path` over HTTP, one of `paths` per request (round-robin by sequence
/// number); a non-success answer is a failure.
pub struct Gets {
    /// Makes the connections.
    pub client: Client,
    /// The paths.
    pub paths: Arc<Vec<String>>,
}

/// A connection sending GETs.
pub struct GetsWorker {
    conn: Conn,
    paths: Arc<Vec<String>>,
}

impl Target for Gets {
    type Worker = GetsWorker;

    async fn worker(&self) -> anyhow::Result<GetsWorker> {
        Ok(GetsWorker { conn: self.client.connect().await?, paths: Arc::clone(&self.paths) })
    }
}

impl Worker for GetsWorker {
    async fn call(&mut self, seq: u64, _intended: Instant) -> anyhow::Result<()> {
        let path = &self.paths[(seq % self.paths.len() as u64) as usize];
        self.conn.expect_ok(Method::GET, path, None).await.map(drop)
    }
}

/// How many events the slowest projection is behind the event store's head
/// (`GET /api/admin/projections`).
pub async fn projection_lag(client: &Client) -> anyhow::Result<u64> {
    let (_, lag) = projections(&mut client.connect().await?).await?;
    Ok(lag)
}

async fn projections(conn: &mut Conn) -> anyhow::Result<(u64, u64)> {
    let body = conn.expect_ok(Method::GET, "/api/admin/projections", None).await?;
    let status: serde_json::Value = serde_json::from_slice(&body)?;
    let head = status["head"].as_u64().unwrap_or(0);
    let lag = status["projections"]
        .as_array()
        .map(|all| all.iter().map(|p| p["lag"].as_u64().unwrap_or(u64::MAX)).max().unwrap_or(0))
        .unwrap_or(u64::MAX);
    Ok((head, lag))
}

/// Waits until `GET /api/admin/projections` shows every projection at the
/// event store's head, with the head unchanged since the previous look
/// (20 ms before: the saga may still be appending); returns the head.
pub async fn wait_caught_up(client: &Client, timeout: Duration) -> anyhow::Result<u64> {
    let mut conn = client.connect().await?;
    let deadline = Instant::now() + timeout;
    let mut last_head = None;
    loop {
        let (head, lag) = projections(&mut conn).await?;
        if lag == 0 && last_head == Some(head) {
            return Ok(head);
        }
        last_head = (lag == 0).then_some(head);
        anyhow::ensure!(Instant::now() < deadline, "the projections did not catch up within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
