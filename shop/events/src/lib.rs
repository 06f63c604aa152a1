//! # shop-events
//!
//! The shop's published event contract: what the write side records and the
//! read side (and anyone on the Kafka topic) consumes. Serde (and schemars,
//! for [`contract`]'s JSON Schemas) only: this crate depends on
//! `parallax-core` for the [`DomainEvent`] trait and on nothing of the
//! domain.
//!
//! Persisted names are explicit: every variant carries its type name
//! (`"cart.item_added"`), and the prefix before the dot is the stream type.
//!
//! Every event type has a schema version, 1 unless said otherwise; events
//! are written at the current one and stored events of older ones are
//! upcast when read, by every reader alike. Changing a payload incompatibly
//! (renaming, removing or retyping a field, adding a required one) means a
//! new version and an upcaster from the previous one, never an edit in
//! place: [`upcasters`] has the rule, the versions so far and how to add
//! the next.
#![warn(missing_docs)]

pub mod upcasters;
pub mod contract;
pub mod personal;
#[doc(hidden)]
pub mod fuzzing;

use std::sync::Arc;

use parallax_core::{Codec, CodecError, DomainEvent, EventRecord, Upcaster};

pub use personal::{Contact, PersonalData};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The shop's currency (ISO 4217 code): every `*_cents` amount in these
/// events is in its minor unit. `cart.item_added` names it explicitly since
/// its version 2.
pub const CURRENCY: &str = "EUR";

/// Stream type of products; their id is the SKU.
pub const PRODUCT: &str = "product";
/// Stream type of carts; their id is the client's cart id.
pub const CART: &str = "cart";
/// Stream type of orders; their id is the order id.
pub const ORDER: &str = "order";

/// One line of an order, priced when the cart was checked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    /// The product.
    pub sku: String,
    /// Its name at checkout.
    pub name: String,
    /// Its unit price at checkout.
    pub unit_price_cents: i64,
    /// How many.
    pub quantity: u32,
}

impl OrderLine {
    /// Price of the line.
    pub fn total_cents(&self) -> i64 {
        self.unit_price_cents * i64::from(self.quantity)
    }
}

/// Events of a product's stream (`product-{sku}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum ProductEvent {
    /// A product was added to the catalog.
    #[serde(rename = "product.registered")]
    Registered {
        /// The product, as in its stream id (`product-{sku}`).
        sku: String,
        /// Display name, free text.
        name: String,
        /// Price of one unit, in cents of the shop's currency, EUR ([`CURRENCY`]).
        price_cents: i64,
        /// Units in stock.
        stock: u32,
    },
    /// The product was renamed.
    #[serde(rename = "product.renamed")]
    Renamed {
        /// The product, as in its stream id (`product-{sku}`).
        sku: String,
        /// The new name.
        name: String,
    },
    /// The product's price changed.
    #[serde(rename = "product.repriced")]
    Repriced {
        /// The product, as in its stream id (`product-{sku}`).
        sku: String,
        /// The new price.
        price_cents: i64,
    },
    /// Units arrived.
    #[serde(rename = "product.restocked")]
    Restocked {
        /// The product, as in its stream id (`product-{sku}`).
        sku: String,
        /// Units added.
        quantity: u32,
        /// Units available afterwards.
        stock: u32,
    },
    /// Units were set aside for an order.
    #[serde(rename = "product.stock_reserved")]
    StockReserved {
        /// The product, as in its stream id (`product-{sku}`).
        sku: String,
        /// The order the units are set aside for.
        order_id: Uuid,
        /// Units reserved.
        quantity: u32,
        /// Units available afterwards.
        stock: u32,
    },
    /// An order asked for more units than were available.
    #[serde(rename = "product.stock_reservation_rejected")]
    StockReservationRejected {
        /// The product, as in its stream id (`product-{sku}`).
        sku: String,
        /// The order that asked.
        order_id: Uuid,
        /// Units asked for.
        requested: u32,
        /// Units available.
        available: u32,
    },
    /// Units set aside for an order came back.
    #[serde(rename = "product.stock_released")]
    StockReleased {
        /// The product, as in its stream id (`product-{sku}`).
        sku: String,
        /// The order whose units came back.
        order_id: Uuid,
        /// Units released.
        quantity: u32,
        /// Units available afterwards.
        stock: u32,
    },
}

impl ProductEvent {
    /// Every persisted type name of a product's events.
    pub const TYPES: &'static [&'static str] = &[
        "product.registered",
        "product.renamed",
        "product.repriced",
        "product.restocked",
        "product.stock_reserved",
        "product.stock_reservation_rejected",
        "product.stock_released",
    ];
}

