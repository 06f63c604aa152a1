//! The cart aggregate: what a client means to buy, one stream per cart id.
//!
//! A cart exists from its first item on. Adding a SKU that is in the cart
//! already adds to its quantity. Checking out prices every line again at the
//! catalog's current price and turns the cart into an order; a checked-out
//! cart accepts nothing more.
//!
//! Products live in their own streams: the command handler looks up what a
//! decision needs ([`ProductInfo`] for `AddItem`, one per SKU in
//! [`Cart::skus`] for `CheckOut`) and passes it in the command.

use std::collections::BTreeMap;

use parallax_core::Aggregate;
use serde::{Deserialize, Serialize};
use shop_events::{CartEvent, OrderLine, PersonalData};
use uuid::Uuid;

use crate::error::{DomainError, Refusal};
use crate::values::{CartId, CustomerId, Quantity, Sku};

/// Most units of one SKU a cart may hold.
pub const MAX_LINE_QUANTITY: u32 = 1000;

/// A product's catalog entry as a cart needs it, looked up by the command
/// handler from the product's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInfo {
    /// Its current name.
    pub name: String,
    /// Its current price.
    pub unit_price_cents: i64,
}

/// What a cart can be asked to do. Every command names its cart, for the
/// messages of the refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartCommand {
    /// Puts units of a product in the cart (creating the cart).
    AddItem {
        /// The cart.
        cart_id: CartId,
        /// The product.
        sku: Sku,
        /// Units to add.
        quantity: Quantity,
        /// The product as the catalog has it; `None` if there is no such
        /// product.
        product: Option<ProductInfo>,
    },
    /// Takes a product out of the cart, all units of it.
    RemoveItem {
        /// The cart.
        cart_id: CartId,
        /// The product.
        sku: Sku,
    },
    /// Turns the cart into an order.
    CheckOut {
        /// The cart.
        cart_id: CartId,
        /// The order it becomes (chosen by the caller).
        order_id: Uuid,
        /// Who buys.
        customer_id: CustomerId,
        /// The catalog's current entry for each SKU of [`Cart::skus`]; a
        /// SKU missing here is a product that no longer exists.
        prices: BTreeMap<String, ProductInfo>,
        /// The buyer's name, e-mail and address, already sealed under the
        /// customer's key by the handler (the cart never sees them in the
        /// clear; architecture invariant 3).
        personal: Option<PersonalData>,
    },
}

/// Why a cart refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CartError {
    /// The cart has no events yet. [`Refusal::NotFound`].
    #[error("cart {cart_id} not found")]
    CartNotFound {
        /// The cart.
        cart_id: String,
    },
    /// The product is not in the catalog. [`Refusal::NotFound`].
    #[error("product {sku} not found")]
    ProductNotFound {
        /// The product.
        sku: String,
    },
    /// The product is not in the cart. [`Refusal::NotFound`].
    #[error("cart {cart_id} has no item {sku}")]
    ItemNotInCart {
        /// The cart.
        cart_id: String,
        /// The product.
        sku: String,
    },
    /// The cart became an order already. [`Refusal::RuleViolated`].
    #[error("cart {cart_id} is already checked out (order {order_id})")]
    AlreadyCheckedOut {
        /// The cart.
        cart_id: String,
        /// The order it became.
        order_id: Uuid,
    },
    /// A line would hold more than [`MAX_LINE_QUANTITY`] units. [`Refusal::RuleViolated`].
    #[error("a cart line holds at most {MAX_LINE_QUANTITY} units; {sku} would have {quantity}")]
    LineTooLarge {
        /// The product.
        sku: String,
        /// Units the line would hold.
        quantity: i64,
    },
    /// Checking out a cart without items. [`Refusal::RuleViolated`].
    #[error("cart {cart_id} is empty")]
    Empty {
        /// The cart.
        cart_id: String,
    },
    /// The order's total does not fit an `i64` of cents. [`Refusal::RuleViolated`].
    #[error("the total of cart {cart_id} is too large")]
    TotalTooLarge {
        /// The cart.
        cart_id: String,
    },
}

