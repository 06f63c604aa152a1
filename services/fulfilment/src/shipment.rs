//! ① The shipment aggregate: one stream per paid order (`shipment-{order_id}`).
//!
//! ```text
//! Open ─▶ Opened ─Pick─▶ Picked ─Pack─▶ Packed ─Dispatch─▶ Dispatched ─RecordShopAnswer─▶ (shop answered)
//!            │              │              │
//!            └──────────────┴──────Cancel──┴──▶ Cancelled
//! ```
//!
//! Every command is idempotent on the state: `Open` on an opened shipment, a
//! step the shipment has already taken, a second shop answer and a
//! cancellation of a dispatched or cancelled shipment decide nothing. The
//! intake and the warehouse are at-least-once, so a redelivered `order.paid`
//! or a replayed step appends nothing new.

use parallax_core::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a shipment is. Serialized in snake_case: `opened`, `picked`, ….
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    /// The order was paid; nothing is picked yet.
    Opened,
    /// The goods are off the shelves.
    Picked,
    /// The goods are in a parcel.
    Packed,
    /// The parcel left the warehouse.
    Dispatched,
    /// The order was cancelled in the shop before dispatch.
    Cancelled,
}

impl ShipmentStatus {
    /// Every status, in the order a shipment goes through them.
    pub const ALL: [ShipmentStatus; 5] =
        [Self::Opened, Self::Picked, Self::Packed, Self::Dispatched, Self::Cancelled];

    /// The persisted name (also its JSON form).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Picked => "picked",
            Self::Packed => "packed",
            Self::Dispatched => "dispatched",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }
}

/// What the shop said when told that a shipment was dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShopOutcome {
    /// The shop recorded `order.shipped` for this shipment (or repeated that
    /// first answer to the same idempotency key).
    Shipped,
    /// The order had been shipped already, not at this shipment's request.
    AlreadyShipped,
    /// The shop refused for good (the order was cancelled, say).
    Refused,
}

/// Events of a shipment's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ShipmentEvent {
    /// The shop's order was paid: the shipment exists.
    #[serde(rename = "shipment.opened")]
    Opened {
        /// The shop's order (the stream's id).
        order_id: Uuid,
        /// What was paid, in cents of `shop_events::CURRENCY`.
        amount_cents: i64,
    },
    /// The goods are off the shelves.
    #[serde(rename = "shipment.picked")]
    Picked {
        /// The order.
        order_id: Uuid,
    },
    /// The goods are in a parcel.
    #[serde(rename = "shipment.packed")]
    Packed {
        /// The order.
        order_id: Uuid,
    },
    /// The parcel left: the shop is to be told next.
    #[serde(rename = "shipment.dispatched")]
    Dispatched {
        /// The order.
        order_id: Uuid,
    },
    /// The shop was told of the dispatch, and answered.
    #[serde(rename = "shipment.shop_answered")]
    ShopAnswered {
        /// The order.
        order_id: Uuid,
        /// What it answered.
        outcome: ShopOutcome,
        /// The shop's explanation of a refusal (its problem's `detail`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The order was cancelled in the shop before the parcel left.
    #[serde(rename = "shipment.cancelled")]
    Cancelled {
        /// The order.
        order_id: Uuid,
    },
}

impl ShipmentEvent {
    /// Every persisted type name of a shipment's events.
    pub const TYPES: &'static [&'static str] = &[
        "shipment.opened",
        "shipment.picked",
        "shipment.packed",
        "shipment.dispatched",
        "shipment.shop_answered",
        "shipment.cancelled",
    ];

    /// The order (and so the shipment) the event is about.
    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Opened { order_id, .. }
            | Self::Picked { order_id }
            | Self::Packed { order_id }
            | Self::Dispatched { order_id }
            | Self::ShopAnswered { order_id, .. }
            | Self::Cancelled { order_id } => *order_id,
        }
    }
}

impl DomainEvent for ShipmentEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Opened { .. } => "shipment.opened",
            Self::Picked { .. } => "shipment.picked",
            Self::Packed { .. } => "shipment.packed",
            Self::Dispatched { .. } => "shipment.dispatched",
            Self::ShopAnswered { .. } => "shipment.shop_answered",
            Self::Cancelled { .. } => "shipment.cancelled",
        }
    }
}

/// What a shipment can be asked to do. `Open` and `Cancel` come from the
/// shop's events, the steps and the answer from the warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShipmentCommand {
    /// The order was paid.
    Open {
        /// The shop's order.
        order_id: Uuid,
        /// What was paid.
        amount_cents: i64,
    },
    /// Takes the goods off the shelves.
    Pick,
    /// Puts them in a parcel.
    Pack,
    /// Hands the parcel over.
    Dispatch,
    /// Records the shop's answer to the dispatch.
    RecordShopAnswer {
        /// What it answered.
        outcome: ShopOutcome,
        /// Its explanation of a refusal.
        detail: Option<String>,
    },
    /// The order was cancelled in the shop.
    Cancel,
}

