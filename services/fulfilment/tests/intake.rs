//! The intake's step on stores in memory: the shop's log as a one-partition
//! source, fulfilment's event store beside it. What it opens and cancels,
//! what a redelivery does, and where a new intake resumes.

use std::sync::Arc;
use std::time::Duration;

use fulfilment::intake::Intake;
use fulfilment::shipment::ShipmentEvent;
use parallax_core::{AppendRequest, Codec, EventStore, ExpectedVersion, LogSource, Metadata, NewEvent};
use parallax_testing::memory::MemEventStore;
use shop_events::OrderEvent;
use uuid::Uuid;

async fn record(shop: &MemEventStore, event: OrderEvent) {
    let order_id = match &event {
        OrderEvent::Paid { order_id, .. } | OrderEvent::Cancelled { order_id, .. } => *order_id,
        other => panic!("not used here: {other:?}"),
    };
    let (event_type, schema_version, payload) = Codec::<OrderEvent>::new().encode(&event);
    let new = NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version,
        payload,
        metadata: Metadata::default(),
        recorded_at: chrono::Utc::now(),
    };
    shop.append(AppendRequest::new(format!("order-{order_id}"), ExpectedVersion::Any, vec![new]))
        .await
        .expect("append to the shop's store");
}

/// Steps a fresh intake over the shop's log until it has nothing more:
/// how many events it was handed.
async fn drain(shop: &MemEventStore, fulfilment: &Arc<MemEventStore>) -> usize {
    let source = LogSource::new(Arc::new(shop.log()));
    let mut intake = Intake::new(Box::new(source), fulfilment.clone());
    // The first step takes the partition; then events until none are left.
    let mut delivered = intake.step(Duration::ZERO).await.expect("a step");
    loop {
        match intake.step(Duration::ZERO).await.expect("a step") {
            0 => return delivered,
            n => delivered += n,
        }
    }
}

/// The shipment events of fulfilment's store, by type name.
async fn shipment_events(fulfilment: &MemEventStore) -> Vec<(String, String)> {
    let records = fulfilment.read_all(0, 1_000).await.expect("read fulfilment's store");
    records.into_iter().map(|r| (r.stream_id, r.event_type)).collect()
}

#[tokio::test]
async fn a_paid_order_opens_one_shipment_whatever_repeats() {
    let shop = MemEventStore::new();
    let fulfilment = Arc::new(MemEventStore::new());
    let (paid, cancelled, unpaid) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    record(&shop, OrderEvent::Paid { order_id: paid, amount_cents: 500 }).await;
    record(&shop, OrderEvent::Paid { order_id: cancelled, amount_cents: 700 }).await;
    record(&shop, OrderEvent::Cancelled { order_id: cancelled, release: vec![] }).await;
    // Cancelled before it was paid: no shipment to stop, nothing to park.
    record(&shop, OrderEvent::Cancelled { order_id: unpaid, release: vec![] }).await;
    assert_eq!(drain(&shop, &fulfilment).await, 4);
    let expected = vec![
        (format!("shipment-{paid}"), "shipment.opened".to_owned()),
        (format!("shipment-{cancelled}"), "shipment.opened".to_owned()),
        (format!("shipment-{cancelled}"), "shipment.cancelled".to_owned()),
    ];
    assert_eq!(shipment_events(&fulfilment).await, expected);
    assert!(fulfilment.parked(fulfilment::intake::NAME).await.expect("parked").is_empty());

    // A new intake resumes after its stored checkpoint: nothing is handed over again.
    assert_eq!(drain(&shop, &fulfilment).await, 0);
    assert_eq!(shipment_events(&fulfilment).await, expected);

    // Every offset lost (a redelivery of everything), and `order.paid`
    // published once more: still one shipment per order.
    for name in ["0", "0/position"] {
        fulfilment.save_checkpoint(&format!("{}/{name}", fulfilment::intake::NAME), 0).await.expect("reset");
    }
    record(&shop, OrderEvent::Paid { order_id: paid, amount_cents: 500 }).await;
    assert_eq!(drain(&shop, &fulfilment).await, 5);
    assert_eq!(shipment_events(&fulfilment).await, expected);
    let opened = Codec::<ShipmentEvent>::new()
        .decode_record(&fulfilment.read_all(0, 1).await.expect("read")[0])
        .expect("decodes");
    assert_eq!(opened, ShipmentEvent::Opened { order_id: paid, amount_cents: 500 });
}
