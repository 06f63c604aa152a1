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
//!
//! Requests are parsed at the edge ([`super::extract`]): a handler receives
//! the domain's values, and a request that breaks a rule (of a path segment,
//! a field, the `Idempotency-Key`) is refused with 400 before it reaches the
//! command handler or the latency histogram.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parallax_core::{partition_for, Aggregate, ConsistencyToken, IdempotencyRecord, Tenant, TraceParent};
use parallax_runtime::{CommandContext, Executed};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shop_domain::values::integer as int;
use shop_domain::{
    Cart, CartId, Cents, CustomerId, Order, OrderCommand, OrderId, Product, ProductCommand, Quantity, Sku,
};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{
    self, CartItemPath, CartPath, CommandBody, ContactBody, CustomerPath, IdempotencyKey, InTenant,
    OrderPath, ProductPath, Segments, Trace,
};
use super::openapi::refusals;
use super::problem::ApiError;
use super::ApiState;
use crate::commands::{ShopCommandError, ShopCommands};

/// Headers every command accepts.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only: the extractors read the headers
pub struct CommandHeaders {
    /// Repeating a key with the same request repeats the first answer and
    /// appends nothing; with a different request it is refused with 422.
    #[serde(rename = "Idempotency-Key")]
    #[param(schema_with = extract::idempotency_key)]
    idempotency_key: Option<String>,
    /// W3C trace context: the command runs in this trace (a new one if it is
    /// missing or invalid).
    #[serde(rename = "traceparent")]
    traceparent: Option<String>,
    /// The tenant the command acts for, for an operator key (or without
    /// keys); a tenant's key may name only its own.
    #[serde(rename = "Parallax-Tenant")]
    #[param(schema_with = extract::tenant)]
    tenant: Option<String>,
}

/// Adds a product to the catalog.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterProduct {
    #[schema(schema_with = extract::sku)]
    sku: Sku,
    #[schema(schema_with = extract::product_name)]
    name: String,
    /// Minor units (euro cents); a negative price is refused with 422.
    #[schema(schema_with = extract::price)]
    price_cents: Cents,
    /// Units in stock: a negative stock is refused with 422, one above
    /// 4294967295 with 400.
    #[serde(with = "int")]
    #[schema(schema_with = extract::stock)]
    stock: i64,
}

/// Changes a product's price.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reprice {
    #[schema(schema_with = extract::price)]
    price_cents: Cents,
}

/// Units arrived.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restock {
    #[serde(with = "int")]
    #[schema(schema_with = extract::restock)]
    quantity: i64,
}

/// Puts units of a product in a cart.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItem {
    #[schema(schema_with = extract::sku)]
    sku: Sku,
    #[schema(schema_with = extract::quantity)]
    quantity: Quantity,
}

/// Turns a cart into an order.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckOut {
    #[schema(schema_with = extract::customer_id)]
    customer_id: CustomerId,
    /// Optional, for clients from before it: an order without it has no
    /// personal data to show or forget. Absent, not null.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = extract::contact)]
    contact: Option<ContactBody>,
}

/// An optional field that, when present, is a value: `null` is refused as
/// its schema (an object, not nullable) says.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A command's answer: what it was about, and the consistency token of its
/// write. Stored without the token as the idempotency record's answer (so
/// fields are declared in the order `json!` wrote them, sorted), which a
/// repeat reads back.
trait Answer: Serialize + DeserializeOwned {
    fn token(&mut self) -> &mut String;
}

/// A command's answer about a product.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProductAccepted {
    #[schema(schema_with = extract::sku)]
    sku: Sku,
    /// Consistency token: give it to a query as `consistent_with` to read this write.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(required = true, schema_with = extract::token)]
    token: String,
}

/// A command's answer about a cart.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CartAccepted {
    #[schema(schema_with = extract::cart_id)]
    cart_id: CartId,
    /// Consistency token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(required = true, schema_with = extract::token)]
    token: String,
}

/// The answer to a checkout: the order the cart becomes.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CheckoutAccepted {
    #[schema(schema_with = extract::cart_id)]
    cart_id: CartId,
    /// The order, placed asynchronously by the checkout saga.
    #[schema(schema_with = extract::order_id)]
    order_id: OrderId,
    /// Consistency token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(required = true, schema_with = extract::token)]
    token: String,
}

/// A command's answer about an order.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct OrderAccepted {
    #[schema(schema_with = extract::order_id)]
    order_id: OrderId,
    /// Consistency token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(required = true, schema_with = extract::token)]
    token: String,
}

