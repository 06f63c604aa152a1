//! ⑦ The query API: answered from the read store alone.
//!
//! Every query accepts `consistent_with=<token>` and `wait_ms` (default 2000,
//! at most 10000): it answers once the projection behind its view has
//! absorbed the token, or 503 if that takes longer than `wait_ms`. A token
//! naming a partition the log does not have is refused with 400 at once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parallax_core::furthest;
use parallax_runtime::WaitError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shop_read::queries::{answered_by, Listing, DEFAULT_LIMIT, MAX_LIMIT};
use shop_read::{QueryError, ShopQueries};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Object;
use utoipa::IntoParams;

use super::extract::{
    self, CartPath, CustomerPath, InTenant, OrderPath, Params, ProductPath, Segments, TenantHeader,
};
use super::openapi::QueryRefusals;
use super::problem::ApiError;
use super::ApiState;
use crate::lag::{self, LogEnds};

const DEFAULT_WAIT_MS: u64 = 2_000;
const MAX_WAIT_MS: u64 = 10_000;
/// The longest a query waits for its consistency token.
pub(super) const MAX_WAIT: Duration = Duration::from_millis(MAX_WAIT_MS);

/// What every query accepts: wait for a write before answering.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Consistency {
    /// A consistency token from a command's answer: the query answers once
    /// its view has absorbed that write.
    #[param(schema_with = extract::token)]
    consistent_with: Option<String>,
    /// How long to wait for `consistent_with`, in milliseconds (default 2000).
    #[param(schema_with = wait_ms)]
    wait_ms: Option<Integer<0, MAX_WAIT_MS>>,
}

/// What a listing accepts besides [`Consistency`]: its page.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Page size.
    #[param(schema_with = limit)]
    limit: Option<Integer<1, { MAX_LIMIT as u64 }>>,
    /// The `next_cursor` of the previous page.
    #[param(schema_with = cursor)]
    cursor: Option<Cursor>,
}

fn wait_ms() -> Object {
    extract::integer(0, MAX_WAIT_MS as i64, "Milliseconds, 0 to 10000 (default 2000).")
}

fn limit() -> Object {
    extract::integer(1, MAX_LIMIT as i64, "Items per page (default 50).")
}

/// Longest cursor, in characters.
const MAX_CURSOR: usize = 512;

fn cursor() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "The `next_cursor` of the previous page: at most 512 characters, no control characters.",
        ))
        .pattern(Some(r"^[^\u0000-\u001F\u007F-\u009F]*$"))
        .max_length(Some(MAX_CURSOR))
        .build()
}

/// A query-string integer from `MIN` to `MAX`, refused with a message
/// naming the range.
#[derive(Debug, Clone, Copy)]
struct Integer<const MIN: u64, const MAX: u64>(u64);

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Integer<MIN, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = std::borrow::Cow::<str>::deserialize(deserializer)?;
        raw.parse::<u64>()
            .ok()
            .filter(|n| (MIN..=MAX).contains(n) && !raw.starts_with('+'))
            .map(Self)
            .ok_or_else(|| serde::de::Error::custom(format!("{raw:?} is not an integer from {MIN} to {MAX}")))
    }
}

/// A page cursor: at most [`MAX_CURSOR`] characters and no control
/// characters (a NUL would reach the read store, and PostgreSQL refuses it
/// in text).
#[derive(Debug, Clone)]
struct Cursor(String);

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        match raw.chars().count() > MAX_CURSOR || raw.chars().any(char::is_control) {
            true => Err(serde::de::Error::custom(
                "cursor must be the next_cursor of a previous page (at most 512 characters, no control characters)",
            )),
            false => Ok(Self(raw)),
        }
    }
}

impl Page {
    fn limit(&self) -> usize {
        self.limit.map_or(DEFAULT_LIMIT, |Integer(n)| n as usize)
    }

    fn cursor(&self) -> Option<String> {
        self.cursor.as_ref().map(|Cursor(raw)| raw.clone())
    }
}

fn from_query(error: QueryError) -> ApiError {
    ApiError::internal(&error)
}

/// Checks the role, then waits for the token if one was given; the queries
/// of the caller's tenant.
async fn ready(
    state: &ApiState,
    params: &Consistency,
    projection: &str,
    InTenant(tenant): InTenant,
) -> Result<ShopQueries, ApiError> {
    let queries = state.queries.as_ref().ok_or_else(|| ApiError::role_not_served("query"))?;
    let wait = params.wait_ms.map_or(DEFAULT_WAIT_MS, |Integer(ms)| ms);
    let Some(raw) = &params.consistent_with else {
        return Ok(queries.in_tenant(tenant));
    };
    let token = extract::consistency_token(raw, state.partitions, &tenant)?;
    let queries = queries.in_tenant(tenant);
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

#[utoipa::path(get, path = "/api/products", tag = "queries", params(TenantHeader, Consistency, Page),
    responses((status = 200, description = "The catalog, a page at a time: `{products, next_cursor}`", content_type = "application/json"), QueryRefusals))]
pub async fn products(
    State(state): State<Arc<ApiState>>,
    tenant: InTenant,
    Params(params): Params<Consistency>,
    Params(page): Params<Page>,
) -> Result<Response, ApiError> {
    let queries = ready(&state, &params, answered_by::PRODUCTS, tenant).await?;
    let page = queries.products(page.limit(), page.cursor()).await.map_err(from_query)?;
    Ok(listing("products", page))
}

