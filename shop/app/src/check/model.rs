//! Step 3b of `shop check`: the checker's own model of the views.
//!
//! The rebuild of step 3 runs the same projection code as the projectors,
//! so a deterministic bug in a projection or in `ViewTx` would be in both
//! and the comparison would agree. The model folds the events with code of
//! its own, written from the event contract (`shop-events`, decoded through
//! its codec and upcasters) and from what each view's document says it
//! holds, never from `shop-read`'s projections, and every document of the
//! read DB is compared with it, field by field, for the fields it covers:
//!
//! | view | the model's document |
//! |---|---|
//! | `catalog` (`all`, SKU) | `sku`; `name` of the latest `product.renamed` (else the registration); `price_cents` of the latest `product.repriced`; `stock` as the latest event that states it (`registered`, `restocked`, `stock_reserved`, `stock_released`) says; `version`: the product stream's last version |
//! | `cart` (cart id) | `cart_id`; `status` `open`, or `checked_out` with its `order_id`; `items` sorted by SKU: units added since the SKU was last removed, `name`, `unit_price_cents` and `currency` of the latest add, `line_total_cents`; `total_cents`; `version`: the cart stream's last version |
//! | `order` (order id) | `order_id`, `customer_id`, `cart_id`, `lines` and `total_cents` of whichever of `cart.checked_out` and `order.placed` came first; `status`: `pending` after the checkout, then what the latest of `placed`, `confirmed`, `rejected`, `paid`, `shipped`, `cancelled` made it; `rejection_reason`; `placed_at`: the time in the order id (a UUIDv7; not compared otherwise); `version`: the order stream's version at the event that set the status (0 while pending) |
//! | `customer_orders` (customer id, newest first) | exactly the customer's orders, each the `order` document, under the clustering key `{i64::MAX − placed_at in µs, 19 digits}-{order_id}` |
//! | `sales` (`all`, SKU) | a row for every SKU an order was confirmed with; over the confirmed orders not cancelled: `units`, `revenue_cents` (unit price × quantity of the confirmed lines); `name` of the latest confirmation |
//!
//! Not covered: fields a view has beyond these (they are compared with the
//! rebuild only), and views other than these five.
//!
//! The model also keeps each cart's units per SKU and each order's status
//! at every version, for the history's reads (a read must show a state the
//! events gave its stream at the version it shows).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use parallax_core::{EventRecord, Tenant};
use parallax_runtime::check::Documents;
use serde_json::{json, Value};
use shop_events::{CartEvent, OrderEvent, OrderLine, ProductEvent, ShopCodec, ShopEvent};
use shop_read::views;
use uuid::Uuid;

use super::report::{CheckReport, Details};

// The read DB's layout the model is compared against: the views' stored
// names and the single partition of catalog and sales, from their one
// definition. Only the names come from shop-read; what the documents must
// hold is folded here from the event contract.
const CATALOG: &str = views::CATALOG.name();
const CART: &str = views::CART.name();
const ORDER: &str = views::ORDER.name();
const CUSTOMER_ORDERS: &str = views::CUSTOMER_ORDERS.name();
const SALES: &str = views::SALES.name();
const ALL: &str = views::ALL;

/// Units per SKU.
type Units = BTreeMap<String, u64>;

/// A product as the events describe it.
#[derive(Debug, Clone)]
struct Product {
    name: String,
    price_cents: i64,
    stock: u32,
    version: u64,
}

/// A cart line as the events describe it.
#[derive(Debug, Clone)]
struct CartLine {
    name: String,
    price_cents: i64,
    currency: String,
    units: u64,
}

#[derive(Debug, Clone, Default)]
struct Cart {
    lines: BTreeMap<String, CartLine>,
    order: Option<Uuid>,
    version: u64,
}

