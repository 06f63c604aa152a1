//! Poison events, end to end: a projector over a real event log and read
//! store attempts an event its projection fails on a bounded number of
//! times, dead-letters it and goes on; a retry after the fix applies it once
//! ([`parallax_runtime::dead_letters`]). Every read store whose commits are
//! atomic runs it:
//!
//! ```no_run
//! use std::sync::Arc;
//! use parallax_testing::dead_letters::{run_all, DeadLetterFixture};
//!
//! /// The adapters under test, on a new, empty database.
//! async fn open_fresh() -> DeadLetterFixture {
//!     unimplemented!("open a new database")
//! }
//!
//! // In a `#[tokio::test(flavor = "multi_thread")]`:
//! # async fn dead_letters() {
//! run_all(open_fresh).await;
//! # }
//! ```
//!
//! `parallax-sqlite`'s `tests/dead_letters.rs` is a complete example.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parallax_core::read_store::{DeadLetter, Revision, StoredDocument};
use parallax_core::{
    AppendOutcome, AppendRequest, Checkpoint, DocKey, EventLog, EventRecord, EventStore, ExpectedVersion,
    NewEvent, Partition, Position, Projection, ProjectionError, ReadStore, ReadStoreError, ReadStoreLayer,
    View, ViewSpec, ViewTx,
};
use parallax_runtime::generations::{Generation, GenerationStore};
use parallax_runtime::{retry_dead_letter, Projector, ProjectorError, RetryError};
use serde_json::{json, Value};
use uuid::Uuid;

/// An event store, the log that tails it, and a read store, all empty.
#[derive(Clone)]
pub struct DeadLetterFixture {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The log over it.
    pub log: Arc<dyn EventLog>,
    /// The read store (its commits atomic).
    pub views: Arc<dyn ReadStore>,
}

/// Runs every case, each against a fresh fixture from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = DeadLetterFixture>,
{
    let fresh = |case: &str| {
        eprintln!("dead letters: {case}");
        make()
    };
    a_failing_event_is_attempted_then_dead_lettered_and_retried_once(
        fresh("a_failing_event_is_attempted_then_dead_lettered_and_retried_once").await,
    )
    .await;
    a_panic_is_an_attempt_and_its_message_the_error(
        fresh("a_panic_is_an_attempt_and_its_message_the_error").await,
    )
    .await;
    a_read_store_failure_is_not_an_attempt(fresh("a_read_store_failure_is_not_an_attempt").await).await;
    a_partition_whose_checkpoint_failed_to_load_is_resumed_later(
        fresh("a_partition_whose_checkpoint_failed_to_load_is_resumed_later").await,
    )
    .await;
    concurrent_retries_apply_a_dead_letter_once(fresh("concurrent_retries_apply_a_dead_letter_once").await)
        .await;
    a_generation_keeps_and_retries_its_own_dead_letters(
        fresh("a_generation_keeps_and_retries_its_own_dead_letters").await,
    )
    .await;
    events_a_projection_does_not_handle_never_reach_it(
        fresh("events_a_projection_does_not_handle_never_reach_it").await,
    )
    .await;
}

// ---------------------------------------------------------------------------
// The projection under test

/// The event type [`Tally`] fails on until it is fixed.
const BROKEN: &str = "thing.broken";
/// The event type it always applies.
const FINE: &str = "thing.happened";
/// The view: one document per stream, `{"count": n}`.
const TALLIES: View<Value> = View::owned("tallies");

/// How [`Tally`] fails.
#[derive(Clone, Copy)]
enum Failure {
    Poison,
    Panic,
}

/// Counts each stream's events; fails on [`BROKEN`] ones until fixed.
struct Tally {
    failure: Failure,
    fixed: AtomicBool,
    /// Attempts at broken events (failed or not).
    attempts: AtomicUsize,
    /// The event types it handles (`None`: all).
    only: Option<&'static [&'static str]>,
}

impl Tally {
    fn new(failure: Failure) -> Arc<Self> {
        Arc::new(Self { failure, fixed: AtomicBool::new(false), attempts: AtomicUsize::new(0), only: None })
    }

    fn fix(&self) {
        self.fixed.store(true, Ordering::SeqCst);
    }

    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

fn complaint(stream: &str) -> String {
    format!("stream {stream} is broken")
}

#[async_trait]
impl Projection for Tally {
    fn name(&self) -> &'static str {
        "tally"
    }

    fn views(&self) -> Vec<ViewSpec> {
        vec![TALLIES.spec()]
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        self.only
    }

