//! `shop check`: a Jepsen-style checker of a shop's stores, run after a load
//! (or a fault injection) has stopped.
//!
//! It opens the stores as `shop status` does — the write DB, the Kafka topic
//! when the log is one, the read DB through each projection's active
//! generation — and checks, in this order:
//!
//! 1. **The views have settled.** The read side is eventually consistent, so
//!    the checker first waits (at most [`CheckOptions::wait`], 60 s by
//!    default) until every projection's checkpoint in every partition has
//!    reached the last position of the store's events in that partition and
//!    the event store's head stands still. Run it once the load has stopped:
//!    against a store that keeps growing it compares at the last head it saw.
//! 2. **The event store**: every event read in position order; no event id
//!    twice; per stream, versions 1..n, each one more than the highest before
//!    it in position order (so no gap, no repeat, and positions increasing
//!    with versions).
//! 3. **The views**: every projection rebuilt from scratch, from exactly the
//!    events of step 2, into a temporary SQLite read store (the *fold*), and
//!    compared document by document with the read DB: every partition the
//!    fold wrote (put or deleted) and every partition of the read DB's views
//!    (`ReadStore::partitions`), so a stray document in a partition no event
//!    touches is seen too. Each projection's checkpoints must equal the last position of
//!    the store's events in their partition; dead letters are reported.
//!    Then every document of the read DB's views is compared with the
//!    checker's own model of the events ([`Model`], `model.rs`): code that
//!    folds the event contract independently of `shop-read`, so a
//!    deterministic bug in a projection or in `ViewTx`, which the rebuild
//!    repeats, still shows.
//! 4. **The topic** (when `log.kind = "kafka"`): every partition read from
//!    offset 0 to its end offset by a consumer group of its own
//!    (`<group>.check-<uuid>`, committing nothing) and compared with the
//!    store. Delivery is at-least-once, so a repeated event is allowed and
//!    only counted; what must hold is that every event of the store is there,
//!    that each message carries an event of the store unchanged in the
//!    partition of its stream, and that in each partition the first
//!    occurrences come in position order (a projector skips by position: an
//!    event after a higher one of its partition would be skipped, and so
//!    would a stream's earlier version after a later one). The checker is
//!    meant for topics that keep everything: a message deleted by retention
//!    shows as unreadable and its event as missing.
//! 5. **A history of client operations** (`--history FILE`, JSON lines from
//!    the fault suite's load driver: an `invoke` line per operation, then one
//!    completion with the same `id`, `ok`, `fail` or `info`; see
//!    [`parse_history`]). An operation is *present* when its idempotency key
//!    is in the event store (the store writes the key with the last position
//!    of the command's events, in the append's transaction); its position is
//!    the one its key records. The history is assumed to hold every command
//!    sent to its streams, each with a key of its own; a retry sends its
//!    original's key again, and a key counts as one command however often it
//!    was sent. The history's reads (`read_cart`, `read_order`) are checked
//!    per client for read-your-writes (with a token), monotonic reads, and
//!    against the model (module `history/reads.rs`).
//!
//! # The report
//!
//! [`CheckReport`] serializes (`shop check --json`) as one object:
//!
//! | field | meaning |
//! |---|---|
//! | `ok` | no violation: every count below is 0 except `topic_duplicates` (and the informative ones) |
//! | `events` | events in the event store, up to `head` |
//! | `streams` | streams among them |
//! | `head` | the event store's head the check ran against |
//! | `topic_checked` | whether the configuration has a Kafka topic (it was read) |
//! | `topic_messages` | messages read from the topic, unreadable ones included (0 without a topic) |
//! | `history_checked` | whether a history was given |
//! | `operations` | `{"ok","fail","info"}`: commands of the history by completion (retries included); an invoke without completion is `info` |
//! | `reads` | `{"ok","fail","info"}`: reads of the history by completion (informative) |
//! | `retried_keys` | idempotency keys the history sent more than once (informative) |
//! | `lost` | `lost_acknowledged + lost_in_views` |
//! | `lost_acknowledged` | `ok` operations whose key is absent, or whose acknowledged position holds no event of their stream, or whose key records another position than the one acknowledged |
//! | `lost_in_views` | (cart, SKU) pairs of all-`add_item` carts of the history whose cart view holds fewer units than the present operations added |
//! | `refused_present` | keys in the store that were refused for certain: every send of the key a `fail`, or a `fail` sent after another send of the key was acknowledged |
//! | `duplicated` | `duplicate_event_ids + applied_twice + applied_twice_in_store + topic_unknown` |
//! | `duplicate_event_ids` | events whose event id an earlier event of the store already has |
//! | `applied_twice` | (cart, SKU) pairs of all-`add_item` carts of the history whose cart view holds more units than the present operations added (each key once) |
//! | `applied_twice_in_store` | `cart.item_added` events of all-`add_item` carts of the history beyond one per present key (a command, a retried one most likely, appended twice) |
//! | `topic_unknown` | messages of the topic that carry no event of the store: unreadable (not a Parallax event), at a position the store does not have, differing from the stored event (stream, version, id, type, schema version, payload), or in another partition than their stream's |
//! | `order_violations` | events of the store whose stream version is not one more than the highest version of their stream at a lower position |
//! | `linearizability_violations` | present keys `b` for which an `ok` key `a` of the same stream, acknowledged before `b` was first sent, has a higher position than `b` |
//! | `read_your_writes_violations` | `ok` reads with a token that do not show a write of their client on the stream they read acknowledged before they were sent (a cart below that add's version, an order the client's checkout named not found) |
//! | `monotonic_read_violations` | `ok` reads that show a stream's document not found, or at a lower version, after an earlier read of the same client showed it |
//! | `reads_unlike_model` | `ok` reads showing a state the events never gave their stream at the version shown (a cart's units per SKU, an order's status), or recording no readable answer |
//! | `topic_missing` | events of the store (up to `head`) that are on no partition of the topic |
//! | `topic_duplicates` | messages repeating an event already carried (allowed: at-least-once; informative) |
//! | `topic_order_violations` | first occurrences of events that come after a higher position in their partition |
//! | `view_differences` | documents missing from the read DB, extra in it, or with another body than the fold's, plus checkpoints beyond the last position of their partition's events |
//! | `model_differences` | documents of the `catalog`, `cart`, `order`, `customer_orders` and `sales` views missing from the read DB, extra in it, or with a field the model covers of another value than the model's; plus events the model cannot fold |
//! | `views_behind` | (projection, partition) checkpoints still behind the store's events when the wait ended |
//! | `dead_letters` | dead letters of the projections' active generations |
//! | `documents` | documents the fold holds (what was compared) |
//! | `details` | up to 50 lines naming violations (at most 10 of each kind), then informative lines |
//! | `details_omitted` | lines left out of `details` |
//!
//! `shop check` prints a summary (or the JSON with `--json`) and exits with
//! 0 when `ok`, 1 when a violation was found, 2 when the check could not run.
//!
//! The parts that know only Parallax's ports (settling, the event store's
//! invariants, the fold and the document diff, the topic against the store)
//! are in [`parallax_runtime::check`]; here are the shop's choices: which
//! stores, projections and carts, the Kafka read, the history and the report.

