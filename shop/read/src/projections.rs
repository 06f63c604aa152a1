//! ⑤ The shop's projections. Each owns its views and its checkpoint.
//!
//! Every projection is a pure function of the events it reads and the
//! documents it wrote before, so replaying from position 0 rebuilds the same
//! views. Events that carry the resulting state (`stock` after a
//! reservation, say) are applied by overwriting, not by adding.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::DateTime;
use parallax_core::{DocKey, EventRecord, Projection, ProjectionError, ViewSpec, ViewTx};
use shop_events::{CartEvent, OrderEvent, OrderLine, ProductEvent, ShopCodec, ShopEvent};
use uuid::Uuid;

use crate::views::{
    CartItemView, CartStatus, CartView, OrderStatus, OrderView, ProductView, SalesView, ALL, CART, CATALOG,
    CUSTOMER_ORDERS, ORDER, SALES,
};

/// All the shop's projections.
pub fn all_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(CatalogProjection::default()),
        Arc::new(CartProjection::default()),
        Arc::new(OrderProjection::default()),
        Arc::new(SalesProjection::default()),
    ]
}

/// Decodes an event the projection handles (the projector passes it only
/// those of its [`Projection::event_types`]); one that does not decode is poison.
fn decode(codec: &ShopCodec, event: &EventRecord) -> Result<Option<ShopEvent>, ProjectionError> {
    codec.decode(event).map_err(|e| ProjectionError::Poison(e.to_string()))
}

/// What the order view is fed: the checkout (the order exists, pending) and
/// every event of the order's own stream.
static ORDER_VIEW_EVENTS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| [&["cart.checked_out"], OrderEvent::TYPES].concat());

fn missing(view: &str, key: &str, event: &EventRecord) -> ProjectionError {
    ProjectionError::Poison(format!(
        "{} at position {} refers to {view} {key}, which the view does not have",
        event.event_type, event.position
    ))
}

/// The catalog: every product with its price and available stock.
#[derive(Default)]
pub struct CatalogProjection {
    codec: ShopCodec,
}

impl CatalogProjection {
    /// Persisted name.
    pub const NAME: &'static str = "catalog";
}

#[async_trait]
impl Projection for CatalogProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn views(&self) -> Vec<ViewSpec> {
        vec![CATALOG.spec()]
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(ProductEvent::TYPES)
    }

    fn prefetch(&self, event: &EventRecord) -> Vec<(&'static str, DocKey)> {
        event
            .stream_in(shop_events::PRODUCT)
            .map(|sku| (CATALOG.name(), DocKey::new(ALL, sku)))
            .into_iter()
            .collect()
    }

    async fn apply(&self, tx: &mut ViewTx<'_>, event: &EventRecord) -> Result<(), ProjectionError> {
        let Some(ShopEvent::Product(product_event)) = decode(&self.codec, event)? else {
            return Ok(());
        };
        if let ProductEvent::Registered { sku, name, price_cents, stock } = &product_event {
            let view = ProductView {
                sku: sku.clone(),
                name: name.clone(),
                price_cents: *price_cents,
                stock: *stock,
                version: event.stream_version,
            };
            tx.put(&CATALOG, DocKey::new(ALL, sku), &view);
            return Ok(());
        }
        let sku = match &product_event {
            ProductEvent::Registered { sku, .. }
            | ProductEvent::Renamed { sku, .. }
            | ProductEvent::Repriced { sku, .. }
            | ProductEvent::Restocked { sku, .. }
            | ProductEvent::StockReserved { sku, .. }
            | ProductEvent::StockReservationRejected { sku, .. }
            | ProductEvent::StockReleased { sku, .. } => sku,
        };
        let key = DocKey::new(ALL, sku);
        let mut view: ProductView =
            tx.get(&CATALOG, &key).await?.ok_or_else(|| missing("product", sku, event))?;
        match product_event {
            ProductEvent::Renamed { name, .. } => view.name = name,
            ProductEvent::Repriced { price_cents, .. } => view.price_cents = price_cents,
            ProductEvent::Restocked { stock, .. }
            | ProductEvent::StockReserved { stock, .. }
            | ProductEvent::StockReleased { stock, .. } => view.stock = stock,
            ProductEvent::Registered { .. } | ProductEvent::StockReservationRejected { .. } => {}
        }
        view.version = event.stream_version;
        tx.put(&CATALOG, key, &view);
        Ok(())
    }
}

/// Carts by id.
#[derive(Default)]
pub struct CartProjection {
    codec: ShopCodec,
}

impl CartProjection {
    /// Persisted name.
    pub const NAME: &'static str = "carts";
}

