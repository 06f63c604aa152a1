//! The API's OpenAPI 3 document, served at `/openapi.json`; and the route
//! of the events' AsyncAPI document, `/asyncapi.json` ([`crate::contract`]).
//!
//! Generated from the handlers' `#[utoipa::path]` attributes and the request
//! types' derived schemas, so it cannot drift from the code: `tests/hostile.rs`
//! checks that every route of [`super::router`] is in the document and every
//! path of the document is served, and that the command bodies' schemas refuse
//! what the handlers refuse.

use std::collections::BTreeMap;

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, OpenApi, ToSchema};

use super::command_api::{CartAccepted, CheckoutAccepted, Forgotten, OrderAccepted, ProductAccepted};
use super::{command_api, dashboard, event_stream, extract, ops_api, query_api, ApiState};

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
    /// What exactly is wrong with this request, for humans; may be reworded.
    pub detail: String,
    /// Set when the aggregate refused the command (400, 404, 409 or 422):
    /// what exactly it refused, for programs; stable once published,
    /// unlike `detail`. For example `order-already-shipped`,
    /// `cart-already-checked-out`, `product-not-found`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The problems each command may answer with: every command can be
/// malformed (400), too large (413), outrun by concurrent changes (409),
/// given an idempotency key used for another request (422) or sent to a
/// process without the command role (503); the rest is the command's own.
pub mod refusals {
    use std::collections::BTreeMap;

    use utoipa::openapi::{RefOr, Response};
    use utoipa::IntoResponses;

    const INVALID: &str = "Malformed JSON, a missing, unknown or invalid field, header or path segment";
    const TOO_LARGE: &str = "The body is over the limit (64 KiB)";
    const UNAVAILABLE: &str = "This process does not run the command role, or the command took too long";
    const CONFLICT: &str = "Concurrent changes kept conflicting; retry";
    const KEY_REUSED: &str = "The idempotency key was used for another request";

    macro_rules! refusals {
        ($($(#[$doc:meta])* $name:ident { $(404: $not_found:literal,)? $(409: $conflict:literal,)? 422: $rule:literal })*) => {$(
            $(#[$doc])*
            pub struct $name;

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    let conflict = [$($conflict,)? CONFLICT].join("; or: ");
                    let rule = [$rule, KEY_REUSED].join("; or: ");
                    let not_found: Vec<(&str, String)> = vec![$(("404", $not_found.into()))?];
                    let responses: Vec<(&str, String)> = vec![
                        ("400", INVALID.into()),
                        ("409", conflict),
                        ("413", TOO_LARGE.into()),
                        ("422", rule),
                        ("503", UNAVAILABLE.into()),
                    ];
                    responses.into_iter().chain(not_found).map(|(status, text)| (status.to_owned(), super::problem(&text))).collect()
                }
            }
        )*};
    }

    refusals! {
        /// `POST /api/products`.
        Register {
            409: "The product is registered already",
            422: "A negative price or stock"
        }
        /// A command to a product (`price`, `restock`).
        Product {
            404: "No such product",
            422: "A negative price, a restock of no units, or one past the most a product holds (4294967295 units)"
        }
        /// `POST /api/carts/{cart_id}/items`.
        AddItem {
            404: "No such product",
            422: "The cart is checked out, or the line would hold more than 1000 units"
        }
        /// `DELETE /api/carts/{cart_id}/items/{sku}`.
        RemoveItem {
            404: "No such cart, or the item is not in it",
            422: "The cart is checked out"
        }
        /// `POST /api/carts/{cart_id}/checkout`.
        Checkout {
            404: "No such cart, or one of its products no longer exists",
            422: "The cart is checked out already or empty, or its total does not fit"
        }
        /// A command to an order (`pay`, `ship`, `cancel`).
        Order {
            404: "No such order",
            422: "The order's status does not allow it"
        }
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
        events_document,
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
        command_api::forget_customer,
        query_api::sales,
        query_api::projections,
        event_stream::stream,
    ),
    components(schemas(Problem, ProductAccepted, CartAccepted, CheckoutAccepted, OrderAccepted, Forgotten))
)]
pub struct ApiDoc;

/// The document for a log of `partitions` partitions: its consistency
/// tokens name only those.
pub fn for_log(partitions: u32) -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    let components = document.components.get_or_insert_with(Default::default);
    components.schemas.insert("ConsistencyToken".into(), extract::token_for(Some(partitions)).into());
    document
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json")))]
pub async fn document(State(state): State<Arc<ApiState>>) -> Json<utoipa::openapi::OpenApi> {
    Json(for_log(state.partitions))
}

/// The AsyncAPI 3.0 document of the events the shop publishes to Kafka
/// ([`crate::contract`]), as `shop contract` prints it.
#[utoipa::path(get, path = "/asyncapi.json", tag = "ops", responses((status = 200, description = "The AsyncAPI 3.0 document of the events the shop publishes to its Kafka topic: one message per event type and schema version, with its CloudEvents headers and payload schema", content_type = "application/json")))]
pub async fn events_document(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    Json(serde_json::Value::clone(&state.contract))
}
