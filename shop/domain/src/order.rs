//! The order aggregate: one stream per order id.
//!
//! ```text
//!                  every line reserved
//! Place ─▶ Placed ─────────────────────▶ Confirmed ──Pay──▶ Paid ──Ship──▶ Shipped
//!            │                               │                │
//!            │ a line cannot be reserved     └─────Cancel─────┴──▶ Cancelled
//!            ▼
//!         Rejected
//! ```
//!
//! A placed order reserves its stock one line at a time, in line order: it
//! records [`OrderEvent::StockRequested`] for the next line, and the checkout
//! saga answers with `RecordReservation` or `RecordReservationFailure` for
//! that SKU. The saga's commands may arrive twice or late: `Place` on a
//! placed order and an answer about a line that is not the one requested
//! decide nothing, so redelivery is harmless.

use parallax_core::Aggregate;
use serde::{Deserialize, Serialize};
use shop_events::{OrderEvent, OrderLine, PersonalData};
use uuid::Uuid;

use crate::error::{DomainError, Refusal};
use crate::values::{CartId, CustomerId};

/// What an order can be asked to do. `Place` and the two `Record…`
/// commands come from the checkout saga; `Pay`, `Ship` and `Cancel` from
/// clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    /// Creates the order from a checked-out cart. On a placed order it
    /// decides nothing.
    Place {
        /// The order (the stream's id).
        order_id: Uuid,
        /// Who buys.
        customer_id: CustomerId,
        /// The cart it came from.
        cart_id: CartId,
        /// What, at which price: at least one line, one line per SKU,
        /// positive quantities, prices not negative.
        lines: Vec<OrderLine>,
        /// The checkout's sealed personal data, passed on as it is.
        personal: Option<PersonalData>,
    },
    /// The requested line's stock was reserved.
    RecordReservation {
        /// The product reserved.
        sku: String,
    },
    /// The requested line's stock could not be reserved.
    RecordReservationFailure {
        /// The product.
        sku: String,
        /// Why, for the customer.
        reason: String,
    },
    /// Records the payment of a confirmed order.
    Pay,
    /// Records that a paid order left the warehouse.
    Ship,
    /// Cancels a confirmed or paid order that has not shipped.
    Cancel,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Created; its stock is being reserved.
    #[serde(rename = "placed")]
    Placed,
    /// Every line is reserved; it can be paid.
    #[serde(rename = "confirmed")]
    Confirmed,
    /// A line could not be reserved; the order is void.
    #[serde(rename = "rejected")]
    Rejected,
    /// Paid.
    #[serde(rename = "paid")]
    Paid,
    /// Left the warehouse.
    #[serde(rename = "shipped")]
    Shipped,
    /// Cancelled before shipping.
    #[serde(rename = "cancelled")]
    Cancelled,
}

/// Why an order refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    /// A line is malformed. [`Refusal::Invalid`].
    #[error("invalid order line {sku}: {problem}")]
    InvalidLine {
        /// The line's SKU.
        sku: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The order has no events yet. [`Refusal::NotFound`].
    #[error("order not found")]
    NotFound,
    /// Placing an order without lines. [`Refusal::RuleViolated`].
    #[error("order {order_id} has no lines")]
    NoLines {
        /// The order.
        order_id: Uuid,
    },
    /// The order's total does not fit an `i64` of cents. [`Refusal::RuleViolated`].
    #[error("the total of order {order_id} is too large")]
    TotalTooLarge {
        /// The order.
        order_id: Uuid,
    },
    /// Paying an order whose stock is still being reserved. [`Refusal::RuleViolated`].
    #[error("order {order_id} is not confirmed yet: its stock is still being reserved")]
    NotConfirmed {
        /// The order.
        order_id: Uuid,
    },
    /// Cancelling an order whose stock is still being reserved. [`Refusal::RuleViolated`].
    #[error("order {order_id} is still reserving stock; try again")]
    StillReserving {
        /// The order.
        order_id: Uuid,
    },
    /// Paying, shipping or cancelling a rejected order. [`Refusal::RuleViolated`].
    #[error("order {order_id} was rejected: {reason}")]
    WasRejected {
        /// The order.
        order_id: Uuid,
        /// Why it was rejected.
        reason: String,
    },
    /// Paying an order twice. [`Refusal::RuleViolated`].
    #[error("order {order_id} is already paid")]
    AlreadyPaid {
        /// The order.
        order_id: Uuid,
    },
    /// Shipping an order that is not paid. [`Refusal::RuleViolated`].
    #[error("order {order_id} is not paid yet")]
    NotPaid {
        /// The order.
        order_id: Uuid,
    },
    /// Shipping or cancelling a shipped order. [`Refusal::RuleViolated`].
    #[error("order {order_id} has already shipped")]
    AlreadyShipped {
        /// The order.
        order_id: Uuid,
    },
    /// Paying, shipping or cancelling a cancelled order. [`Refusal::RuleViolated`].
    #[error("order {order_id} was cancelled")]
    WasCancelled {
        /// The order.
        order_id: Uuid,
    },
}

