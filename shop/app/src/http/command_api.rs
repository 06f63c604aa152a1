//! ① The command API: JSON in, `{"token": ..., ...}` out.
//!
//! Every command accepts an `Idempotency-Key` header. The key is stored with
//! the command's events, in the same transaction, together with a digest of
//! the request and the answer; a repeat of the key with the same request gets
//! the first answer (same body, same token) and appends nothing, a repeat
//! with a different request is refused with 422.
//!
//! Every command accepts a W3C `traceparent` header: the command runs in that
//! trace (a new one without the header, or with an invalid one) and its
//! events record it in their metadata. Each command's latency is recorded in
//! `shop_command_duration_seconds{command, outcome}`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parallax_core::{partition_for, Aggregate, ConsistencyToken, IdempotencyRecord, TraceParent};
use parallax_runtime::{CommandContext, Executed};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shop_domain::{Cart, Order, OrderCommand, Product, ProductCommand};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::openapi::{CartAccepted, CheckoutAccepted, OrderAccepted, ProductAccepted, Refusals};
use super::problem::ApiError;
use super::ApiState;
use crate::commands::{ShopCommandError, ShopCommands};

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Headers every command accepts.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only: the handlers read the headers by hand
pub struct CommandHeaders {
    /// Repeating a key with the same request repeats the first answer and
    /// appends nothing; with a different request it is refused with 422.
    /// 1 to 255 visible ASCII characters.
    #[serde(rename = "Idempotency-Key")]
    #[param(min_length = 1, max_length = 255)]
    idempotency_key: Option<String>,
    /// W3C trace context: the command runs in this trace.
    #[serde(rename = "traceparent")]
    traceparent: Option<String>,
}

/// Adds a product to the catalog.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterProduct {
    /// 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    /// Not blank, at most 200 characters, no control characters.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// Minor units (euro cents), not negative.
    #[schema(minimum = 0)]
    price_cents: i64,
    /// Units in stock, not negative.
    #[schema(minimum = 0, maximum = 4_294_967_295_i64)]
    stock: i64,
}

/// Changes a product's price.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reprice {
    /// Minor units (euro cents), not negative.
    #[schema(minimum = 0)]
    price_cents: i64,
}

/// Units arrived.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restock {
    /// Positive.
    #[schema(minimum = 1)]
    quantity: i64,
}

/// Puts units of a product in a cart.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItem {
    /// 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    /// Positive; a cart line holds at most 1000 units.
    #[schema(minimum = 1, maximum = 1000)]
    quantity: i64,
}

/// Turns a cart into an order.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckOut {
    /// 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    customer_id: String,
}

#[utoipa::path(post, path = "/api/products", tag = "commands", request_body = RegisterProduct, params(CommandHeaders),
    responses((status = 201, description = "Registered", body = ProductAccepted), Refusals))]
pub async fn register_product(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (request, body): (RegisterProduct, _) = parse(body)?;
    let sku = request.sku.clone();
    let answer = json!({ "sku": sku });
    let command = ProductCommand::Register {
        sku: request.sku,
        name: request.name,
        price_cents: request.price_cents,
        stock: request.stock,
    };
    let route = "POST /api/products";
    let stream = Product::stream_id(&sku);
    let command_type = "product.register";
    run(
        &state,
        command_type,
        &headers,
        route,
        &stream,
        &body,
        StatusCode::CREATED,
        answer,
        |c, ctx| async move { c.product(&sku, command, &ctx).await },
    )
    .await
}

#[utoipa::path(post, path = "/api/products/{sku}/price", tag = "commands", request_body = Reprice,
    params(("sku" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$"), CommandHeaders),
    responses((status = 200, description = "Repriced", body = ProductAccepted), Refusals))]
pub async fn reprice(
    state: State<Arc<ApiState>>,
    path: Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (request, body): (Reprice, _) = parse(body)?;
    let command = ProductCommand::Reprice { price_cents: request.price_cents };
    product_command(state, path, headers, ("price", "product.reprice"), &body, command).await
}

#[utoipa::path(post, path = "/api/products/{sku}/restock", tag = "commands", request_body = Restock,
    params(("sku" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$"), CommandHeaders),
    responses((status = 200, description = "Restocked", body = ProductAccepted), Refusals))]
