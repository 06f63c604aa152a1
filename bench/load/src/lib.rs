//! # bench-load
//!
//! The part of the bench that drives a target and measures it, free of the
//! shop and of any database driver: the load generator ([`load`]: closed
//! loop, open loop at a fixed rate, the search for the maximum), latency
//! histograms and step figures ([`stats`]), the machine's CPU use ([`cpu`]),
//! the cart plan the command scenarios send ([`plan`]), and the request and
//! answer of a load run in another process ([`remote`]).
//!
//! It is a crate of its own so that a peer built in a workspace of its own —
//! `bench/peer-cqrs-es`, whose sqlx 0.8 cannot share a lockfile with this
//! workspace's SQLite — runs the very same load, measured the very same way.
//! The `bench` crate re-exports these modules; its docs describe the method.

pub mod cpu;
pub mod stats;
pub mod load;
pub mod plan;
pub mod remote;
