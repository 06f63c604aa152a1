//! Every read store decorator of the runtime forwards every method of the
//! port it does not deliberately answer itself.

use std::sync::Arc;

use parallax_core::{Projection, ReadStore};
use parallax_runtime::{ActiveGenerations, Generation, GenerationStore};
use parallax_testing::forwarding::{assert_forwards, Method, Recorder};

#[tokio::test]
async fn a_generation_store_forwards_every_method() {
    let recorder = Arc::new(Recorder::default());
    let store = GenerationStore::new(recorder.clone(), Generation { generation: 2, version: 1 });
    assert_forwards(&store, &recorder, &[]).await;
}

#[tokio::test]
async fn the_query_sides_store_forwards_every_read_and_refuses_writes() {
    let recorder = Arc::new(Recorder::default());
    let projections: Vec<Arc<dyn Projection>> = Vec::new();
    let store = ActiveGenerations::new(recorder.clone() as Arc<dyn ReadStore>, &projections);
    let refused = [Method::Commit, Method::DeclareViews, Method::DropProjection];
    assert_forwards(&store, &recorder, &refused).await;
    for method in refused {
        recorder.take();
        method.call(&store).await;
        assert!(!recorder.take().contains(&method), "{method:?} reached the store through the query side");
    }
}
