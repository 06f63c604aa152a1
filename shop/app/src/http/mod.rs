//! The HTTP API: commands (① in) and queries (⑦ out), JSON both ways,
//! errors as `application/problem+json`; the live event stream (③④ out, as
//! server-sent events) and the dashboard page at `/` that shows it; the
//! operations API (`/health`, `/ready`, `/metrics`) in every process.
//!
//! Every request passes, in order: the key check (`access`), the request
//! timeout (`deadline`), the body limit, then its handler; `server`
//! accepts and times the connections beneath.

mod access;
mod command_api;
mod dashboard;
mod deadline;
mod event_stream;
mod extract;
mod ops_api;
pub mod openapi;
mod problem;
mod query_api;
mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use parallax_core::{EventStore, Projection, ReadStore};
use parallax_runtime::Freshness;
use shop_read::ShopQueries;

use crate::commands::ShopCommands;
use crate::telemetry::Telemetry;

pub use access::Access;
pub use event_stream::LiveEvents;
pub use ops_api::Readiness;
pub use problem::ApiError;
pub use server::serve;

/// Requests with a larger body are refused with 413, on every route.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The write side (absent in a process without the command role).
    pub commands: Option<Arc<ShopCommands>>,
    /// The read side (absent in a process without the query role).
    pub queries: Option<ShopQueries>,
    /// Waits for consistency tokens.
    pub freshness: Option<Freshness>,
    /// For the admin view of projections.
    pub read_store: Option<Arc<dyn ReadStore>>,
    /// For lag: the head of the event store.
    pub event_store: Option<Arc<dyn EventStore>>,
    /// For each partition's lag: where the log's partitions end.
    pub log_ends: Option<crate::lag::LogEnds>,
    /// Projections whose progress the admin view lists.
    pub projections: Vec<Arc<dyn Projection>>,
    /// Partitions of the log: consistency tokens name the partition of the
    /// command's stream (1 in the embedded shape).
    pub partitions: u32,
    /// The log for the live event stream and the dashboard (query role).
    pub live: Option<LiveEvents>,
    /// Metrics, and what readiness looks at.
    pub telemetry: Arc<Telemetry>,
    /// The API keys and their scopes (none: open).
    pub access: Arc<Access>,
    /// `http.request_timeout` (`deadline`).
    pub request_timeout: Duration,
    /// `/ready`'s last measurement.
    pub readiness: Arc<Readiness>,
    /// The AsyncAPI document of the events, served at `/asyncapi.json`
    /// ([`crate::contract`]).
    pub contract: Arc<serde_json::Value>,
}

/// The whole API.
pub fn router(state: ApiState) -> Router {
    let metrics = state.telemetry.metrics.clone();
    Router::new()
        .route("/", get(dashboard::index))
        .route("/dashboard.css", get(dashboard::stylesheet))
        .route("/dashboard.js", get(dashboard::script))
        .route("/health", get(ops_api::health))
        .route("/ready", get(ops_api::ready))
        .route("/metrics", get(ops_api::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/asyncapi.json", get(openapi::events_document))
        .route("/api/products", post(command_api::register_product).get(query_api::products))
        .route("/api/products/{sku}", get(query_api::product))
        .route("/api/products/{sku}/price", post(command_api::reprice))
        .route("/api/products/{sku}/restock", post(command_api::restock))
        .route("/api/carts/{cart_id}", get(query_api::cart))
        .route("/api/carts/{cart_id}/items", post(command_api::add_item))
        .route("/api/carts/{cart_id}/items/{sku}", delete(command_api::remove_item))
        .route("/api/carts/{cart_id}/checkout", post(command_api::check_out))
        .route("/api/orders/{order_id}", get(query_api::order))
        .route("/api/orders/{order_id}/pay", post(command_api::pay))
        .route("/api/orders/{order_id}/ship", post(command_api::ship))
        .route("/api/orders/{order_id}/cancel", post(command_api::cancel))
        .route("/api/customers/{customer_id}/orders", get(query_api::customer_orders))
        .route("/api/customers/{customer_id}/forget", post(command_api::forget_customer))
        .route("/api/reports/sales", get(query_api::sales))
        .route("/api/admin/projections", get(query_api::projections))
        .route("/api/events/stream", get(event_stream::stream))
        .fallback(problem::not_found_route)
        // Innermost first: the body limit reads a body only once the key is checked.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(problem::refuse_large_bodies))
        .layer(axum::middleware::from_fn_with_state(state.request_timeout, deadline::deadline))
        .layer(axum::middleware::from_fn_with_state(state.access.clone(), access::require))
        .layer(axum::middleware::from_fn(problem::plain_errors_as_problems))
        .layer(axum::middleware::from_fn_with_state(metrics, ops_api::track))
        // The path, not the URI: the live stream's query may carry an API key.
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
            |request: &axum::http::Request<axum::body::Body>| {
                tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
            },
        ))
        // Shared, not cloned per request.
        .with_state(Arc::new(state))
}