impl DomainEvent for ProductEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Registered { .. } => "product.registered",
            Self::Renamed { .. } => "product.renamed",
            Self::Repriced { .. } => "product.repriced",
            Self::Restocked { .. } => "product.restocked",
            Self::StockReserved { .. } => "product.stock_reserved",
            Self::StockReservationRejected { .. } => "product.stock_reservation_rejected",
            Self::StockReleased { .. } => "product.stock_released",
        }
    }
}

/// Events of a cart's stream (`cart-{cart_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum CartEvent {
    /// Units of a product were put in the cart. Version 2: v1 called the
    /// price `unit_price_cents` and had no currency.
    #[serde(rename = "cart.item_added")]
    ItemAdded {
        /// The cart, as in its stream id (`cart-{cart_id}`).
        cart_id: String,
        /// The product.
        sku: String,
        /// Its name when added.
        name: String,
        /// Its unit price when added, in minor units of `currency` (the
        /// order is priced again at checkout).
        price_cents: i64,
        /// ISO 4217 code of the price's currency.
        currency: String,
        /// Units added.
        quantity: u32,
    },
    /// A product was taken out of the cart, all units of it.
    #[serde(rename = "cart.item_removed")]
    ItemRemoved {
        /// The cart, as in its stream id (`cart-{cart_id}`).
        cart_id: String,
        /// The product.
        sku: String,
    },
    /// The cart became an order. Version 2: `personal` is new.
    #[serde(rename = "cart.checked_out")]
    CheckedOut {
        /// The cart, as in its stream id (`cart-{cart_id}`).
        cart_id: String,
        /// The order it becomes.
        order_id: Uuid,
        /// Who buys.
        customer_id: String,
        /// What, at which price.
        lines: Vec<OrderLine>,
        /// Sum of the lines.
        total_cents: i64,
        /// The buyer's name, e-mail and shipping address, each sealed under
        /// the customer's own key ([`personal`]); null when the checkout
        /// gave none.
        #[schemars(required, schema_with = "personal::nullable")]
        personal: Option<PersonalData>,
    },
}

impl CartEvent {
    /// Every persisted type name of a cart's events.
    pub const TYPES: &'static [&'static str] = &["cart.item_added", "cart.item_removed", "cart.checked_out"];
}

impl DomainEvent for CartEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::ItemAdded { .. } => "cart.item_added",
            Self::ItemRemoved { .. } => "cart.item_removed",
            Self::CheckedOut { .. } => "cart.checked_out",
        }
    }

    fn schema_version(event_type: &str) -> u32 {
        match event_type {
            "cart.item_added" | "cart.checked_out" => 2,
            _ => 1,
        }
    }

    fn upcasters() -> Vec<Arc<dyn Upcaster>> {
        vec![Arc::new(upcasters::ItemAddedV1ToV2), Arc::new(upcasters::CheckedOutV1ToV2)]
    }
}

/// Events of an order's stream (`order-{order_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    /// The order exists; its stock is not reserved yet. Version 2:
    /// `personal` is new.
    #[serde(rename = "order.placed")]
    Placed {
        /// The order, as in its stream id (`order-{order_id}`).
        order_id: Uuid,
        /// Who buys.
        customer_id: String,
        /// The cart it came from.
        cart_id: String,
        /// What, at which price.
        lines: Vec<OrderLine>,
        /// Sum of the lines.
        total_cents: i64,
        /// The checkout's `personal`, as sealed there ([`personal`]).
        #[schemars(required, schema_with = "personal::nullable")]
        personal: Option<PersonalData>,
    },
    /// The order needs this line's stock reserved next.
    #[serde(rename = "order.stock_requested")]
    StockRequested {
        /// The order, as in its stream id (`order-{order_id}`).
        order_id: Uuid,
        /// The product.
        sku: String,
        /// Units.
        quantity: u32,
    },
    /// A line's stock is reserved.
    #[serde(rename = "order.line_reserved")]
    LineReserved {
        /// The order, as in its stream id (`order-{order_id}`).
        order_id: Uuid,
        /// The product.
        sku: String,
        /// Units.
        quantity: u32,
    },
    /// Every line is reserved: the order can be paid.
    #[serde(rename = "order.confirmed")]
    Confirmed {
        /// The order, as in its stream id (`order-{order_id}`).
        order_id: Uuid,
        /// Who buys.
        customer_id: String,
        /// What was sold.
        lines: Vec<OrderLine>,
        /// Sum of the lines.
        total_cents: i64,
    },
    /// A line could not be reserved: the order is void, reserved lines go back.
    #[serde(rename = "order.rejected")]
    Rejected {
        /// The order, as in its stream id (`order-{order_id}`).
        order_id: Uuid,
        /// Why.
        reason: String,
        /// Lines whose reservation must be released.
        release: Vec<OrderLine>,
    },
    /// The order was paid.
    #[serde(rename = "order.paid")]
    Paid {
        /// The order, as in its stream id (`order-{order_id}`).
        order_id: Uuid,
        /// Amount paid.
        amount_cents: i64,
    },
    /// The order left the warehouse.
    #[serde(rename = "order.shipped")]
    Shipped {
        /// The order, as in its stream id (`order-{order_id}`).
        order_id: Uuid,
    },
    /// The order was cancelled before shipping: reserved lines go back.
    #[serde(rename = "order.cancelled")]
    Cancelled {
        /// The order, as in its stream id (`order-{order_id}`).
        order_id: Uuid,
        /// Lines whose reservation must be released.
        release: Vec<OrderLine>,
    },
}