impl CartError {
    /// The kind of refusal.
    pub fn kind(&self) -> Refusal {
        match self {
            Self::CartNotFound { .. } | Self::ProductNotFound { .. } | Self::ItemNotInCart { .. } => {
                Refusal::NotFound
            }
            Self::AlreadyCheckedOut { .. }
            | Self::LineTooLarge { .. }
            | Self::Empty { .. }
            | Self::TotalTooLarge { .. } => Refusal::RuleViolated,
        }
    }

    /// The stable code ([`DomainError::code`]).
    pub fn code(&self) -> &'static str {
        match self {
            Self::CartNotFound { .. } => "cart-not-found",
            Self::ProductNotFound { .. } => "product-not-found",
            Self::ItemNotInCart { .. } => "cart-item-not-found",
            Self::AlreadyCheckedOut { .. } => "cart-already-checked-out",
            Self::LineTooLarge { .. } => "cart-line-too-large",
            Self::Empty { .. } => "cart-empty",
            Self::TotalTooLarge { .. } => "cart-total-too-large",
        }
    }
}

impl DomainError for CartError {
    fn kind(&self) -> Refusal {
        CartError::kind(self)
    }

    fn code(&self) -> &'static str {
        CartError::code(self)
    }
}

/// One SKU in a cart, at the name and price it had when last added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    /// Its name when last added.
    pub name: String,
    /// Its price when last added.
    pub unit_price_cents: i64,
    /// Units in the cart.
    pub quantity: u32,
}

/// A cart's state: its lines by SKU, and the order it became.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    exists: bool,
    cart_id: String,
    lines: BTreeMap<String, CartLine>,
    order_id: Option<Uuid>,
}

impl Cart {
    /// Whether the cart exists (it has had an item).
    pub fn exists(&self) -> bool {
        self.exists
    }

    /// Its id (empty until it exists).
    pub fn cart_id(&self) -> &str {
        &self.cart_id
    }

    /// The order it became, once checked out.
    pub fn order_id(&self) -> Option<Uuid> {
        self.order_id
    }

    /// Whether it was checked out.
    pub fn is_checked_out(&self) -> bool {
        self.order_id.is_some()
    }

