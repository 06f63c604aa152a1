//! ⑦ The query API: answered from the read store alone.
//!
//! Every query accepts `consistent_with=<token>` and `wait_ms` (default 2000,
//! at most 10000): it answers once the projection behind its view has
//! absorbed the token, or 503 if that takes longer than `wait_ms`. A token
//! naming a partition the log does not have is refused with 400 at once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parallax_core::{furthest, ConsistencyToken};
use parallax_runtime::WaitError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shop_read::queries::{answered_by, Listing, DEFAULT_LIMIT, MAX_LIMIT};
use shop_read::{QueryError, ShopQueries};
use utoipa::IntoParams;
use uuid::Uuid;

use super::command_api::identifier;
use super::openapi::QueryRefusals;
use super::problem::ApiError;
use super::ApiState;

const DEFAULT_WAIT_MS: u64 = 2_000;
const MAX_WAIT_MS: u64 = 10_000;
/// The longest a query waits for its consistency token.
pub(super) const MAX_WAIT: Duration = Duration::from_millis(MAX_WAIT_MS);

/// Query-string parameters; parsed by hand for precise errors.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// A consistency token from a command's answer: the query answers once
    /// its view has absorbed that write.
    consistent_with: Option<String>,
    /// How long to wait for `consistent_with`, 0 to 10000 (default 2000).
    #[param(value_type = Option<u64>, maximum = 10000)]
    wait_ms: Option<String>,
    /// Page size of listings, from 1 to the maximum.
    #[param(value_type = Option<u64>, minimum = 1)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page of a listing.
    cursor: Option<String>,
}

impl Params {
    /// The cursor, if given: at most 512 bytes, no control characters (a NUL
    /// would reach the read store, and PostgreSQL refuses it in text).
    fn cursor(&self) -> Result<Option<String>, ApiError> {
        match &self.cursor {
            Some(raw) if raw.len() > 512 || raw.chars().any(char::is_control) => Err(ApiError::bad_request(
                "cursor must be the next_cursor of a previous page (at most 512 bytes, no control characters)",
            )),
            cursor => Ok(cursor.clone()),
        }
    }

    fn limit(&self) -> Result<usize, ApiError> {
        match &self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                ApiError::bad_request(format!("limit must be an integer from 1 to {MAX_LIMIT}"))
            }),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

fn from_query(error: QueryError) -> ApiError {
    ApiError::internal(&error)
}

/// Checks the role, then waits for the token if one was given.
async fn ready<'a>(
    state: &'a ApiState,
    params: &Params,
    projection: &str,
) -> Result<&'a ShopQueries, ApiError> {
    let queries = state.queries.as_ref().ok_or_else(|| ApiError::role_not_served("query"))?;
    let wait = match &params.wait_ms {
        None => DEFAULT_WAIT_MS,
        Some(raw) => raw.parse::<u64>().ok().filter(|ms| *ms <= MAX_WAIT_MS).ok_or_else(|| {
            ApiError::bad_request(format!("wait_ms must be an integer from 0 to {MAX_WAIT_MS}"))
        })?,
    };
    let Some(raw) = &params.consistent_with else {
        return Ok(queries);
    };
    let token: ConsistencyToken =
        raw.parse().map_err(|e: parallax_core::TokenError| ApiError::bad_request(e.to_string()))?;
    if token.partition >= state.partitions {
        return Err(ApiError::bad_request(format!(
            "consistency token {raw:?} names log partition {}; the log has {} (0 to {})",
            token.partition,
            state.partitions,
            state.partitions - 1
        )));
    }
    let freshness = state.freshness.as_ref().ok_or_else(|| ApiError::role_not_served("query"))?;
    match freshness.wait(projection, token, Duration::from_millis(wait)).await {
        Ok(()) => Ok(queries),
        Err(WaitError::NotCaughtUp { projection, partition, reached, needed, .. }) => {
            Err(ApiError::not_caught_up(format!(
                "view {projection} has absorbed events up to position {reached} in log partition {partition}; \
                 the token needs {needed}; waited {wait} ms"
            )))
        }
        Err(e) => Err(ApiError::internal(&e)),
    }
}

/// `{<name>: [items], "next_cursor": …}`, encoded straight from the items
/// (through `json!` they would first be copied into a JSON value).
fn listing<T: Serialize>(name: &'static str, listing: Listing<T>) -> Response {
    Json(Listed { name, listing }).into_response()
}

struct Listed<T> {
    name: &'static str,
    listing: Listing<T>,
}

impl<T: Serialize> Serialize for Listed<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(self.name, &self.listing.items)?;
        map.serialize_entry("next_cursor", &self.listing.next_cursor)?;
        map.end()
    }
}

#[utoipa::path(get, path = "/api/products", tag = "queries", params(Params),
    responses((status = 200, description = "The catalog, a page at a time: `{products, next_cursor}`", content_type = "application/json"), QueryRefusals))]
