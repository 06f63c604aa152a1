//! Step 5 of `shop check`: a history of client operations against the event
//! store and the carts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use parallax_core::{DocKey, EventRecord, EventStore, Position, ReadStore};
use serde::Deserialize;
use serde_json::Value;

use super::cart_id;
use super::model::Model;
use super::report::{CheckReport, Details};

mod reads;

/// Idempotency keys looked up at once.
const KEY_LOOKUPS: usize = 8;

/// One client operation: its invocation and its completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The driver's id of it.
    pub id: u64,
    /// What it did (`add_item`, ...).
    pub f: String,
    /// The stream it addressed (`cart-…`).
    pub stream: String,
    /// Its idempotency key.
    pub key: Option<String>,
    /// The product (`add_item`).
    pub sku: Option<String>,
    /// Units (`add_item`).
    pub quantity: i64,
    /// When it was sent, in microseconds of the driver's clock.
    pub invoked_at: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// The client that sent it.
    pub worker: Option<u64>,
    /// The consistency token a read carried.
    pub token: Option<String>,
    /// What a read was shown (`read_*`, when `ok`).
    pub read: Option<Value>,
    /// The order an acknowledged checkout named.
    pub order_id: Option<String>,
    /// The operation this one repeats with the same key (a retry).
    pub retry_of: Option<u64>,
}

impl Operation {
    /// A query (`read_cart`, `read_order`), not a command.
    pub fn is_read(&self) -> bool {
        self.f.starts_with("read_")
    }