    /// Whether it holds no items.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The SKUs in the cart, in SKU order: what the handler must price for
    /// `CheckOut`.
    pub fn skus(&self) -> impl Iterator<Item = &str> + '_ {
        self.lines.keys().map(String::as_str)
    }

    /// The lines, by SKU in SKU order.
    pub fn lines(&self) -> impl Iterator<Item = (&str, &CartLine)> + '_ {
        self.lines.iter().map(|(sku, line)| (sku.as_str(), line))
    }

    /// The line of `sku`, if it is in the cart.
    pub fn line(&self, sku: &str) -> Option<&CartLine> {
        self.lines.get(sku)
    }

    fn not_checked_out(&self, cart_id: &str) -> Result<(), CartError> {
        match self.order_id {
            Some(order_id) => Err(CartError::AlreadyCheckedOut { cart_id: cart_id.to_owned(), order_id }),
            None => Ok(()),
        }
    }

    fn add_item(
        &self,
        cart_id: &str,
        sku: &str,
        quantity: Quantity,
        product: Option<&ProductInfo>,
    ) -> Result<Vec<CartEvent>, CartError> {
        let Some(product) = product else {
            return Err(CartError::ProductNotFound { sku: sku.to_owned() });
        };
        self.not_checked_out(cart_id)?;
        let held = self.lines.get(sku).map_or(0, |line| line.quantity);
        let quantity = quantity.get();
        let total = i64::from(held) + i64::from(quantity);
        if total > i64::from(MAX_LINE_QUANTITY) {
            return Err(CartError::LineTooLarge { sku: sku.to_owned(), quantity: total });
        }
        Ok(vec![CartEvent::ItemAdded {
            cart_id: cart_id.to_owned(),
            sku: sku.to_owned(),
            name: product.name.clone(),
            price_cents: product.unit_price_cents,
            currency: shop_events::CURRENCY.to_owned(),
            quantity,
        }])
    }

    fn remove_item(&self, cart_id: &str, sku: &str) -> Result<Vec<CartEvent>, CartError> {
        if !self.exists {
            return Err(CartError::CartNotFound { cart_id: cart_id.to_owned() });
        }
        self.not_checked_out(cart_id)?;
        if !self.lines.contains_key(sku) {
            return Err(CartError::ItemNotInCart { cart_id: cart_id.to_owned(), sku: sku.to_owned() });
        }
        Ok(vec![CartEvent::ItemRemoved { cart_id: cart_id.to_owned(), sku: sku.to_owned() }])
    }

    fn check_out(
        &self,
        cart_id: &str,
        order_id: Uuid,
        customer_id: &str,
        prices: &BTreeMap<String, ProductInfo>,
        personal: Option<&PersonalData>,
    ) -> Result<Vec<CartEvent>, CartError> {
        if !self.exists {
            return Err(CartError::CartNotFound { cart_id: cart_id.to_owned() });
        }
        self.not_checked_out(cart_id)?;
        if self.lines.is_empty() {
            return Err(CartError::Empty { cart_id: cart_id.to_owned() });
        }
        let mut lines = Vec::with_capacity(self.lines.len());
        let mut total_cents: i64 = 0;
        for (sku, line) in &self.lines {
            let Some(product) = prices.get(sku) else {
                return Err(CartError::ProductNotFound { sku: sku.clone() });
            };
            let too_large = || CartError::TotalTooLarge { cart_id: cart_id.to_owned() };
            let line_total =
                product.unit_price_cents.checked_mul(i64::from(line.quantity)).ok_or_else(too_large)?;
            total_cents = total_cents.checked_add(line_total).ok_or_else(too_large)?;
            lines.push(OrderLine {
                sku: sku.clone(),
                name: product.name.clone(),
                unit_price_cents: product.unit_price_cents,
                quantity: line.quantity,
            });
        }
        Ok(vec![CartEvent::CheckedOut {
            cart_id: cart_id.to_owned(),
            order_id,
            customer_id: customer_id.to_owned(),
            lines,
            total_cents,
            personal: personal.cloned(),
        }])
    }
}

impl Aggregate for Cart {
    const STREAM_TYPE: &'static str = shop_events::CART;

    type Command = CartCommand;
    type Event = CartEvent;
    type Error = CartError;

    /// Checks are made in the order: existence, then business rules (the
    /// command's values keep their rules by their types).
    fn handle(&self, command: &CartCommand) -> Result<Vec<CartEvent>, CartError> {
        match command {
            CartCommand::AddItem { cart_id, sku, quantity, product } => {
                self.add_item(cart_id.as_str(), sku.as_str(), *quantity, product.as_ref())
            }
            CartCommand::RemoveItem { cart_id, sku } => self.remove_item(cart_id.as_str(), sku.as_str()),
            CartCommand::CheckOut { cart_id, order_id, customer_id, prices, personal } => {
                self.check_out(cart_id.as_str(), *order_id, customer_id.as_str(), prices, personal.as_ref())
            }
        }
    }

    fn apply(&mut self, event: &CartEvent) {
        match event {
            CartEvent::ItemAdded { cart_id, sku, name, price_cents, quantity, .. } => {
                self.exists = true;
                self.cart_id.clone_from(cart_id);
                let line = self.lines.entry(sku.clone()).or_insert_with(|| CartLine {
                    name: String::new(),
                    unit_price_cents: 0,
                    quantity: 0,
                });
                line.name.clone_from(name);
                line.unit_price_cents = *price_cents;
                line.quantity = line.quantity.saturating_add(*quantity);
            }
            CartEvent::ItemRemoved { sku, .. } => {
                self.lines.remove(sku);
            }
            CartEvent::CheckedOut { order_id, .. } => self.order_id = Some(*order_id),
        }
    }
}
