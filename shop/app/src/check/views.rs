//! Steps 1 and 3 of `shop check`: the views, once settled, against a fold of
//! the event store into a temporary SQLite read store.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use parallax_core::{EventLog, EventRecord, Projection, ReadStore};
use parallax_runtime::check::{self, differences, documents, settle, Documents, Fold, Settled};
use parallax_sqlite::SqliteReadStore;
use uuid::Uuid;

use super::report::{CheckReport, Details};

/// The settled read side and what it is compared with.
pub(super) struct Compared {
    /// Where the read side stood.
    pub settled: Settled,
    /// The store's events up to `settled.head`, in position order.
    pub events: Vec<EventRecord>,
    /// The views rebuilt from `events`.
    pub fold: Fold,
    /// The read DB's documents of every partition the fold wrote, of the
    /// carts asked for and of every partition listed in the read DB's views.
    pub actual: Documents,
}

/// Settles, folds and reads the read DB's documents; again while the head
/// moves (the saga at work), until `deadline`.
pub(super) async fn settle_and_fold(
    log: &dyn EventLog,
    read: &dyn ReadStore,
    projections: &[Arc<dyn Projection>],
    carts: &BTreeSet<(String, String)>,
    partitions: u32,
    deadline: Instant,
    details: &mut Details,
) -> anyhow::Result<Compared> {
    let mut events: Vec<EventRecord> = Vec::new();
    loop {
        let settled = settle(log, read, projections, &mut events, partitions, deadline).await?;
        let fold = fold(Arc::new(events.clone())).await?;
        let mut compared = fold.partitions.clone();
        compared.extend(carts.iter().cloned());
        compared.extend(listed_partitions(read, projections).await?);
        let actual = documents(read, &compared).await.context("read the views of the read DB")?;
        let moved = log.head().await.context("read the head")? != settled.head;
        if !moved || Instant::now() >= deadline {
            if moved {
                details.note(format!(
                    "the event store's head moved from {} while the views were read: differences may be \
                     transient",
                    settled.head
                ));
            }
            return Ok(Compared { settled, events, fold, actual });
        }
    }
}

/// Reports the differences from the fold, checkpoints beyond the store's
/// events, and the dead letters of the read DB (violations) and of the fold
/// (notes).
pub(super) async fn compare(
    compared: &Compared,
    read: &dyn ReadStore,
    projections: &[Arc<dyn Projection>],
    report: &mut CheckReport,
    details: &mut Details,
) -> anyhow::Result<()> {
    report.documents = compared.fold.documents.len() as u64;
    let differing = differences(&compared.fold.documents, &compared.actual);
    report.view_differences = differing.len() as u64;
    for line in differing {
        details.violation("view", line);
    }
    for line in &compared.settled.ahead {
        report.view_differences += 1;
        details.violation("view", line.clone());
    }
    for projection in projections {
        let name = projection.name();
        let letters =
            read.dead_letters(name).await.with_context(|| format!("read the dead letters of {name}"))?;
        report.dead_letters += letters.len() as u64;
        for letter in letters {
            details.violation(
                "dead letter",
                format!(
                    "{name}: position {} ({}, event {}): {}",
                    letter.position, letter.event_type, letter.event_id, letter.error
                ),
            );
        }
    }
    for letter in &compared.fold.dead_letters {
        details.note(format!(
            "the fold dead-lettered position {} in {} ({}): {}",
            letter.position, letter.projection, letter.event_type, letter.error
        ));
    }
    Ok(())
}

/// Rebuilds every projection of the shop from `events` (in position order,
/// as the store holds them) into a temporary SQLite read store, and reads
/// back every document it wrote.
///
/// # Errors
/// When the temporary store cannot be made or a projection fails.
pub async fn fold(events: Arc<Vec<EventRecord>>) -> anyhow::Result<Fold> {
    let folder = TempFolder::new()?;
    let sqlite =
        SqliteReadStore::open(&folder.path.join("fold.db")).context("open the fold's SQLite store")?;
    Ok(check::fold(&shop_read::all_projections(), events, Arc::new(sqlite)).await?)
}

/// Every (view, partition) of the views of `projections` that holds a
/// document in `store`.
async fn listed_partitions(
    store: &dyn ReadStore,
    projections: &[Arc<dyn Projection>],
) -> anyhow::Result<BTreeSet<(String, String)>> {
    let mut listed = BTreeSet::new();
    for projection in projections {
        for view in projection.views() {
            let name = view.name;
            let partitions =
                store.partitions(&name).await.with_context(|| format!("list the partitions of {name}"))?;
            listed.extend(partitions.into_iter().map(|partition| (name.clone(), partition)));
        }
    }
    Ok(listed)
}

/// A folder under the system's temporary folder, removed when dropped.
struct TempFolder {
    path: PathBuf,
}

impl TempFolder {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("shop-check-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