#[derive(Debug, Clone)]
struct Order {
    customer: String,
    cart: String,
    lines: Vec<OrderLine>,
    total_cents: i64,
    status: &'static str,
    reason: Option<String>,
    /// The order stream's version at the event that set `status`.
    version: u64,
    /// The lines it was confirmed with.
    confirmed: Option<Vec<OrderLine>>,
    cancelled: bool,
    /// Each status it had, with the version it had it at.
    statuses: Vec<(u64, &'static str)>,
}

/// The views as the events say they must be: each tenant's folded apart,
/// its documents in its partitions (see `parallax_core::Tenant`).
#[derive(Debug, Default)]
pub struct Model {
    tenants: BTreeMap<Tenant, TenantModel>,
}

/// One tenant's part of the [`Model`].
#[derive(Debug, Default)]
struct TenantModel {
    products: BTreeMap<String, Product>,
    carts: BTreeMap<String, Cart>,
    /// Each cart's units per SKU after each of its versions.
    cart_units: BTreeMap<String, Vec<(u64, Units)>>,
    orders: BTreeMap<Uuid, Order>,
    /// Per SKU: the name of its latest confirmation.
    sold_names: BTreeMap<String, String>,
    /// Events the model could not fold, one line each.
    anomalies: Vec<String>,
}

impl Model {
    /// Folds `events` (in position order).
    pub fn fold(events: &[EventRecord]) -> Self {
        let codec = ShopCodec::default();
        let mut model = Self::default();
        for event in events {
            let tenant = model.tenants.entry(event.tenant()).or_default();
            match codec.decode(event) {
                Ok(Some(ShopEvent::Product(e))) => tenant.product(event, e),
                Ok(Some(ShopEvent::Cart(e))) => tenant.cart(event, e),
                Ok(Some(ShopEvent::Order(e))) => tenant.order(event, e),
                Ok(None) => {}
                Err(error) => tenant.anomalies.push(format!(
                    "position {} ({}) does not decode: {error}",
                    event.position, event.event_type
                )),
            }
        }
        model
    }

    /// A cart's units per SKU at `version` (0: before its first event), if
    /// the events gave it that version (a cart of the default tenant).
    pub fn cart_units_at(&self, cart: &str, version: u64) -> Option<Units> {
        if version == 0 {
            return Some(BTreeMap::new());
        }
        self.tenants.get(&Tenant::DEFAULT)?.cart_units_at(cart, version)
    }

    /// Whether the events gave an order (of the default tenant) `status` at `version`.
    pub fn order_had(&self, order: &str, version: u64, status: &str) -> bool {
        self.tenants.get(&Tenant::DEFAULT).is_some_and(|model| model.order_had(order, version, status))
    }

    /// Every document the model expects, with the fields it covers, each
    /// tenant's in its partitions.
    pub fn documents(&self) -> Documents {
        let mut documents = Documents::new();
        for (tenant, model) in &self.tenants {
            for ((view, partition, clustering), body) in model.documents() {
                documents.insert((view, tenant.scope(&partition), clustering), body);
            }
        }
        documents
    }

    /// One line per document of the model's views that differs from the
    /// model: missing from `actual`, extra in it, or with a covered field
    /// of another value; then the events the model could not fold.
    pub fn differences(&self, actual: &Documents) -> Vec<String> {
        let expected = self.documents();
        let modelled: BTreeSet<&str> = [CATALOG, CART, ORDER, CUSTOMER_ORDERS, SALES].into();
        let keys: BTreeSet<&(String, String, String)> = expected
            .keys()
            .chain(actual.keys().filter(|(view, _, _)| modelled.contains(view.as_str())))
            .collect();
        let mut lines = Vec::new();
        for key in keys {
            let place = place(key);
            match (expected.get(key), actual.get(key)) {
                (Some(_), None) => lines.push(format!("missing {place}: the events give it")),
                (None, Some(_)) => lines.push(format!("extra {place}: no event gives it")),
                (Some(want), Some(have)) => {
                    if let Some(difference) = first_difference(want, have, "") {
                        lines.push(format!("differs {place}: {difference}"));
                    }
                }
                (None, None) => {}
            }
        }
        lines.extend(self.tenants.values().flat_map(|model| model.anomalies.iter().cloned()));
        lines
    }
}

impl TenantModel {
    fn product(&mut self, event: &EventRecord, e: ProductEvent) {
        let version = event.stream_version;
        if let ProductEvent::Registered { sku, name, price_cents, stock } = e {
            self.products.insert(sku, Product { name, price_cents, stock, version });
            return;
        }
        // A product's stream is named by its SKU.
        let sku = event.stream_in(shop_events::PRODUCT).unwrap_or_default().to_owned();
        let Some(product) = self.products.get_mut(&sku) else {
            self.anomalies.push(format!("position {}: product {sku} was never registered", event.position));
            return;
        };
        product.version = version;
        match e {
            ProductEvent::Renamed { name, .. } => product.name = name,
            ProductEvent::Repriced { price_cents, .. } => product.price_cents = price_cents,
            ProductEvent::Restocked { stock, .. }
            | ProductEvent::StockReserved { stock, .. }
            | ProductEvent::StockReleased { stock, .. } => product.stock = stock,
            ProductEvent::Registered { .. } | ProductEvent::StockReservationRejected { .. } => {}
        }
    }

