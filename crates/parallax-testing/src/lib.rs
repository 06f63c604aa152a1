//! # parallax-testing
//!
//! The test kit of Parallax: a given/when/then harness for aggregates, and one
//! contract suite per port that every adapter runs against its real backend
//! (ripgrep's trick: one test body, many engines).
#![warn(missing_docs)]

pub mod given;
pub mod event_store;
pub mod read_store;