macro_rules! answer {
    ($($name:ident),*) => {$(
        impl Answer for $name {
            fn token(&mut self) -> &mut String {
                &mut self.token
            }
        }
    )*};
}
answer!(ProductAccepted, CartAccepted, CheckoutAccepted, OrderAccepted);

/// What every command request carries besides its own fields.
struct Request {
    command_type: &'static str,
    /// The route with its segments, part of the idempotency fingerprint.
    route: String,
    stream: String,
    status: StatusCode,
    key: Option<String>,
    trace: TraceParent,
    /// Whose aggregates the command decides on.
    tenant: Tenant,
}

impl Request {
    fn new(command_type: &'static str, route: String, stream: String, status: StatusCode) -> Self {
        let trace = TraceParent::continue_or_start(None);
        Self { command_type, route, stream, status, key: None, trace, tenant: Tenant::DEFAULT }
    }

    fn with_headers(
        mut self,
        IdempotencyKey(key): IdempotencyKey,
        Trace(trace): Trace,
        InTenant(tenant): InTenant,
    ) -> Self {
        self.key = key;
        self.trace = trace;
        self.tenant = tenant;
        self
    }
}

#[utoipa::path(post, path = "/api/products", tag = "commands", request_body = RegisterProduct, params(CommandHeaders),
    responses((status = 201, description = "Registered", body = ProductAccepted), refusals::Register))]
pub async fn register_product(
    State(state): State<Arc<ApiState>>,
    key: IdempotencyKey,
    trace: Trace,
    tenant: InTenant,
    CommandBody { request, bytes }: CommandBody<RegisterProduct>,
) -> Result<Response, ApiError> {
    let RegisterProduct { sku, name, price_cents, stock } = request;
    let stream = Product::stream_id(sku.as_str());
    let call = Request::new("product.register", "POST /api/products".into(), stream, StatusCode::CREATED);
    let answer = ProductAccepted { sku: sku.clone(), token: String::new() };
    let command = ProductCommand::Register { sku: sku.clone(), name, price_cents: price_cents.get(), stock };
    run(&state, call.with_headers(key, trace, tenant), &bytes, answer, |c, ctx| async move {
        c.product(sku.as_str(), command, &ctx).await
    })
    .await
}

#[utoipa::path(post, path = "/api/products/{sku}/price", tag = "commands", request_body = Reprice,
    params(ProductPath, CommandHeaders),
    responses((status = 200, description = "Repriced", body = ProductAccepted), refusals::Product))]
pub async fn reprice(
    State(state): State<Arc<ApiState>>,
    Segments(ProductPath { sku }): Segments<ProductPath>,
    key: IdempotencyKey,
    trace: Trace,
    tenant: InTenant,
    CommandBody { request, bytes }: CommandBody<Reprice>,
) -> Result<Response, ApiError> {
    let command = ProductCommand::Reprice { price_cents: request.price_cents.get() };
    let call = product_request(&sku, ("price", "product.reprice")).with_headers(key, trace, tenant);
    product_command(&state, sku, call, &bytes, command).await
}

#[utoipa::path(post, path = "/api/products/{sku}/restock", tag = "commands", request_body = Restock,
    params(ProductPath, CommandHeaders),
    responses((status = 200, description = "Restocked", body = ProductAccepted), refusals::Product))]
pub async fn restock(
    State(state): State<Arc<ApiState>>,
    Segments(ProductPath { sku }): Segments<ProductPath>,
    key: IdempotencyKey,
    trace: Trace,
    tenant: InTenant,
    CommandBody { request, bytes }: CommandBody<Restock>,
) -> Result<Response, ApiError> {
    let command = ProductCommand::Restock { quantity: request.quantity };
    let call = product_request(&sku, ("restock", "product.restock")).with_headers(key, trace, tenant);
    product_command(&state, sku, call, &bytes, command).await
}

/// A command to an existing product, at `POST /api/products/{sku}/{verb}`.
fn product_request(sku: &Sku, (verb, command_type): (&str, &'static str)) -> Request {
    let route = format!("POST /api/products/{sku}/{verb}");
    Request::new(command_type, route, Product::stream_id(sku.as_str()), StatusCode::OK)
}

async fn product_command(
    state: &ApiState,
    sku: Sku,
    call: Request,
    body: &[u8],
    command: ProductCommand,
) -> Result<Response, ApiError> {
    let answer = ProductAccepted { sku: sku.clone(), token: String::new() };
    run(state, call, body, answer, |c, ctx| async move { c.product(sku.as_str(), command, &ctx).await }).await
}

#[utoipa::path(post, path = "/api/carts/{cart_id}/items", tag = "commands", request_body = AddItem,
    params(CartPath, CommandHeaders),
    responses((status = 200, description = "Added", body = CartAccepted), refusals::AddItem))]