impl OrderEvent {
    /// Every persisted type name of an order's events.
    pub const TYPES: &'static [&'static str] = &[
        "order.placed",
        "order.stock_requested",
        "order.line_reserved",
        "order.confirmed",
        "order.rejected",
        "order.paid",
        "order.shipped",
        "order.cancelled",
    ];
}

impl DomainEvent for OrderEvent {
    fn schema_version(event_type: &str) -> u32 {
        match event_type {
            "order.placed" => 2,
            _ => 1,
        }
    }

    fn upcasters() -> Vec<Arc<dyn Upcaster>> {
        vec![Arc::new(upcasters::PlacedV1ToV2)]
    }

    fn event_type(&self) -> &'static str {
        match self {
            Self::Placed { .. } => "order.placed",
            Self::StockRequested { .. } => "order.stock_requested",
            Self::LineReserved { .. } => "order.line_reserved",
            Self::Confirmed { .. } => "order.confirmed",
            Self::Rejected { .. } => "order.rejected",
            Self::Paid { .. } => "order.paid",
            Self::Shipped { .. } => "order.shipped",
            Self::Cancelled { .. } => "order.cancelled",
        }
    }
}

/// Any shop event, as a consumer of the whole log sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShopEvent {
    /// From a product stream.
    Product(ProductEvent),
    /// From a cart stream.
    Cart(CartEvent),
    /// From an order stream.
    Order(OrderEvent),
}

/// Codecs for every shop stream type, each with its event type's upcasters
/// ([`upcasters`]): stored events of any version decode to today's shape.
#[derive(Clone, Default)]
pub struct ShopCodec {
    /// Product events.
    pub product: Codec<ProductEvent>,
    /// Cart events.
    pub cart: Codec<CartEvent>,
    /// Order events.
    pub order: Codec<OrderEvent>,
}

impl ShopCodec {
    /// Decodes any shop event by the stream type its type name starts with.
    /// `Ok(None)` for events of streams that are not the shop's.
    pub fn decode(&self, record: &EventRecord) -> Result<Option<ShopEvent>, CodecError> {
        let stream_type = record.event_type.split('.').next().unwrap_or_default();
        Ok(Some(match stream_type {
            PRODUCT => ShopEvent::Product(self.product.decode_record(record)?),
            CART => ShopEvent::Cart(self.cart.decode_record(record)?),
            ORDER => ShopEvent::Order(self.order.decode_record(record)?),
            _ => return Ok(None),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_names_match_serde_names() {
        let codec = Codec::<CartEvent>::new();
        let event = CartEvent::ItemRemoved { cart_id: "c1".into(), sku: "A".into() };
        let (event_type, version, payload) = codec.encode(&event);
        assert_eq!(event_type, "cart.item_removed");
        assert_eq!(version, 1);
        assert_eq!(payload, r#"{"cart_id":"c1","sku":"A"}"#);
        assert_eq!(codec.decode(event_type, version, &payload).expect("decodes"), event);
    }

    /// Each `TYPES` list is exactly its enum's variants, in order: serde
    /// names every variant when it refuses an unknown one.
    #[test]
    fn the_type_lists_are_the_variants() {
        fn variants<E: serde::de::DeserializeOwned>() -> Vec<String> {
            let refusal = serde_json::from_value::<E>(serde_json::json!({ "type": "?", "data": {} }))
                .err()
                .expect("an unknown type is refused")
                .to_string();
            refusal.split('`').skip(3).step_by(2).map(str::to_owned).collect()
        }
        assert_eq!(variants::<ProductEvent>(), ProductEvent::TYPES);
        assert_eq!(variants::<CartEvent>(), CartEvent::TYPES);
        assert_eq!(variants::<OrderEvent>(), OrderEvent::TYPES);
    }
}
