//! ⑦ The query API, from the shipments view alone:
//!
//! - `GET /api/shipments/{order_id}`: one shipment; 404 if the order has
//!   none (yet: the view is eventually consistent), 400 for an id that is
//!   not a UUID.
//! - `GET /api/shipments?status=dispatched[&limit=100][&after=<cursor>]`:
//!   shipments in one status, by order id, a page at a time (`next` is the
//!   cursor of the next page, `null` on the last); 400 for a missing or
//!   unknown status.
//! - `GET /health`: 200 while the process serves.
//!
//! A request reads the shipments of the tenant its `Parallax-Tenant` header
//! names (the shop's tenants: each order's shipment is its tenant's), or the
//! default tenant's without it; 400 for a name that is not a tenant's.
//!
//! Errors are `application/problem+json`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parallax_core::{ClusteringRange, DocKey, ReadStore, Tenant, ViewReaderExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::shipment::ShipmentStatus;
use crate::views::{ShipmentView, BY_STATUS, SHIPMENTS};

/// Largest page of a listing.
const MAX_LIMIT: usize = 1_000;

/// A refusal or a failure, answered as a problem.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
}

impl ApiError {
    fn bad_request(detail: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, detail: detail.into() }
    }

    fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %parallax_runtime::error_chain(error), "query failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail: "the server failed; the error is logged".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body =
            serde_json::json!({ "title": title, "status": self.status.as_u16(), "detail": self.detail });
        let mut response = (self.status, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        response
    }
}

struct ApiState {
    views: Arc<dyn ReadStore>,
}

/// The query API over `views`.
pub fn router(views: Arc<dyn ReadStore>) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/api/shipments", get(list))
        .route("/api/shipments/{order_id}", get(one))
        .with_state(Arc::new(ApiState { views }))
}

/// The tenant a request names in `Parallax-Tenant`; the default one without it.
fn tenant(headers: &HeaderMap) -> Result<Tenant, ApiError> {
    match headers.get("parallax-tenant") {
        None => Ok(Tenant::DEFAULT),
        Some(value) => Tenant::parse(value.to_str().unwrap_or_default())
            .map_err(|e| ApiError::bad_request(format!("parallax-tenant: {e}"))),
    }
}

async fn one(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let order_id: Uuid = order_id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{order_id:?} is not an order id (a UUID)")))?;
    let key = tenant.scope_key(&DocKey::partition(order_id.to_string()));
    match state.views.get_doc(&SHIPMENTS, &key).await {
        Ok(Some(shipment)) => Ok(Json(shipment).into_response()),
        Ok(None) => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            detail: format!("no shipment for order {order_id}"),
        }),
        Err(error) => Err(ApiError::internal(&error)),
    }
}

/// `?status=…&limit=…&after=…`.
#[derive(Debug, Deserialize)]
struct Listing {
    status: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

/// A page of shipments.
#[derive(Debug, Serialize)]
struct ShipmentPage {
    shipments: Vec<ShipmentView>,
    /// The `after` of the next page; `None` on the last.
    next: Option<String>,
}

async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    query: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ShipmentPage>, ApiError> {
    let tenant = tenant(&headers)?;
    let Query(listing) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let statuses = || ShipmentStatus::ALL.map(ShipmentStatus::as_str).join(", ");
    let name = listing
        .status
        .ok_or_else(|| ApiError::bad_request(format!("status is required: one of {}", statuses())))?;
    let status = ShipmentStatus::parse(&name)
        .ok_or_else(|| ApiError::bad_request(format!("unknown status {name:?}: one of {}", statuses())))?;
    let limit = listing.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let range = ClusteringRange { after: listing.after, ..ClusteringRange::default() };
    let page = state
        .views
        .scan_json(BY_STATUS.name(), &tenant.scope(status.as_str()), &range, limit)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let shipments = page
        .documents
        .iter()
        .map(|document| serde_json::from_str(&document.body))
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(ShipmentPage { shipments, next: page.next_cursor }))
}
