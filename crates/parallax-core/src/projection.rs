//! ⑤ Projections: fold events into views.
//!
//! A projection sees every event of the log, in position order, exactly once
//! in effect: the projector gives it a [`ViewTx`] per batch, and the batch's
//! writes are committed with the projection's checkpoint. Events a projection
//! does not care about are simply ignored.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::event::EventRecord;
use crate::read_store::{DocKey, ReadGuard, ReadStoreError, Stamp, StoredDocument, ViewCommitter, ViewWrite};
use crate::tenant::Tenant;
use crate::view::{View, ViewSpec};

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The event is unusable (does not decode, contradicts the view): it goes
    /// to the dead-letter table and the projection goes on.
    #[error("poison event: {0}")]
    Poison(String),
    /// The read store failed: the batch is retried.
    #[error(transparent)]
    Store(#[from] ReadStoreError),
}

/// Folds events into views.
#[async_trait]
pub trait Projection: Send + Sync {
    /// Persisted name: the checkpoint's key.
    fn name(&self) -> &'static str;

    /// The version of the code that writes the views: raise it when `apply`
    /// changes what it writes, and the views are rebuilt from position 0 in
    /// a new generation beside the served one, which is replaced once the
    /// new one has caught up (blue/green; see `parallax_runtime::generations`).
    fn version(&self) -> u32 {
        1
    }

    /// The views this projection writes: the [`View::spec`]s of its handles.
    fn views(&self) -> Vec<ViewSpec>;

    /// The event types `apply` handles, by their persisted names; `None`:
    /// every event. The projector (and every rebuild, check and dead-letter
    /// retry) passes only these to `apply` and `prefetch`; the others are
    /// absorbed without a look, so they can neither poison the projection
    /// nor cost it a decode.
    fn event_types(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// Whether `apply` handles events of `event_type` (see
    /// [`Projection::event_types`]).
    fn handles(&self, event_type: &str) -> bool {
        self.event_types().is_none_or(|types| types.contains(&event_type))
    }

    /// Applies one event; reads and writes go through `tx`.
    async fn apply(&self, tx: &mut ViewTx<'_>, event: &EventRecord) -> Result<(), ProjectionError>;

    /// The documents `apply` will read for `event`: the projector fetches
    /// those of a whole batch in one round trip before applying it. A hint
    /// only: a key missing here is read when asked for, an extra one costs a
    /// read.
    fn prefetch(&self, _event: &EventRecord) -> Vec<(&'static str, DocKey)> {
        Vec::new()
    }
}

/// A document's address in a batch: view and key.
type PendingKey = (String, DocKey);
/// A pending change: the new body (`None` for a delete) and the event it
/// comes from.
type Pending = (Option<serde_json::Value>, Option<Stamp>);

/// A batch's view of the read store: reads see the batch's own writes, and
/// every document read from the store is remembered with its revision so the
/// commit can refuse the batch if another projector changed it meanwhile.
///
/// Writes carry the [`Stamp`] of the event being applied. A document whose
/// marks show it already holds that event's effect (a replay after a crash
/// between a store's row writes and its checkpoint, in a store whose commits
/// are not atomic) ignores the event's writes, so no effect lands twice.
pub struct ViewTx<'a> {
    store: &'a dyn ViewCommitter,
    pending: BTreeMap<PendingKey, Pending>,
    read: BTreeMap<PendingKey, Option<StoredDocument>>,
    /// What the current event overwrote, to undo it if the event turns out poison.
    undo: Vec<(PendingKey, Option<Pending>)>,
    /// The event being applied.
    current: Option<Stamp>,
    /// Its tenant, in whose space every key of its changes lies.
    tenant: Tenant,
}

impl<'a> ViewTx<'a> {
    /// An empty batch over `store`.
    pub fn new(store: &'a dyn ViewCommitter) -> Self {
        Self {
            store,
            pending: BTreeMap::new(),
            read: BTreeMap::new(),
            undo: Vec::new(),
            current: None,
            tenant: Tenant::DEFAULT,
        }
    }