pub async fn restock(
    state: State<Arc<ApiState>>,
    path: Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (request, body): (Restock, _) = parse(body)?;
    let command = ProductCommand::Restock { quantity: request.quantity };
    product_command(state, path, headers, ("restock", "product.restock"), &body, command).await
}

/// A command to an existing product, at `POST /api/products/{sku}/{verb}`.
async fn product_command(
    State(state): State<Arc<ApiState>>,
    Path(sku): Path<String>,
    headers: HeaderMap,
    (verb, command_type): (&str, &'static str),
    body: &[u8],
    command: ProductCommand,
) -> Result<Response, ApiError> {
    identifier("sku", &sku)?;
    let route = format!("POST /api/products/{sku}/{verb}");
    let stream = Product::stream_id(&sku);
    let answer = json!({ "sku": sku });
    run(&state, command_type, &headers, &route, &stream, body, StatusCode::OK, answer, |c, ctx| async move {
        c.product(&sku, command, &ctx).await
    })
    .await
}

#[utoipa::path(post, path = "/api/carts/{cart_id}/items", tag = "commands", request_body = AddItem,
    params(("cart_id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$"), CommandHeaders),
    responses((status = 200, description = "Added", body = CartAccepted), Refusals))]
pub async fn add_item(
    State(state): State<Arc<ApiState>>,
    Path(cart_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (request, body): (AddItem, _) = parse(body)?;
    identifier("cart id", &cart_id)?;
    identifier("sku", &request.sku)?;
    let route = format!("POST /api/carts/{cart_id}/items");
    let answer = json!({ "cart_id": cart_id });
    let stream = Cart::stream_id(&cart_id);
    run(
        &state,
        "cart.add_item",
        &headers,
        &route,
        &stream,
        &body,
        StatusCode::OK,
        answer,
        |c, ctx| async move { c.add_item(&cart_id, &request.sku, request.quantity, &ctx).await },
    )
    .await
}

#[utoipa::path(delete, path = "/api/carts/{cart_id}/items/{sku}", tag = "commands",
    params(("cart_id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$"), ("sku" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$"), CommandHeaders),
    responses((status = 200, description = "Removed", body = CartAccepted), Refusals))]
pub async fn remove_item(
    State(state): State<Arc<ApiState>>,
    Path((cart_id, sku)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    identifier("cart id", &cart_id)?;
    identifier("sku", &sku)?;
    let route = format!("DELETE /api/carts/{cart_id}/items/{sku}");
    let answer = json!({ "cart_id": cart_id });
    let stream = Cart::stream_id(&cart_id);
    run(
        &state,
        "cart.remove_item",
        &headers,
        &route,
        &stream,
        b"",
        StatusCode::OK,
        answer,
        |c, ctx| async move { c.remove_item(&cart_id, &sku, &ctx).await },
    )
    .await
}

#[utoipa::path(post, path = "/api/carts/{cart_id}/checkout", tag = "commands", request_body = CheckOut,
    params(("cart_id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$"), CommandHeaders),
    responses((status = 202, description = "Checked out; the saga places the order", body = CheckoutAccepted), Refusals))]
pub async fn check_out(
    State(state): State<Arc<ApiState>>,
    Path(cart_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (request, body): (CheckOut, _) = parse(body)?;
    identifier("cart id", &cart_id)?;
    identifier("customer id", &request.customer_id)?;
    let order_id = Uuid::now_v7();
    let route = format!("POST /api/carts/{cart_id}/checkout");
    let answer = json!({ "order_id": order_id, "cart_id": cart_id });
    let stream = Cart::stream_id(&cart_id);
    let command_type = "cart.check_out";
    run(
        &state,
        command_type,
        &headers,
        &route,
        &stream,
        &body,
        StatusCode::ACCEPTED,
        answer,
        |c, ctx| async move { c.check_out(&cart_id, &request.customer_id, order_id, &ctx).await },
    )
    .await
}

#[utoipa::path(post, path = "/api/orders/{order_id}/pay", tag = "commands",
    params(("order_id" = uuid::Uuid, Path), CommandHeaders),
    responses((status = 200, description = "Paid", body = OrderAccepted), Refusals))]
pub async fn pay(
    state: State<Arc<ApiState>>,
    path: Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    order_command(state, path, headers, ("pay", "order.pay"), OrderCommand::Pay).await
}