/// Why a shipment refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShipmentError {
    /// There is no shipment for the order (it was never paid).
    #[error("no shipment was opened for this order")]
    NotOpened,
    /// The order was cancelled: nothing more happens to its shipment.
    #[error("the shipment was cancelled")]
    WasCancelled,
    /// A step before this one has not been taken.
    #[error("a shipment that is {status:?} cannot be {wanted:?} yet")]
    OutOfOrder {
        /// Where it is.
        status: ShipmentStatus,
        /// Where the command would take it.
        wanted: ShipmentStatus,
    },
}

/// A shipment's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    order_id: Uuid,
    status: Option<ShipmentStatus>,
    shop: Option<ShopOutcome>,
}

impl Shipment {
    /// Where it is; `None` until opened.
    pub fn status(&self) -> Option<ShipmentStatus> {
        self.status
    }

    /// What the shop answered to the dispatch, once it did.
    pub fn shop_outcome(&self) -> Option<ShopOutcome> {
        self.shop
    }

    /// The step to `wanted`, which must follow `before`.
    fn step(
        &self,
        before: ShipmentStatus,
        wanted: ShipmentStatus,
        event: ShipmentEvent,
    ) -> Result<Vec<ShipmentEvent>, ShipmentError> {
        match self.status {
            None => Err(ShipmentError::NotOpened),
            Some(ShipmentStatus::Cancelled) => Err(ShipmentError::WasCancelled),
            Some(status) if status >= wanted => Ok(vec![]),
            Some(status) if status == before => Ok(vec![event]),
            Some(status) => Err(ShipmentError::OutOfOrder { status, wanted }),
        }
    }
}

impl Aggregate for Shipment {
    const STREAM_TYPE: &'static str = "shipment";
    type Command = ShipmentCommand;
    type Event = ShipmentEvent;
    type Error = ShipmentError;

    fn handle(&self, command: &ShipmentCommand) -> Result<Vec<ShipmentEvent>, ShipmentError> {
        use ShipmentStatus::{Dispatched, Opened, Packed, Picked};
        let order_id = self.order_id;
        match command {
            ShipmentCommand::Open { .. } if self.status.is_some() => Ok(vec![]),
            &ShipmentCommand::Open { order_id, amount_cents } => {
                Ok(vec![ShipmentEvent::Opened { order_id, amount_cents }])
            }
            ShipmentCommand::Pick => self.step(Opened, Picked, ShipmentEvent::Picked { order_id }),
            ShipmentCommand::Pack => self.step(Picked, Packed, ShipmentEvent::Packed { order_id }),
            ShipmentCommand::Dispatch => {
                self.step(Packed, Dispatched, ShipmentEvent::Dispatched { order_id })
            }
            ShipmentCommand::RecordShopAnswer { .. } if self.shop.is_some() => Ok(vec![]),
            ShipmentCommand::RecordShopAnswer { outcome, detail } => match self.status {
                Some(Dispatched) => Ok(vec![ShipmentEvent::ShopAnswered {
                    order_id,
                    outcome: *outcome,
                    detail: detail.clone(),
                }]),
                None => Err(ShipmentError::NotOpened),
                Some(ShipmentStatus::Cancelled) => Err(ShipmentError::WasCancelled),
                Some(status) => Err(ShipmentError::OutOfOrder { status, wanted: Dispatched }),
            },
            ShipmentCommand::Cancel => match self.status {
                None => Err(ShipmentError::NotOpened),
                // Too late, or done already: the shop refuses the dispatch's
                // news if it cancelled after all (`ShopOutcome::Refused`).
                Some(Dispatched | ShipmentStatus::Cancelled) => Ok(vec![]),
                Some(_) => Ok(vec![ShipmentEvent::Cancelled { order_id }]),
            },
        }
    }