    async fn apply(&self, tx: &mut ViewTx<'_>, event: &EventRecord) -> Result<(), ProjectionError> {
        let key = DocKey::partition(&event.stream_id);
        let count = tx.get(&TALLIES, &key).await?.and_then(|doc| doc["count"].as_u64()).unwrap_or(0);
        // Written before failing: the failure must take it back.
        tx.put(&TALLIES, key, &json!({ "count": count + 1 }));
        if event.event_type == BROKEN {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if !self.fixed.load(Ordering::SeqCst) {
                match self.failure {
                    Failure::Poison => return Err(ProjectionError::Poison(complaint(&event.stream_id))),
                    Failure::Panic => panic!("{}", complaint(&event.stream_id)),
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// Appends one event of `event_type` to `stream`; its position and id.
async fn append(fixture: &DeadLetterFixture, stream: &str, event_type: &str) -> (Position, Uuid) {
    let event = NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        payload: "{}".into(),
        metadata: Default::default(),
        recorded_at: chrono::Utc::now(),
    };
    let event_id = event.event_id;
    let request = AppendRequest {
        stream_id: stream.into(),
        expected_version: ExpectedVersion::Any,
        events: vec![event],
        idempotency: None,
        reads: Vec::new(),
    };
    let position = match fixture.store.append(request).await.expect("append an event") {
        AppendOutcome::Appended { last_position, .. } => last_position,
        other => panic!("append to {stream}: {other:?}"),
    };
    // Visible in the log before the case goes on: a tail may hold an
    // event back while another transaction of the server is open (on
    // PostgreSQL, any database's: invariant 6), and a case that takes the
    // read store down next expects the next batch to carry this event.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fixture.log.read(position - 1, 1).await.expect("read the log").is_empty() {
        assert!(std::time::Instant::now() < deadline, "event {position} not in the log within 30 s");
        fixture.log.wait_beyond(position - 1, std::time::Duration::from_millis(100)).await;
    }
    (position, event_id)
}

/// A stream's count in `views` (`None`: no document).
async fn count(views: &dyn ReadStore, view: &str, stream: &str) -> Option<u64> {
    let doc = views.get(view, &DocKey::partition(stream)).await.expect("get a tally");
    doc.map(|doc| doc["count"].as_u64().expect("a count"))
}

async fn positions(views: &dyn ReadStore, projection: &str) -> Vec<Position> {
    views.dead_letters(projection).await.expect("list dead letters").iter().map(|l| l.position).collect()
}

/// Asserts `result` is the failed attempt `attempt` of `max_attempts` at `position`.
#[track_caller]
fn assert_attempt(
    result: Result<usize, ProjectorError>,
    position: Position,
    attempt: u32,
    max_attempts: u32,
    error: &str,
) {
    match result {
        Err(ProjectorError::Apply {
            projection,
            position: at,
            attempt: n,
            max_attempts: max,
            error: said,
            ..
        }) => {
            assert_eq!((projection.as_str(), at, n, max), ("tally", position, attempt, max_attempts));
            assert_eq!(said, error);
        }
        other => panic!("expected attempt {attempt} of {max_attempts} at {position} to fail, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Cases

/// An event the projection fails on fails its batch (nothing committed)
/// until its last attempt; then it is dead-lettered with its error, the
/// batch commits, and events of other streams after it are applied. A retry
/// while it still fails changes nothing; after the fix it applies the event
/// once and removes the dead letter, and a second retry finds nothing.
pub async fn a_failing_event_is_attempted_then_dead_lettered_and_retried_once(fixture: DeadLetterFixture) {
    let tally = Tally::new(Failure::Poison);
    let views = fixture.views.as_ref();
    append(&fixture, "a", FINE).await;
    let (broken, broken_id) = append(&fixture, "b", BROKEN).await;
    append(&fixture, "a", FINE).await;
    let (head, _) = append(&fixture, "c", FINE).await;
    let projector = Projector::new(tally.clone(), fixture.log.clone(), fixture.views.clone())
        .with_max_attempts(3)
        .with_batch_size(100);

    for attempt in 1..3 {
        assert_attempt(projector.project_batch().await, broken, attempt, 3, &complaint("b"));
        assert_eq!(views.checkpoint("tally", 0).await.expect("checkpoint"), Checkpoint::default());
        assert_eq!(count(views, TALLIES.name(), "a").await, None, "attempt {attempt} committed nothing");
        assert!(positions(views, "tally").await.is_empty());
    }
    assert_eq!(projector.project_batch().await.expect("the last attempt dead-letters"), 4);
    assert_eq!(tally.attempts(), 3, "attempted exactly max_attempts times");
    let letters = views.dead_letters("tally").await.expect("dead letters");
    assert_eq!(
        letters,
        [DeadLetter {
            projection: "tally".into(),
            position: broken,
            event_id: broken_id,
            event_type: BROKEN.into(),
            error: complaint("b"),
        }]
    );
    assert_eq!(
        views.checkpoint("tally", 0).await.expect("checkpoint").position,
        head,
        "the checkpoint moved on"
    );
    assert_eq!(count(views, TALLIES.name(), "a").await, Some(2), "the other streams went on");
    assert_eq!(count(views, TALLIES.name(), "c").await, Some(1), "the other streams went on");
    assert_eq!(count(views, TALLIES.name(), "b").await, None, "the failed event's write was taken back");
    projector.catch_up().await.expect("nothing more");
    assert_eq!(tally.attempts(), 3, "a dead letter is not attempted again by the projector");

    // Still broken: the retry says why and changes nothing.
    let log = fixture.log.as_ref();
    match retry_dead_letter(tally.as_ref(), log, views, broken).await {
        Err(RetryError::StillFails { projection, position, event_type, error }) => {
            assert_eq!((projection.as_str(), position, event_type.as_str()), ("tally", broken, BROKEN));
            assert_eq!(error, complaint("b"));
        }
        other => panic!("a retry of a still broken event: {other:?}"),
    }
    assert_eq!(tally.attempts(), 4);
    assert_eq!(views.dead_letters("tally").await.expect("dead letters"), letters, "the dead letter stays");
    assert_eq!(count(views, TALLIES.name(), "b").await, None, "nothing written");

    // Fixed: applied once, the dead letter gone.
    tally.fix();
    let outcome = retry_dead_letter(tally.as_ref(), log, views, broken).await.expect("retry after the fix");
    assert_eq!((outcome.letter, outcome.writes), (letters[0].clone(), 1));
    assert_eq!(count(views, TALLIES.name(), "b").await, Some(1));
    assert!(positions(views, "tally").await.is_empty());
    match retry_dead_letter(tally.as_ref(), log, views, broken).await {
        Err(RetryError::NotFound { projection, position }) => {
            assert_eq!((projection.as_str(), position), ("tally", broken))
        }
        other => panic!("a second retry: expected NotFound, got {other:?}"),
    }
    assert_eq!(count(views, TALLIES.name(), "b").await, Some(1), "not applied twice");
    assert_eq!(tally.attempts(), 5);

    // The projector goes on from the retried state.
    append(&fixture, "b", FINE).await;
    projector.catch_up().await.expect("project the next event");
    assert_eq!(count(views, TALLIES.name(), "b").await, Some(2));
}

/// A panic in `apply` is a failed attempt like an error, the panic's
/// message its error; a retry that panics again changes nothing.
pub async fn a_panic_is_an_attempt_and_its_message_the_error(fixture: DeadLetterFixture) {
    let tally = Tally::new(Failure::Panic);
    let views = fixture.views.as_ref();
    append(&fixture, "a", FINE).await;
    let (broken, _) = append(&fixture, "b", BROKEN).await;
    append(&fixture, "c", FINE).await;
    let projector =
        Projector::new(tally.clone(), fixture.log.clone(), fixture.views.clone()).with_max_attempts(2);
    let panicked = format!("panicked: {}", complaint("b"));

    assert_attempt(projector.project_batch().await, broken, 1, 2, &panicked);
    assert_eq!(count(views, TALLIES.name(), "a").await, None, "the failed attempt committed nothing");
    assert_eq!(projector.project_batch().await.expect("the last attempt dead-letters"), 3);
    assert_eq!(tally.attempts(), 2);
    let letters = views.dead_letters("tally").await.expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!((letters[0].position, letters[0].error.as_str()), (broken, panicked.as_str()));
    assert_eq!(
        (count(views, TALLIES.name(), "a").await, count(views, TALLIES.name(), "c").await),
        (Some(1), Some(1))
    );

    let log = fixture.log.as_ref();
    match retry_dead_letter(tally.as_ref(), log, views, broken).await {
        Err(RetryError::StillFails { error, .. }) => assert_eq!(error, panicked),
        other => panic!("a retry that panics: {other:?}"),
    }
    assert_eq!(positions(views, "tally").await, [broken], "the dead letter stays");
    tally.fix();
    retry_dead_letter(tally.as_ref(), log, views, broken).await.expect("retry after the fix");
    assert_eq!(count(views, TALLIES.name(), "b").await, Some(1));
    assert!(positions(views, "tally").await.is_empty());
}

/// A read store that fails document reads while `down`, and checkpoint
/// loads while `checkpoints_down`.
struct Flaky {
    inner: Arc<dyn ReadStore>,
    down: AtomicBool,
    checkpoints_down: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<(), ReadStoreError> {
        match self.down.load(Ordering::SeqCst) {
            true => Err(ReadStoreError::msg("the read store is down (injected)")),
            false => Ok(()),
        }
    }
}

#[async_trait]
impl ReadStoreLayer for Flaky {
    fn inner(&self) -> &dyn ReadStore {
        self.inner.as_ref()
    }

    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(serde_json::Value, Revision)>, ReadStoreError> {
        self.check()?;
        self.inner.get_with_revision(view, key).await
    }

    async fn get_many_stored(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<StoredDocument>>, ReadStoreError> {
        self.check()?;
        self.inner.get_many_stored(keys).await
    }

    async fn checkpoint(&self, projection: &str, partition: Partition) -> Result<Checkpoint, ReadStoreError> {
        if self.checkpoints_down.load(Ordering::SeqCst) {
            return Err(ReadStoreError::msg("checkpoints cannot be loaded (injected)"));
        }
        self.inner.checkpoint(projection, partition).await
    }
}

/// Failures of the read store while an event is applied are not held
/// against the event: however many, its first own failure is attempt 1.
pub async fn a_read_store_failure_is_not_an_attempt(fixture: DeadLetterFixture) {
    let tally = Tally::new(Failure::Poison);
    let flaky = Arc::new(Flaky {
        inner: fixture.views.clone(),
        down: AtomicBool::new(true),
        checkpoints_down: AtomicBool::new(false),
    });
    let (broken, _) = append(&fixture, "b", BROKEN).await;
    let projector = Projector::new(tally.clone(), fixture.log.clone(), flaky.clone());

    for _ in 0..5 {
        match projector.project_batch().await {
            Err(ProjectorError::ReadStore(ReadStoreError::Store { message, .. })) => {
                assert!(message.contains("injected"), "{message}")
            }
            other => panic!("with the store down: {other:?}"),
        }
    }
    assert_eq!(tally.attempts(), 0);
    flaky.down.store(false, Ordering::SeqCst);
    for attempt in 1..3 {
        assert_attempt(projector.project_batch().await, broken, attempt, 3, &complaint("b"));
    }
    assert_eq!(projector.project_batch().await.expect("the last attempt dead-letters"), 1);
    assert_eq!(positions(fixture.views.as_ref(), "tally").await, [broken]);
}

/// A partition whose checkpoint could not be loaded again after a failed
/// batch (the read store was down) is loaded by a later batch, not forgotten
/// until the next rebalance.
pub async fn a_partition_whose_checkpoint_failed_to_load_is_resumed_later(fixture: DeadLetterFixture) {
    let tally = Tally::new(Failure::Poison);
    let flaky = Arc::new(Flaky {
        inner: fixture.views.clone(),
        down: AtomicBool::new(false),
        checkpoints_down: AtomicBool::new(false),
    });
    append(&fixture, "a", FINE).await;
    let projector = Projector::new(tally.clone(), fixture.log.clone(), flaky.clone());
    projector.catch_up().await.expect("the first event");
    assert_eq!(count(fixture.views.as_ref(), TALLIES.name(), "a").await, Some(1));

    // The store goes down while a batch runs: the batch fails, and so does
    // loading the checkpoint to seek back.
    append(&fixture, "a", FINE).await;
    flaky.down.store(true, Ordering::SeqCst);
    flaky.checkpoints_down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let failed = projector.project_batch().await;
        assert!(failed.is_err(), "with the store down: {failed:?}");
    }
    flaky.down.store(false, Ordering::SeqCst);
    flaky.checkpoints_down.store(false, Ordering::SeqCst);
    projector.catch_up().await.expect("the store is back");
    assert_eq!(count(fixture.views.as_ref(), TALLIES.name(), "a").await, Some(2));
    append(&fixture, "a", FINE).await;
    projector.catch_up().await.expect("later events");
    assert_eq!(count(fixture.views.as_ref(), TALLIES.name(), "a").await, Some(3));
}

/// Two retries of one dead letter at once: one applies it, the other
/// applies nothing.
pub async fn concurrent_retries_apply_a_dead_letter_once(fixture: DeadLetterFixture) {
    let tally = Tally::new(Failure::Poison);
    let (broken, _) = append(&fixture, "b", BROKEN).await;
    append(&fixture, "b", FINE).await;
    Projector::new(tally.clone(), fixture.log.clone(), fixture.views.clone())
        .with_max_attempts(1)
        .catch_up()
        .await
        .expect("project");
    assert_eq!(
        positions(fixture.views.as_ref(), "tally").await,
        [broken],
        "dead-lettered at the first failure"
    );
    assert_eq!(count(fixture.views.as_ref(), TALLIES.name(), "b").await, Some(1));
    tally.fix();

    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let retries = (0..2).map(|_| {
        let (tally, fixture, barrier) = (tally.clone(), fixture.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            retry_dead_letter(tally.as_ref(), fixture.log.as_ref(), fixture.views.as_ref(), broken).await
        })
    });
    let mut applied = 0;
    for result in futures::future::join_all(retries).await {
        match result.expect("a retry panicked") {
            Ok(_) => applied += 1,
            Err(RetryError::NotFound { .. } | RetryError::ResolvedMeanwhile { .. }) => {}
            Err(other) => panic!("a concurrent retry: {other}"),
        }
    }
    assert_eq!(applied, 1, "exactly one retry applies it");
    assert_eq!(count(fixture.views.as_ref(), TALLIES.name(), "b").await, Some(2), "applied once");
    assert!(positions(fixture.views.as_ref(), "tally").await.is_empty());
}

/// A generation's dead letters are stored under its physical name, listed
/// under the logical one through it, and retried into its views only.
pub async fn a_generation_keeps_and_retries_its_own_dead_letters(fixture: DeadLetterFixture) {
    let tally = Tally::new(Failure::Poison);
    let views = fixture.views.as_ref();
    let generation = Generation { generation: 2, version: 1 };
    let second: Arc<dyn ReadStore> = Arc::new(GenerationStore::new(fixture.views.clone(), generation));
    let (broken, _) = append(&fixture, "b", BROKEN).await;
    Projector::new(tally.clone(), fixture.log.clone(), second.clone())
        .with_max_attempts(1)
        .catch_up()
        .await
        .expect("project generation 2");
    assert_eq!(positions(views, "tally_g2").await, [broken]);
    assert!(positions(views, "tally").await.is_empty(), "generation 1 has none");
    let through = second.dead_letters("tally").await.expect("dead letters");
    assert_eq!((through.len(), through[0].projection.as_str()), (1, "tally"), "{through:?}");

    tally.fix();
    retry_dead_letter(tally.as_ref(), fixture.log.as_ref(), second.as_ref(), broken)
        .await
        .expect("retry in generation 2");
    assert_eq!(count(views, "tallies_g2", "b").await, Some(1));
    assert_eq!(count(views, TALLIES.name(), "b").await, None, "generation 1 untouched");
    assert!(positions(views, "tally_g2").await.is_empty());
}

/// A projection that handles only some event types is never given the
/// others: an event it would fail on, of a type it does not handle, is
/// absorbed (the checkpoint passes it) without an attempt or a dead letter.
pub async fn events_a_projection_does_not_handle_never_reach_it(fixture: DeadLetterFixture) {
    let tally = Arc::new(Tally {
        failure: Failure::Poison,
        fixed: AtomicBool::new(false),
        attempts: AtomicUsize::new(0),
        only: Some(&[FINE]),
    });
    let views = fixture.views.as_ref();
    append(&fixture, "a", FINE).await;
    append(&fixture, "b", BROKEN).await;
    let (head, _) = append(&fixture, "a", FINE).await;
    let projector = Projector::new(tally.clone(), fixture.log.clone(), fixture.views.clone())
        .with_max_attempts(1)
        .with_batch_size(100);
    projector.catch_up().await.expect("catch up");
    assert_eq!(tally.attempts(), 0, "the unhandled event reached apply");
    assert!(views.dead_letters("tally").await.expect("dead letters").is_empty());
    assert_eq!(views.checkpoint("tally", 0).await.expect("checkpoint").position, head);
    assert_eq!(count(views, TALLIES.name(), "a").await, Some(2));
    assert_eq!(count(views, TALLIES.name(), "b").await, None);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::Flaky;
    use crate::forwarding::{assert_forwards, Recorder};

    #[tokio::test]
    async fn the_flaky_store_forwards_every_method() {
        let recorder = Arc::new(Recorder::default());
        let store = Flaky {
            inner: recorder.clone(),
            down: AtomicBool::new(false),
            checkpoints_down: AtomicBool::new(false),
        };
        assert_forwards(&store, &recorder, &[]).await;
    }
}
