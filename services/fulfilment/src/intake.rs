//! ④→① The intake: the shop's topic in, shipments opened (and cancelled).
//!
//! Semantics: the topic delivers at least once (the shop's relay may
//! publish twice, a rebalance may redeliver); the effect is exactly once
//! because the decisions are idempotent on the order id (a shipment is
//! opened once, whatever repeats `order.paid`), and each partition's offset
//! is stored only after the effects of the events below it are durable in
//! fulfilment's event store. A crash in between hands the same events over
//! again, which decide nothing new.
//!
//! Offsets live in fulfilment's write DB as named checkpoints
//! (`EventStore::checkpoint`), per partition of the topic, never in Kafka:
//! every partition the consumer group gives this member is sought to its
//! stored offset first. An event the contract cannot decode is parked
//! (`EventStore::park`) and passed; one of a newer schema than this build
//! stops the intake until a newer build runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parallax_core::{Checkpoint, LogError};
use parallax_core::{CodecError, DeadLetter, EventRecord, EventSource, EventStore, Partition};
use parallax_runtime::{error_chain, CancellationToken, CommandContext, CommandError, CommandHandler};
use shop_events::{OrderEvent, ShopCodec, ShopEvent};

use crate::shipment::{Shipment, ShipmentCommand, ShipmentError};

/// The consumer's name: its checkpoints are `fulfilment_intake/{partition}`
/// (the offset) and `fulfilment_intake/{partition}/position`, its parked
/// events are filed under it.
pub const NAME: &str = "fulfilment_intake";

/// The shop's event types the intake acts on; it does not even decode the others.
pub const CONSUMES: &[&str] = &["order.paid", "order.cancelled"];

