//! Blue/green rebuilds: a projection's views live in *generations*.
//!
//! Each generation of a projection has views and checkpoints of its own
//! (a [`ViewId`] is a name and a generation),
//! and one document per projection in the read store says which generation
//! serves queries (`active`) and which one is being built (`building`), each
//! with the projection [`Projection::version`] that wrote it.
//!
//! A [`Supervisor`] keeps a projection's generations running in a process:
//! the active one if its version is the code's, and the one being built.
//! Code of a new version starts a new generation from position 0 beside the
//! active one, which keeps serving; when the new one has caught up with it in
//! every partition, the pointer flips (compare-and-set) and the old
//! generation's views are dropped after a grace period in which every
//! process's supervisor notices the flip and stops writing them. `shop
//! rebuild` starts a new generation of the same version the same way.
//!
//! Queries read through [`ActiveGenerations`], which resolves each view and
//! checkpoint to the active generation. Process managers are not projections
//! and are never rebuilt: a rebuild sends no command (the saga keeps its own
//! checkpoint, and its commands are idempotent besides).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parallax_core::read_store::{ClusteringRange, DeadLetter, Page, Revision, StoredDocument};
use parallax_core::{
    Checkpoint, DocKey, EventSource, Partition, Projection, ReadGuard, ReadStore, ReadStoreError,
    ReadStoreLayer, ViewBatch, ViewId, ViewSpec, ViewWrite,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::consistency::Progress;
use crate::projector::Projector;

/// The view holding one pointer document per projection.
pub const GENERATIONS_VIEW: &str = "parallax_generations";

/// How often a supervisor reads the pointer.
const TICK: Duration = Duration::from_millis(500);
/// How long the old generation lives on after a flip: long enough for every
/// supervisor to notice and stop writing it.
const GRACE: Duration = Duration::from_secs(3);

/// One generation of a projection, and the projection version that writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Generation {
    /// 1, 2, …: never reused.
    pub generation: u32,
    /// The [`Projection::version`] whose code writes it.
    pub version: u32,
}

impl Generation {
    /// The first generation, under the plain names, of version 1: what a
    /// store without a pointer holds.
    pub const FIRST: Generation = Generation { generation: 1, version: 1 };

    /// The stored name of a view (or of the projection's checkpoints) in
    /// this generation ([`ViewId::stored_name`]).
    pub fn physical(&self, name: &str) -> String {
        ViewId::new(name, self.generation).stored_name()
    }
}

/// A projection's pointer: which generation serves, which is being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generations {
    /// Serves queries.
    pub active: Generation,
    /// Being built from position 0, if any.
    pub building: Option<Generation>,
}

impl Default for Generations {
    fn default() -> Self {
        Self { active: Generation::FIRST, building: None }
    }
}

impl Generations {
    /// The highest generation number in use.
    pub fn highest(&self) -> u32 {
        self.building.map_or(self.active.generation, |b| b.generation.max(self.active.generation))
    }
}

/// Reads a projection's pointer and its revision (0: none stored yet, the
/// default applies).
pub async fn load(
    store: &dyn ReadStore,
    projection: &str,
) -> Result<(Generations, Revision), ReadStoreError> {
    let key = DocKey::partition(projection);
    let found = store.get_many_stored(&[(GENERATIONS_VIEW.to_owned(), key)]).await?.pop().flatten();
    match found {
        None => Ok((Generations::default(), 0)),
        Some(stored) => {
            let pointer = serde_json::from_value(stored.body).map_err(|e| {
                ReadStoreError::store(format!("the generations of {projection} do not decode"), e)
            })?;
            Ok((pointer, stored.revision))
        }
    }
}

/// Replaces a projection's pointer if it is still at `revision`
/// ([`ReadStoreError::Conflict`] otherwise).
pub async fn save(
    store: &dyn ReadStore,
    projection: &str,
    pointer: &Generations,
    revision: Revision,
) -> Result<(), ReadStoreError> {
    let key = DocKey::partition(projection);
    let body = serde_json::to_value(pointer).expect("a pointer serializes");
    store
        .commit(ViewBatch {
            projection: format!("{projection}.generations"),
            checkpoints: Vec::new(),
            reads: vec![ReadGuard { view: GENERATIONS_VIEW.to_owned(), key: key.clone(), revision }],
            writes: vec![ViewWrite::put(GENERATIONS_VIEW, key, body)],
            dead_letters: Vec::new(),
            resolved_dead_letters: Vec::new(),
        })
        .await
}

