//! The warehouse: a process manager over fulfilment's own log that takes
//! every open shipment through pick → pack → dispatch, then tells the shop.
//!
//! Semantics: at-least-once, like every process manager
//! ([`parallax_runtime::process`]): a `ProcessRunner` hands it each event
//! after its checkpoint (in fulfilment's write DB), and after a crash the
//! events since that checkpoint come again. Each reaction is idempotent: a
//! step the shipment has taken decides nothing, a shipment whose shop answer
//! is recorded is not reported again, and the ship call carries one
//! idempotency key per shipment ([`crate::shop_api`]). So a restart resumes
//! where the shipment is: a shipment dispatched before the crash but not yet
//! answered for is reported (again), and its answer recorded once.
//!
//! Shipments go through one at a time, each step after its configured delay
//! (zero by default: the delays only make the warehouse look busy).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parallax_core::{Codec, CodecError, EventRecord};
use parallax_runtime::{CommandContext, CommandError, CommandHandler, ProcessError, ProcessManager};
use uuid::Uuid;

use crate::shipment::{Shipment, ShipmentCommand, ShipmentError, ShipmentEvent};
use crate::shop_api::ShopApi;

/// How long each step takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delays {
    /// Before a shipment is picked.
    pub pick: Duration,
    /// Before it is packed.
    pub pack: Duration,
    /// Before it is dispatched.
    pub dispatch: Duration,
}

/// Drives shipments and reports dispatches to the shop.
pub struct Warehouse {
    shipments: Arc<CommandHandler<Shipment>>,
    shop: ShopApi,
    delays: Delays,
    codec: Codec<ShipmentEvent>,
}

impl Warehouse {
    /// Persisted name (its checkpoint's key).
    pub const NAME: &'static str = "fulfilment_warehouse";

    /// The warehouse over `shipments`, reporting to `shop`.
    pub fn new(shipments: Arc<CommandHandler<Shipment>>, shop: ShopApi, delays: Delays) -> Self {
        Self { shipments, shop, delays, codec: Codec::new() }
    }

    /// Sends `command` to the shipment of `order_id` after `delay`.
    async fn step(
        &self,
        event: &EventRecord,
        order_id: Uuid,
        delay: Duration,
        command: ShipmentCommand,
    ) -> Result<(), ProcessError> {
        tokio::time::sleep(delay).await;
        let context = CommandContext::caused_by(event);
        match self.shipments.execute(&order_id.to_string(), &command, &context).await {
            // A cancelled order's shipment stops where it is.
            Ok(_) | Err(CommandError::Domain(ShipmentError::WasCancelled)) => Ok(()),
            Err(CommandError::Domain(refused)) => {
                Err(ProcessError::Permanent(format!("shipment of order {order_id}: {refused}")))
            }
            Err(other) => Err(ProcessError::Transient(format!(
                "shipment of order {order_id}: {}",
                parallax_runtime::error_chain(&other)
            ))),
        }
    }

    /// Tells the shop, unless its answer is recorded already, and records it.
    async fn report(&self, event: &EventRecord, order_id: Uuid) -> Result<(), ProcessError> {
        let current = self
            .shipments
            .load_in(&event.tenant(), &order_id.to_string())
            .await
            .map_err(|e| ProcessError::Transient(parallax_runtime::error_chain(&e)))?;
        if current.state.shop_outcome().is_some() {
            return Ok(());
        }
        let answer = self.shop.ship(order_id, &event.tenant()).await;
        tracing::info!(%order_id, outcome = ?answer.outcome, "the shop answered the dispatch");
        let command = ShipmentCommand::RecordShopAnswer { outcome: answer.outcome, detail: answer.detail };
        self.step(event, order_id, Duration::ZERO, command).await
    }
}

#[async_trait]
impl ProcessManager for Warehouse {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn handle(&self, event: &EventRecord) -> Result<(), ProcessError> {
        if event.stream_in(<Shipment as parallax_core::Aggregate>::STREAM_TYPE).is_none() {
            return Ok(());
        }
        let shipment = match self.codec.decode_record(event) {
            Ok(shipment) => shipment,
            Err(e @ CodecError::FutureVersion { .. }) => return Err(ProcessError::Transient(e.to_string())),
            Err(e) => return Err(ProcessError::Permanent(e.to_string())),
        };
        let order_id = shipment.order_id();
        let Delays { pick, pack, dispatch } = self.delays;
        match shipment {
            ShipmentEvent::Opened { .. } => self.step(event, order_id, pick, ShipmentCommand::Pick).await,
            ShipmentEvent::Picked { .. } => self.step(event, order_id, pack, ShipmentCommand::Pack).await,
            ShipmentEvent::Packed { .. } => {
                self.step(event, order_id, dispatch, ShipmentCommand::Dispatch).await
            }
            ShipmentEvent::Dispatched { .. } => self.report(event, order_id).await,
            ShipmentEvent::ShopAnswered { .. } | ShipmentEvent::Cancelled { .. } => Ok(()),
        }
    }
}