    /// When it was acknowledged, if it was.
    pub fn acknowledged_at(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Ok { at, .. } => Some(at),
            _ => None,
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged at `at`; `position` is the last position of its events.
    Ok {
        /// When.
        at: u64,
        /// From the answer's consistency token.
        position: Option<Position>,
    },
    /// Definitely refused: nothing may be stored.
    Fail {
        /// The HTTP status.
        status: Option<u16>,
        /// Why.
        error: Option<String>,
    },
    /// Unknown: it may or may not have been applied.
    Info {
        /// Why, if it ended at all.
        error: Option<String>,
    },
}

/// One line of a history.
#[derive(Debug, Deserialize)]
struct Line {
    id: u64,
    #[serde(rename = "type")]
    kind: String,
    f: Option<String>,
    stream: Option<String>,
    key: Option<String>,
    sku: Option<String>,
    quantity: Option<i64>,
    at_us: Option<u64>,
    position: Option<Position>,
    status: Option<u16>,
    error: Option<String>,
    worker: Option<u64>,
    token: Option<String>,
    read: Option<Value>,
    order_id: Option<String>,
    retry_of: Option<u64>,
}

/// Parses a history: JSON lines, one object each, blank lines ignored.
///
/// ```text
/// {"id":17,"worker":3,"type":"invoke","f":"add_item","stream":"cart-f1-2","key":"f1-17","sku":"F-1","quantity":1,"at_us":123456}
/// {"id":17,"type":"ok","at_us":125000,"position":4711}
/// {"id":18,"type":"fail","at_us":125100,"status":409,"error":"..."}
/// {"id":19,"type":"info","at_us":130000,"error":"timeout"}
/// {"id":20,"worker":3,"type":"invoke","f":"add_item","stream":"cart-f1-2","key":"f1-19","retry_of":19,"sku":"F-1","quantity":1,"at_us":130100}
/// {"id":20,"type":"ok","at_us":131000,"position":4790}
/// {"id":21,"worker":3,"type":"invoke","f":"read_cart","stream":"cart-f1-2","token":"3:4790","at_us":131100}
/// {"id":21,"type":"ok","at_us":131500,"read":{"found":true,"version":9,"units":{"F-1":9}}}
/// {"id":22,"worker":4,"type":"ok","f":"checkout","stream":"cart-b1","key":"f1-22","order_id":"0190…","at_us":140000,"position":4801}
/// {"id":23,"worker":4,"type":"invoke","f":"read_order","stream":"order-0190…","at_us":140100}
/// {"id":23,"type":"ok","at_us":140300,"read":{"found":true,"version":0,"status":"pending"}}
/// ```
///
/// Each `id` has one `invoke` and at most one completion (`ok`, `fail` or
/// `info`); fields missing from one are taken from the other. An invoke
/// without completion is `info`. A retry (`retry_of`) sends its original's
/// key again. A read (`f` starting with `read_`) has no key; `token` is the
/// consistency token it carried, if any, and its `ok` says what it was
/// shown: `found`, the document's `version`, and a cart's `units` per SKU or
/// an order's `status`.
///
/// # Errors
/// A line that is not such an object, an unknown `type`, a second invoke or
/// completion of an id, an operation without `stream`.
pub fn parse_history(text: &str) -> anyhow::Result<Vec<Operation>> {
    let mut lines: BTreeMap<u64, (Option<Line>, Option<Line>)> = BTreeMap::new();
    for (number, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let number = number + 1;
        let line: Line = serde_json::from_str(text).with_context(|| format!("line {number}"))?;
        let slots = lines.entry(line.id).or_default();
        let slot = match line.kind.as_str() {
            "invoke" => &mut slots.0,
            "ok" | "fail" | "info" => &mut slots.1,
            other => anyhow::bail!("line {number}: unknown type {other:?}"),
        };
        anyhow::ensure!(slot.is_none(), "line {number}: a second {} of operation {}", line.kind, line.id);
        *slot = Some(line);
    }
    lines
        .into_iter()
        .map(|(id, (invoke, completion))| {
            let field = |get: fn(&Line) -> Option<String>| {
                invoke.as_ref().and_then(get).or_else(|| completion.as_ref().and_then(get))
            };
            let stream =
                field(|l| l.stream.clone()).with_context(|| format!("operation {id} has no stream"))?;
            let outcome = match &completion {
                Some(done) if done.kind == "ok" => Outcome::Ok {
                    at: done.at_us.with_context(|| format!("operation {id}: ok without at_us"))?,
                    position: done.position,
                },
                Some(done) if done.kind == "fail" => {
                    Outcome::Fail { status: done.status, error: done.error.clone() }
                }
                Some(done) => Outcome::Info { error: done.error.clone() },
                None => Outcome::Info { error: None },
            };
            Ok(Operation {
                id,
                f: field(|l| l.f.clone()).unwrap_or_default(),
                stream,
                key: field(|l| l.key.clone()),
                sku: field(|l| l.sku.clone()),
                quantity: invoke
                    .as_ref()
                    .and_then(|l| l.quantity)
                    .or_else(|| completion.as_ref().and_then(|l| l.quantity))
                    .unwrap_or(0),
                invoked_at: invoke.as_ref().and_then(|l| l.at_us),
                outcome,
                worker: invoke.as_ref().and_then(|l| l.worker).or_else(|| completion.as_ref()?.worker),
                token: field(|l| l.token.clone()),
                read: completion.as_ref().and_then(|l| l.read.clone()),
                order_id: field(|l| l.order_id.clone()),
                retry_of: invoke.as_ref().and_then(|l| l.retry_of).or_else(|| completion.as_ref()?.retry_of),
            })
        })
        .collect()
}

/// A present command: its key is in the store, at `position`. A key sent
/// more than once (retries) counts as one command, invoked when first sent
/// and acknowledged when first acknowledged.
struct Present<'a> {
    op: &'a Operation,
    position: Position,
    invoked_at: Option<u64>,
    acknowledged_at: Option<u64>,
}