impl OrderError {
    /// The kind of refusal.
    pub fn kind(&self) -> Refusal {
        match self {
            Self::InvalidLine { .. } => Refusal::Invalid,
            Self::NotFound => Refusal::NotFound,
            Self::NoLines { .. }
            | Self::TotalTooLarge { .. }
            | Self::NotConfirmed { .. }
            | Self::StillReserving { .. }
            | Self::WasRejected { .. }
            | Self::AlreadyPaid { .. }
            | Self::NotPaid { .. }
            | Self::AlreadyShipped { .. }
            | Self::WasCancelled { .. } => Refusal::RuleViolated,
        }
    }

    /// The stable code ([`DomainError::code`]).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidLine { .. } => "order-line-invalid",
            Self::NotFound => "order-not-found",
            Self::NoLines { .. } => "order-without-lines",
            Self::TotalTooLarge { .. } => "order-total-too-large",
            Self::NotConfirmed { .. } => "order-not-confirmed",
            Self::StillReserving { .. } => "order-still-reserving",
            Self::WasRejected { .. } => "order-rejected",
            Self::AlreadyPaid { .. } => "order-already-paid",
            Self::NotPaid { .. } => "order-not-paid",
            Self::AlreadyShipped { .. } => "order-already-shipped",
            Self::WasCancelled { .. } => "order-cancelled",
        }
    }
}

impl DomainError for OrderError {
    fn kind(&self) -> Refusal {
        OrderError::kind(self)
    }

    fn code(&self) -> &'static str {
        OrderError::code(self)
    }
}

/// An order's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    status: Option<OrderStatus>,
    order_id: Uuid,
    customer_id: String,
    cart_id: String,
    lines: Vec<OrderLine>,
    total_cents: i64,
    /// Lines `..reserved` are reserved; `lines[reserved]` is requested while placed.
    reserved: usize,
    rejection: Option<String>,
}

impl Order {
    /// Whether the order was placed (a new stream is not).
    pub fn exists(&self) -> bool {
        self.status.is_some()
    }

    /// Where it is in its life; `None` until placed.
    pub fn status(&self) -> Option<OrderStatus> {
        self.status
    }

    /// Its id (nil until placed).
    pub fn order_id(&self) -> Uuid {
        self.order_id
    }

    /// Who buys.
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    /// The cart it came from.
    pub fn cart_id(&self) -> &str {
        &self.cart_id
    }

