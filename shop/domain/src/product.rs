//! The product aggregate: catalog entry and stock, one stream per SKU.
//!
//! Stock is a count of units available; a reservation moves units from the
//! available stock to one order (at most one reservation per order), and a
//! release moves them back. A reservation that cannot be served is not an
//! error but a recorded decision
//! ([`ProductEvent::StockReservationRejected`]), so the checkout saga reads
//! the same outcome every time it replays.
//!
//! Idempotency: `Reserve` for an order that already holds a reservation and
//! `Release` for an order that holds none decide nothing. A `Reserve`
//! redelivered after its reservation was released, or after it was
//! rejected, is not recognised here (remembering every order would grow the
//! state forever); the runtime keeps it out with the idempotency key it
//! derives from the causing event (see [`crate::saga`]).

use std::collections::BTreeMap;

use parallax_core::Aggregate;
use serde::{Deserialize, Serialize};
use shop_events::ProductEvent;
use uuid::Uuid;

use crate::error::{name_problem, DomainError, Refusal};
use crate::values::Sku;

/// What a product can be asked to do. The product is the stream's, so only
/// `Register` names its SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductCommand {
    /// Adds the product to the catalog.
    Register {
        /// Its SKU, also the stream id.
        sku: Sku,
        /// Its name: not blank, at most 200 characters.
        name: String,
        /// Its price, not negative.
        price_cents: i64,
        /// Units in stock, 0 to `u32::MAX`.
        stock: i64,
    },
    /// Renames the product. The same name again decides nothing.
    Rename {
        /// The new name.
        name: String,
    },
    /// Changes the price. The same price again decides nothing.
    Reprice {
        /// The new price, not negative.
        price_cents: i64,
    },
    /// Adds units to the stock.
    Restock {
        /// Units arriving, positive.
        quantity: i64,
    },
    /// Sets units aside for an order (sent by the checkout saga).
    Reserve {
        /// The order.
        order_id: Uuid,
        /// Units, positive.
        quantity: u32,
    },
    /// Gives back what an order reserved (sent by the checkout saga).
    Release {
        /// The order.
        order_id: Uuid,
    },
}

/// Why a product refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProductError {
    /// The name is malformed. [`Refusal::Invalid`].
    #[error("invalid product name {name:?}: {problem}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The initial stock does not fit a `u32`. [`Refusal::Invalid`].
    #[error("stock {stock} is above the maximum of {max}", max = u32::MAX)]
    StockTooLarge {
        /// The stock as given.
        stock: i64,
    },
    /// A restock would take the units on hand past `u32::MAX`: a rule of the
    /// state, not of the command. [`Refusal::RuleViolated`].
    #[error(
        "restocking {quantity} units onto {on_hand} on hand would exceed the maximum of {max}",
        max = u32::MAX
    )]
    StockOverflow {
        /// Units on hand: available plus reserved.
        on_hand: u64,
        /// Units asked to add.
        quantity: i64,
    },
    /// A reservation of zero units. [`Refusal::Invalid`].
    #[error("reservation quantity must be positive")]
    ZeroReservation,
    /// The product is not registered. [`Refusal::NotFound`].
    #[error("product not found")]
    NotFound,
    /// The product is registered already. [`Refusal::AlreadyExists`].
    #[error("product {sku} is already registered")]
    AlreadyRegistered {
        /// Its SKU.
        sku: String,
    },
    /// A negative initial stock. [`Refusal::RuleViolated`].
    #[error("stock cannot be negative (got {stock})")]
    NegativeStock {
        /// The stock as given.
        stock: i64,
    },
    /// A negative price. [`Refusal::RuleViolated`].
    #[error("price cannot be negative (got {price_cents} cents)")]
    NegativePrice {
        /// The price as given.
        price_cents: i64,
    },
    /// A restock of zero or fewer units. [`Refusal::RuleViolated`].
    #[error("restock quantity must be positive (got {quantity})")]
    RestockNotPositive {
        /// The quantity as given.
        quantity: i64,
    },
}

