//! The shop as a plain relational application would keep it: a normalized
//! schema on PostgreSQL, the query API's reads answered with joins and an
//! aggregate, every write one transaction that decides on the current rows.
//!
//! The data is the event store's, copied once (`COPY … TO STDOUT` from the
//! events database into `COPY … FROM STDIN` of this one): products as
//! registered; customers; orders with their status after their last event,
//! placed at their `order.placed` time; their lines (SKU, quantity, unit
//! price at checkout: the name is the product's, joined at read time);
//! carts and their lines after their last event (a removed item is gone).

use anyhow::Context as _;
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::{Acquire, PgPool};
use tokio::time::Instant;

use crate::workload::CartOp;

/// The schema, created before the load; indexes after it.
const TABLES: &str = "
CREATE TABLE products (sku text PRIMARY KEY, name text NOT NULL, price_cents bigint NOT NULL, stock bigint NOT NULL);
CREATE TABLE customers (customer_id text PRIMARY KEY);
CREATE TABLE orders (order_id uuid PRIMARY KEY, customer_id text NOT NULL, cart_id text NOT NULL,
    status text NOT NULL, total_cents bigint NOT NULL, placed_at timestamptz NOT NULL);
CREATE TABLE order_lines (order_id uuid NOT NULL, line_no int NOT NULL, sku text NOT NULL,
    quantity int NOT NULL, unit_price_cents bigint NOT NULL, PRIMARY KEY (order_id, line_no));
CREATE TABLE carts (cart_id text PRIMARY KEY, status text NOT NULL);
CREATE TABLE cart_lines (cart_id text NOT NULL, sku text NOT NULL, quantity int NOT NULL,
    PRIMARY KEY (cart_id, sku));
";

/// Foreign keys and secondary indexes, after the load (as a bulk load does).
const INDEXES: &str = "
ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers;
ALTER TABLE order_lines ADD FOREIGN KEY (order_id) REFERENCES orders;
ALTER TABLE order_lines ADD FOREIGN KEY (sku) REFERENCES products;
ALTER TABLE cart_lines ADD FOREIGN KEY (cart_id) REFERENCES carts;
ALTER TABLE cart_lines ADD FOREIGN KEY (sku) REFERENCES products;
CREATE INDEX orders_by_customer ON orders (customer_id, placed_at DESC);
CREATE INDEX order_lines_by_sku ON order_lines (sku);
ANALYZE;
";

/// Each table and the query over the event store that fills it.
const COPIES: [(&str, &str); 6] = [
    (
        "products",
        "SELECT payload->>'sku', payload->>'name', (payload->>'price_cents')::bigint, (payload->>'stock')::bigint \
         FROM events WHERE event_type = 'product.registered'",
    ),
    ("customers", "SELECT DISTINCT payload->>'customer_id' FROM events WHERE event_type = 'order.placed'"),
    (
        "orders",
        "SELECT p.payload->>'order_id', p.payload->>'customer_id', p.payload->>'cart_id', \
         coalesce(s.status, 'placed'), (p.payload->>'total_cents')::bigint, p.recorded_at \
         FROM events p LEFT JOIN (SELECT DISTINCT ON (stream_id) stream_id, \
             substr(event_type, 7) AS status FROM events \
             WHERE event_type IN ('order.confirmed', 'order.rejected', 'order.paid', 'order.shipped', \
                                  'order.cancelled') \
             ORDER BY stream_id, position DESC) s ON s.stream_id = p.stream_id \
         WHERE p.event_type = 'order.placed'",
    ),
    (
        "order_lines",
        "SELECT payload->>'order_id', n, l->>'sku', (l->>'quantity')::int, (l->>'unit_price_cents')::bigint \
         FROM events, jsonb_array_elements(payload->'lines') WITH ORDINALITY AS x(l, n) \
         WHERE event_type = 'order.placed'",
    ),
    (
        "carts",
        "SELECT payload->>'cart_id', CASE WHEN bool_or(event_type = 'cart.checked_out') THEN 'checked_out' \
         ELSE 'open' END FROM events WHERE event_type LIKE 'cart.%' GROUP BY 1",
    ),
    (
        "cart_lines",
        "SELECT a.payload->>'cart_id', a.payload->>'sku', sum((a.payload->>'quantity')::int) FROM events a \
         WHERE a.event_type = 'cart.item_added' AND NOT EXISTS (SELECT 1 FROM events r \
             WHERE r.stream_id = a.stream_id AND r.event_type = 'cart.item_removed' \
             AND r.payload->>'sku' = a.payload->>'sku' AND r.position > a.position) \
         GROUP BY 1, 2",
    ),
];

/// What the load made, and how long it took.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Loaded {
    /// Rows of each table.
    pub(super) rows: Vec<(String, u64)>,
    /// Copying the rows.
    pub(super) copy_secs: f64,
    /// Foreign keys, indexes, statistics.
    pub(super) index_secs: f64,
    /// The database's size afterwards, bytes.
    pub(super) bytes: i64,
}

impl Loaded {
    /// Rows of `table`.
    pub(super) fn rows_of(&self, table: &str) -> u64 {
        self.rows.iter().find(|(name, _)| name == table).map_or(0, |(_, rows)| *rows)
    }
}