pub async fn add_item(
    State(state): State<Arc<ApiState>>,
    Segments(CartPath { cart_id }): Segments<CartPath>,
    key: IdempotencyKey,
    trace: Trace,
    tenant: InTenant,
    CommandBody { request, bytes }: CommandBody<AddItem>,
) -> Result<Response, ApiError> {
    let route = format!("POST /api/carts/{cart_id}/items");
    let call = Request::new("cart.add_item", route, Cart::stream_id(cart_id.as_str()), StatusCode::OK);
    let answer = CartAccepted { cart_id: cart_id.clone(), token: String::new() };
    run(&state, call.with_headers(key, trace, tenant), &bytes, answer, |c, ctx| async move {
        c.add_item(&cart_id, &request.sku, request.quantity, &ctx).await
    })
    .await
}

#[utoipa::path(delete, path = "/api/carts/{cart_id}/items/{sku}", tag = "commands",
    params(CartItemPath, CommandHeaders),
    responses((status = 200, description = "Removed", body = CartAccepted), refusals::RemoveItem))]
pub async fn remove_item(
    State(state): State<Arc<ApiState>>,
    Segments(CartItemPath { cart_id, sku }): Segments<CartItemPath>,
    key: IdempotencyKey,
    trace: Trace,
    tenant: InTenant,
) -> Result<Response, ApiError> {
    let route = format!("DELETE /api/carts/{cart_id}/items/{sku}");
    let call = Request::new("cart.remove_item", route, Cart::stream_id(cart_id.as_str()), StatusCode::OK);
    let answer = CartAccepted { cart_id: cart_id.clone(), token: String::new() };
    run(&state, call.with_headers(key, trace, tenant), b"", answer, |c, ctx| async move {
        c.remove_item(&cart_id, &sku, &ctx).await
    })
    .await
}

#[utoipa::path(post, path = "/api/carts/{cart_id}/checkout", tag = "commands", request_body = CheckOut,
    params(CartPath, CommandHeaders),
    responses((status = 202, description = "Checked out; the saga places the order", body = CheckoutAccepted), refusals::Checkout))]
pub async fn check_out(
    State(state): State<Arc<ApiState>>,
    Segments(CartPath { cart_id }): Segments<CartPath>,
    key: IdempotencyKey,
    trace: Trace,
    tenant: InTenant,
    CommandBody { request, bytes }: CommandBody<CheckOut>,
) -> Result<Response, ApiError> {
    let order_id = Uuid::now_v7();
    let route = format!("POST /api/carts/{cart_id}/checkout");
    let call = Request::new("cart.check_out", route, Cart::stream_id(cart_id.as_str()), StatusCode::ACCEPTED);
    let answer =
        CheckoutAccepted { cart_id: cart_id.clone(), order_id: order_id.into(), token: String::new() };
    let contact = request.contact.map(|ContactBody(contact)| contact);
    run(&state, call.with_headers(key, trace, tenant), &bytes, answer, |c, ctx| async move {
        c.check_out(&cart_id, &request.customer_id, contact.as_ref(), order_id, &ctx).await
    })
    .await
}

/// The answer to forgetting a customer.
#[derive(Serialize, ToSchema)]
pub struct Forgotten {
    #[schema(schema_with = extract::customer_id)]
    customer_id: CustomerId,
    /// Whether a key was destroyed now (false: the customer had none, or
    /// was forgotten before). Either way none is left.
    key_destroyed: bool,
}

/// Destroys the customer's key (crypto-shredding): from now on their name,
/// e-mail and address read as `[erased]` in every order, in a rebuild too,
/// and every copy of the events (the topic, backups) holds only ciphertext
/// nobody can open. Orders, totals and sales stay as they were. Idempotent.
/// A later checkout that gives personal data creates a new key.
#[utoipa::path(post, path = "/api/customers/{customer_id}/forget", tag = "commands",
    params(CustomerPath, extract::TenantHeader),
    responses((status = 200, description = "The customer's key is gone", body = Forgotten),
        (status = 400, description = "An invalid customer id", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "This process does not run the command role", body = super::openapi::Problem, content_type = "application/problem+json")))]
pub async fn forget_customer(
    State(state): State<Arc<ApiState>>,
    Segments(CustomerPath { customer_id }): Segments<CustomerPath>,
    InTenant(tenant): InTenant,
) -> Result<Response, ApiError> {
    let commands = state.commands.as_ref().ok_or_else(|| ApiError::role_not_served("command"))?;
    let key_destroyed = commands.forget_customer(&customer_id, &tenant).await?;
    tracing::info!(customer_id = %customer_id, key_destroyed, "customer forgotten");
    Ok(Json(Forgotten { customer_id, key_destroyed }).into_response())
}