/// Declares the pointer view and a generation's views in the store.
pub async fn declare(
    store: &dyn ReadStore,
    projection: &dyn Projection,
    generation: Generation,
) -> Result<(), ReadStoreError> {
    let mut views = vec![ViewSpec::shared(GENERATIONS_VIEW)];
    for view in projection.views() {
        views.push(view.in_generation(generation.generation));
    }
    store.declare_views(&views).await
}

/// Whether `building` has caught up with `active`: at or beyond it in every
/// partition the active generation has a checkpoint in.
pub async fn caught_up(
    store: &dyn ReadStore,
    projection: &str,
    active: Generation,
    building: Generation,
) -> Result<bool, ReadStoreError> {
    let served: BTreeMap<Partition, Checkpoint> =
        store.checkpoints(&active.physical(projection)).await?.into_iter().collect();
    let built: BTreeMap<Partition, Checkpoint> =
        store.checkpoints(&building.physical(projection)).await?.into_iter().collect();
    Ok(served.iter().all(|(partition, at)| built.get(partition).is_some_and(|b| b.position >= at.position)))
}

/// Flips the pointer to `building` if it still says so; returns the
/// generation it replaced, or `None` if another process flipped it first.
pub async fn flip(
    store: &dyn ReadStore,
    projection: &dyn Projection,
    building: Generation,
) -> Result<Option<Generation>, ReadStoreError> {
    let name = projection.name();
    let (pointer, revision) = load(store, name).await?;
    if pointer.building != Some(building) {
        return Ok(None);
    }
    match save(store, name, &Generations { active: building, building: None }, revision).await {
        Ok(()) => {
            tracing::info!(
                projection = name,
                from = pointer.active.generation,
                to = building.generation,
                "generation promoted"
            );
            Ok(Some(pointer.active))
        }
        Err(ReadStoreError::Conflict { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Drops a replaced generation once every supervisor has had the time to
/// notice the flip and stop writing it.
pub async fn drop_after_grace(
    store: &dyn ReadStore,
    projection: &dyn Projection,
    old: Generation,
) -> Result<(), ReadStoreError> {
    tokio::time::sleep(GRACE).await;
    let name = projection.name();
    let views: Vec<String> = projection.views().iter().map(|view| old.physical(&view.name)).collect();
    store.drop_projection(&old.physical(name), &views).await?;
    tracing::info!(projection = name, generation = old.generation, "old generation dropped");
    Ok(())
}

/// Starts a new generation of the projection's current version beside the
/// active one (unless one is being built already); returns it.
pub async fn start_rebuild(
    store: &dyn ReadStore,
    projection: &dyn Projection,
) -> Result<Generation, ReadStoreError> {
    let name = projection.name();
    loop {
        let (pointer, revision) = load(store, name).await?;
        if let Some(building) = pointer.building.filter(|b| b.version == projection.version()) {
            return Ok(building);
        }
        let building = Generation { generation: pointer.highest() + 1, version: projection.version() };
        declare(store, projection, building).await?;
        match save(store, name, &Generations { building: Some(building), ..pointer }, revision).await {
            Ok(()) => return Ok(building),
            Err(ReadStoreError::Conflict { .. }) => continue,
            Err(error) => return Err(error),
        }
    }
}

/// A read store seen through one generation of one projection: its views
/// and checkpoints renamed to the generation's.
pub struct GenerationStore {
    inner: Arc<dyn ReadStore>,
    generation: Generation,
}

impl GenerationStore {
    /// `inner` as `generation` sees it.
    pub fn new(inner: Arc<dyn ReadStore>, generation: Generation) -> Self {
        Self { inner, generation }
    }

    fn name(&self, name: &str) -> String {
        self.generation.physical(name)
    }
}

fn rename_keys(keys: &[(String, DocKey)], rename: impl Fn(&str) -> String) -> Vec<(String, DocKey)> {
    keys.iter().map(|(view, key)| (rename(view), key.clone())).collect()
}

fn rename_batch(batch: ViewBatch, rename: impl Fn(&str) -> String) -> ViewBatch {
    ViewBatch {
        projection: rename(&batch.projection),
        checkpoints: batch.checkpoints,
        reads: batch
            .reads
            .into_iter()
            .map(|guard| ReadGuard { view: rename(&guard.view), ..guard })
            .collect(),
        writes: batch
            .writes
            .into_iter()
            .map(|write| match write {
                ViewWrite::Put { view, key, body, stamp } => {
                    ViewWrite::Put { view: rename(&view), key, body, stamp }
                }
                ViewWrite::Delete { view, key, stamp } => {
                    ViewWrite::Delete { view: rename(&view), key, stamp }
                }
            })
            .collect(),
        dead_letters: batch
            .dead_letters
            .into_iter()
            .map(|letter| DeadLetter { projection: rename(&letter.projection), ..letter })
            .collect(),
        resolved_dead_letters: batch.resolved_dead_letters,
    }
}

fn unrename_letters(letters: Vec<DeadLetter>, projection: &str) -> Vec<DeadLetter> {
    letters.into_iter().map(|letter| DeadLetter { projection: projection.to_owned(), ..letter }).collect()
}

#[async_trait]
impl ReadStoreLayer for GenerationStore {
    fn inner(&self) -> &dyn ReadStore {
        self.inner.as_ref()
    }

    async fn get(&self, view: &str, key: &DocKey) -> Result<Option<serde_json::Value>, ReadStoreError> {
        self.inner.get(&self.name(view), key).await
    }

    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(serde_json::Value, Revision)>, ReadStoreError> {
        self.inner.get_with_revision(&self.name(view), key).await
    }

    async fn get_many(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<(serde_json::Value, Revision)>>, ReadStoreError> {
        self.inner.get_many(&rename_keys(keys, |view| self.name(view))).await
    }

    async fn scan(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page, ReadStoreError> {
        self.inner.scan(&self.name(view), partition, range, limit).await
    }

    async fn get_json(&self, view: &str, key: &DocKey) -> Result<Option<String>, ReadStoreError> {
        self.inner.get_json(&self.name(view), key).await
    }

    async fn scan_json(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page<String>, ReadStoreError> {
        self.inner.scan_json(&self.name(view), partition, range, limit).await
    }

    async fn get_many_stored(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<StoredDocument>>, ReadStoreError> {
        self.inner.get_many_stored(&rename_keys(keys, |view| self.name(view))).await
    }

    async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError> {
        let projection = batch.projection.clone();
        self.inner.commit(rename_batch(batch, |name| self.name(name))).await.map_err(|error| match error {
            ReadStoreError::CheckpointMoved { partition, expected, actual, .. } => {
                ReadStoreError::CheckpointMoved { projection, partition, expected, actual }
            }
            ReadStoreError::DeadLetterMissing { position, .. } => {
                ReadStoreError::DeadLetterMissing { projection, position }
            }
            other => other,
        })
    }

    async fn checkpoint(&self, projection: &str, partition: Partition) -> Result<Checkpoint, ReadStoreError> {
        self.inner.checkpoint(&self.name(projection), partition).await
    }

    async fn checkpoints(&self, projection: &str) -> Result<Vec<(Partition, Checkpoint)>, ReadStoreError> {
        self.inner.checkpoints(&self.name(projection)).await
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, ReadStoreError> {
        Ok(unrename_letters(self.inner.dead_letters(&self.name(projection)).await?, projection))
    }

    async fn declare_views(&self, views: &[ViewSpec]) -> Result<(), ReadStoreError> {
        let renamed: Vec<ViewSpec> =
            views.iter().map(|view| ViewSpec { name: self.name(&view.name), ..view.clone() }).collect();
        self.inner.declare_views(&renamed).await
    }

    async fn drop_projection(&self, projection: &str, views: &[String]) -> Result<(), ReadStoreError> {
        let views: Vec<String> = views.iter().map(|view| self.name(view)).collect();
        self.inner.drop_projection(&self.name(projection), &views).await
    }

    async fn partitions(&self, view: &str) -> Result<Vec<String>, ReadStoreError> {
        self.inner.partitions(&self.name(view)).await
    }
}

/// The query side's read store: every view and checkpoint resolved to the
/// active generation of the projection that owns it (pointers cached for a
/// moment). Read-only.
pub struct ActiveGenerations {
    inner: Arc<dyn ReadStore>,
    /// View → the projection that writes it.
    owners: HashMap<String, String>,
    cache: Mutex<HashMap<String, (Generation, Instant)>>,
}

impl ActiveGenerations {
    /// `inner` as the queries of `projections` see it.
    pub fn new(inner: Arc<dyn ReadStore>, projections: &[Arc<dyn Projection>]) -> Self {
        let mut owners = HashMap::new();
        for projection in projections {
            for view in projection.views() {
                owners.insert(view.name, projection.name().to_owned());
            }
        }
        Self { inner, owners, cache: Mutex::new(HashMap::new()) }
    }

    async fn active(&self, projection: &str) -> Result<Generation, ReadStoreError> {
        if let Some((generation, at)) =
            self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(projection)
        {
            if at.elapsed() < TICK / 2 {
                return Ok(*generation);
            }
        }
        let (pointer, _) = load(self.inner.as_ref(), projection).await?;
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(projection.to_owned(), (pointer.active, Instant::now()));
        Ok(pointer.active)
    }

    async fn view(&self, view: &str) -> Result<String, ReadStoreError> {
        match self.owners.get(view) {
            Some(owner) => Ok(self.active(owner).await?.physical(view)),
            None => Ok(view.to_owned()),
        }
    }

    async fn keys(&self, keys: &[(String, DocKey)]) -> Result<Vec<(String, DocKey)>, ReadStoreError> {
        let mut renamed = Vec::with_capacity(keys.len());
        for (view, key) in keys {
            renamed.push((self.view(view).await?, key.clone()));
        }
        Ok(renamed)
    }
}

#[async_trait]
impl ReadStoreLayer for ActiveGenerations {
    fn inner(&self) -> &dyn ReadStore {
        self.inner.as_ref()
    }

    async fn get(&self, view: &str, key: &DocKey) -> Result<Option<serde_json::Value>, ReadStoreError> {
        self.inner.get(&self.view(view).await?, key).await
    }

    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(serde_json::Value, Revision)>, ReadStoreError> {
        self.inner.get_with_revision(&self.view(view).await?, key).await
    }

    async fn get_many(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<(serde_json::Value, Revision)>>, ReadStoreError> {
        self.inner.get_many(&self.keys(keys).await?).await
    }

    async fn scan(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page, ReadStoreError> {
        self.inner.scan(&self.view(view).await?, partition, range, limit).await
    }

    async fn get_json(&self, view: &str, key: &DocKey) -> Result<Option<String>, ReadStoreError> {
        self.inner.get_json(&self.view(view).await?, key).await
    }

    async fn scan_json(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page<String>, ReadStoreError> {
        self.inner.scan_json(&self.view(view).await?, partition, range, limit).await
    }

    async fn get_many_stored(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<StoredDocument>>, ReadStoreError> {
        self.inner.get_many_stored(&self.keys(keys).await?).await
    }

    async fn commit(&self, _batch: ViewBatch) -> Result<(), ReadStoreError> {
        Err(ReadStoreError::msg("the query side's read store is read-only"))
    }

    async fn checkpoint(&self, projection: &str, partition: Partition) -> Result<Checkpoint, ReadStoreError> {
        let physical = self.active(projection).await?.physical(projection);
        self.inner.checkpoint(&physical, partition).await
    }

    async fn checkpoints(&self, projection: &str) -> Result<Vec<(Partition, Checkpoint)>, ReadStoreError> {
        let physical = self.active(projection).await?.physical(projection);
        self.inner.checkpoints(&physical).await
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, ReadStoreError> {
        let physical = self.active(projection).await?.physical(projection);
        Ok(unrename_letters(self.inner.dead_letters(&physical).await?, projection))
    }

    async fn declare_views(&self, _views: &[ViewSpec]) -> Result<(), ReadStoreError> {
        Err(ReadStoreError::msg("the query side's read store is read-only"))
    }

    async fn drop_projection(&self, _projection: &str, _views: &[String]) -> Result<(), ReadStoreError> {
        Err(ReadStoreError::msg("the query side's read store is read-only"))
    }

    async fn partitions(&self, view: &str) -> Result<Vec<String>, ReadStoreError> {
        self.inner.partitions(&self.view(view).await?).await
    }
}

/// Opens the event source a generation's projector consumes.
pub type SourceFactory = Arc<dyn Fn(Generation) -> Result<Box<dyn EventSource>, String> + Send + Sync>;

/// Keeps one projection's generations running in this process: the active
/// one when its version is the code's (publishing its progress for
/// consistency tokens), and the one being built; starts a new generation
/// when the code's version has none, and promotes a built one once it has
/// caught up.
pub struct Supervisor {
    projection: Arc<dyn Projection>,
    store: Arc<dyn ReadStore>,
    sources: SourceFactory,
    progress: Arc<Progress>,
    event_lag: metrics::Histogram,
}

impl Supervisor {
    /// A supervisor for `projection` over `store`, each generation reading
    /// the source `sources` opens for it. The active generation's events'
    /// lag ([`crate::projector::EVENT_LAG`]) goes to the `metrics` recorder
    /// in effect now.
    pub fn new(
        projection: Arc<dyn Projection>,
        store: Arc<dyn ReadStore>,
        sources: SourceFactory,
        progress: Arc<Progress>,
    ) -> Self {
        // Taken now, from the recorder in effect: the projectors it starts
        // later, in its own task, record their events' lag here.
        let event_lag = metrics::histogram!(crate::projector::EVENT_LAG, "projection" => projection.name());
        Self { projection, store, sources, progress, event_lag }
    }

    /// Runs until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let name = self.projection.name();
        let version = self.projection.version();
        // By generation and whether it runs as the active one (publishing its
        // progress): a generation promoted here restarts as active.
        let mut running: HashMap<(Generation, bool), CancellationToken> = HashMap::new();
        let mut tasks = JoinSet::new();
        while !cancel.is_cancelled() {
            match self.tick(version, &mut running, &mut tasks, &cancel).await {
                Ok(()) => {}
                Err(error) => tracing::warn!(projection = name, %error, "generation supervisor: retrying"),
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        for token in running.values() {
            token.cancel();
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn tick(
        &self,
        version: u32,
        running: &mut HashMap<(Generation, bool), CancellationToken>,
        tasks: &mut JoinSet<()>,
        cancel: &CancellationToken,
    ) -> Result<(), String> {
        let store = self.store.as_ref();
        let name = self.projection.name();
        let (mut pointer, _) = load(store, name).await.map_err(|e| e.to_string())?;
        if pointer.active.version != version && pointer.building.is_none_or(|b| b.version != version) {
            let building = start_rebuild(store, self.projection.as_ref()).await.map_err(|e| e.to_string())?;
            tracing::info!(
                projection = name,
                generation = building.generation,
                version,
                "building a new generation"
            );
            pointer = load(store, name).await.map_err(|e| e.to_string())?.0;
        }
        let mut wanted = Vec::new();
        if pointer.active.version == version {
            wanted.push((pointer.active, true));
        }
        if let Some(building) = pointer.building.filter(|b| b.version == version) {
            wanted.push((building, false));
        }
        running.retain(|running, token| {
            let keep = wanted.contains(running);
            if !keep {
                token.cancel();
            }
            keep
        });
        for (generation, active) in wanted {
            if running.contains_key(&(generation, active)) {
                continue;
            }
            declare(store, self.projection.as_ref(), generation).await.map_err(|e| e.to_string())?;
            let source = (self.sources)(generation)?;
            let generation_store: Arc<dyn ReadStore> =
                Arc::new(GenerationStore::new(Arc::clone(&self.store), generation));
            let mut projector =
                Projector::from_source(Arc::clone(&self.projection), source, generation_store);
            if active {
                projector = projector
                    .with_progress(Arc::clone(&self.progress))
                    .with_event_lag(self.event_lag.clone());
            }
            let token = cancel.child_token();
            running.insert((generation, active), token.clone());
            tracing::info!(
                projection = name,
                generation = generation.generation,
                active,
                "projecting generation"
            );
            tasks.spawn(async move { projector.run(token).await });
        }
        if let Some(building) = pointer.building.filter(|b| b.version == version) {
            if caught_up(store, name, pointer.active, building).await.map_err(|e| e.to_string())? {
                if let Some(old) =
                    flip(store, self.projection.as_ref(), building).await.map_err(|e| e.to_string())?
                {
                    if let Some(token) = running.remove(&(old, true)) {
                        token.cancel();
                    }
                    let (store, projection) = (Arc::clone(&self.store), Arc::clone(&self.projection));
                    tasks.spawn(async move {
                        if let Err(error) = drop_after_grace(store.as_ref(), projection.as_ref(), old).await {
                            tracing::warn!(projection = projection.name(), %error, "could not drop the old generation");
                        }
                    });
                }
            }
        }
        Ok(())
    }
}