#[async_trait]
impl Projection for CartProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn views(&self) -> Vec<ViewSpec> {
        vec![CART.spec()]
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(CartEvent::TYPES)
    }

    fn prefetch(&self, event: &EventRecord) -> Vec<(&'static str, DocKey)> {
        event
            .stream_in(shop_events::CART)
            .map(|cart_id| (CART.name(), DocKey::partition(cart_id)))
            .into_iter()
            .collect()
    }

    async fn apply(&self, tx: &mut ViewTx<'_>, event: &EventRecord) -> Result<(), ProjectionError> {
        let Some(ShopEvent::Cart(cart_event)) = decode(&self.codec, event)? else {
            return Ok(());
        };
        let cart_id = match &cart_event {
            CartEvent::ItemAdded { cart_id, .. }
            | CartEvent::ItemRemoved { cart_id, .. }
            | CartEvent::CheckedOut { cart_id, .. } => cart_id.clone(),
        };
        let key = DocKey::partition(&cart_id);
        let mut cart = tx.get(&CART, &key).await?.unwrap_or_else(|| CartView {
            cart_id: cart_id.clone(),
            status: CartStatus::Open,
            items: Vec::new(),
            total_cents: 0,
            order_id: None,
            version: 0,
        });
        match cart_event {
            CartEvent::ItemAdded { sku, name, price_cents, currency, quantity, .. } => {
                match cart.items.iter_mut().find(|item| item.sku == sku) {
                    Some(item) => {
                        item.quantity += quantity;
                        item.name = name;
                        item.unit_price_cents = price_cents;
                        item.currency = currency;
                    }
                    None => {
                        let at = cart.items.partition_point(|item| item.sku < sku);
                        let item = CartItemView {
                            sku,
                            name,
                            unit_price_cents: price_cents,
                            currency,
                            quantity,
                            line_total_cents: 0,
                        };
                        cart.items.insert(at, item);
                    }
                }
            }
            CartEvent::ItemRemoved { sku, .. } => cart.items.retain(|item| item.sku != sku),
            CartEvent::CheckedOut { order_id, .. } => {
                cart.status = CartStatus::CheckedOut;
                cart.order_id = Some(order_id);
            }
        }
        for item in &mut cart.items {
            item.line_total_cents = item.unit_price_cents * i64::from(item.quantity);
        }
        cart.total_cents = cart.items.iter().map(|item| item.line_total_cents).sum();
        cart.version = event.stream_version;
        tx.put(&CART, key, &cart);
        Ok(())
    }
}

/// Orders by id, and by customer newest first: the join of order, lines and
/// products computed ahead of time.
#[derive(Default)]
pub struct OrderProjection {
    codec: ShopCodec,
}

impl OrderProjection {
    /// Persisted name.
    pub const NAME: &'static str = "orders";
}

#[async_trait]
impl Projection for OrderProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn views(&self) -> Vec<ViewSpec> {
        vec![ORDER.spec(), CUSTOMER_ORDERS.spec()]
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&ORDER_VIEW_EVENTS)
    }

    fn prefetch(&self, event: &EventRecord) -> Vec<(&'static str, DocKey)> {
        match event.stream_in(shop_events::ORDER) {
            Some(order_id) => vec![(ORDER.name(), DocKey::partition(order_id))],
            None => match decode(&self.codec, event) {
                Ok(Some(ShopEvent::Cart(CartEvent::CheckedOut { order_id, .. }))) => {
                    vec![(ORDER.name(), DocKey::partition(order_id.to_string()))]
                }
                _ => Vec::new(),
            },
        }
    }

    /// The order view has two sources on two streams: the cart's
    /// `cart.checked_out` (the order exists, pending) and the order's own
    /// events. Behind a partitioned log they may arrive in either order, so
    /// the view is built to reach the same state both ways: whichever comes
    /// first creates it, `checked_out` never touches an existing one, and
    /// `placed_at` is the checkout time carried by the order id (a UUIDv7).
    async fn apply(&self, tx: &mut ViewTx<'_>, event: &EventRecord) -> Result<(), ProjectionError> {
        let order_event = match decode(&self.codec, event)? {
            Some(ShopEvent::Cart(CartEvent::CheckedOut {
                cart_id,
                order_id,
                customer_id,
                lines,
                total_cents,
                personal,
            })) => {
                let key = DocKey::partition(order_id.to_string());
                if tx.get_value(ORDER.name(), &key).await?.is_none() {
                    let order = OrderView {
                        personal,
                        ..new_order(
                            order_id,
                            customer_id,
                            cart_id,
                            OrderStatus::Pending,
                            lines,
                            total_cents,
                            event,
                            0,
                        )
                    };
                    save_order(tx, &order);
                }
                return Ok(());
            }
            Some(ShopEvent::Order(order_event)) => order_event,
            _ => return Ok(()),
        };
        if let OrderEvent::Placed { order_id, customer_id, cart_id, lines, total_cents, personal } =
            &order_event
        {
            let key = DocKey::partition(order_id.to_string());
            let order = match tx.get(&ORDER, &key).await? {
                None => OrderView {
                    personal: personal.clone(),
                    ..new_order(
                        *order_id,
                        customer_id.clone(),
                        cart_id.clone(),
                        OrderStatus::Placed,
                        lines.clone(),
                        *total_cents,
                        event,
                        event.stream_version,
                    )
                },
                Some(order) if order.status == OrderStatus::Pending => {
                    OrderView { status: OrderStatus::Placed, version: event.stream_version, ..order }
                }
                // Replayed: the order has moved on.
                Some(_) => return Ok(()),
            };
            save_order(tx, &order);
            return Ok(());
        }
        let (order_id, status) = match &order_event {
            OrderEvent::Confirmed { order_id, .. } => (order_id, OrderStatus::Confirmed),
            OrderEvent::Rejected { order_id, .. } => (order_id, OrderStatus::Rejected),
            OrderEvent::Paid { order_id, .. } => (order_id, OrderStatus::Paid),
            OrderEvent::Shipped { order_id } => (order_id, OrderStatus::Shipped),
            OrderEvent::Cancelled { order_id, .. } => (order_id, OrderStatus::Cancelled),
            OrderEvent::Placed { .. }
            | OrderEvent::StockRequested { .. }
            | OrderEvent::LineReserved { .. } => return Ok(()),
        };
        let id = order_id.to_string();
        let mut order: OrderView =
            tx.get(&ORDER, &DocKey::partition(&id)).await?.ok_or_else(|| missing("order", &id, event))?;
        order.status = status;
        order.version = event.stream_version;
        if let OrderEvent::Rejected { reason, .. } = order_event {
            order.rejection_reason = Some(reason);
        }
        save_order(tx, &order);
        Ok(())
    }
}