#[utoipa::path(get, path = "/api/products/{sku}", tag = "queries", params(ProductPath, TenantHeader, Consistency),
    responses((status = 200, description = "A product", content_type = "application/json"), QueryRefusals))]
pub async fn product(
    State(state): State<Arc<ApiState>>,
    tenant: InTenant,
    Segments(ProductPath { sku }): Segments<ProductPath>,
    Params(params): Params<Consistency>,
) -> Result<Response, ApiError> {
    let queries = ready(&state, &params, answered_by::PRODUCTS, tenant).await?;
    match queries.product(sku.as_str()).await.map_err(from_query)? {
        Some(product) => Ok(Json(product).into_response()),
        None => Err(ApiError::not_found(format!("product {sku} does not exist"))),
    }
}

#[utoipa::path(get, path = "/api/carts/{cart_id}", tag = "queries", params(CartPath, TenantHeader, Consistency),
    responses((status = 200, description = "A cart", content_type = "application/json"), QueryRefusals))]
pub async fn cart(
    State(state): State<Arc<ApiState>>,
    tenant: InTenant,
    Segments(CartPath { cart_id }): Segments<CartPath>,
    Params(params): Params<Consistency>,
) -> Result<Response, ApiError> {
    let queries = ready(&state, &params, answered_by::CARTS, tenant).await?;
    match queries.cart(cart_id.as_str()).await.map_err(from_query)? {
        Some(cart) => Ok(Json(cart).into_response()),
        None => Err(ApiError::not_found(format!("cart {cart_id} does not exist"))),
    }
}

#[utoipa::path(get, path = "/api/customers/{customer_id}/orders", tag = "queries", params(CustomerPath, TenantHeader, Consistency, Page),
    responses((status = 200, description = "A customer's orders, newest first: `{orders, next_cursor}`", content_type = "application/json"), QueryRefusals))]
pub async fn customer_orders(
    State(state): State<Arc<ApiState>>,
    tenant: InTenant,
    Segments(CustomerPath { customer_id }): Segments<CustomerPath>,
    Params(params): Params<Consistency>,
    Params(page): Params<Page>,
) -> Result<Response, ApiError> {
    let queries = ready(&state, &params, answered_by::ORDERS, tenant).await?;
    let page = queries
        .customer_orders(customer_id.as_str(), page.limit(), page.cursor())
        .await
        .map_err(from_query)?;
    Ok(listing("orders", page))
}

#[utoipa::path(get, path = "/api/orders/{order_id}", tag = "queries", params(OrderPath, TenantHeader, Consistency),
    responses((status = 200, description = "An order", content_type = "application/json"), QueryRefusals))]
pub async fn order(
    State(state): State<Arc<ApiState>>,
    tenant: InTenant,
    Segments(OrderPath { order_id }): Segments<OrderPath>,
    Params(params): Params<Consistency>,
) -> Result<Response, ApiError> {
    let queries = ready(&state, &params, answered_by::ORDERS, tenant).await?;
    match queries.order(order_id.uuid()).await.map_err(from_query)? {
        Some(order) => Ok(Json(order).into_response()),
        None => Err(ApiError::not_found(format!("order {order_id} does not exist"))),
    }
}

#[utoipa::path(get, path = "/api/reports/sales", tag = "queries", params(TenantHeader, Consistency, Page),
    responses((status = 200, description = "Sales per product: `{sales, next_cursor}`", content_type = "application/json"), QueryRefusals))]
pub async fn sales(
    State(state): State<Arc<ApiState>>,
    tenant: InTenant,
    Params(params): Params<Consistency>,
    Params(page): Params<Page>,
) -> Result<Response, ApiError> {
    let queries = ready(&state, &params, answered_by::SALES, tenant).await?;
    let page = queries.sales(page.limit(), page.cursor()).await.map_err(from_query)?;
    Ok(listing("sales", page))
}

/// Each projection with its position, its lag (its worst partition's:
/// events behind the head embedded, messages behind the end offset with
/// Kafka) and each partition's, and its dead letters.
#[utoipa::path(get, path = "/api/admin/projections", tag = "ops",
    responses((status = 200, description = "Each projection with its position, lag and dead letters; the event store's head", content_type = "application/json"), QueryRefusals))]
pub async fn projections(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let store = state.read_store.as_ref().ok_or_else(|| ApiError::role_not_served("query"))?;
    let head = match &state.event_store {
        Some(events) => Some(events.head().await.map_err(|e| ApiError::internal(&e))?),
        None => None,
    };
    let ends = match &state.log_ends {
        Some(log_ends) => log_ends.read().await.ok(),
        None => None,
    };
    let by_offset = state.log_ends.as_ref().is_some_and(LogEnds::by_offset);
    let mut rows = Vec::new();
    for projection in &state.projections {
        let name = projection.name();
        let checkpoints = store.checkpoints(name).await.map_err(|e| ApiError::internal(&e))?;
        let dead_letters = store.dead_letters(name).await.map_err(|e| ApiError::internal(&e))?.len();
        let partitions = lag::partitions(by_offset, &checkpoints, ends.as_ref());
        rows.push(json!({
            "name": name,
            "views": projection.views().into_iter().map(|view| view.name).collect::<Vec<_>>(),
            "position": furthest(&checkpoints),
            "lag": lag::worst(&partitions),
            "partitions": partitions,
            "dead_letters": dead_letters,
        }));
    }
    Ok(Json(json!({ "head": head, "projections": rows })).into_response())
}
