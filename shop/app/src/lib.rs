//! # shop
//!
//! The reference shop built on Parallax: HTTP API, CLI, configuration and
//! wiring. The only crate that knows axum, clap and which adapters run.
//!
//! Modules in the order of the data flow: [`commands`] (① the write side's
//! service: command handlers plus the lookups their decisions need),
//! [`saga`] (the checkout process manager), [`http`] (the command and query
//! APIs), [`telemetry`] (metrics, traces, readiness), [`app`] (which stores,
//! projectors and workers run, and the server); then the operator's tools,
//! [`ops`] and [`check`] (a Jepsen-style checker of the stores and a history
//! of client operations); and [`contract`], the AsyncAPI document of the
//! events the shop publishes.

pub mod config;
pub mod commands;
pub mod saga;
pub mod http;
pub mod telemetry;
pub mod app;
pub mod ops;
pub mod lag;
pub mod check;
pub mod contract;

pub use app::{migrate, start, RunningApp, EVENT_SOURCE};
pub use config::{Role, Settings};