    /// What, at which price.
    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
    }

    /// Sum of the lines.
    pub fn total_cents(&self) -> i64 {
        self.total_cents
    }

    /// The lines whose stock is reserved so far (all of them once confirmed).
    pub fn reserved_lines(&self) -> &[OrderLine] {
        &self.lines[..self.reserved.min(self.lines.len())]
    }

    /// The line whose stock is being reserved, while placed.
    pub fn requested_line(&self) -> Option<&OrderLine> {
        match self.status {
            Some(OrderStatus::Placed) => self.lines.get(self.reserved),
            _ => None,
        }
    }

    /// Why it was rejected, if it was.
    pub fn rejection_reason(&self) -> Option<&str> {
        self.rejection.as_deref()
    }

    fn place(
        &self,
        order_id: Uuid,
        customer_id: &str,
        cart_id: &str,
        lines: &[OrderLine],
        personal: Option<&PersonalData>,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        if self.exists() {
            return Ok(vec![]);
        }
        for (i, line) in lines.iter().enumerate() {
            let invalid = |problem| Err(OrderError::InvalidLine { sku: line.sku.clone(), problem });
            if line.quantity == 0 {
                return invalid("quantity must be positive");
            }
            if line.unit_price_cents < 0 {
                return invalid("price cannot be negative");
            }
            if lines[..i].iter().any(|earlier| earlier.sku == line.sku) {
                return invalid("an order has one line per sku");
            }
        }
        let Some(first) = lines.first() else {
            return Err(OrderError::NoLines { order_id });
        };
        let total_cents = lines
            .iter()
            .try_fold(0i64, |total, line| {
                line.unit_price_cents.checked_mul(i64::from(line.quantity))?.checked_add(total)
            })
            .ok_or(OrderError::TotalTooLarge { order_id })?;
        Ok(vec![
            OrderEvent::Placed {
                order_id,
                customer_id: customer_id.to_owned(),
                cart_id: cart_id.to_owned(),
                lines: lines.to_vec(),
                total_cents,
                personal: personal.cloned(),
            },
            OrderEvent::StockRequested { order_id, sku: first.sku.clone(), quantity: first.quantity },
        ])
    }

    fn record_reservation(&self, sku: &str) -> Result<Vec<OrderEvent>, OrderError> {
        if !self.exists() {
            return Err(OrderError::NotFound);
        }
        let Some(line) = self.requested_line().filter(|line| line.sku == sku) else {
            return Ok(vec![]);
        };
        let order_id = self.order_id;
        let reserved = OrderEvent::LineReserved { order_id, sku: line.sku.clone(), quantity: line.quantity };
        let next = match self.lines.get(self.reserved + 1) {
            Some(next) => {
                OrderEvent::StockRequested { order_id, sku: next.sku.clone(), quantity: next.quantity }
            }
            None => OrderEvent::Confirmed {
                order_id,
                customer_id: self.customer_id.clone(),
                lines: self.lines.clone(),
                total_cents: self.total_cents,
            },
        };
        Ok(vec![reserved, next])
    }

    fn record_reservation_failure(&self, sku: &str, reason: &str) -> Result<Vec<OrderEvent>, OrderError> {
        if !self.exists() {
            return Err(OrderError::NotFound);
        }
        if self.requested_line().is_none_or(|line| line.sku != sku) {
            return Ok(vec![]);
        }
        Ok(vec![OrderEvent::Rejected {
            order_id: self.order_id,
            reason: reason.to_owned(),
            release: self.reserved_lines().to_vec(),
        }])
    }

    fn pay(&self) -> Result<Vec<OrderEvent>, OrderError> {
        let order_id = self.order_id;
        match self.status {
            None => Err(OrderError::NotFound),
            Some(OrderStatus::Confirmed) => {
                Ok(vec![OrderEvent::Paid { order_id, amount_cents: self.total_cents }])
            }
            Some(OrderStatus::Placed) => Err(OrderError::NotConfirmed { order_id }),
            Some(OrderStatus::Paid | OrderStatus::Shipped) => Err(OrderError::AlreadyPaid { order_id }),
            Some(OrderStatus::Rejected) => Err(self.was_rejected()),
            Some(OrderStatus::Cancelled) => Err(OrderError::WasCancelled { order_id }),
        }
    }

    fn ship(&self) -> Result<Vec<OrderEvent>, OrderError> {
        let order_id = self.order_id;
        match self.status {
            None => Err(OrderError::NotFound),
            Some(OrderStatus::Paid) => Ok(vec![OrderEvent::Shipped { order_id }]),
            Some(OrderStatus::Placed | OrderStatus::Confirmed) => Err(OrderError::NotPaid { order_id }),
            Some(OrderStatus::Shipped) => Err(OrderError::AlreadyShipped { order_id }),
            Some(OrderStatus::Rejected) => Err(self.was_rejected()),
            Some(OrderStatus::Cancelled) => Err(OrderError::WasCancelled { order_id }),
        }
    }

    fn cancel(&self) -> Result<Vec<OrderEvent>, OrderError> {
        let order_id = self.order_id;
        match self.status {
            None => Err(OrderError::NotFound),
            Some(OrderStatus::Confirmed | OrderStatus::Paid) => {
                Ok(vec![OrderEvent::Cancelled { order_id, release: self.lines.clone() }])
            }
            Some(OrderStatus::Placed) => Err(OrderError::StillReserving { order_id }),
            Some(OrderStatus::Shipped) => Err(OrderError::AlreadyShipped { order_id }),
            Some(OrderStatus::Rejected) => Err(self.was_rejected()),
            Some(OrderStatus::Cancelled) => Err(OrderError::WasCancelled { order_id }),
        }
    }

    fn was_rejected(&self) -> OrderError {
        OrderError::WasRejected {
            order_id: self.order_id,
            reason: self.rejection.clone().unwrap_or_default(),
        }
    }
}

impl Aggregate for Order {
    const STREAM_TYPE: &'static str = shop_events::ORDER;

    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        match command {
            OrderCommand::Place { order_id, customer_id, cart_id, lines, personal } => {
                self.place(*order_id, customer_id.as_str(), cart_id.as_str(), lines, personal.as_ref())
            }
            OrderCommand::RecordReservation { sku } => self.record_reservation(sku),
            OrderCommand::RecordReservationFailure { sku, reason } => {
                self.record_reservation_failure(sku, reason)
            }
            OrderCommand::Pay => self.pay(),
            OrderCommand::Ship => self.ship(),
            OrderCommand::Cancel => self.cancel(),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed { order_id, customer_id, cart_id, lines, total_cents, .. } => {
                *self = Order {
                    status: Some(OrderStatus::Placed),
                    order_id: *order_id,
                    customer_id: customer_id.clone(),
                    cart_id: cart_id.clone(),
                    lines: lines.clone(),
                    total_cents: *total_cents,
                    reserved: 0,
                    rejection: None,
                };
            }
            OrderEvent::StockRequested { .. } => {}
            OrderEvent::LineReserved { .. } => self.reserved += 1,
            OrderEvent::Confirmed { .. } => self.status = Some(OrderStatus::Confirmed),
            OrderEvent::Rejected { reason, .. } => {
                self.status = Some(OrderStatus::Rejected);
                self.rejection = Some(reason.clone());
            }
            OrderEvent::Paid { .. } => self.status = Some(OrderStatus::Paid),
            OrderEvent::Shipped { .. } => self.status = Some(OrderStatus::Shipped),
            OrderEvent::Cancelled { .. } => self.status = Some(OrderStatus::Cancelled),
        }
    }
}