    fn cart(&mut self, event: &EventRecord, e: CartEvent) {
        let id = match &e {
            CartEvent::ItemAdded { cart_id, .. }
            | CartEvent::ItemRemoved { cart_id, .. }
            | CartEvent::CheckedOut { cart_id, .. } => cart_id.clone(),
        };
        let cart = self.carts.entry(id.clone()).or_default();
        cart.version = event.stream_version;
        match e {
            CartEvent::ItemAdded { sku, name, price_cents, currency, quantity, .. } => {
                let units = cart.lines.get(&sku).map_or(0, |line| line.units) + u64::from(quantity);
                cart.lines.insert(sku, CartLine { name, price_cents, currency, units });
            }
            CartEvent::ItemRemoved { sku, .. } => {
                cart.lines.remove(&sku);
            }
            CartEvent::CheckedOut { order_id, customer_id, lines, total_cents, .. } => {
                cart.order = Some(order_id);
                // The order exists from the checkout on, unless its own
                // stream began first.
                self.orders.entry(order_id).or_insert_with(|| Order {
                    customer: customer_id,
                    cart: id.clone(),
                    lines,
                    total_cents,
                    status: "pending",
                    reason: None,
                    version: 0,
                    confirmed: None,
                    cancelled: false,
                    statuses: vec![(0, "pending")],
                });
            }
        }
        let units = cart.lines.iter().map(|(sku, line)| (sku.clone(), line.units)).collect();
        self.cart_units.entry(id).or_default().push((event.stream_version, units));
    }

    fn order(&mut self, event: &EventRecord, e: OrderEvent) {
        let version = event.stream_version;
        if let OrderEvent::Placed { order_id, customer_id, cart_id, lines, total_cents, .. } = &e {
            let order = self.orders.entry(*order_id).or_insert_with(|| Order {
                customer: customer_id.clone(),
                cart: cart_id.clone(),
                lines: lines.clone(),
                total_cents: *total_cents,
                status: "placed",
                reason: None,
                version,
                confirmed: None,
                cancelled: false,
                statuses: Vec::new(),
            });
            order.status = "placed";
            order.version = version;
            order.statuses.push((version, "placed"));
            return;
        }
        let (order_id, status) = match &e {
            OrderEvent::Confirmed { order_id, .. } => (order_id, "confirmed"),
            OrderEvent::Rejected { order_id, .. } => (order_id, "rejected"),
            OrderEvent::Paid { order_id, .. } => (order_id, "paid"),
            OrderEvent::Shipped { order_id } => (order_id, "shipped"),
            OrderEvent::Cancelled { order_id, .. } => (order_id, "cancelled"),
            OrderEvent::Placed { .. }
            | OrderEvent::StockRequested { .. }
            | OrderEvent::LineReserved { .. } => return,
        };
        let Some(order) = self.orders.get_mut(order_id) else {
            self.anomalies.push(format!("position {}: order {order_id} was never placed", event.position));
            return;
        };
        order.status = status;
        order.version = version;
        order.statuses.push((version, status));
        match e {
            OrderEvent::Confirmed { lines, .. } => {
                for line in &lines {
                    self.sold_names.insert(line.sku.clone(), line.name.clone());
                }
                order.confirmed = Some(lines);
            }
            OrderEvent::Rejected { reason, .. } => order.reason = Some(reason),
            OrderEvent::Cancelled { .. } => order.cancelled = true,
            _ => {}
        }
    }