impl ProductError {
    /// The kind of refusal.
    pub fn kind(&self) -> Refusal {
        match self {
            Self::InvalidName { .. } | Self::StockTooLarge { .. } | Self::ZeroReservation => Refusal::Invalid,
            Self::NotFound => Refusal::NotFound,
            Self::AlreadyRegistered { .. } => Refusal::AlreadyExists,
            Self::NegativeStock { .. }
            | Self::NegativePrice { .. }
            | Self::RestockNotPositive { .. }
            | Self::StockOverflow { .. } => Refusal::RuleViolated,
        }
    }

    /// The stable code ([`DomainError::code`]).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => "product-name-invalid",
            Self::StockTooLarge { .. } => "product-stock-too-large",
            Self::StockOverflow { .. } => "product-stock-overflow",
            Self::ZeroReservation => "product-reservation-zero",
            Self::NotFound => "product-not-found",
            Self::AlreadyRegistered { .. } => "product-already-registered",
            Self::NegativeStock { .. } => "product-stock-negative",
            Self::NegativePrice { .. } => "product-price-negative",
            Self::RestockNotPositive { .. } => "product-restock-not-positive",
        }
    }
}

impl DomainError for ProductError {
    fn kind(&self) -> Refusal {
        ProductError::kind(self)
    }

    fn code(&self) -> &'static str {
        ProductError::code(self)
    }
}

/// A product's state: its catalog entry, available stock and reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    registered: bool,
    sku: String,
    name: String,
    price_cents: i64,
    stock: u32,
    reservations: BTreeMap<Uuid, u32>,
}

impl Product {
    /// Whether the product was registered (a new stream is not).
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Its SKU (empty until registered).
    pub fn sku(&self) -> &str {
        &self.sku
    }

    /// Its current name (empty until registered).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its current price.
    pub fn price_cents(&self) -> i64 {
        self.price_cents
    }

    /// Units available, not counting reserved ones.
    pub fn stock(&self) -> u32 {
        self.stock
    }

    /// Units reserved for `order_id`, if it holds a reservation.
    pub fn reserved_for(&self, order_id: Uuid) -> Option<u32> {
        self.reservations.get(&order_id).copied()
    }

    /// Units reserved for all orders together.
    pub fn reserved(&self) -> u64 {
        self.reservations.values().map(|&quantity| u64::from(quantity)).sum()
    }

    fn registered(&self) -> Result<(), ProductError> {
        if self.registered {
            Ok(())
        } else {
            Err(ProductError::NotFound)
        }
    }

    fn register(
        &self,
        sku: &str,
        name: &str,
        price_cents: i64,
        stock: i64,
    ) -> Result<Vec<ProductEvent>, ProductError> {
        check_name(name)?;
        if stock > i64::from(u32::MAX) {
            return Err(ProductError::StockTooLarge { stock });
        }
        if self.registered {
            return Err(ProductError::AlreadyRegistered { sku: self.sku.clone() });
        }
        let Ok(stock) = u32::try_from(stock) else {
            return Err(ProductError::NegativeStock { stock });
        };
        check_price(price_cents)?;
        Ok(vec![ProductEvent::Registered { sku: sku.to_owned(), name: name.to_owned(), price_cents, stock }])
    }

    fn rename(&self, name: &str) -> Result<Vec<ProductEvent>, ProductError> {
        check_name(name)?;
        self.registered()?;
        if name == self.name {
            return Ok(vec![]);
        }
        Ok(vec![ProductEvent::Renamed { sku: self.sku.clone(), name: name.to_owned() }])
    }

    fn reprice(&self, price_cents: i64) -> Result<Vec<ProductEvent>, ProductError> {
        self.registered()?;
        check_price(price_cents)?;
        if price_cents == self.price_cents {
            return Ok(vec![]);
        }
        Ok(vec![ProductEvent::Repriced { sku: self.sku.clone(), price_cents }])
    }

