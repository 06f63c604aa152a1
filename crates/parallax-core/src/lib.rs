//! # parallax-core
//!
//! The vocabulary and the ports of Parallax, in the order of the data flow:
//!
//! ① [`aggregate`] decides, ② [`event`], [`codec`] and [`store`] record,
//! ③④ [`log`] carries (with [`lease`] electing one relay), ⑤ [`projection`] applies, ⑥ [`read_store`] keeps the
//! views, ⑦ [`token`] lets a query wait for a command's effect; [`trace`]
//! carries one W3C trace context along the whole flow.
//!
//! This crate is pure: no async runtime, no database driver, no I/O. Ports are
//! small object-safe traits (`Arc<dyn EventStore>`) that move type-erased
//! [`event::EventRecord`]s; typed serde happens in one place, the
//! [`codec::Codec`]. Adapters (`parallax-sqlite`, ...) implement the ports;
//! engines (`parallax-runtime`) drive them.
#![warn(missing_docs)]

pub mod aggregate;
pub mod event;
pub mod codec;
pub mod store;
pub mod log;
pub mod lease;
pub mod projection;
pub mod read_store;
pub mod view;
pub mod token;
pub mod trace;

pub use aggregate::Aggregate;
pub use codec::{Codec, CodecError, DomainEvent, Upcaster};
pub use event::{EventRecord, Metadata, NewEvent, Position, StreamId};
pub use lease::{Lease, LeaseError, Leases};
pub use log::{
    partition_for, Checkpoint, EventLog, EventSink, EventSource, LogError, LogSource, Partition, SourceBatch,
    SourcedEvent,
};
pub use projection::{Projection, ProjectionError, ViewTx};
pub use read_store::{
    furthest, CheckpointMove, ClusteringRange, DeadLetter, DocKey, Document, Page, ReadGuard, ReadStore,
    ReadStoreError, ReadStoreExt, ReadStoreLayer, Revision, Stamp, StoredDocument, ViewAdmin, ViewBatch,
    ViewCommitter, ViewReader, ViewReaderExt, ViewWrite,
};
pub use store::{
    AppendError, AppendOutcome, AppendRequest, EventStore, ExpectedVersion, IdempotencyRecord, Snapshot,
    StoreError, StoredIdempotency, StreamVersion,
};
pub use token::{ConsistencyToken, TokenError};
pub use trace::{SpanId, TraceId, TraceParent, TraceParentError};
pub use view::{name_problem, View, ViewId, ViewSpec};