/// Checks `history` against the store's `events` (and idempotency keys),
/// the carts the read store `views` shows, and its reads against `model`.
pub(super) async fn check_history(
    history: &[Operation],
    store: &dyn EventStore,
    events: &[EventRecord],
    views: &dyn ReadStore,
    model: &Model,
    report: &mut CheckReport,
    details: &mut Details,
) -> anyhow::Result<()> {
    let keys = StoredKeys::look_up(history, store).await?;
    let by_position: HashMap<Position, &EventRecord> =
        events.iter().map(|event| (event.position, event)).collect();
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        let counts = if op.is_read() { &mut report.reads } else { &mut report.operations };
        match &op.outcome {
            Outcome::Ok { .. } => counts.ok += 1,
            Outcome::Fail { .. } => counts.fail += 1,
            Outcome::Info { .. } => counts.info += 1,
        }
        let Some(key) = op.key.as_deref() else { continue };
        check_acknowledged(op, key, keys.position(op), &by_position, report, details);
        by_key.entry(key).or_default().push(op);
    }
    let mut present: BTreeMap<&str, Vec<Present<'_>>> = BTreeMap::new();
    for (key, ops) in &by_key {
        report.retried_keys += u64::from(ops.len() > 1);
        let stored = keys.position(ops[0]);
        check_refused(key, ops, stored, report, details);
        if let Some(position) = stored {
            let invoked_at = ops.iter().filter_map(|op| op.invoked_at).min();
            let acknowledged_at = ops.iter().filter_map(|op| op.acknowledged_at()).min();
            let entry = Present { op: ops[0], position, invoked_at, acknowledged_at };
            present.entry(ops[0].stream.as_str()).or_default().push(entry);
        }
    }
    for (stream, ops) in &present {
        check_linearizability(stream, ops, report, details);
    }
    reads::check_reads(history, &by_position, model, report, details);
    check_carts(history, &keys, events, views, report, details).await
}

/// Each idempotency key's last position in the store, if it is there.
struct StoredKeys<'a>(HashMap<&'a str, Option<Position>>);

impl<'a> StoredKeys<'a> {
    async fn look_up(history: &'a [Operation], store: &dyn EventStore) -> anyhow::Result<Self> {
        let unique: BTreeSet<&str> = history.iter().filter_map(|op| op.key.as_deref()).collect();
        let keys = futures::stream::iter(unique)
            .map(|key| async move {
                let stored =
                    store.idempotency(key).await.with_context(|| format!("look up idempotency key {key}"))?;
                anyhow::Ok((key, stored.map(|stored| stored.last_position)))
            })
            .buffer_unordered(KEY_LOOKUPS)
            .try_collect()
            .await?;
        Ok(Self(keys))
    }

    /// Where the key of `op` is stored: `None` without a key or when the
    /// store does not have it.
    fn position(&self, op: &Operation) -> Option<Position> {
        op.key.as_deref().and_then(|key| self.0.get(key).copied().flatten())
    }
}

fn describe(op: &Operation) -> String {
    format!("operation {} ({} on {}, key {})", op.id, op.f, op.stream, op.key.as_deref().unwrap_or("-"))
}

/// An acknowledged operation must be stored at the position acknowledged,
/// among its stream's events.
fn check_acknowledged(
    op: &Operation,
    key: &str,
    stored: Option<Position>,
    by_position: &HashMap<Position, &EventRecord>,
    report: &mut CheckReport,
    details: &mut Details,
) {
    let Outcome::Ok { position, .. } = &op.outcome else { return };
    let Some(stored) = stored else {
        report.lost_acknowledged += 1;
        let at = position.map_or_else(|| "?".to_owned(), |p| p.to_string());
        details.violation(
            "lost",
            format!(
                "{} was acknowledged at position {at}, but its key is not in the event store",
                describe(op)
            ),
        );
        return;
    };
    let acknowledged = position.unwrap_or(stored);
    let holds = by_position.get(&acknowledged).is_some_and(|event| event.stream_id == op.stream);
    if !holds {
        report.lost_acknowledged += 1;
        details.violation(
            "lost",
            format!(
                "{} was acknowledged at position {acknowledged}, which holds no event of {}",
                describe(op),
                op.stream
            ),
        );
    } else if acknowledged != stored {
        report.lost_acknowledged += 1;
        details.violation(
            "lost",
            format!(
                "{} was acknowledged at position {acknowledged}, its key {key} records {stored}",
                describe(op)
            ),
        );
    }
}

