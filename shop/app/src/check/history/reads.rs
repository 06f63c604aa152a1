//! The history's reads: read-your-writes, monotonic reads, and what each
//! read was shown against the model of the events.
//!
//! - **Read-your-writes**: a read with a consistency token must show every
//!   write of its own client on the stream it reads that was acknowledged
//!   before the read was sent: a cart at least at the version of the
//!   acknowledged add's event, an order the client's acknowledged checkout
//!   named (found at all). A read without a token promises nothing of the
//!   kind (the views are eventually consistent) and is not held to it.
//! - **Monotonic reads**: a client's reads of one stream, in the order it
//!   sent them (a client waits for each answer), never go back: a document
//!   once found is found again, at a version at least as high.
//! - **What was read**: a cart at version `v` holds the units per SKU the
//!   events gave the cart at `v`; an order at version `v` has a status the
//!   events gave it at `v`.

use std::collections::{BTreeMap, HashMap};

use parallax_core::{EventRecord, Position, StreamId};
use serde::Deserialize;

use super::super::model::Model;
use super::super::report::{CheckReport, Details};
use super::{Operation, Outcome};

/// What a read was shown.
#[derive(Debug, Deserialize)]
struct Shown {
    found: bool,
    #[serde(default)]
    version: u64,
    units: Option<BTreeMap<String, u64>>,
    status: Option<String>,
}

/// A client's acknowledged write, as a read must see it.
struct Acknowledged {
    at: u64,
    /// The stream version of its event (carts); 0 for a checkout, whose
    /// order must merely exist.
    version: u64,
}

/// Checks every `ok` read of `history`.
pub(super) fn check_reads(
    history: &[Operation],
    by_position: &HashMap<Position, &EventRecord>,
    model: &Model,
    report: &mut CheckReport,
    details: &mut Details,
) {
    let writes = acknowledged_writes(history, by_position);
    let mut last: HashMap<(u64, &str), (u64, &Operation)> = HashMap::new();
    let mut reads: Vec<&Operation> = history.iter().filter(|op| op.is_read()).collect();
    reads.sort_by_key(|op| op.invoked_at);
    for op in reads {
        let Outcome::Ok { .. } = op.outcome else { continue };
        let Some(shown) = op.read.clone().and_then(|read| serde_json::from_value::<Shown>(read).ok()) else {
            report.reads_unlike_model += 1;
            details.violation("read", format!("{} records no readable answer", describe(op)));
            continue;
        };
        check_shown(op, &shown, model, report, details);
        let Some(worker) = op.worker else { continue };
        if op.token.is_some() {
            let own = writes.get(&(worker, op.stream.clone())).map_or(&[][..], Vec::as_slice);
            let invoked = op.invoked_at.unwrap_or(u64::MAX);
            let needed = own.iter().filter(|write| write.at < invoked).map(|write| write.version).max();
            if let Some(needed) = needed {
                if !shown.found || shown.version < needed {
                    report.read_your_writes_violations += 1;
                    details.violation(
                        "read your writes",
                        format!(
                            "{} with token {} shows {}, but its client's write acknowledged before needs \
                             version {needed}",
                            describe(op),
                            op.token.as_deref().unwrap_or("-"),
                            state(&shown)
                        ),
                    );
                }
            }
        }
        let seen = shown.found.then_some(shown.version);
        let key = (worker, op.stream.as_str());
        if let Some(&(before, earlier)) = last.get(&key) {
            if seen.is_none_or(|version| version < before) {
                report.monotonic_read_violations += 1;
                details.violation(
                    "monotonic reads",
                    format!(
                        "{} shows {}, after operation {} of the same client showed version {before}",
                        describe(op),
                        state(&shown),
                        earlier.id
                    ),
                );
            }
        }
        if let Some(version) = seen {
            if last.get(&key).is_none_or(|&(before, _)| version >= before) {
                last.insert(key, (version, op));
            }
        }
    }
}

/// Each client's acknowledged writes per stream they must be read on:
/// adds on their cart, checkouts on the order they named.
fn acknowledged_writes(
    history: &[Operation],
    by_position: &HashMap<Position, &EventRecord>,
) -> HashMap<(u64, String), Vec<Acknowledged>> {
    let mut writes: HashMap<(u64, String), Vec<Acknowledged>> = HashMap::new();
    for op in history.iter().filter(|op| !op.is_read()) {
        let (Some(worker), Outcome::Ok { at, position }) = (op.worker, &op.outcome) else { continue };
        if let Some(order) = &op.order_id {
            let stream = format!("{}-{order}", shop_events::ORDER);
            writes.entry((worker, stream)).or_default().push(Acknowledged { at: *at, version: 0 });
        }
        let event = position.and_then(|position| by_position.get(&position));
        if let Some(event) = event.filter(|event| event.stream_id == op.stream) {
            let acknowledged = Acknowledged { at: *at, version: event.stream_version };
            writes.entry((worker, op.stream.clone())).or_default().push(acknowledged);
        }
    }
    writes
}

/// A read at version `v` shows what the events gave its stream at `v`.
fn check_shown(
    op: &Operation,
    shown: &Shown,
    model: &Model,
    report: &mut CheckReport,
    details: &mut Details,
) {
    if !shown.found {
        return;
    }
    let unlike = match op.f.as_str() {
        "read_cart" => {
            let cart =
                StreamId::parse(&op.stream).and_then(|s| s.id_in(shop_events::CART)).unwrap_or_default();
            let units = shown.units.clone().unwrap_or_default();
            let had = model.cart_units_at(cart, shown.version);
            (had.as_ref() != Some(&units)).then(|| match had {
                Some(had) => format!("the events give it {had:?} at that version"),
                None => "the events never gave it that version".to_owned(),
            })
        }
        "read_order" => {
            let order =
                StreamId::parse(&op.stream).and_then(|s| s.id_in(shop_events::ORDER)).unwrap_or_default();
            let status = shown.status.as_deref().unwrap_or_default();
            (!model.order_had(order, shown.version, status))
                .then(|| "the events never gave it that status at that version".to_owned())
        }
        _ => None,
    };
    if let Some(why) = unlike {
        report.reads_unlike_model += 1;
        details
            .violation("read unlike the events", format!("{} shows {}; {why}", describe(op), state(shown)));
    }
}

fn describe(op: &Operation) -> String {
    format!("operation {} ({} of {} by client {})", op.id, op.f, op.stream, op.worker.unwrap_or_default())
}

fn state(shown: &Shown) -> String {
    if !shown.found {
        return "nothing (not found)".to_owned();
    }
    let mut state = format!("version {}", shown.version);
    if let Some(units) = &shown.units {
        state.push_str(&format!(" with {units:?}"));
    }
    if let Some(status) = &shown.status {
        state.push_str(&format!(", {status}"));
    }
    state
}
