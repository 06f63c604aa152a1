//! A process manager's runner: an event it cannot handle for good is parked
//! in the write DB with the reason, once, and the runner goes on.

use std::sync::Arc;

use async_trait::async_trait;
use parallax_core::{AppendRequest, EventRecord, EventStore, ExpectedVersion, Metadata, NewEvent};
use parallax_runtime::{ProcessError, ProcessManager, ProcessRunner};
use parallax_sqlite::SqliteEventStore;

/// Refuses every event whose payload says so, for good.
struct Picky;

#[async_trait]
impl ProcessManager for Picky {
    fn name(&self) -> &'static str {
        "picky"
    }

    async fn handle(&self, event: &EventRecord) -> Result<(), ProcessError> {
        match event.payload.contains("refuse") {
            true => Err(ProcessError::Permanent(format!("order of {} refused", event.stream_id))),
            false => Ok(()),
        }
    }
}

fn event(payload: &str) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "thing.happened".to_owned(),
        schema_version: 1,
        payload: payload.to_owned(),
        metadata: Metadata::default(),
        recorded_at: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn an_event_refused_for_good_is_parked_once_and_the_runner_goes_on() {
    let dir = tempfile::tempdir().expect("temp folder");
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).expect("open"));
    let payloads = [r#"{"n":1}"#, r#"{"n":2,"refuse":true}"#, r#"{"n":3}"#];
    for (n, payload) in payloads.iter().enumerate() {
        let stream = format!("thing-{n}");
        let request = AppendRequest::new(stream, ExpectedVersion::Exact(0), vec![event(payload)]);
        store.append(request).await.expect("append");
    }
    let runner = ProcessRunner::new(Arc::new(Picky), Arc::new(store.log()), store.clone());
    assert_eq!(runner.process_batch().await.expect("a batch"), 3);
    assert_eq!(store.checkpoint("picky").await.expect("checkpoint"), 3, "the runner went on");
    let parked = store.parked("picky").await.expect("parked");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!((parked[0].position, parked[0].error.as_str()), (2, "order of thing-1 refused"));

    // Handed over again (a crash before the checkpoint): still parked once.
    store.save_checkpoint("picky", 0).await.expect("rewind");
    runner.process_batch().await.expect("again");
    assert_eq!(store.parked("picky").await.expect("parked").len(), 1);
}
