//! A realistic shop history, generated fast: the shop's own aggregates
//! (`shop_domain`) run in memory — products registered, restocked and
//! repriced; carts filled with one to three lines, sometimes an item
//! removed, most checked out; the checkout saga's reactions
//! (`shop_domain::react`) fed back until each order is confirmed or
//! rejected; most confirmed orders paid, most of those shipped, a few
//! cancelled (and released). The events they decide are encoded with the
//! shop's codec and appended through an event store's own `append`, one
//! request per stream per round of a few thousand lifecycles, hundreds of
//! requests in flight, so the store's group commit takes big batches.
//!
//! Lifecycle `k` fills cart `k{k}` and, when it checks out, places an order
//! of customer `u{k % customers}`; products are `SKU-00000`… as in
//! [`crate::workload`]. `projection-rebuild` rebuilds views from such a
//! history; `scale-out` makes its projectors' backlog with it.

use std::collections::{BTreeMap, VecDeque};

use futures::{stream, StreamExt, TryStreamExt};
use parallax_core::{Aggregate, AppendRequest, Codec, EventStore, ExpectedVersion, Metadata, NewEvent};
use shop_domain::{
    react, Cart, CartCommand, CartId, CustomerId, Order, OrderCommand, OrderStatus, Product, ProductCommand,
    ProductInfo, SagaCommand, Sku,
};
use shop_events::{CartEvent, ShopCodec, ShopEvent};
use uuid::Uuid;

use crate::workload;

/// Lifecycles simulated per round of appends, at most: a lifecycle makes
/// about ten events, so a small history takes a tenth of its events per round.
const LIFECYCLES_PER_ROUND: u64 = 2_000;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Events (at least; the last round is whole).
    pub events: u64,
    /// Products in the catalog, registered first with 1,000 units each.
    pub products: u64,
    /// Customers the orders are spread over.
    pub customers: u64,
    /// Lines a cart gets at most (at least one, evenly spread; 3 by default).
    pub lines_per_cart: u64,
}

impl Shape {
    /// `events` events over `products` products and `customers` customers,
    /// carts of one to three lines.
    pub fn new(events: u64, products: u64, customers: u64) -> Self {
        Self { events, products, customers, lines_per_cart: 3 }
    }
}

/// What was generated.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct History {
    /// The event store's head afterwards.
    pub head: u64,
    /// Lifecycles simulated: carts `k0` to `k{lifecycles - 1}`.
    pub lifecycles: u64,
}

/// The shop in memory: aggregates, and the events they decided this round.
struct Sim {
    codec: ShopCodec,
    products: Vec<Product>,
    round: BTreeMap<String, Vec<NewEvent>>,
    queue: VecDeque<ShopEvent>,
    rng: u64,
    customers: u64,
    lines_per_cart: u64,
}

impl Sim {
    fn random(&mut self, below: u64) -> u64 {
        // xorshift64*: deterministic, fast, good enough to spread choices.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % below.max(1)
    }

    /// Decides `command` on `state`; records and applies what it decides.
    fn decide<A: Aggregate>(
        state: &mut A,
        command: &A::Command,
        stream: String,
        codec: &Codec<A::Event>,
        round: &mut BTreeMap<String, Vec<NewEvent>>,
        metadata: &Metadata,
    ) -> Vec<A::Event> {
        let Ok(events) = state.handle(command) else { return Vec::new() };
        let records = round.entry(stream).or_default();
        for event in &events {
            state.apply(event);
            records.push(codec.new_event(event, metadata.clone()));
        }
        events
    }

    fn product(&mut self, index: usize, command: ProductCommand, metadata: &Metadata) {
        let stream = Product::stream_id(&workload::sku(index as u64));
        let events = Self::decide(
            &mut self.products[index],
            &command,
            stream,
            &self.codec.product,
            &mut self.round,
            metadata,
        );
        self.queue.extend(events.into_iter().map(ShopEvent::Product));
    }

    fn order(&mut self, order: &mut Order, id: Uuid, command: OrderCommand, metadata: &Metadata) {
        let stream = Order::stream_id(&id.to_string());
        let events = Self::decide(order, &command, stream, &self.codec.order, &mut self.round, metadata);
        self.queue.extend(events.into_iter().map(ShopEvent::Order));
    }

    /// Runs the saga's reactions until nothing more follows.
    fn settle(&mut self, order: &mut Order, order_id: Uuid, metadata: &Metadata) {
        while let Some(event) = self.queue.pop_front() {
            for command in react(&event) {
                match command {
                    SagaCommand::Product { sku, command } => {
                        let index = sku.trim_start_matches("SKU-").parse::<usize>().unwrap_or(0);
                        self.product(index, command, metadata);
                    }
                    SagaCommand::Order { order_id: id, command } if id == order_id => {
                        self.order(order, id, command, metadata);
                    }
                    SagaCommand::Order { .. } => {}
                }
            }
        }
    }

    fn cart(
        &mut self,
        cart: &mut Cart,
        id: &str,
        command: &CartCommand,
        metadata: &Metadata,
    ) -> Vec<CartEvent> {
        Self::decide(cart, command, Cart::stream_id(id), &self.codec.cart, &mut self.round, metadata)
    }