    fn apply(&mut self, event: &ShipmentEvent) {
        match event {
            ShipmentEvent::Opened { order_id, .. } => {
                self.order_id = *order_id;
                self.status = Some(ShipmentStatus::Opened);
            }
            ShipmentEvent::Picked { .. } => self.status = Some(ShipmentStatus::Picked),
            ShipmentEvent::Packed { .. } => self.status = Some(ShipmentStatus::Packed),
            ShipmentEvent::Dispatched { .. } => self.status = Some(ShipmentStatus::Dispatched),
            ShipmentEvent::ShopAnswered { outcome, .. } => self.shop = Some(*outcome),
            ShipmentEvent::Cancelled { .. } => self.status = Some(ShipmentStatus::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use parallax_testing::given::given;

    use super::*;

    const ORDER: Uuid = Uuid::from_u128(7);

    fn opened() -> ShipmentEvent {
        ShipmentEvent::Opened { order_id: ORDER, amount_cents: 1_250 }
    }

    fn dispatched() -> Vec<ShipmentEvent> {
        vec![
            opened(),
            ShipmentEvent::Picked { order_id: ORDER },
            ShipmentEvent::Packed { order_id: ORDER },
            ShipmentEvent::Dispatched { order_id: ORDER },
        ]
    }

    #[test]
    fn a_paid_order_opens_a_shipment_once() {
        given::<Shipment>([])
            .when(ShipmentCommand::Open { order_id: ORDER, amount_cents: 1_250 })
            .then([opened()])
            .then_state(|s| assert_eq!(s.status(), Some(ShipmentStatus::Opened)));
        // A redelivered `order.paid` decides nothing.
        given::<Shipment>([opened()])
            .when(ShipmentCommand::Open { order_id: ORDER, amount_cents: 1_250 })
            .then_nothing();
        given::<Shipment>(dispatched())
            .when(ShipmentCommand::Open { order_id: ORDER, amount_cents: 1_250 })
            .then_nothing()
            .then_state(|s| assert_eq!(s.status(), Some(ShipmentStatus::Dispatched)));
    }

    #[test]
    fn steps_go_in_order_and_a_repeated_step_decides_nothing() {
        given::<Shipment>([opened()])
            .when(ShipmentCommand::Pick)
            .then([ShipmentEvent::Picked { order_id: ORDER }]);
        given::<Shipment>([opened()]).when(ShipmentCommand::Dispatch).then_error(|e| {
            *e == ShipmentError::OutOfOrder {
                status: ShipmentStatus::Opened,
                wanted: ShipmentStatus::Dispatched,
            }
        });
        given::<Shipment>(dispatched()[..3].to_vec())
            .when(ShipmentCommand::Dispatch)
            .then([ShipmentEvent::Dispatched { order_id: ORDER }]);
        given::<Shipment>(dispatched()).when(ShipmentCommand::Pick).then_nothing();
        given::<Shipment>(dispatched()).when(ShipmentCommand::Dispatch).then_nothing();
        given::<Shipment>([]).when(ShipmentCommand::Pick).then_error(|e| *e == ShipmentError::NotOpened);
    }

    #[test]
    fn the_shop_answer_is_recorded_once_after_dispatch() {
        let answer = ShipmentCommand::RecordShopAnswer { outcome: ShopOutcome::Shipped, detail: None };
        given::<Shipment>(dispatched())
            .when(answer.clone())
            .then([ShipmentEvent::ShopAnswered {
                order_id: ORDER,
                outcome: ShopOutcome::Shipped,
                detail: None,
            }])
            .then_state(|s| assert_eq!(s.shop_outcome(), Some(ShopOutcome::Shipped)));
        let mut told = dispatched();
        told.push(ShipmentEvent::ShopAnswered {
            order_id: ORDER,
            outcome: ShopOutcome::Shipped,
            detail: None,
        });
        given::<Shipment>(told).when(answer.clone()).then_nothing();
        given::<Shipment>(dispatched()[..3].to_vec()).when(answer).then_error(|e| {
            *e == ShipmentError::OutOfOrder {
                status: ShipmentStatus::Packed,
                wanted: ShipmentStatus::Dispatched,
            }
        });
    }

    #[test]
    fn a_cancelled_order_stops_its_shipment_before_dispatch_only() {
        given::<Shipment>([opened(), ShipmentEvent::Picked { order_id: ORDER }])
            .when(ShipmentCommand::Cancel)
            .then([ShipmentEvent::Cancelled { order_id: ORDER }]);
        given::<Shipment>([opened(), ShipmentEvent::Cancelled { order_id: ORDER }])
            .when(ShipmentCommand::Pick)
            .then_error(|e| *e == ShipmentError::WasCancelled);
        given::<Shipment>(dispatched()).when(ShipmentCommand::Cancel).then_nothing();
        given::<Shipment>([]).when(ShipmentCommand::Cancel).then_error(|e| *e == ShipmentError::NotOpened);
    }

    #[test]
    fn statuses_are_snake_case_and_parse_back() {
        for status in ShipmentStatus::ALL {
            assert_eq!(serde_json::to_value(status).expect("serializes"), status.as_str());
            assert_eq!(ShipmentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ShipmentStatus::parse("shipped"), None);
    }
}