pub async fn products(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let queries = ready(&state, &params, answered_by::PRODUCTS).await?;
    let page = queries.products(params.limit()?, params.cursor()?).await.map_err(from_query)?;
    Ok(listing("products", page))
}

#[utoipa::path(get, path = "/api/products/{sku}", tag = "queries", params(("sku" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$"), Params),
    responses((status = 200, description = "A product", content_type = "application/json"), QueryRefusals))]
pub async fn product(
    State(state): State<Arc<ApiState>>,
    Path(sku): Path<String>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    identifier("sku", &sku)?;
    let queries = ready(&state, &params, answered_by::PRODUCTS).await?;
    match queries.product(&sku).await.map_err(from_query)? {
        Some(product) => Ok(Json(product).into_response()),
        None => Err(ApiError::not_found(format!("product {sku} does not exist"))),
    }
}

#[utoipa::path(get, path = "/api/carts/{cart_id}", tag = "queries", params(("cart_id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$"), Params),
    responses((status = 200, description = "A cart", content_type = "application/json"), QueryRefusals))]
pub async fn cart(
    State(state): State<Arc<ApiState>>,
    Path(cart_id): Path<String>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    identifier("cart id", &cart_id)?;
    let queries = ready(&state, &params, answered_by::CARTS).await?;
    match queries.cart(&cart_id).await.map_err(from_query)? {
        Some(cart) => Ok(Json(cart).into_response()),
        None => Err(ApiError::not_found(format!("cart {cart_id} does not exist"))),
    }
}

#[utoipa::path(get, path = "/api/customers/{customer_id}/orders", tag = "queries", params(("customer_id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$"), Params),
    responses((status = 200, description = "A customer's orders, newest first: `{orders, next_cursor}`", content_type = "application/json"), QueryRefusals))]
pub async fn customer_orders(
    State(state): State<Arc<ApiState>>,
    Path(customer_id): Path<String>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    identifier("customer id", &customer_id)?;
    let limit = params.limit()?;
    let queries = ready(&state, &params, answered_by::ORDERS).await?;
    let page = queries.customer_orders(&customer_id, limit, params.cursor()?).await.map_err(from_query)?;
    Ok(listing("orders", page))
}

#[utoipa::path(get, path = "/api/orders/{order_id}", tag = "queries", params(("order_id" = uuid::Uuid, Path), Params),
    responses((status = 200, description = "An order", content_type = "application/json"), QueryRefusals))]
pub async fn order(
    State(state): State<Arc<ApiState>>,
    Path(order_id): Path<String>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let id = order_id
        .parse::<Uuid>()
        .map_err(|_| ApiError::bad_request(format!("order id {order_id:?} is not a UUID")))?;
    let queries = ready(&state, &params, answered_by::ORDERS).await?;
    match queries.order(id).await.map_err(from_query)? {
        Some(order) => Ok(Json(order).into_response()),
        None => Err(ApiError::not_found(format!("order {id} does not exist"))),
    }
}

#[utoipa::path(get, path = "/api/reports/sales", tag = "queries", params(Params),
    responses((status = 200, description = "Sales per product: `{sales, next_cursor}`", content_type = "application/json"), QueryRefusals))]
pub async fn sales(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let limit = params.limit()?;
    let queries = ready(&state, &params, answered_by::SALES).await?;
    let page = queries.sales(limit, params.cursor()?).await.map_err(from_query)?;
    Ok(listing("sales", page))
}

/// Each projection with its position, its lag behind the event store, and
/// its dead letters.
#[utoipa::path(get, path = "/api/admin/projections", tag = "ops",
    responses((status = 200, description = "Each projection with its position, lag and dead letters; the event store's head", content_type = "application/json"), QueryRefusals))]
pub async fn projections(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let store = state.read_store.as_ref().ok_or_else(|| ApiError::role_not_served("query"))?;
    let head = match &state.event_store {
        Some(events) => Some(events.head().await.map_err(|e| ApiError::internal(&e))?),
        None => None,
    };
    let mut rows = Vec::new();
    for projection in &state.projections {
        let name = projection.name();
        let checkpoints = store.checkpoints(name).await.map_err(|e| ApiError::internal(&e))?;
        let position = furthest(&checkpoints);
        let dead_letters = store.dead_letters(name).await.map_err(|e| ApiError::internal(&e))?.len();
        let partitions: Vec<Value> = checkpoints
            .iter()
            .map(|(partition, at)| json!({ "partition": partition, "position": at.position, "offset": at.offset }))
            .collect();
        rows.push(json!({
            "name": name,
            "views": projection.views().into_iter().map(|view| view.name).collect::<Vec<_>>(),
            "position": position,
            "lag": head.map(|head| head.saturating_sub(position)),
            "partitions": partitions,
            "dead_letters": dead_letters,
        }));
    }
    Ok(Json(json!({ "head": head, "projections": rows })).into_response())
}
