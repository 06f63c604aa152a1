//! Properties of the aggregates over random command sequences (proptest):
//!
//! - a refused command changes nothing and emits nothing (an accepted one
//!   may emit nothing: an idempotent repeat such as releasing a reservation
//!   that is gone);
//! - replaying the emitted events, after a trip through the codec as the
//!   store would make them, reproduces the state the aggregate reached; so
//!   does a snapshot (serde) of that state;
//! - each aggregate's own invariants hold after every step.

use std::collections::BTreeMap;
use std::fmt::Debug;

use parallax_core::{Aggregate, Codec};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use shop_domain::{
    Cart, CartCommand, CartId, CustomerId, Order, OrderCommand, OrderLine, Product, ProductCommand,
    ProductInfo, Quantity, Sku, MAX_LINE_QUANTITY,
};
use uuid::Uuid;

/// Runs `commands` on a fresh `A`, checking the properties after each, and
/// `invariant` on every state reached.
fn check<A>(
    commands: &[A::Command],
    invariant: impl Fn(&A) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError>
where
    A: Aggregate + PartialEq + Debug,
    A::Command: Debug,
{
    let codec = Codec::<A::Event>::new();
    let mut state = A::default();
    let mut stored = Vec::new();
    for command in commands {
        let before = state.clone();
        match state.handle(command) {
            Err(_) => prop_assert_eq!(&state, &before, "a refusal changed the state: {:?}", command),
            Ok(events) => {
                for event in &events {
                    state.apply(event);
                    stored.push(codec.encode(event));
                }
            }
        }
        invariant(&state)?;
    }
    let mut replayed = A::default();
    for (event_type, version, payload) in &stored {
        let event = codec
            .decode(event_type, *version, payload)
            .map_err(|e| TestCaseError::fail(format!("a stored event does not decode: {e}")))?;
        replayed.apply(&event);
    }
    prop_assert_eq!(&replayed, &state, "replaying the stored events gives another state");
    let snapshot = serde_json::to_string(&state).expect("states serialize");
    let restored: A = serde_json::from_str(&snapshot).expect("snapshots deserialize");
    prop_assert_eq!(&restored, &state, "a snapshot gives another state");
    Ok(())
}

fn sku() -> impl Strategy<Value = String> {
    prop_oneof![Just("A".to_owned()), Just("B".to_owned()), Just("C".to_owned()), Just("bad sku".to_owned())]
}

/// A SKU as a command carries it: its rule holds by its type.
fn sku_id() -> impl Strategy<Value = Sku> {
    prop_oneof![Just("A"), Just("B"), Just("C")].prop_map(|sku| Sku::parse(sku).expect("a SKU"))
}

fn cart_id() -> impl Strategy<Value = CartId> {
    prop_oneof![4 => Just("c1"), 1 => Just("c2")].prop_map(|id| CartId::parse(id).expect("a cart id"))
}

fn customer_id() -> impl Strategy<Value = CustomerId> {
    prop_oneof![Just("u1"), Just("u2")].prop_map(|id| CustomerId::parse(id).expect("a customer id"))
}

/// Units a cart command may carry (1 to 1000), often near the line's limit.
fn units() -> impl Strategy<Value = Quantity> {
    prop_oneof![4 => 1..=5_i64, 1 => 990..=1_000_i64].prop_map(|units| Quantity::parse(units).expect("units"))
}

fn quantity() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 1..=5_i64, 1 => -2..=0_i64, 1 => 990..=1_100_i64, 1 => any::<i64>()]
}

fn price() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 0..=10_000_i64, 1 => any::<i64>()]
}

fn info() -> impl Strategy<Value = ProductInfo> {
    (prop_oneof![Just("Mug".to_owned()), Just("Pen".to_owned())], price())
        .prop_map(|(name, unit_price_cents)| ProductInfo { name, unit_price_cents })
}

fn cart_command() -> impl Strategy<Value = CartCommand> {
    prop_oneof![
        4 => (cart_id(), sku_id(), units(), proptest::option::weighted(0.9, info()))
            .prop_map(|(cart_id, sku, quantity, product)| CartCommand::AddItem { cart_id, sku, quantity, product }),
        1 => (cart_id(), sku_id()).prop_map(|(cart_id, sku)| CartCommand::RemoveItem { cart_id, sku }),
        1 => (cart_id(), customer_id(), proptest::collection::btree_map(sku(), info(), 0..4))
            .prop_map(|(cart_id, customer_id, prices)| CartCommand::CheckOut { personal: None,
                cart_id,
                order_id: Uuid::from_u128(1),
                customer_id,
                prices,
            }),
    ]
}

