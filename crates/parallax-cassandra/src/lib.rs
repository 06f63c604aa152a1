//! # parallax-cassandra
//!
//! Parallax's read store (⑥ of the data flow) on Apache Cassandra, through
//! the scylla driver (which speaks CQL to Cassandra as well as to ScyllaDB).
//!
//! ## The model
//!
//! Each view is one CQL table, `v_<view>`, with the view's partition key as
//! the CQL partition key and its clustering key as the clustering column:
//!
//! ```text
//! CREATE TABLE v_customer_orders (p text, c text, body text, rev bigint,
//!     marks map<int, bigint>, PRIMARY KEY ((p), c))
//! ```
//!
//! so a point read is one partition lookup and a page of a partition is one
//! slice of it, in clustering order (UTF-8 byte order, as the port asks).
//! Every statement is prepared once when the store connects; every value is
//! a bound parameter. Pages are read by clustering range with a cursor (the
//! last clustering key), never with `OFFSET` or `ALLOW FILTERING`.
//!
//! ## Exactly-once effect without transactions
//!
//! Cassandra has no transaction that spans the view rows of a batch and the
//! projection's checkpoint. The store gets the effect the SQL stores get from
//! their transaction — every event's effect on a view exactly once — from
//! four rules ([`parallax_core::ViewCommitter::commits_atomically`] is `false`):
//!
//! 1. **Rows before checkpoints.** A commit writes its rows first and moves
//!    the checkpoints (one row per projection and source partition) last.
//!    A projector that dies in between leaves rows *ahead* of the checkpoint,
//!    never behind it: nothing is lost, and the events after the checkpoint
//!    are delivered again.
//! 2. **Write timestamps from positions.** A row written by a projector
//!    carries `USING TIMESTAMP <position>`: the global position of the last
//!    event that changed it. Cassandra keeps, per cell, the value with the
//!    highest timestamp, so a replayed (older) write can never overwrite a
//!    newer one, whatever the order in which they arrive; and a view written
//!    from two streams (an order created by the cart's checkout and by the
//!    order's own events, behind two Kafka partitions) ends in the state of
//!    the later event.
//! 3. **Marks.** Each row keeps, per source partition, the position of the
//!    last event whose effect it holds (`marks`). When a projector replays an
//!    event, its [`parallax_core::ViewTx`] sees that a document it read
//!    already holds it and drops the event's writes to that document: a
//!    read-modify-write (a cart's items, a sales total) is not applied twice.
//! 4. **Lightweight transactions only where rows are shared.** A view that a
//!    projection read-modify-writes from more than one partition at once
//!    ([`parallax_core::ViewSpec::shared`]; sales per product is one)
//!    is written with compare-and-set on the row's revision
//!    (`UPDATE … IF rev = ?`, `INSERT … IF NOT EXISTS`); a commit's rows of
//!    one partition go in one conditional batch, a single Paxos round that
//!    applies all of them or none (one round per row would queue them behind
//!    each other on the partition). Two projectors of two
//!    partitions updating one row serialize through Paxos; the loser gets
//!    [`parallax_core::ReadStoreError::Conflict`], re-reads and applies again,
//!    so no increment is lost. Checkpoints are compare-and-set too, so two
//!    projectors racing over one partition (a rebalance) move it once. Every
//!    other view is written with plain timestamped writes: one projector
//!    owns a partition at a time, and rules 2 and 3 make its replays harmless.
//!
//! Before it writes anything, a commit checks its checkpoints and read guards
//! (with serial reads), so a stale batch — a redelivery after another
//! projector moved on — writes nothing. The rows of one commit that are not
//! shared go in logged batches, which Cassandra applies whole or not at all.
//!
//! ## On a replicated ring
//!
//! A keyspace of several replicas ([`CassandraConfig::replication_factor`],
//! 3 on a ring of 3 nodes or more) adds two things a single node never
//! shows: a write that fails may still land, and a replica may lag. Every
//! statement runs at one level ([`CassandraConfig::consistency`], default
//! `LOCAL_QUORUM`), lightweight transactions and serial reads at
//! `LOCAL_SERIAL`; reads and writes at quorum overlap in at least one
//! replica, so a quorum read sees every write acknowledged at quorum, and
//! Cassandra's blocking read repair makes what one quorum read returned
//! the floor of every later one. The rules above hold as follows.
//!
//! - **A row write that timed out.** A logged batch or upsert that fails
//!   (a timeout: fewer replicas answered than the level asks, the client
//!   gave up, or the batch log could not be written) may have reached some
//!   replicas, and hints, the batch log's replay or read repair may carry
//!   it to the others later, after anything written since. The commit
//!   fails before its checkpoints move (rule 1), so the projector projects
//!   the same events again from the same checkpoint. The replay's quorum
//!   read of a document sees the failed write or does not: if it does, the
//!   document's marks hold the events and rule 3 drops them; if it does
//!   not, the replay computes the same document from the same events and
//!   writes it with the same timestamps (rule 2; of two cells with equal
//!   timestamps one is kept, and both hold the same document and marks). A replay that stops at an earlier
//!   position writes older timestamps, and the failed write, landing later,
//!   wins only the cells it wrote with its later position: the state after
//!   that position, which the next batch then finds in the marks. No
//!   landing, however late, carries a state older than one already read.
//! - **A checkpoint or shared row whose compare-and-set timed out.** Its
//!   Paxos round may have been accepted or not. The next serial read
//!   (step 1 of every commit reads checkpoints and guarded revisions
//!   serially) finishes a round a quorum accepted and supersedes one it did
//!   not, so from then on the outcome is fixed: a replayed batch finds the
//!   checkpoint moved or the revision changed (`CheckpointMoved`,
//!   `Conflict`) and writes nothing before it reads again. A projector that
//!   resumes from a quorum read of its checkpoint, stale because such a
//!   round was not finished yet, is caught the same way, and the serial
//!   read finishing the round makes the next quorum read current.
//! - **A node dead.** With 3 replicas a quorum is 2: every read, write and
//!   Paxos round goes on with one node of three dead. Just after it died
//!   its peers still count it alive for a few seconds, and writes sent to
//!   it time out; they are the failed writes above, projected again.
//!   Statements the driver may send twice are marked so (reads, and the
//!   timestamped batches, which change nothing the second time); compare-
//!   and-set is never sent twice by the driver.
//!
//! A level whose reads need not meet the last write (`ONE` on 3 replicas)
//! breaks rule 3: the replay may read a document without the marks of a
//! write it made, and apply events again. The store warns when it connects
//! at such a level, and refuses one that waits for more replicas than the
//! keyspace keeps. [`CassandraReadStore::truncate_all`] needs every node
//! up (Cassandra's `TRUNCATE` does).
//! `tests/ring.rs` shows a batch whose write timed out with two replicas
//! frozen applied once, and a store going on with a node dead while the
//! same keyspace at `ALL` refuses every kind of statement.
//!
//! What this does not give: isolation. A reader may see some rows of a batch
//! before others, and two projectors racing from one checkpoint may both
//! write rows (the same rows, since they replay the same events) before one
//! of them moves the checkpoint. Writes outside any projector (tools, tests)
//! have no position; they are ordered by the wall clock instead, and a view
//! should not mix the two.
#![warn(missing_docs)]

mod store;

pub use store::{parse_consistency, CassandraConfig, CassandraReadStore, Consistency, ConsistencyError};