#[utoipa::path(post, path = "/api/orders/{order_id}/pay", tag = "commands",
    params(OrderPath, CommandHeaders),
    responses((status = 200, description = "Paid", body = OrderAccepted), refusals::Order))]
pub async fn pay(
    state: State<Arc<ApiState>>,
    path: Segments<OrderPath>,
    key: IdempotencyKey,
    trace: Trace,
    tenant: InTenant,
) -> Result<Response, ApiError> {
    order_command(state, path, key, trace, tenant, ("pay", "order.pay"), OrderCommand::Pay).await
}

#[utoipa::path(post, path = "/api/orders/{order_id}/ship", tag = "commands",
    params(OrderPath, CommandHeaders),
    responses((status = 200, description = "Shipped", body = OrderAccepted), refusals::Order))]
pub async fn ship(
    state: State<Arc<ApiState>>,
    path: Segments<OrderPath>,
    key: IdempotencyKey,
    trace: Trace,
    tenant: InTenant,
) -> Result<Response, ApiError> {
    order_command(state, path, key, trace, tenant, ("ship", "order.ship"), OrderCommand::Ship).await
}

#[utoipa::path(post, path = "/api/orders/{order_id}/cancel", tag = "commands",
    params(OrderPath, CommandHeaders),
    responses((status = 200, description = "Cancelled", body = OrderAccepted), refusals::Order))]
pub async fn cancel(
    state: State<Arc<ApiState>>,
    path: Segments<OrderPath>,
    key: IdempotencyKey,
    trace: Trace,
    tenant: InTenant,
) -> Result<Response, ApiError> {
    order_command(state, path, key, trace, tenant, ("cancel", "order.cancel"), OrderCommand::Cancel).await
}

async fn order_command(
    State(state): State<Arc<ApiState>>,
    Segments(OrderPath { order_id }): Segments<OrderPath>,
    key: IdempotencyKey,
    trace: Trace,
    tenant: InTenant,
    (verb, command_type): (&str, &'static str),
    command: OrderCommand,
) -> Result<Response, ApiError> {
    let route = format!("POST /api/orders/{order_id}/{verb}");
    let call = Request::new(command_type, route, Order::stream_id(&order_id.to_string()), StatusCode::OK);
    let answer = OrderAccepted { order_id, token: String::new() };
    run(&state, call.with_headers(key, trace, tenant), b"", answer, |c, ctx| async move {
        c.order(order_id.uuid(), command, &ctx).await
    })
    .await
}

/// Runs `call`'s command with its idempotency key, in its trace, and answers
/// with `answer` and the consistency token (a repeat of the key: with the
/// first answer); records its latency.
async fn run<A, F, Fut>(
    state: &ApiState,
    call: Request,
    body: &[u8],
    answer: A,
    execute: F,
) -> Result<Response, ApiError>
where
    A: Answer,
    F: FnOnce(Arc<ShopCommands>, CommandContext) -> Fut,
    Fut: Future<Output = Result<Executed, ShopCommandError>>,
{
    let started = Instant::now();
    let Request { command_type, route, stream, status, key, trace, tenant } = call;
    let stream = tenant.scope(&stream);
    let result: Result<Response, ApiError> = async {
        let commands = state.commands.clone().ok_or_else(|| ApiError::role_not_served("command"))?;
        let mut context = CommandContext::new().with_trace(trace).in_tenant(tenant.clone());
        if let Some(key) = key {
            let mut digest = Sha256::new();
            digest.update(route.as_bytes());
            digest.update(b"\n");
            digest.update(body);
            let fingerprint = digest.finalize().iter().map(|b| format!("{b:02x}")).collect();
            let response = serde_json::to_string(&answer).map_err(|e| ApiError::internal(&e))?;
            context = context.with_idempotency(IdempotencyRecord { key, fingerprint, response });
        }
        let executed = execute(commands, context).await?;
        let mut answer = match &executed {
            Executed::Duplicate { response, .. } => {
                serde_json::from_str::<A>(response).map_err(|e| ApiError::internal(&e))?
            }
            _ => answer,
        };
        let partition = partition_for(&stream, state.partitions);
        *answer.token() = ConsistencyToken::at(partition, executed.position()).text_in(&tenant);
        Ok((status, Json(answer)).into_response())
    }
    .await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) if error.status().is_client_error() => "refused",
        Err(_) => "failed",
    };
    state.telemetry.metrics.command(command_type, outcome, started.elapsed());
    tracing::debug!(command = command_type, outcome, trace_id = %trace.trace_id(), "command handled");
    result
}
