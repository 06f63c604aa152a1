//! ⑤⑥ The shipments view: fulfilment's own events folded into documents
//! the query API reads, by order id and by status.
//!
//! The projector runs over fulfilment's own event store (not the shop's
//! topic) and commits the view writes with its checkpoint, so each event is
//! applied once (Architecture invariant 8).

use async_trait::async_trait;
use parallax_core::{Codec, DocKey, EventRecord, Projection, ProjectionError, View, ViewSpec, ViewTx};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::shipment::{ShipmentEvent, ShipmentStatus, ShopOutcome};

/// A shipment as the query API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentView {
    /// The shop's order.
    pub order_id: Uuid,
    /// Where the shipment is.
    pub status: ShipmentStatus,
    /// What was paid, in cents.
    pub amount_cents: i64,
    /// What the shop answered when told of the dispatch (`null` until then).
    pub shop: Option<ShopOutcome>,
    /// The shop's explanation of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop_detail: Option<String>,
}

/// Shipments by order id (partition: the order id).
pub const SHIPMENTS: View<ShipmentView> = View::owned("shipments");
/// Shipments by status (partition: the status; clustering: the order id).
pub const BY_STATUS: View<ShipmentView> = View::owned("shipments_by_status");

/// Folds shipment events into [`SHIPMENTS`] and [`BY_STATUS`].
pub struct Shipments {
    codec: Codec<ShipmentEvent>,
}

impl Shipments {
    /// Persisted name (its checkpoints' key).
    pub const NAME: &'static str = "shipments";

    /// The projection.
    pub fn new() -> Self {
        Self { codec: Codec::new() }
    }
}

impl Default for Shipments {
    fn default() -> Self {
        Self::new()
    }
}

fn by_order(order_id: Uuid) -> DocKey {
    DocKey::partition(order_id.to_string())
}

fn by_status(status: ShipmentStatus, order_id: Uuid) -> DocKey {
    DocKey::new(status.as_str(), order_id.to_string())
}

#[async_trait]
impl Projection for Shipments {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn views(&self) -> Vec<ViewSpec> {
        vec![SHIPMENTS.spec(), BY_STATUS.spec()]
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(ShipmentEvent::TYPES)
    }

    fn prefetch(&self, event: &EventRecord) -> Vec<(&'static str, DocKey)> {
        let order = event.stream_in("shipment").and_then(|id| id.parse::<Uuid>().ok());
        order.map(|order_id| vec![(SHIPMENTS.name(), by_order(order_id))]).unwrap_or_default()
    }

    async fn apply(&self, tx: &mut ViewTx<'_>, record: &EventRecord) -> Result<(), ProjectionError> {
        let event = self.codec.decode_record(record).map_err(|e| ProjectionError::Poison(e.to_string()))?;
        let order_id = event.order_id();
        let before = tx.get(&SHIPMENTS, &by_order(order_id)).await?;
        let mut shipment = match (&event, before.clone()) {
            (ShipmentEvent::Opened { amount_cents, .. }, None) => ShipmentView {
                order_id,
                status: ShipmentStatus::Opened,
                amount_cents: *amount_cents,
                shop: None,
                shop_detail: None,
            },
            (_, Some(shipment)) => shipment,
            (_, None) => {
                return Err(ProjectionError::Poison(format!("{} before shipment.opened", record.event_type)))
            }
        };
        match event {
            ShipmentEvent::Opened { .. } => {}
            ShipmentEvent::Picked { .. } => shipment.status = ShipmentStatus::Picked,
            ShipmentEvent::Packed { .. } => shipment.status = ShipmentStatus::Packed,
            ShipmentEvent::Dispatched { .. } => shipment.status = ShipmentStatus::Dispatched,
            ShipmentEvent::Cancelled { .. } => shipment.status = ShipmentStatus::Cancelled,
            ShipmentEvent::ShopAnswered { outcome, detail, .. } => {
                shipment.shop = Some(outcome);
                shipment.shop_detail = detail;
            }
        }
        if let Some(before) = before.filter(|before| before.status != shipment.status) {
            tx.delete(&BY_STATUS, by_status(before.status, order_id));
        }
        tx.put(&BY_STATUS, by_status(shipment.status, order_id), &shipment);
        tx.put(&SHIPMENTS, by_order(order_id), &shipment);
        Ok(())
    }
}
