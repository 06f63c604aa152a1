//! The shop workload the command scenarios share: a catalog of products, and
//! a plan that turns a request's sequence number into a cart command.
//!
//! Carts are taken round-robin (`seq % carts`), so two requests in flight
//! touch the same cart only when more than `carts` are in flight: the load
//! measures throughput, not conflict retries. Each cart gets
//! `items_per_cart` items; then the slot either checks it out or leaves it,
//! and starts a new cart (`c{slot}-{generation}`; its first item loads a
//! stream that does not exist yet: a cold load). Slots are staggered, so the
//! mix of add-items, checkouts and new carts is the same at every moment,
//! and carts stay small, as real ones do. Product names are long enough that a
//! `cart.item_added` payload is about 200 bytes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use hyper::Method;
use parallax_runtime::{CommandContext, Executed};
use serde::Serialize;
use shop::commands::ShopCommands;
use shop_domain::ProductCommand;
use tokio::time::Instant;
use uuid::Uuid;

use crate::http::{Client, Conn};
use crate::load::{Target, Worker};

/// Stock of every product: enough that no add-item is refused for stock.
const STOCK: i64 = 1_000_000_000;

/// The SKU of product `i`.
pub fn sku(i: u64) -> String {
    format!("SKU-{i:05}")
}

/// The name of product `i`: about 110 characters.
pub fn product_name(i: u64) -> String {
    const KINDS: [&str; 6] = ["Keyboard", "Desk lamp", "Notebook", "Water bottle", "Backpack", "Headphones"];
    const COLORS: [&str; 5] = ["slate grey", "forest green", "ocean blue", "sand beige", "graphite black"];
    let kind = KINDS[(i % 6) as usize];
    let color = COLORS[(i % 5) as usize];
    let mut name = format!(
        "{kind} no. {i}, {color}, recycled materials, two-year warranty, free returns within thirty days"
    );
    while name.len() < 110 {
        name.push_str(" *");
    }
    name
}

/// The price of product `i`, cents.
pub fn price_cents(i: u64) -> i64 {
    499 + (i as i64 % 50) * 100
}

/// One cart command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartOp {
    /// Put units of a product in a cart.
    AddItem {
        /// The cart.
        cart_id: String,
        /// The product.
        sku: String,
        /// Units.
        quantity: i64,
    },
    /// Check a cart out.
    CheckOut {
        /// The cart.
        cart_id: String,
        /// Who buys.
        customer_id: String,
    },
}

impl CartOp {
    /// The cart.
    pub fn cart_id(&self) -> &str {
        match self {
            CartOp::AddItem { cart_id, .. } | CartOp::CheckOut { cart_id, .. } => cart_id,
        }
    }
}

/// What a cart slot does once its cart has its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Then {
    /// Check the cart out, then start a new one.
    Checkout,
    /// Leave it (an abandoned cart) and start a new one: add-items only.
    NewCart,
}

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

/// Which cart command request `seq` sends.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CartPlan {
    /// Cart slots, taken round-robin.
    pub carts: u64,
    /// Products the items are drawn from.
    pub products: u64,
    /// Items a cart gets (at least 1).
    pub items_per_cart: u64,
    /// What follows a cart's last item.
    pub then: Then,
    /// Customers the checkouts are spread over.
    pub customers: u64,
}

impl CartPlan {
    /// The command of request `seq`.
    pub fn op(&self, seq: u64) -> CartOp {
        let slot = seq % self.carts.max(1);
        let round = seq / self.carts.max(1);
        let items = self.items_per_cart.max(1);
        let cycle = match self.then {
            Then::Checkout => items + 1,
            Then::NewCart => items,
        };
        // Slots start at different phases (0 to items-1 items in), so at any
        // moment the mix is steady — 1 in `cycle` requests opens a new cart,
        // and with checkouts 1 in `cycle` checks one out — rather than every
        // slot starting a cart at once.
        let at = round + slot % items;
        let (generation, phase) = (at / cycle, at % cycle);
        let cart_id = format!("c{slot}-{generation}");
        if phase == items {
            return CartOp::CheckOut { cart_id, customer_id: format!("u{}", slot % self.customers.max(1)) };
        }
        let product = (slot * 7 + round * 13) % self.products.max(1);
        CartOp::AddItem { cart_id, sku: sku(product), quantity: 1 + (seq % 3) as i64 }
    }

    /// The mix, in words.
    pub fn describe(&self) -> String {
        let items = self.items_per_cart.max(1);
        match self.then {
            Then::NewCart => format!(
                "add-items only: {items} per cart, then the slot starts a new cart ({:.0} % of add-items open \
                 a new cart stream); {} cart slots round-robin, {} products",
                100.0 / items as f64,
                self.carts,
                self.products
            ),
            Then::Checkout => format!(
                "{items} add-items then a checkout per cart ({:.0} % checkouts, {:.0} % of requests open a new \
                 cart stream); {} cart slots round-robin, {} products, {} customers",
                100.0 / (items + 1) as f64,
                100.0 / (items + 1) as f64,
                self.carts,
                self.products,
                self.customers
            ),
        }
    }
}

/// Registers `count` products through the command side.
pub async fn register_products(commands: &ShopCommands, count: u64) -> anyhow::Result<()> {
    stream::iter(0..count)
        .map(|i| async move {
            let command = ProductCommand::Register {
                sku: sku(i),
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
            commands.add_item(cart_id, sku, *quantity, &context).await
        }
        CartOp::CheckOut { cart_id, customer_id } => {
            commands.check_out(cart_id, customer_id, Uuid::now_v7(), &context).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cart_gets_its_items_then_one_checkout() {
        let plan = CartPlan { carts: 7, products: 5, items_per_cart: 3, then: Then::Checkout, customers: 2 };
        let mut items = std::collections::BTreeMap::<String, u64>::new();
        let mut checkouts = 0;
        for seq in 0..7 * 40 {
            match plan.op(seq) {
                CartOp::AddItem { cart_id, .. } => {
                    assert!(
                        !items.contains_key(&format!("{cart_id}:done")),
                        "{cart_id} got an item after checkout"
                    );
                    *items.entry(cart_id).or_default() += 1;
                }
                CartOp::CheckOut { cart_id, .. } => {
                    let count = items.get(&cart_id).copied().unwrap_or(0);
                    assert!((1..=3).contains(&count), "{cart_id} checked out with {count} items");
                    assert!(
                        items.insert(format!("{cart_id}:done"), 0).is_none(),
                        "{cart_id} checked out twice"
                    );
                    checkouts += 1;
                }
            }
        }
        assert_eq!(checkouts, 7 * 40 / 4);
    }

    #[test]
    fn new_carts_get_at_most_their_items() {
        let plan = CartPlan { carts: 5, products: 50, items_per_cart: 4, then: Then::NewCart, customers: 1 };
        let mut items = std::collections::BTreeMap::<String, u64>::new();
        for seq in 0..5 * 33 {
            match plan.op(seq) {
                CartOp::AddItem { cart_id, .. } => *items.entry(cart_id).or_default() += 1,
                CartOp::CheckOut { .. } => panic!("no checkouts"),
            }
        }
        assert!(items.values().all(|&n| (1..=4).contains(&n)), "{items:?}");
    }
}