    fn cart_units_at(&self, cart: &str, version: u64) -> Option<Units> {
        let states = self.cart_units.get(cart)?;
        states.iter().find(|(v, _)| *v == version).map(|(_, units)| units.clone())
    }

    fn order_had(&self, order: &str, version: u64, status: &str) -> bool {
        let Ok(id) = order.parse::<Uuid>() else { return false };
        self.orders
            .get(&id)
            .is_some_and(|order| order.statuses.iter().any(|&(v, s)| v == version && s == status))
    }

    /// The tenant's documents, their partitions within its space.
    fn documents(&self) -> Documents {
        let mut documents = Documents::new();
        let mut put = |view: &str, partition: &str, clustering: &str, body: Value| {
            documents.insert((view.to_owned(), partition.to_owned(), clustering.to_owned()), body);
        };
        for (sku, p) in &self.products {
            let body = json!({
                "sku": sku, "name": p.name, "price_cents": p.price_cents, "stock": p.stock,
                "version": p.version,
            });
            put(CATALOG, ALL, sku, body);
        }
        for (id, cart) in &self.carts {
            put(CART, id, "", cart_document(id, cart));
        }
        for (id, order) in &self.orders {
            let body = order_document(*id, order);
            put(ORDER, &id.to_string(), "", body.clone());
            put(CUSTOMER_ORDERS, &order.customer, &customer_key(*id), body);
        }
        for (sku, name) in &self.sold_names {
            let (mut units, mut revenue) = (0_i64, 0_i64);
            let counted = self.orders.values().filter(|order| !order.cancelled);
            for line in counted.filter_map(|order| order.confirmed.as_ref()).flatten() {
                if &line.sku == sku {
                    units += i64::from(line.quantity);
                    revenue += line.unit_price_cents * i64::from(line.quantity);
                }
            }
            put(
                SALES,
                ALL,
                sku,
                json!({ "sku": sku, "name": name, "units": units, "revenue_cents": revenue }),
            );
        }
        documents
    }
}

fn cart_document(id: &str, cart: &Cart) -> Value {
    let items: Vec<Value> = cart
        .lines
        .iter()
        .map(|(sku, line)| {
            let total = line.price_cents * i64::try_from(line.units).unwrap_or(i64::MAX);
            json!({
                "sku": sku, "name": line.name, "unit_price_cents": line.price_cents,
                "currency": line.currency, "quantity": line.units, "line_total_cents": total,
            })
        })
        .collect();
    let total: i64 = items.iter().filter_map(|item| item["line_total_cents"].as_i64()).sum();
    json!({
        "cart_id": id,
        "status": if cart.order.is_some() { "checked_out" } else { "open" },
        "order_id": cart.order.map(|order| order.to_string()),
        "items": items,
        "total_cents": total,
        "version": cart.version,
    })
}

fn order_document(id: Uuid, order: &Order) -> Value {
    let mut body = json!({
        "order_id": id.to_string(),
        "customer_id": order.customer,
        "cart_id": order.cart,
        "status": order.status,
        "lines": order.lines,
        "total_cents": order.total_cents,
        "rejection_reason": order.reason,
        "version": order.version,
    });
    if let Some(at) = placed_at(id) {
        body["placed_at"] = json!(at);
    }
    body
}

/// The checkout time a UUIDv7 order id carries.
fn placed_at(order: Uuid) -> Option<DateTime<Utc>> {
    let (seconds, nanos) = order.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)
}

