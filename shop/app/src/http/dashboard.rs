//! The live dashboard at `/`: one page of plain HTML, CSS and JavaScript,
//! compiled into the binary (no build step, nothing fetched at run time).
//!
//! The page uses the public API only: the live event stream
//! ([`super::event_stream`]), `/api/admin/projections` (lag and dead
//! letters, polled), and the shop's commands and queries for its checkout
//! panel. Served by the query role, like the stream it shows.
//!
//! The page and its assets are open; the APIs it calls need API keys when
//! the shop has some ([`super::access`]): opened as `/#api_key=<key>`, the
//! page keeps the key for its tab and sends it as a bearer token (to the
//! event stream, whose `EventSource` sends no headers, as `?api_key=`).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use super::problem::ApiError;
use super::ApiState;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");

fn asset(state: &ApiState, content_type: &'static str, body: &'static str) -> Result<Response, ApiError> {
    if state.live.is_none() {
        return Err(ApiError::role_not_served("query"));
    }
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        // Small and embedded: always ask again, so a new binary shows at once.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    Ok((headers, body).into_response())
}

#[utoipa::path(get, path = "/", tag = "dashboard", responses((status = 200, description = "The live dashboard", content_type = "text/html")))]
pub async fn index(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    asset(&state, "text/html; charset=utf-8", INDEX_HTML)
}

#[utoipa::path(get, path = "/dashboard.css", tag = "dashboard", responses((status = 200, description = "The dashboard's stylesheet", content_type = "text/css")))]
pub async fn stylesheet(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    asset(&state, "text/css; charset=utf-8", DASHBOARD_CSS)
}

#[utoipa::path(get, path = "/dashboard.js", tag = "dashboard", responses((status = 200, description = "The dashboard's script", content_type = "text/javascript")))]
pub async fn script(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    asset(&state, "text/javascript; charset=utf-8", DASHBOARD_JS)
}