/// Creates the schema in `relational` and fills it from the event store `events`.
pub(super) async fn load(events: &PgPool, relational: &PgPool) -> anyhow::Result<Loaded> {
    sqlx::raw_sql(TABLES).execute(relational).await.context("create the relational schema")?;
    let began = Instant::now();
    let mut rows = Vec::new();
    for (table, query) in COPIES {
        let mut from = events.acquire().await?;
        let mut to = relational.acquire().await?;
        let mut source = from
            .copy_out_raw(&format!("COPY ({query}) TO STDOUT"))
            .await
            .with_context(|| format!("read the rows of {table} from the event store"))?;
        let mut sink = to.copy_in_raw(&format!("COPY {table} FROM STDIN")).await?;
        while let Some(chunk) = source.try_next().await? {
            sink.send(chunk).await?;
        }
        let copied = sink.finish().await.with_context(|| format!("copy {table}"))?;
        rows.push((table.to_owned(), copied));
    }
    let copy_secs = began.elapsed().as_secs_f64();
    let began = Instant::now();
    sqlx::raw_sql(INDEXES).execute(relational).await.context("index the relational schema")?;
    let index_secs = began.elapsed().as_secs_f64();
    let bytes: i64 =
        sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(relational).await?;
    Ok(Loaded { rows, copy_secs, index_secs, bytes })
}

/// A customer's newest orders with their lines and the products' names.
pub(super) async fn customer_orders(pool: &PgPool, customer: &str, limit: i64) -> anyhow::Result<usize> {
    type Row = (uuid::Uuid, String, i64, chrono::DateTime<chrono::Utc>, i32, String, String, i32, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "WITH o AS (SELECT order_id, status, total_cents, placed_at FROM orders WHERE customer_id = $1 \
                    ORDER BY placed_at DESC LIMIT $2) \
         SELECT o.order_id, o.status, o.total_cents, o.placed_at, l.line_no, l.sku, p.name, l.quantity, \
                l.unit_price_cents \
         FROM o JOIN order_lines l ON l.order_id = o.order_id JOIN products p ON p.sku = l.sku \
         ORDER BY o.placed_at DESC, o.order_id, l.line_no",
    )
    .bind(customer)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.len())
}

/// A cart with its lines, the products' names and prices.
pub(super) async fn cart(pool: &PgPool, cart_id: &str) -> anyhow::Result<usize> {
    type Row = (String, Option<String>, Option<String>, Option<i64>, Option<i32>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.status, l.sku, p.name, p.price_cents, l.quantity FROM carts c \
         LEFT JOIN cart_lines l ON l.cart_id = c.cart_id LEFT JOIN products p ON p.sku = l.sku \
         WHERE c.cart_id = $1 ORDER BY l.sku",
    )
    .bind(cart_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.len())
}

/// Units and revenue per product over the confirmed (paid, shipped)
/// orders: the aggregate the sales view keeps ahead of time.
pub(super) async fn sales(pool: &PgPool, limit: i64) -> anyhow::Result<usize> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT l.sku, p.name, sum(l.quantity)::bigint, sum(l.quantity * l.unit_price_cents)::bigint \
         FROM order_lines l JOIN orders o ON o.order_id = l.order_id JOIN products p ON p.sku = l.sku \
         WHERE o.status IN ('confirmed', 'paid', 'shipped') GROUP BY l.sku, p.name ORDER BY l.sku LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.len())
}

/// A cart command as one transaction on the current rows: an item added
/// (the cart made if new, the product's existence checked by its foreign
/// key), or a checkout (the order and its lines priced from the products,
/// the cart closed; placed, as the shop's is without its saga: no stock
/// is reserved on either side).
pub(super) async fn execute(pool: &PgPool, op: &CartOp) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    match op {
        CartOp::AddItem { cart_id, sku, quantity } => {
            sqlx::query("INSERT INTO carts (cart_id, status) VALUES ($1, 'open') ON CONFLICT DO NOTHING")
                .bind(cart_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO cart_lines (cart_id, sku, quantity) VALUES ($1, $2, $3) ON CONFLICT (cart_id, sku) \
                 DO UPDATE SET quantity = cart_lines.quantity + excluded.quantity",
            )
            .bind(cart_id)
            .bind(sku)
            .bind(i32::try_from(*quantity)?)
            .execute(&mut *tx)
            .await?;
        }
        CartOp::CheckOut { cart_id, customer_id } => check_out(&mut tx, cart_id, customer_id).await?,
    }
    tx.commit().await?;
    Ok(())
}

async fn check_out(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    cart_id: &str,
    customer_id: &str,
) -> anyhow::Result<()> {
    let open: Option<String> = sqlx::query_scalar("SELECT status FROM carts WHERE cart_id = $1 FOR UPDATE")
        .bind(cart_id)
        .fetch_optional(&mut **tx)
        .await?;
    anyhow::ensure!(open.as_deref() == Some("open"), "cart {cart_id} is not open");
    sqlx::query("INSERT INTO customers (customer_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(customer_id)
        .execute(&mut **tx)
        .await?;
    let order_id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO orders (order_id, customer_id, cart_id, status, total_cents, placed_at) \
         SELECT $1, $2, $3, 'placed', coalesce(sum(l.quantity * p.price_cents), 0), now() \
         FROM cart_lines l JOIN products p ON p.sku = l.sku WHERE l.cart_id = $3",
    )
    .bind(order_id)
    .bind(customer_id)
    .bind(cart_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_cents) \
         SELECT $1, row_number() OVER (ORDER BY l.sku), l.sku, l.quantity, p.price_cents \
         FROM cart_lines l JOIN products p ON p.sku = l.sku WHERE l.cart_id = $2",
    )
    .bind(order_id)
    .bind(cart_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE carts SET status = 'checked_out' WHERE cart_id = $1")
        .bind(cart_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
