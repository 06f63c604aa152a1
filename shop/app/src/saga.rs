//! The checkout saga as a process manager: events in, commands out.
//!
//! The decisions are `shop_domain::saga::react`, a pure function of one event.
//! This module runs them: each command goes out with an idempotency key
//! derived from the causing event's id and the command's index, so when the
//! runner hands an event over again after a crash, the repeat appends nothing.
//! A command refused for good parks the event with the order it was for
//! (`shop dlq list`, `parallax_process_dead_letters`).

use std::sync::Arc;

use async_trait::async_trait;
use parallax_core::{CodecError, EventRecord, IdempotencyRecord};
use parallax_runtime::{CommandContext, ProcessError, ProcessManager};
use shop_domain::product::ProductCommand;
use shop_domain::saga::{self, SagaCommand};
use shop_events::ShopCodec;

use crate::commands::{ShopCommandError, ShopCommands};

/// Turns checked-out carts into confirmed or rejected orders.
pub struct CheckoutSaga {
    commands: Arc<ShopCommands>,
    codec: ShopCodec,
}

impl CheckoutSaga {
    /// Persisted name (its checkpoint's key).
    pub const NAME: &'static str = "checkout_saga";

    /// The saga over the shop's commands.
    pub fn new(commands: Arc<ShopCommands>) -> Self {
        Self { commands, codec: ShopCodec::default() }
    }
}

#[async_trait]
impl ProcessManager for CheckoutSaga {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn handle(&self, event: &EventRecord) -> Result<(), ProcessError> {
        if !saga::REACTS_TO.contains(&event.event_type.as_str()) {
            // Not even decoded: an event the saga does not answer can
            // neither stop it nor be parked by it.
            return Ok(());
        }
        let shop_event = match self.codec.decode(event) {
            Ok(Some(shop_event)) => shop_event,
            Ok(None) => return Ok(()),
            // Written by a newer release: wait for this process to run it, never skip a checkout.
            Err(e @ CodecError::FutureVersion { .. }) => return Err(ProcessError::Transient(e.to_string())),
            Err(e) => return Err(ProcessError::Permanent(e.to_string())),
        };
        let mut refused = Vec::new();
        for (index, command) in saga::react(&shop_event).into_iter().enumerate() {
            let key = format!("saga:{}:{index}", event.event_id);
            let context = CommandContext::caused_by(event).with_idempotency(IdempotencyRecord {
                fingerprint: key.clone(),
                key,
                response: "{}".into(),
            });
            let order = order_of(&command);
            match self.commands.dispatch(command, &context).await {
                Ok(_) => {}
                Err(e @ ShopCommandError::Refused { .. }) => refused.push(match order {
                    Some(order) => format!("order {order}: {e}"),
                    None => e.to_string(),
                }),
                Err(e) => return Err(ProcessError::Transient(e.to_string())),
            }
        }
        match refused.is_empty() {
            true => Ok(()),
            false => Err(ProcessError::Permanent(refused.join("; "))),
        }
    }
}

/// The order a saga command is for: what an operator looks for in a parked
/// event (`shop dlq list`).
fn order_of(command: &SagaCommand) -> Option<uuid::Uuid> {
    match command {
        SagaCommand::Order { order_id, .. }
        | SagaCommand::Product {
            command: ProductCommand::Reserve { order_id, .. } | ProductCommand::Release { order_id },
            ..
        } => Some(*order_id),
        SagaCommand::Product { .. } => None,
    }
}
