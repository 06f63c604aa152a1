//! Blue/green: code of a new projection version rebuilds the views in a new
//! generation while the old one keeps answering queries, then replaces it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parallax_core::{
    DocKey, EventLog, EventRecord, EventSource, EventStore, ExpectedVersion, LogSource, NewEvent, Projection,
    ProjectionError, ReadStore, View, ViewReader, ViewSpec, ViewTx,
};
use parallax_runtime::generations::{self, Generation, SourceFactory};
use parallax_runtime::{ActiveGenerations, CancellationToken, Progress, Supervisor};
use parallax_sqlite::{SqliteEventStore, SqliteReadStore};
use serde_json::json;

/// Each stream's event count.
const TALLIES: View<serde_json::Value> = View::owned("tallies");

/// Counts each stream's events; version 2 also says which version wrote it.
struct Tally {
    version: u32,
}

#[async_trait]
impl Projection for Tally {
    fn name(&self) -> &'static str {
        "tally"
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn views(&self) -> Vec<ViewSpec> {
        vec![TALLIES.spec()]
    }

    async fn apply(&self, tx: &mut ViewTx<'_>, event: &EventRecord) -> Result<(), ProjectionError> {
        let key = DocKey::partition(&event.stream_id);
        let count = tx.get(&TALLIES, &key).await?.and_then(|doc| doc["count"].as_u64()).unwrap_or(0);
        let doc = match self.version {
            1 => json!({ "count": count + 1 }),
            _ => json!({ "count": count + 1, "written_by": self.version }),
        };
        tx.put(&TALLIES, key, &doc);
        Ok(())
    }
}

fn event() -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "thing.happened".into(),
        schema_version: 1,
        payload: "{}".into(),
        metadata: Default::default(),
        recorded_at: chrono::Utc::now(),
    }
}

async fn append(store: &SqliteEventStore, stream: &str, n: usize) {
    let request = parallax_core::AppendRequest {
        stream_id: stream.into(),
        expected_version: ExpectedVersion::Any,
        events: (0..n).map(|_| event()).collect(),
        idempotency: None,
        reads: Vec::new(),
    };
    store.append(request).await.expect("append");
}

fn sources(log: Arc<dyn EventLog>) -> SourceFactory {
    Arc::new(move |_: Generation| Ok(Box::new(LogSource::new(log.clone())) as Box<dyn EventSource>))
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < Duration::from_secs(30), "{what} did not happen within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stream's tally read as JSON text through `queries`, by key and by a
/// scan of its partition, parsed.
async fn as_text(
    queries: &ActiveGenerations,
    stream: &str,
) -> (Option<serde_json::Value>, Vec<serde_json::Value>) {
    let parse = |text: &str| serde_json::from_str(text).expect("the text is JSON");
    let by_key = queries.get_json("tallies", &DocKey::partition(stream)).await.expect("a query");
    let page = queries
        .scan_json("tallies", stream, &parallax_core::ClusteringRange::default(), 10)
        .await
        .expect("a scan");
    (by_key.as_deref().map(parse), page.documents.iter().map(|d| parse(&d.body)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_built_beside_the_served_one_and_replaces_it() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let events = SqliteEventStore::open(&dir.path().join("events.db")).expect("the event store");
    let log: Arc<dyn EventLog> = Arc::new(events.log());
    let store: Arc<dyn ReadStore> =
        Arc::new(SqliteReadStore::open(&dir.path().join("views.db")).expect("the read store"));
    for stream in ["a", "b", "c"] {
        append(&events, stream, 400).await;
    }
    let v1: Arc<dyn Projection> = Arc::new(Tally { version: 1 });
    let v2: Arc<dyn Projection> = Arc::new(Tally { version: 2 });
    let queries = ActiveGenerations::new(Arc::clone(&store), &[Arc::clone(&v1)]);
    let doc = |stream: &'static str| {
        let queries = &queries;
        async move { queries.get("tallies", &DocKey::partition(stream)).await.expect("a query") }
    };

    // Version 1 serves.
    let cancel = CancellationToken::new();
    let first = Supervisor::new(Arc::clone(&v1), Arc::clone(&store), sources(log.clone()), Arc::default());
    let running = tokio::spawn(first.run(cancel.clone()));
    wait_for("version 1 catching up", async || doc("c").await == Some(json!({ "count": 400 }))).await;
    cancel.cancel();
    running.await.expect("the supervisor stops");
    assert_eq!(as_text(&queries, "c").await, (Some(json!({ "count": 400 })), vec![json!({ "count": 400 })]));

    // Version 2 starts: it builds generation 2 while generation 1 answers.
    let cancel = CancellationToken::new();
    let second = Supervisor::new(
        Arc::clone(&v2),
        Arc::clone(&store),
        sources(log.clone()),
        Arc::new(Progress::default()),
    );
    let running = tokio::spawn(second.run(cancel.clone()));
    let mut served_v1 = 0;
    let start = Instant::now();
    loop {
        let seen = doc("a").await;
        match seen {
            Some(doc) if doc == json!({ "count": 400 }) => served_v1 += 1,
            Some(doc) if doc == json!({ "count": 400, "written_by": 2 }) => break,
            other => panic!("a query saw {other:?}: neither the served nor the finished generation"),
        }
        assert!(start.elapsed() < Duration::from_secs(30), "generation 2 never took over");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(served_v1 > 0, "generation 1 never answered during the rebuild");
    let (pointer, _) = generations::load(store.as_ref(), "tally").await.expect("the pointer");
    assert_eq!(pointer.active, Generation { generation: 2, version: 2 });
    assert_eq!(pointer.building, None);
    let finished = json!({ "count": 400, "written_by": 2 });
    assert_eq!(as_text(&queries, "b").await, (Some(finished.clone()), vec![finished]));

    // New events go to generation 2; generation 1 is dropped after the grace period.
    append(&events, "a", 5).await;
    wait_for("generation 2 projecting new events", async || {
        doc("a").await == Some(json!({ "count": 405, "written_by": 2 }))
    })
    .await;
    wait_for("generation 1 dropped", async || {
        store.get("tallies", &DocKey::partition("a")).await.expect("a read").is_none()
            && store.checkpoints("tally").await.expect("checkpoints").is_empty()
    })
    .await;
    assert_eq!(store.checkpoints("tally_g2").await.expect("checkpoints")[0].1.position, 1205);
    cancel.cancel();
    running.await.expect("the supervisor stops");
}