/// A new order view; `placed_at` is the checkout time in the order id when
/// it is a UUIDv7, else the event's time.
#[allow(clippy::too_many_arguments)]
fn new_order(
    order_id: Uuid,
    customer_id: String,
    cart_id: String,
    status: OrderStatus,
    lines: Vec<OrderLine>,
    total_cents: i64,
    event: &EventRecord,
    version: u64,
) -> OrderView {
    let placed_at = order_id
        .get_timestamp()
        .and_then(|at| {
            let (seconds, nanos) = at.to_unix();
            DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)
        })
        .unwrap_or(event.recorded_at);
    OrderView {
        order_id,
        customer_id,
        cart_id,
        status,
        lines,
        total_cents,
        placed_at,
        rejection_reason: None,
        version,
        personal: None,
    }
}

fn save_order(tx: &mut ViewTx<'_>, order: &OrderView) {
    tx.put(&ORDER, DocKey::partition(order.order_id.to_string()), order);
    tx.put(&CUSTOMER_ORDERS, DocKey::new(&order.customer_id, order.customer_key()), order);
}

/// Units and revenue per product, over confirmed orders not cancelled.
#[derive(Default)]
pub struct SalesProjection {
    codec: ShopCodec,
}

impl SalesProjection {
    /// Persisted name.
    pub const NAME: &'static str = "sales";
}

#[async_trait]
impl Projection for SalesProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn views(&self) -> Vec<ViewSpec> {
        vec![SALES.spec()]
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&["order.confirmed", "order.cancelled"])
    }

    fn prefetch(&self, event: &EventRecord) -> Vec<(&'static str, DocKey)> {
        let lines = match decode(&self.codec, event) {
            Ok(Some(ShopEvent::Order(OrderEvent::Confirmed { lines, .. }))) => lines,
            Ok(Some(ShopEvent::Order(OrderEvent::Cancelled { release, .. }))) => release,
            _ => return Vec::new(),
        };
        lines.into_iter().map(|line| (SALES.name(), DocKey::new(ALL, line.sku))).collect()
    }

    async fn apply(&self, tx: &mut ViewTx<'_>, event: &EventRecord) -> Result<(), ProjectionError> {
        let (lines, sign) = match decode(&self.codec, event)? {
            Some(ShopEvent::Order(OrderEvent::Confirmed { lines, .. })) => (lines, 1),
            Some(ShopEvent::Order(OrderEvent::Cancelled { release, .. })) => (release, -1),
            _ => return Ok(()),
        };
        for OrderLine { sku, name, unit_price_cents, quantity } in lines {
            let key = DocKey::new(ALL, &sku);
            let mut sales = tx.get(&SALES, &key).await?.unwrap_or_else(|| SalesView {
                sku: sku.clone(),
                name: name.clone(),
                units: 0,
                revenue_cents: 0,
            });
            sales.units += sign * i64::from(quantity);
            sales.revenue_cents += sign * unit_price_cents * i64::from(quantity);
            if sign > 0 {
                sales.name = name;
            }
            tx.put(&SALES, key, &sales);
        }
        Ok(())
    }
}