/// A key in the store must not have been refused for certain: every one of
/// its sends refused, or one refused after another was acknowledged (a
/// repeat answers what the first send was answered). A refusal beside a
/// send of unknown outcome is no contradiction: that send may have
/// committed after the refusal.
fn check_refused(
    key: &str,
    ops: &[&Operation],
    stored: Option<Position>,
    report: &mut CheckReport,
    details: &mut Details,
) {
    let Some(stored) = stored else { return };
    let first_ok = ops.iter().filter_map(|op| op.acknowledged_at()).min();
    let all_refused = ops.iter().all(|op| matches!(op.outcome, Outcome::Fail { .. }));
    let refused = ops.iter().find(|op| {
        matches!(op.outcome, Outcome::Fail { .. })
            && (all_refused || first_ok.zip(op.invoked_at).is_some_and(|(ok, invoked)| ok < invoked))
    });
    if let Some(op) = refused {
        let Outcome::Fail { status, error } = &op.outcome else { return };
        report.refused_present += 1;
        details.violation(
            "refused but present",
            format!(
                "{} was refused ({}: {}), yet its key {key} is in the store at position {stored}",
                describe(op),
                status.map_or_else(|| "?".to_owned(), |s| s.to_string()),
                error.as_deref().unwrap_or("-")
            ),
        );
    }
}