    /// One customer's visit: a cart, usually an order, and what follows.
    fn lifecycle(&mut self, k: u64) {
        let metadata = Metadata {
            correlation_id: Uuid::now_v7(),
            causation_id: Uuid::now_v7(),
            command_id: Uuid::now_v7(),
            actor: None,
            traceparent: None,
            tenant: None,
        };
        let cart_id = CartId::parse(format!("k{k}")).expect("a cart id of the rule");
        let mut cart = Cart::default();
        self.fill(&mut cart, &cart_id, &metadata);
        if self.random(10) >= 8 {
            return; // abandoned
        }
        let order_id = Uuid::now_v7();
        let customer_id =
            CustomerId::parse(format!("u{}", k % self.customers.max(1))).expect("a customer id of the rule");
        self.check_out(&mut cart, &cart_id, order_id, customer_id, &metadata);
        let mut order = Order::default();
        self.settle(&mut order, order_id, &metadata);
        if order.status() != Some(OrderStatus::Confirmed) {
            return;
        }
        let next = match self.random(100) {
            0..=4 => vec![OrderCommand::Cancel],
            5..=29 => vec![],
            30..=49 => vec![OrderCommand::Pay],
            _ => vec![OrderCommand::Pay, OrderCommand::Ship],
        };
        for command in next {
            self.order(&mut order, order_id, command, &metadata);
            self.settle(&mut order, order_id, &metadata);
        }
    }

    /// One to `lines_per_cart` lines (a product restocked or, rarely,
    /// repriced first), and one time in ten the first line removed again.
    fn fill(&mut self, cart: &mut Cart, cart_id: &CartId, metadata: &Metadata) {
        let lines = 1 + self.random(self.lines_per_cart.max(1));
        for _ in 0..lines {
            let index = self.random(self.products.len() as u64) as usize;
            if self.products[index].stock() < 100 {
                self.product(index, ProductCommand::Restock { quantity: 10_000 }, metadata);
            }
            if self.random(200) == 0 {
                let price_cents = workload::price_cents(self.random(1_000));
                self.product(index, ProductCommand::Reprice { price_cents }, metadata);
            }
            self.queue.clear();
            let quantity = shop_domain::Quantity::parse(1 + self.random(3) as i64).expect("1 to 3 units");
            let product = &self.products[index];
            let command = CartCommand::AddItem {
                cart_id: cart_id.clone(),
                sku: Sku::recorded(product.sku()),
                quantity,
                product: Some(ProductInfo {
                    name: product.name().to_owned(),
                    unit_price_cents: product.price_cents(),
                }),
            };
            self.cart(cart, cart_id.as_str(), &command, metadata);
        }
        if self.random(10) == 0 {
            let first = cart.skus().next().map(Sku::recorded);
            if let Some(sku) = first {
                let command = CartCommand::RemoveItem { cart_id: cart_id.clone(), sku };
                self.cart(cart, cart_id.as_str(), &command, metadata);
            }
        }
    }

    /// Checks the cart out at the catalog's current prices; the checkout
    /// is queued for the saga ([`Sim::settle`]).
    fn check_out(
        &mut self,
        cart: &mut Cart,
        cart_id: &CartId,
        order_id: Uuid,
        customer_id: CustomerId,
        metadata: &Metadata,
    ) {
        let prices = cart
            .skus()
            .filter_map(|sku| {
                let index = sku.trim_start_matches("SKU-").parse::<usize>().ok()?;
                let product = self.products.get(index)?;
                Some((
                    sku.to_owned(),
                    ProductInfo { name: product.name().to_owned(), unit_price_cents: product.price_cents() },
                ))
            })
            .collect();
        let command =
            CartCommand::CheckOut { cart_id: cart_id.clone(), order_id, customer_id, prices, personal: None };
        let events = self.cart(cart, cart_id.as_str(), &command, metadata);
        self.queue.extend(events.into_iter().map(ShopEvent::Cart));
    }
}

/// Generates a history of `shape` and appends it to `store`; `progress`
/// hears the head after each round.
pub async fn generate_reporting(
    store: &dyn EventStore,
    shape: Shape,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<History> {
    generate_with(store, shape, progress).await
}

/// Generates a history of `shape` and appends it to `store`.
pub async fn generate(store: &dyn EventStore, shape: Shape) -> anyhow::Result<History> {
    generate_with(store, shape, &|_| {}).await
}

async fn generate_with(
    store: &dyn EventStore,
    shape: Shape,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<History> {
    let mut sim = Sim {
        codec: ShopCodec::default(),
        products: vec![Product::default(); shape.products.max(1) as usize],
        round: BTreeMap::new(),
        queue: VecDeque::new(),
        rng: 0x9e37_79b9_7f4a_7c15,
        customers: shape.customers,
        lines_per_cart: shape.lines_per_cart,
    };
    let metadata = Metadata::default();
    for i in 0..sim.products.len() {
        let command = ProductCommand::Register {
            sku: Sku::parse(workload::sku(i as u64)).expect("a SKU of the rule"),
            name: workload::product_name(i as u64),
            price_cents: workload::price_cents(i as u64),
            stock: 1_000,
        };
        sim.product(i, command, &metadata);
    }
    sim.queue.clear();
    let mut head = append_round(store, std::mem::take(&mut sim.round)).await?;
    let mut k = 0;
    while head < shape.events {
        for _ in 0..LIFECYCLES_PER_ROUND.min(shape.events / 10).max(1) {
            sim.lifecycle(k);
            k += 1;
        }
        head = append_round(store, std::mem::take(&mut sim.round)).await?;
        progress(head);
    }
    Ok(History { head, lifecycles: k })
}

/// Appends one request per stream, many in flight; returns the head.
async fn append_round(store: &dyn EventStore, round: BTreeMap<String, Vec<NewEvent>>) -> anyhow::Result<u64> {
    stream::iter(round)
        .map(|(stream_id, events)| {
            store.append(AppendRequest {
                stream_id,
                expected_version: ExpectedVersion::Any,
                events,
                idempotency: None,
                reads: Vec::new(),
            })
        })
        .buffer_unordered(512)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(store.head().await?)
}