mod history;
mod model;
mod report;
mod topic;
mod views;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use parallax_core::ReadStore;
use parallax_core::StreamId;
use parallax_runtime::check::{check_events, EventFindings, EventViolation};
use parallax_runtime::ActiveGenerations;

pub use history::{parse_history, Operation, Outcome};
pub use model::Model;
pub use parallax_runtime::check::{
    compare_topic, differences, documents, Documents, Fold, TopicFindings, TopicMessage,
};
pub use report::{CheckReport, Operations};
pub use topic::{read_topic, TopicRead};
pub use views::fold;

use crate::app::{open_read_store, open_write_side};
use crate::config::{LogKind, Settings};
use report::Details;

/// How long the checker waits for the views by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// What to check beyond the stores.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// A history of client operations (JSON lines; see [`parse_history`]).
    pub history: Option<PathBuf>,
    /// How long to wait for the projections to reach the event store's head.
    pub wait: Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self { history: None, wait: DEFAULT_WAIT }
    }
}

/// `shop check`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// A history of client operations: JSON lines as the fault suite's load
    /// driver writes them.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Seconds to wait for the projections to reach the event store's head.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_WAIT.as_secs())]
    pub wait: u64,
    /// JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// `shop check`: loads the settings (`config`, then `data_dir` over them),