#[utoipa::path(post, path = "/api/orders/{order_id}/ship", tag = "commands",
    params(("order_id" = uuid::Uuid, Path), CommandHeaders),
    responses((status = 200, description = "Shipped", body = OrderAccepted), Refusals))]
pub async fn ship(
    state: State<Arc<ApiState>>,
    path: Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    order_command(state, path, headers, ("ship", "order.ship"), OrderCommand::Ship).await
}

#[utoipa::path(post, path = "/api/orders/{order_id}/cancel", tag = "commands",
    params(("order_id" = uuid::Uuid, Path), CommandHeaders),
    responses((status = 200, description = "Cancelled", body = OrderAccepted), Refusals))]
pub async fn cancel(
    state: State<Arc<ApiState>>,
    path: Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    order_command(state, path, headers, ("cancel", "order.cancel"), OrderCommand::Cancel).await
}

async fn order_command(
    State(state): State<Arc<ApiState>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    (verb, command_type): (&str, &'static str),
    command: OrderCommand,
) -> Result<Response, ApiError> {
    let id = order_id
        .parse::<Uuid>()
        .map_err(|_| ApiError::bad_request(format!("order id {order_id:?} is not a UUID")))?;
    let route = format!("POST /api/orders/{id}/{verb}");
    let stream = Order::stream_id(&id.to_string());
    let answer = json!({ "order_id": id });
    run(&state, command_type, &headers, &route, &stream, b"", StatusCode::OK, answer, |c, ctx| async move {
        c.order(id, command, &ctx).await
    })
    .await
}

/// Runs a command of type `command_type` on `stream` with the request's
/// idempotency key, in the request's trace, and answers with `answer` plus
/// the consistency token; records its latency.
#[allow(clippy::too_many_arguments)]
async fn run<F, Fut>(
    state: &ApiState,
    command_type: &'static str,
    headers: &HeaderMap,
    route: &str,
    stream: &str,
    body: &[u8],
    status: StatusCode,
    answer: Value,
    execute: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Arc<ShopCommands>, CommandContext) -> Fut,
    Fut: Future<Output = Result<Executed, ShopCommandError>>,
{
    let started = Instant::now();
    let traceparent = TraceParent::continue_or_start(
        headers.get(TraceParent::HEADER).and_then(|value| value.to_str().ok()),
    );
    let result: Result<Response, ApiError> = async {
        let commands = state.commands.clone().ok_or_else(|| ApiError::role_not_served("command"))?;
        let mut context = CommandContext::new().with_trace(traceparent);
        if let Some(key) = idempotency_key(headers)? {
            let mut digest = Sha256::new();
            digest.update(route.as_bytes());
            digest.update(b"\n");
            digest.update(body);
            let fingerprint = digest.finalize().iter().map(|b| format!("{b:02x}")).collect();
            context = context.with_idempotency(IdempotencyRecord {
                key,
                fingerprint,
                response: answer.to_string(),
            });
        }
        let executed = execute(commands, context).await?;
        let mut answer = match &executed {
            Executed::Duplicate { response, .. } => {
                serde_json::from_str(response).map_err(|e| ApiError::internal(&e))?
            }
            _ => answer,
        };
        let partition = partition_for(stream, state.partitions);
        let token = ConsistencyToken::at(partition, executed.position()).to_string();
        if let Value::Object(fields) = &mut answer {
            fields.insert("token".into(), Value::String(token));
        }
        Ok((status, Json(answer)).into_response())
    }
    .await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) if error.status().is_client_error() => "refused",
        Err(_) => "failed",
    };
    state.telemetry.metrics.command(command_type, outcome, started.elapsed());
    tracing::debug!(command = command_type, outcome, trace_id = %traceparent.trace_id(), "command handled");
    result
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters"))?;
    Ok(Some(key.to_owned()))
}

/// Parses a JSON body, refusing a malformed one with a precise 400 (and a
/// body over the limit with 413).
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<(T, Bytes), ApiError> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large(format!("the body must be at most {} bytes", super::MAX_BODY_BYTES))
        }
        _ => ApiError::bad_request(rejection.body_text()),
    })?;
    let request = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    Ok((request, body))
}

/// Identifiers (SKUs, cart and customer ids): 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub(super) fn identifier(what: &str, value: &str) -> Result<(), ApiError> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    match valid {
        true => Ok(()),
        false => Err(ApiError::bad_request(format!(
            "{what} {value:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
        ))),
    }
}