/// Linearizability: an acknowledged append is ordered before every append
/// of its stream that began after it was acknowledged.
fn check_linearizability(stream: &str, ops: &[Present<'_>], report: &mut CheckReport, details: &mut Details) {
    let mut acknowledged: Vec<(u64, &Present<'_>)> =
        ops.iter().filter_map(|present| Some((present.acknowledged_at?, present))).collect();
    acknowledged.sort_by_key(|(at, _)| *at);
    let mut started: Vec<(u64, &Present<'_>)> =
        ops.iter().filter_map(|present| Some((present.invoked_at?, present))).collect();
    started.sort_by_key(|(at, _)| *at);
    let mut next = 0;
    let mut highest: Option<(u64, &Present<'_>)> = None;
    for (invoked, b) in started {
        while next < acknowledged.len() && acknowledged[next].0 < invoked {
            let candidate = acknowledged[next];
            if highest.is_none_or(|(_, h)| candidate.1.position > h.position) {
                highest = Some(candidate);
            }
            next += 1;
        }
        if let Some((acked, a)) = highest {
            if a.position > b.position {
                report.linearizability_violations += 1;
                details.violation(
                    "linearizability",
                    format!(
                        "{stream}: operation {} (invoked at {invoked} µs) is at position {}, below \
                         operation {} acknowledged at {acked} µs at position {}",
                        b.op.id, b.position, a.op.id, a.position
                    ),
                );
            }
        }
    }
}

/// Carts only added to: the view holds what the present commands added
/// (each key once, however often it was sent), and the store holds one
/// `cart.item_added` per present key.
async fn check_carts(
    history: &[Operation],
    keys: &StoredKeys<'_>,
    events: &[EventRecord],
    views: &dyn ReadStore,
    report: &mut CheckReport,
    details: &mut Details,
) -> anyhow::Result<()> {
    let mut by_stream: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history.iter().filter(|op| !op.is_read()) {
        by_stream.entry(op.stream.as_str()).or_default().push(op);
    }
    let mut added: HashMap<&str, u64> = HashMap::new();
    for event in events.iter().filter(|event| event.event_type == "cart.item_added") {
        *added.entry(event.stream_id.as_str()).or_default() += 1;
    }
    for (stream, ops) in by_stream {
        let Some(cart) = cart_id(stream) else { continue };
        if !ops.iter().all(|op| op.f == "add_item") {
            continue;
        }
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        let mut counted: BTreeSet<&str> = BTreeSet::new();
        for op in ops {
            let Some(key) = op.key.as_deref() else { continue };
            if keys.position(op).is_some() && counted.insert(key) {
                if let Some(sku) = &op.sku {
                    *expected.entry(sku.clone()).or_default() += op.quantity;
                }
            }
        }
        let stored = added.get(stream).copied().unwrap_or(0);
        if stored > counted.len() as u64 {
            report.applied_twice_in_store += stored - counted.len() as u64;
            details.violation(
                "applied twice in the store",
                format!("{stream} holds {stored} cart.item_added events for {} present keys", counted.len()),
            );
        }
        let actual = cart_units(views, cart).await?;
        compare_cart(cart, &expected, &actual, report, details);
    }
    Ok(())
}

/// The units per SKU a cart's document holds, read leniently: only its
/// lines' SKUs and quantities, not through the view's own type, so a
/// document altered elsewhere (which the view comparison names) is still
/// counted. A document without readable lines counts as empty.
async fn cart_units(views: &dyn ReadStore, cart: &str) -> anyhow::Result<BTreeMap<String, i64>> {
    #[derive(Deserialize)]
    struct Lines {
        #[serde(default)]
        items: Vec<Line>,
    }
    #[derive(Deserialize)]
    struct Line {
        sku: String,
        quantity: i64,
    }
    let key = DocKey::partition(cart);
    let text = views
        .get_json(shop_read::views::CART.name(), &key)
        .await
        .with_context(|| format!("read cart {cart}"))?;
    let lines =
        text.and_then(|text| serde_json::from_str::<Lines>(&text).ok()).map_or(Vec::new(), |l| l.items);
    let mut units = BTreeMap::new();
    for line in lines {
        *units.entry(line.sku).or_default() += line.quantity;
    }
    Ok(units)
}

/// Units per SKU the cart view shows (`actual`) against what the present
/// operations added (`expected`).
fn compare_cart(
    cart: &str,
    expected: &BTreeMap<String, i64>,
    actual: &BTreeMap<String, i64>,
    report: &mut CheckReport,
    details: &mut Details,
) {
    let skus: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for sku in skus {
        let (wanted, shown) =
            (expected.get(sku).copied().unwrap_or(0), actual.get(sku).copied().unwrap_or(0));
        if shown > wanted {
            report.applied_twice += 1;
            details.violation(
                "applied twice",
                format!("cart {cart} shows {shown} × {sku}; the operations in the store added {wanted}"),
            );
        } else if shown < wanted {
            report.lost_in_views += 1;
            details.violation(
                "lost in the views",
                format!("cart {cart} shows {shown} × {sku}; the operations in the store added {wanted}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_pairs_invokes_with_completions() {
        let text = r#"
{"id":1,"worker":0,"type":"invoke","f":"add_item","stream":"cart-x","key":"k1","sku":"A","quantity":2,"at_us":10}
{"id":2,"worker":1,"type":"invoke","f":"add_item","stream":"cart-x","key":"k2","sku":"A","quantity":1,"at_us":11}
{"id":1,"worker":0,"type":"ok","f":"add_item","stream":"cart-x","key":"k1","at_us":20,"position":7}
{"id":3,"worker":1,"type":"invoke","f":"add_item","stream":"cart-x","key":"k3","sku":"B","quantity":1,"at_us":30}
{"id":3,"worker":1,"type":"fail","at_us":31,"status":409,"error":"conflict"}
"#;
        let ops = parse_history(text).expect("a valid history");
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].outcome, Outcome::Ok { at: 20, position: Some(7) });
        assert_eq!((ops[0].quantity, ops[0].invoked_at), (2, Some(10)));
        assert_eq!(ops[1].outcome, Outcome::Info { error: None });
        assert_eq!(ops[2].outcome, Outcome::Fail { status: Some(409), error: Some("conflict".into()) });
        assert_eq!(ops[2].key.as_deref(), Some("k3"));

        let twice = "{\"id\":1,\"type\":\"ok\",\"stream\":\"s\",\"at_us\":1}\n{\"id\":1,\"type\":\"info\"}";
        assert!(parse_history(twice).is_err());
        assert!(parse_history("{\"id\":1,\"type\":\"maybe\",\"stream\":\"s\"}").is_err());
        assert!(parse_history("not json").is_err());
    }
}