/// checks, prints the report; returns the exit status: 0 ok, 1 a violation
/// found, 2 the check could not run.
pub async fn run(config: Option<&Path>, data_dir: Option<PathBuf>, args: &CheckArgs) -> i32 {
    let checked = async {
        let mut settings = Settings::load(config)?;
        if let Some(data_dir) = data_dir {
            settings.data_dir = data_dir;
        }
        let options = CheckOptions { history: args.history.clone(), wait: Duration::from_secs(args.wait) };
        check(&settings, options).await
    };
    match checked.await {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(error) => {
                        eprintln!("error: serialize the report: {error}");
                        return 2;
                    }
                }
            } else {
                print!("{}", report.render());
            }
            if report.ok {
                0
            } else {
                1
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            2
        }
    }
}

/// Checks the shop `settings` describe; see the module docs.
///
/// # Errors
/// When a store cannot be opened or read, the topic cannot be read to its
/// end, or the history does not parse: the check could not run. Violations
/// are not errors; they are in the report.
pub async fn check(settings: &Settings, options: CheckOptions) -> anyhow::Result<CheckReport> {
    let history = options.history.as_deref().map(read_history).transpose()?;
    let write = open_write_side(settings).await?;
    let projections = shop_read::all_projections();
    let read: Arc<dyn ReadStore> =
        Arc::new(ActiveGenerations::new(open_read_store(settings).await?, &projections));
    let partitions = settings.partitions();
    let mut report = CheckReport::default();
    let mut details = Details::default();

    // 1. Settle (3. fold and read the views on the way).
    let carts = history_carts(history.iter().flatten());
    let deadline = Instant::now() + options.wait;
    let compared = views::settle_and_fold(
        write.log.as_ref(),
        read.as_ref(),
        &projections,
        &carts,
        partitions,
        deadline,
        &mut details,
    )
    .await?;
    let settled = &compared.settled;
    report.head = settled.head;
    report.views_behind = settled.behind.len() as u64;
    for line in &settled.behind {
        details.violation("behind", line.clone());
    }

    // 2. The event store.
    record_events(check_events(&compared.events), &mut report, &mut details);

    // 3. The views.
    views::compare(&compared, read.as_ref(), &projections, &mut report, &mut details).await?;
    let model = model::compare(&compared.events, &compared.actual, &mut report, &mut details);

    // 4. The topic.
    if settings.log.kind == LogKind::Kafka {
        let (log, events) = (write.log.as_ref(), &compared.events);
        topic::check_topic(settings, log, events, settled.head, &mut report, &mut details).await?;
    }

    // 5. The history.
    if let Some(history) = &history {
        report.history_checked = true;
        let (store, events) = (write.store.as_ref(), &compared.events);
        let views = read.as_ref();
        history::check_history(history, store, events, views, &model, &mut report, &mut details).await?;
    }

    report.conclude(details);
    Ok(report)
}

fn read_history(path: &Path) -> anyhow::Result<Vec<Operation>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("read the history {}", path.display()))?;
    parse_history(&text).with_context(|| format!("parse the history {}", path.display()))
}

/// The carts of the history: compared too, even where the fold has none.
fn history_carts<'a>(history: impl Iterator<Item = &'a Operation>) -> BTreeSet<(String, String)> {
    history
        .filter_map(|op| cart_id(&op.stream))
        .map(|cart| (shop_read::views::CART.name().to_owned(), cart.to_owned()))
        .collect()
}

/// The cart id of a cart stream (`cart-<id>`).
fn cart_id(stream: &str) -> Option<&str> {
    StreamId::parse(stream)?.id_in(shop_events::CART)
}

fn record_events(findings: EventFindings, report: &mut CheckReport, details: &mut Details) {
    report.events = findings.events;
    report.streams = findings.streams;
    for violation in findings.violations {
        match violation {
            EventViolation::DuplicateEventId { .. } => report.duplicate_event_ids += 1,
            EventViolation::OutOfOrder { .. } => report.order_violations += 1,
            _ => {}
        }
        details.violation(violation.kind(), violation.to_string());
    }
}