fn cart_invariant(cart: &Cart) -> Result<(), TestCaseError> {
    for (sku, line) in cart.lines() {
        prop_assert!((1..=MAX_LINE_QUANTITY).contains(&line.quantity), "{sku}: {} units", line.quantity);
    }
    if cart.is_checked_out() {
        prop_assert!(cart.exists());
    }
    Ok(())
}

fn product_command() -> impl Strategy<Value = ProductCommand> {
    let order = (0..3_u128).prop_map(Uuid::from_u128);
    prop_oneof![
        2 => (sku_id(), prop_oneof![Just("Mug".to_owned()), Just(" ".to_owned()), Just("a\0b".to_owned())], price(), quantity())
            .prop_map(|(sku, name, price_cents, stock)| ProductCommand::Register { sku, name, price_cents, stock }),
        1 => prop_oneof![Just("Cup".to_owned()), Just(String::new())].prop_map(|name| ProductCommand::Rename { name }),
        1 => price().prop_map(|price_cents| ProductCommand::Reprice { price_cents }),
        1 => quantity().prop_map(|quantity| ProductCommand::Restock { quantity }),
        2 => (order.clone(), prop_oneof![4 => 0..=5_u32, 1 => any::<u32>()])
            .prop_map(|(order_id, quantity)| ProductCommand::Reserve { order_id, quantity }),
        1 => order.prop_map(|order_id| ProductCommand::Release { order_id }),
    ]
}

fn order_command() -> impl Strategy<Value = OrderCommand> {
    let line = (sku(), 1..=3_u32, 0..=1_000_i64).prop_map(|(sku, quantity, unit_price_cents)| OrderLine {
        sku,
        name: "Mug".into(),
        unit_price_cents,
        quantity,
    });
    prop_oneof![
        1 => (customer_id(), cart_id(), proptest::collection::vec(line, 0..4))
            .prop_map(|(customer_id, cart_id, lines)| OrderCommand::Place { personal: None,
                order_id: Uuid::from_u128(7),
                customer_id,
                cart_id,
                lines,
            }),
        2 => sku().prop_map(|sku| OrderCommand::RecordReservation { sku }),
        1 => sku().prop_map(|sku| OrderCommand::RecordReservationFailure { sku, reason: "no stock".into() }),
        1 => Just(OrderCommand::Pay),
        1 => Just(OrderCommand::Ship),
        1 => Just(OrderCommand::Cancel),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cart_sequences(commands in proptest::collection::vec(cart_command(), 0..40)) {
        check::<Cart>(&commands, cart_invariant)?;
    }

    #[test]
    fn product_sequences(commands in proptest::collection::vec(product_command(), 0..40)) {
        check::<Product>(&commands, |_| Ok(()))?;
    }

    #[test]
    fn order_sequences(commands in proptest::collection::vec(order_command(), 0..30)) {
        check::<Order>(&commands, |_| Ok(()))?;
    }

    /// A cart that accepted `AddItem`s holds exactly their sum per SKU
    /// (minus removed SKUs).
    #[test]
    fn cart_lines_sum_what_was_added(commands in proptest::collection::vec(cart_command(), 0..40)) {
        let mut cart = Cart::default();
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        for command in &commands {
            if let Ok(events) = cart.handle(command) {
                match command {
                    CartCommand::AddItem { sku, quantity, .. } => {
                        *expected.entry(sku.to_string()).or_default() += i64::from(quantity.get());
                    }
                    CartCommand::RemoveItem { sku, .. } => { expected.remove(sku.as_str()); }
                    CartCommand::CheckOut { .. } => {}
                }
                events.iter().for_each(|event| cart.apply(event));
            }
        }
        let held: BTreeMap<String, i64> =
            cart.lines().map(|(sku, line)| (sku.to_owned(), i64::from(line.quantity))).collect();
        prop_assert_eq!(held, expected);
    }
}