/// Why a step of the intake failed. Every one is retried by the loop, from
/// the stored offsets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    /// The topic could not be read, or the offsets stored or loaded.
    #[error("the topic or the offsets")]
    Log(#[from] LogError),
    /// A shipment could not be decided or appended.
    #[error("shipment of order {order_id}")]
    Shipment {
        /// The order.
        order_id: uuid::Uuid,
        /// Why.
        #[source]
        source: CommandError<ShipmentError>,
    },
    /// An event of a schema newer than this build: run a newer one.
    #[error("an event from a newer shop")]
    FutureVersion(#[source] CodecError),
}

/// The topic's consumer: one member of the `fulfilment` consumer group.
pub struct Intake {
    source: Box<dyn EventSource>,
    effects: Effects,
    /// The stored checkpoint of each partition this member reads.
    offsets: BTreeMap<Partition, Checkpoint>,
    /// Whether the source must be pointed back at the stored offsets before
    /// the next batch (a batch failed halfway).
    rewind: bool,
}

/// The named checkpoints of `partition`: the offset to resume from (a
/// broker's source seeks by it) and the highest position absorbed (the
/// embedded log's source seeks by that).
fn checkpoint_names(partition: Partition) -> (String, String) {
    (format!("{NAME}/{partition}"), format!("{NAME}/{partition}/position"))
}

impl Intake {
    /// The intake from `source` into the shipments of `store`.
    pub fn new(source: Box<dyn EventSource>, store: Arc<dyn EventStore>) -> Self {
        let shipments = Arc::new(CommandHandler::new(store.clone()));
        let effects = Effects { store, shipments, codec: ShopCodec::default() };
        Self { source, effects, offsets: BTreeMap::new(), rewind: false }
    }

    /// One batch, waiting up to `wait` for it: how many events the topic
    /// delivered (0: nothing new).
    pub async fn step(&mut self, wait: Duration) -> Result<usize, IntakeError> {
        if self.rewind {
            let partitions: Vec<Partition> = self.offsets.keys().copied().collect();
            for partition in partitions {
                self.resume(partition).await?;
            }
            self.rewind = false;
        }
        let result = self.batch(wait).await;
        // What the source handed over past the stored offsets was not all
        // absorbed: read it again.
        self.rewind = result.is_err();
        result
    }

    async fn batch(&mut self, wait: Duration) -> Result<usize, IntakeError> {
        let batch = self.source.next_batch(500, wait).await?;
        for partition in &batch.revoked {
            self.offsets.remove(partition);
        }
        for &partition in &batch.assigned {
            self.resume(partition).await?;
        }
        let mut moved = BTreeMap::new();
        for sourced in &batch.events {
            let Some(&at) = self.offsets.get(&sourced.partition) else { continue };
            self.effects.absorb(&sourced.event).await?;
            let to = moved.entry(sourced.partition).or_insert(at);
            to.offset = to.offset.max(sourced.offset + 1);
            to.position = to.position.max(sourced.event.position);
        }
        // Only now, with every effect above durable, do the offsets move.
        for (partition, to) in moved {
            let (offset, position) = checkpoint_names(partition);
            self.effects.store.save_checkpoint(&position, to.position).await?;
            self.effects.store.save_checkpoint(&offset, to.offset).await?;
            self.offsets.insert(partition, to);
        }
        Ok(batch.events.len())
    }

    /// Points the source at `partition`'s stored offset.
    async fn resume(&mut self, partition: Partition) -> Result<(), IntakeError> {
        let (offset, position) = checkpoint_names(partition);
        let store = &self.effects.store;
        let at = Checkpoint {
            position: store.checkpoint(&position).await?,
            offset: store.checkpoint(&offset).await?,
        };
        self.source.seek(partition, at).await?;
        self.offsets.insert(partition, at);
        Ok(())
    }

    /// Runs until `cancel`, backing off after failures.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut failures = 0u32;
        let backoff = parallax_runtime::RetryPolicy {
            max_attempts: u32::MAX,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
        };
        tracing::info!(name = NAME, "started");
        while !cancel.is_cancelled() {
            let delay = match self.step(Duration::from_millis(500)).await {
                Ok(_) => {
                    failures = 0;
                    continue;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = backoff.delay(failures);
                    tracing::warn!(name = NAME, error = %error_chain(&error), ?delay, "intake failed; retrying");
                    delay
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        tracing::info!(name = NAME, "stopped");
    }
}

/// What the intake does to fulfilment's event store.
struct Effects {
    store: Arc<dyn EventStore>,
    shipments: Arc<CommandHandler<Shipment>>,
    codec: ShopCodec,
}

impl Effects {
    /// Decides what one shop event means for its shipment, durably.
    async fn absorb(&self, event: &EventRecord) -> Result<(), IntakeError> {
        if !CONSUMES.contains(&event.event_type.as_str()) {
            return Ok(());
        }
        let (order_id, command) = match self.codec.decode(event) {
            Ok(Some(ShopEvent::Order(OrderEvent::Paid { order_id, amount_cents }))) => {
                (order_id, ShipmentCommand::Open { order_id, amount_cents })
            }
            Ok(Some(ShopEvent::Order(OrderEvent::Cancelled { order_id, .. }))) => {
                (order_id, ShipmentCommand::Cancel)
            }
            Ok(_) => return Ok(()),
            Err(e @ CodecError::FutureVersion { .. }) => return Err(IntakeError::FutureVersion(e)),
            Err(e) => return self.park(event, &e).await,
        };
        let context = CommandContext::caused_by(event);
        match self.shipments.execute(&order_id.to_string(), &command, &context).await {
            // A cancelled order that was never paid has no shipment to stop.
            Ok(_) | Err(CommandError::Domain(ShipmentError::NotOpened)) => Ok(()),
            Err(source) => Err(IntakeError::Shipment { order_id, source }),
        }
    }

    async fn park(&self, event: &EventRecord, error: &CodecError) -> Result<(), IntakeError> {
        tracing::error!(position = event.position, event_type = %event.event_type, %error, "shop event parked");
        let letter = DeadLetter {
            projection: NAME.to_owned(),
            position: event.position,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            error: error.to_string(),
        };
        Ok(self.store.park(letter).await?)
    }
}