    /// The document of `view` (by name, untyped) as the batch sees it.
    pub async fn get_value(
        &mut self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<serde_json::Value>, ReadStoreError> {
        let address = (view.to_owned(), self.tenant.scope_key(key));
        if let Some((body, _)) = self.pending.get(&address) {
            return Ok(body.clone());
        }
        if let Some(stored) = self.read.get(&address) {
            return Ok(stored.as_ref().map(|stored| stored.body.clone()));
        }
        let stored = self.store.get_many_stored(std::slice::from_ref(&address)).await?.pop().flatten();
        let body = stored.as_ref().map(|stored| stored.body.clone());
        self.read.insert(address, stored);
        Ok(body)
    }

    /// Reads every document the batch's events will read and the batch
    /// has not seen yet, each in its event's tenant's space, in one round
    /// trip to the store (see [`Projection::prefetch`]).
    pub async fn prefetch<'e>(
        &mut self,
        projection: &dyn Projection,
        events: impl IntoIterator<Item = &'e EventRecord>,
    ) -> Result<(), ReadStoreError> {
        let mut wanted: Vec<(String, DocKey)> = events
            .into_iter()
            .flat_map(|event| {
                let tenant = event.tenant();
                projection
                    .prefetch(event)
                    .into_iter()
                    .map(move |(view, key)| (view.to_owned(), tenant.scope_key(&key)))
            })
            .filter(|address| !self.pending.contains_key(address) && !self.read.contains_key(address))
            .collect();
        wanted.sort();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        let found = self.store.get_many_stored(&wanted).await?;
        for (address, stored) in wanted.into_iter().zip(found) {
            self.read.insert(address, stored);
        }
        Ok(())
    }

    /// A document as the batch sees it; a body that does not decode is poison.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &mut self,
        view: &View<T>,
        key: &DocKey,
    ) -> Result<Option<T>, ProjectionError> {
        match self.get_value(view.name(), key).await? {
            None => Ok(None),
            Some(body) => serde_json::from_value(body).map(Some).map_err(|e| {
                ProjectionError::Poison(format!("document {}/{key:?} does not decode: {e}", view.name()))
            }),
        }
    }

    /// Inserts or replaces a document.
    pub fn put<T: serde::Serialize>(&mut self, view: &View<T>, key: DocKey, document: &T) {
        let body = serde_json::to_value(document).expect("view documents serialize to JSON");
        self.record((view.name().to_owned(), key), Some(body));
    }

    /// The batch's change to a document, keyed in the current event's tenant's space.
    fn record(&mut self, key: PendingKey, body: Option<serde_json::Value>) {
        let key = (key.0, self.tenant.scope_key(&key.1));
        self.record_scoped(key, body);
    }

    fn record_scoped(&mut self, key: PendingKey, body: Option<serde_json::Value>) {
        if let (Some(current), Some(Some(stored))) = (self.current, self.read.get(&key)) {
            if stored.absorbed(current) {
                // A replay: the document already holds this event's effect.
                return;
            }
        }
        let before = self.pending.insert(key.clone(), (body, self.current));
        self.undo.push((key, before));
    }

    /// Marks the start of one event's changes (the projector calls this):
    /// the writes that follow carry `stamp`.
    pub fn begin_event(&mut self, stamp: Stamp) {
        self.undo.clear();
        self.current = Some(stamp);
    }

    /// Takes every key named from now on (read, written or deleted) in the
    /// space of `event`'s tenant: whoever calls [`Projection::apply`] calls
    /// this first, so a projection writes each tenant's documents apart
    /// without knowing tenants.
    pub fn enter_tenant_of(&mut self, event: &EventRecord) {
        self.tenant = event.tenant();
    }

    /// Takes back every change since [`ViewTx::begin_event`] (the projector
    /// calls this when an event turns out poison, so it leaves no half-applied trace).
    pub fn rollback_event(&mut self) {
        while let Some((key, before)) = self.undo.pop() {
            match before {
                Some(value) => self.pending.insert(key, value),
                None => self.pending.remove(&key),
            };
        }
    }

    /// Removes a document.
    pub fn delete<T>(&mut self, view: &View<T>, key: DocKey) {
        self.record((view.name().to_owned(), key), None);
    }

    /// Number of distinct documents changed so far.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The batch's net changes, one per document, in key order, and the
    /// documents they were computed from, with the revisions read.
    pub fn into_writes(self) -> (Vec<ViewWrite>, Vec<ReadGuard>) {
        let writes = self
            .pending
            .into_iter()
            .map(|((view, key), (body, stamp))| match body {
                Some(body) => ViewWrite::Put { view, key, body, stamp },
                None => ViewWrite::Delete { view, key, stamp },
            })
            .collect();
        let reads = self
            .read
            .into_iter()
            .map(|((view, key), stored)| ReadGuard {
                view,
                key,
                revision: stored.map_or(0, |stored| stored.revision),
            })
            .collect();
        (writes, reads)
    }
}