    fn restock(&self, quantity: i64) -> Result<Vec<ProductEvent>, ProductError> {
        self.registered()?;
        if quantity <= 0 {
            return Err(ProductError::RestockNotPositive { quantity });
        }
        // Reserved units come back to the stock on release: they count too,
        // so a release can never overflow.
        let on_hand = u64::from(self.stock) + self.reserved();
        let overflow = || ProductError::StockOverflow { on_hand, quantity };
        let added = u32::try_from(quantity).map_err(|_| overflow())?;
        if on_hand + u64::from(added) > u64::from(u32::MAX) {
            return Err(overflow());
        }
        let stock = self.stock + added;
        Ok(vec![ProductEvent::Restocked { sku: self.sku.clone(), quantity: added, stock }])
    }

    fn reserve(&self, order_id: Uuid, quantity: u32) -> Result<Vec<ProductEvent>, ProductError> {
        if quantity == 0 {
            return Err(ProductError::ZeroReservation);
        }
        self.registered()?;
        if self.reservations.contains_key(&order_id) {
            return Ok(vec![]);
        }
        let sku = self.sku.clone();
        Ok(vec![match self.stock.checked_sub(quantity) {
            Some(stock) => ProductEvent::StockReserved { sku, order_id, quantity, stock },
            None => ProductEvent::StockReservationRejected {
                sku,
                order_id,
                requested: quantity,
                available: self.stock,
            },
        }])
    }

    fn release(&self, order_id: Uuid) -> Result<Vec<ProductEvent>, ProductError> {
        self.registered()?;
        let Some(&quantity) = self.reservations.get(&order_id) else {
            return Ok(vec![]);
        };
        let stock = self.stock.saturating_add(quantity);
        Ok(vec![ProductEvent::StockReleased { sku: self.sku.clone(), order_id, quantity, stock }])
    }
}

fn check_name(name: &str) -> Result<(), ProductError> {
    match name_problem(name) {
        Some(problem) => Err(ProductError::InvalidName { name: name.to_owned(), problem }),
        None => Ok(()),
    }
}

fn check_price(price_cents: i64) -> Result<(), ProductError> {
    if price_cents < 0 {
        return Err(ProductError::NegativePrice { price_cents });
    }
    Ok(())
}

impl Aggregate for Product {
    const STREAM_TYPE: &'static str = shop_events::PRODUCT;

    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;

    /// Checks are made in the order: malformed input ([`Refusal::Invalid`]),
    /// existence, then business rules.
    fn handle(&self, command: &ProductCommand) -> Result<Vec<ProductEvent>, ProductError> {
        match command {
            ProductCommand::Register { sku, name, price_cents, stock } => {
                self.register(sku.as_str(), name, *price_cents, *stock)
            }
            ProductCommand::Rename { name } => self.rename(name),
            ProductCommand::Reprice { price_cents } => self.reprice(*price_cents),
            ProductCommand::Restock { quantity } => self.restock(*quantity),
            ProductCommand::Reserve { order_id, quantity } => self.reserve(*order_id, *quantity),
            ProductCommand::Release { order_id } => self.release(*order_id),
        }
    }

    fn apply(&mut self, event: &ProductEvent) {
        match event {
            ProductEvent::Registered { sku, name, price_cents, stock } => {
                self.registered = true;
                self.sku.clone_from(sku);
                self.name.clone_from(name);
                self.price_cents = *price_cents;
                self.stock = *stock;
            }
            ProductEvent::Renamed { name, .. } => self.name.clone_from(name),
            ProductEvent::Repriced { price_cents, .. } => self.price_cents = *price_cents,
            ProductEvent::Restocked { stock, .. } => self.stock = *stock,
            ProductEvent::StockReserved { order_id, quantity, stock, .. } => {
                self.reservations.insert(*order_id, *quantity);
                self.stock = *stock;
            }
            ProductEvent::StockReservationRejected { .. } => {}
            ProductEvent::StockReleased { order_id, stock, .. } => {
                self.reservations.remove(order_id);
                self.stock = *stock;
            }
        }
    }
}
