//! The API's OpenAPI 3 document, served at `/openapi.json`.
//!
//! Generated from the handlers' `#[utoipa::path]` attributes and the request
//! types' derived schemas, so it cannot drift from the code: `tests/hostile.rs`
//! checks that every route of [`super::router`] is in the document and every
//! path of the document is served, and that the command bodies' schemas refuse
//! what the handlers refuse.

use std::collections::BTreeMap;

use axum::Json;
use serde::Serialize;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, OpenApi, ToSchema};

use super::{command_api, dashboard, event_stream, ops_api, query_api};

/// A refusal or failure: RFC 9457 problem details, `application/problem+json`.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem, e.g. `https://parallax.dev/problems/invalid-request`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind of problem, for humans.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What exactly is wrong with this request.
    pub detail: String,
}

/// The problems any command may answer with.
pub struct Refusals;

impl IntoResponses for Refusals {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        [
            ("400", "Malformed JSON, a missing, unknown or invalid field, or an invalid path segment"),
            ("404", "No such product, cart or order"),
            ("409", "It exists already, or concurrent changes kept conflicting"),
            ("413", "The body is over the limit (64 KiB)"),
            (
                "422",
                "The command breaks a business rule, or its idempotency key was used for another request",
            ),
            ("503", "This process does not run the command role"),
        ]
        .into_iter()
        .map(|(status, description)| (status.to_owned(), problem(description)))
        .collect()
    }
}

/// A response of `description` with a [`Problem`] body.
pub fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", content)
        .build()
        .into()
}

/// The problems any query may answer with.
pub struct QueryRefusals;

impl IntoResponses for QueryRefusals {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        [
            ("400", "An invalid path segment or query parameter"),
            ("404", "No such thing"),
            ("413", "A body over the limit (64 KiB), which a query does not read either"),
            ("503", "The view has not absorbed the consistency token in time, or the process does not run the query role"),
        ]
        .into_iter()
        .map(|(status, description)| (status.to_owned(), problem(description)))
        .collect()
    }
}

/// A command's answer about a product.
#[derive(Serialize, ToSchema)]
pub struct ProductAccepted {
    /// The product.
    pub sku: String,
    /// Consistency token: give it to a query as `consistent_with` to read this write.
    pub token: String,
}

/// A command's answer about a cart.
#[derive(Serialize, ToSchema)]
pub struct CartAccepted {
    /// The cart.
    pub cart_id: String,
    /// Consistency token.
    pub token: String,
}

/// The answer to a checkout: the order the cart becomes.
#[derive(Serialize, ToSchema)]
pub struct CheckoutAccepted {
    /// The cart.
    pub cart_id: String,
    /// The order (placed asynchronously by the checkout saga).
    pub order_id: uuid::Uuid,
    /// Consistency token.
    pub token: String,
}

/// A command's answer about an order.
#[derive(Serialize, ToSchema)]
pub struct OrderAccepted {
    /// The order.
    pub order_id: uuid::Uuid,
    /// Consistency token.
    pub token: String,
}

/// The shop's HTTP API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Parallax shop", description = "Commands, queries, the live event stream and operations."),
    paths(
        dashboard::index,
        dashboard::stylesheet,
        dashboard::script,
        ops_api::health,
        ops_api::ready,
        ops_api::metrics,
        document,
        command_api::register_product,
        query_api::products,
        query_api::product,
        command_api::reprice,
        command_api::restock,
        query_api::cart,
        command_api::add_item,
        command_api::remove_item,
        command_api::check_out,
        query_api::order,
        command_api::pay,
        command_api::ship,
        command_api::cancel,
        query_api::customer_orders,
        query_api::sales,
        query_api::projections,
        event_stream::stream,
    ),
    components(schemas(Problem, ProductAccepted, CartAccepted, CheckoutAccepted, OrderAccepted))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