/// `customer_orders`' clustering key: newest first, then the order id.
fn customer_key(order: Uuid) -> String {
    let micros = placed_at(order).map_or(0, |at| at.timestamp_micros().max(0));
    format!("{:019}-{order}", i64::MAX - micros)
}

fn place((view, partition, clustering): &(String, String, String)) -> String {
    if clustering.is_empty() {
        format!("{view}/{partition}")
    } else {
        format!("{view}/{partition}/{clustering}")
    }
}

/// Where `have` first differs from `want` in a field `want` has; a field
/// absent from `have` reads as null, fields `want` lacks are not looked at.
fn first_difference(want: &Value, have: &Value, path: &str) -> Option<String> {
    let field = |name: &str| if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
    match (want, have) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(name, value)| {
            first_difference(value, have.get(name).unwrap_or(&Value::Null), &field(name))
        }),
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => want
            .iter()
            .zip(have)
            .enumerate()
            .find_map(|(n, (w, h))| first_difference(w, h, &format!("{path}[{n}]"))),
        (Value::String(w), Value::String(h)) if path.ends_with("placed_at") => {
            let parse = |text: &str| text.parse::<DateTime<Utc>>().ok();
            (parse(w) != parse(h) || parse(h).is_none())
                .then(|| format!("{path} is {h:?}, the events give {w:?}"))
        }
        (Value::Number(w), Value::Number(h)) => (w.as_f64() != h.as_f64() || w.as_i64() != h.as_i64())
            .then(|| format!("{path} is {h}, the events give {w}")),
        _ => (want != have).then(|| format!("{path} is {have}, the events give {want}")),
    }
}

/// Compares the read DB's documents (`actual`) with the model of `events`;
/// returns the model for the history's reads.
pub(super) fn compare(
    events: &[EventRecord],
    actual: &Documents,
    report: &mut CheckReport,
    details: &mut Details,
) -> Model {
    let model = Model::fold(events);
    let differing = model.differences(actual);
    report.model_differences = differing.len() as u64;
    for line in differing {
        details.violation("model", line);
    }
    model
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;
    use parallax_core::{Codec, DomainEvent, Metadata};
    use serde::Serialize;

    use super::*;

    /// Records events as a store would: positions and stream versions in turn.
    #[derive(Default)]
    struct Log {
        events: Vec<EventRecord>,
        versions: BTreeMap<String, u64>,
    }

    impl Log {
        fn push<E: DomainEvent + Serialize + serde::de::DeserializeOwned>(&mut self, stream: &str, event: E) {
            let (event_type, schema_version, payload) = Codec::<E>::new().encode(&event);
            let version = self.versions.entry(stream.to_owned()).or_default();
            *version += 1;
            self.events.push(EventRecord {
                position: self.events.len() as u64 + 1,
                stream_id: stream.to_owned(),
                stream_version: *version,
                event_id: Uuid::new_v4(),
                event_type: event_type.to_owned(),
                schema_version,
                payload,
                metadata: Metadata::default(),
                recorded_at: Utc::now(),
            });
        }
    }

    fn line(sku: &str, quantity: u32) -> OrderLine {
        OrderLine { sku: sku.into(), name: format!("name of {sku}"), unit_price_cents: 250, quantity }
    }

    /// A product, a cart filled, changed and checked out, its order placed
    /// and confirmed, another cart open.
    fn history() -> Log {
        let mut log = Log::default();
        let product = |sku: &str| ProductEvent::Registered {
            sku: sku.into(),
            name: format!("name of {sku}"),
            price_cents: 250,
            stock: 100,
        };
        log.push("product-A", product("A"));
        log.push("product-B", product("B"));
        let add = |cart: &str, sku: &str, quantity: u32| CartEvent::ItemAdded {
            cart_id: cart.into(),
            sku: sku.into(),
            name: format!("name of {sku}"),
            price_cents: 250,
            currency: "EUR".into(),
            quantity,
        };
        log.push("cart-c1", add("c1", "B", 1));
        log.push("cart-c1", add("c1", "A", 2));
        log.push("cart-c1", add("c1", "A", 1));
        log.push("cart-c1", CartEvent::ItemRemoved { cart_id: "c1".into(), sku: "B".into() });
        log.push("cart-c2", add("c2", "B", 4));
        let order_id = Uuid::now_v7();
        let lines = vec![line("A", 3)];
        log.push(
            "cart-c1",
            CartEvent::CheckedOut {
                personal: None,
                cart_id: "c1".into(),
                order_id,
                customer_id: "u1".into(),
                lines: lines.clone(),
                total_cents: 750,
            },
        );
        let order = format!("order-{order_id}");
        log.push(
            &order,
            OrderEvent::Placed {
                personal: None,
                order_id,
                customer_id: "u1".into(),
                cart_id: "c1".into(),
                lines: lines.clone(),
                total_cents: 750,
            },
        );
        log.push(&order, OrderEvent::StockRequested { order_id, sku: "A".into(), quantity: 3 });
        log.push(
            "product-A",
            ProductEvent::StockReserved { sku: "A".into(), order_id, quantity: 3, stock: 97 },
        );
        log.push(&order, OrderEvent::LineReserved { order_id, sku: "A".into(), quantity: 3 });
        log.push(
            &order,
            OrderEvent::Confirmed { order_id, customer_id: "u1".into(), lines, total_cents: 750 },
        );
        log
    }

    async fn rebuild(events: &[EventRecord]) -> Documents {
        super::super::views::fold(Arc::new(events.to_vec())).await.expect("the rebuild").documents
    }

    /// The model agrees with the projections on a history that uses every
    /// view, and names a document the rebuild and the read DB agree on but
    /// the events do not give: the one fault the rebuild cannot see.
    #[tokio::test]
    async fn the_model_sees_what_the_rebuild_repeats() {
        let log = history();
        let model = Model::fold(&log.events);
        let mut actual = rebuild(&log.events).await;
        assert_eq!(model.documents().len(), actual.len(), "{actual:#?}");
        assert_eq!(model.differences(&actual), Vec::<String>::new());
        assert_eq!(model.cart_units_at("c1", 3), Some([("A".to_owned(), 3), ("B".to_owned(), 1)].into()));
        assert_eq!(model.cart_units_at("c1", 4), Some([("A".to_owned(), 3)].into()));

        // A projection that counted one unit too many, in the views and in
        // the rebuild alike: the rebuild comparison agrees, the model not.
        let key = (CART.to_owned(), "c1".to_owned(), String::new());
        let mut fold = actual.clone();
        for documents in [&mut fold, &mut actual] {
            let cart = documents.get_mut(&key).expect("cart c1");
            cart["items"][0]["quantity"] = json!(4);
        }
        assert!(parallax_runtime::check::differences(&fold, &actual).is_empty());
        assert_eq!(
            model.differences(&actual),
            vec!["differs cart/c1: items[0].quantity is 4, the events give 3".to_owned()]
        );

        // The sales row doubled, a stock left behind, a stray customer row.
        let mut actual = rebuild(&log.events).await;
        let sales = (SALES.to_owned(), ALL.to_owned(), "A".to_owned());
        actual.get_mut(&sales).expect("sales of A")["units"] = json!(6);
        let catalog = (CATALOG.to_owned(), ALL.to_owned(), "A".to_owned());
        actual.get_mut(&catalog).expect("product A")["stock"] = json!(100);
        let stray = (CUSTOMER_ORDERS.to_owned(), "u2".to_owned(), "x".to_owned());
        actual.insert(stray, json!({}));
        let differences = model.differences(&actual);
        assert_eq!(differences.len(), 3, "{differences:#?}");
        assert!(differences[0].starts_with("differs catalog/all/A: stock is 100"), "{differences:#?}");
        assert!(differences[1].starts_with("extra customer_orders/u2/x"), "{differences:#?}");
        assert!(differences[2].starts_with("differs sales/all/A: units is 6"), "{differences:#?}");
    }
}
