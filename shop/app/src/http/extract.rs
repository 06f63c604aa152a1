//! Parsing at the edge: the extractors that turn a request's path, headers
//! and body into the domain's values ([`shop_domain::values`]), refusing
//! what breaks a rule with a precise 400 before a handler runs; and the
//! OpenAPI schemas of those values, built from the same consts the parsers
//! check, so the document states exactly the rules the server enforces.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use parallax_core::{ConsistencyToken, Tenant, TraceParent};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use shop_domain::{CartId, Cents, CustomerId, OrderId, Quantity, Sku, ID_PATTERN, MAX_ID_LEN, MAX_NAME_LEN};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::Object;
use utoipa::IntoParams;

use super::problem::ApiError;

/// The `Idempotency-Key` header's rule: 1 to [`MAX_IDEMPOTENCY_KEY`]
/// visible ASCII characters (`!` to `~`).
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";
/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Path segments parsed into `T` (one of the `*Path` structs below); a
/// segment that breaks its rule is refused with a 400 naming it.
pub struct Segments<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(segments)) => Ok(Self(segments)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// `/api/products/{sku}…`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProductPath {
    #[param(schema_with = sku)]
    pub sku: Sku,
}

/// `/api/carts/{cart_id}…`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CartPath {
    #[param(schema_with = cart_id)]
    pub cart_id: CartId,
}

/// `/api/carts/{cart_id}/items/{sku}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CartItemPath {
    #[param(schema_with = cart_id)]
    pub cart_id: CartId,
    #[param(schema_with = sku)]
    pub sku: Sku,
}

/// `/api/customers/{customer_id}…`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CustomerPath {
    #[param(schema_with = customer_id)]
    pub customer_id: CustomerId,
}

/// `/api/orders/{order_id}…`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrderPath {
    #[param(schema_with = order_id)]
    pub order_id: OrderId,
}

/// The `Idempotency-Key` header, if the request has one (see
/// [`super::command_api`]); one that breaks [`IDEMPOTENCY_KEY_PATTERN`] is
/// refused with 400.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else {
            return Ok(Self(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| {
                !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY && k.bytes().all(|b| b.is_ascii_graphic())
            })
            .ok_or_else(|| {
                ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters")
            })?;
        Ok(Self(Some(key.to_owned())))
    }
}

/// The header that names a request's tenant (see [`super::access`]), for
/// the API's document: every command and query takes it.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only: the access check reads it
pub struct TenantHeader {
    /// The tenant the request acts for, for an operator key (or without
    /// keys); a tenant's key may name only its own. Without it: the key's
    /// tenant, or the default one.
    #[serde(rename = "Parallax-Tenant")]
    #[param(schema_with = tenant)]
    tenant: Option<String>,
}

/// A tenant's name's schema.
pub fn tenant() -> Object {
    text(
        "Tenant",
        "^[a-z0-9][a-z0-9_]{0,39}$",
        1,
        40,
        "A tenant: 1 to 40 of a-z, 0-9 and _, not starting with _.",
    )
}

/// The tenant the request acts for, as the access check found it
/// ([`super::access`]): its key's, or the one it names.
pub struct InTenant(pub Tenant);

impl<S: Send + Sync> FromRequestParts<S> for InTenant {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let caller = parts.extensions.get::<super::access::Caller>();
        Ok(Self(caller.map(|caller| caller.tenant.clone()).unwrap_or_default()))
    }
}

/// The request's W3C trace context: its `traceparent`, or a new trace when
/// it has none or an invalid one (never refused).
pub struct Trace(pub TraceParent);

impl<S: Send + Sync> FromRequestParts<S> for Trace {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(TraceParent::HEADER).and_then(|value| value.to_str().ok());
        Ok(Self(TraceParent::continue_or_start(header)))
    }
}

/// A command's JSON body parsed into `T`, and its bytes (the idempotency
/// fingerprint covers them). Malformed JSON, a missing, unknown or invalid
/// field is refused with a precise 400; a body over the limit with 413.
pub struct CommandBody<T> {
    pub request: T,
    pub bytes: Bytes,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for CommandBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes =
            Bytes::from_request(request, state).await.map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::too_large(format!("the body must be at most {} bytes", super::MAX_BODY_BYTES))
                }
                _ => ApiError::bad_request(rejection.body_text()),
            })?;
        let request = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
        Ok(Self { request, bytes })
    }
}

/// A string of `pattern`, `min` to `max` characters, titled `title`.
fn text(title: &str, pattern: &str, min: usize, max: usize, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .title(Some(title))
        .description(Some(description))
        .pattern(Some(pattern))
        .min_length(Some(min))
        .max_length(Some(max))
        .build()
}

/// An integer from `min` to `max`.
pub(super) fn integer(min: i64, max: i64, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some(description))
        .minimum(Some(min))
        .maximum(Some(max))
        .build()
}

const ID_RULE: &str = "1 to 64 characters of `A-Z a-z 0-9 . _ -`";

/// [`Sku`]'s schema.
pub fn sku() -> Object {
    text("Sku", ID_PATTERN, 1, MAX_ID_LEN, &format!("A product's SKU: {ID_RULE}."))
}

/// [`CartId`]'s schema.
pub fn cart_id() -> Object {
    text("CartId", ID_PATTERN, 1, MAX_ID_LEN, &format!("A cart's id: {ID_RULE}."))
}

/// [`CustomerId`]'s schema.
pub fn customer_id() -> Object {
    text("CustomerId", ID_PATTERN, 1, MAX_ID_LEN, &format!("A customer's id: {ID_RULE}."))
}

/// [`OrderId`]'s schema.
pub fn order_id() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .title(Some("OrderId"))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .description(Some("An order's id: a UUID."))
        .build()
}

/// [`Quantity`]'s schema.
pub fn quantity() -> Object {
    integer(
        i64::from(Quantity::MIN),
        i64::from(Quantity::MAX),
        "Units of the product to add; a cart line holds at most 1000.",
    )
}

/// The `Idempotency-Key` header's schema.
pub fn idempotency_key() -> Object {
    text(
        "IdempotencyKey",
        IDEMPOTENCY_KEY_PATTERN,
        1,
        MAX_IDEMPOTENCY_KEY,
        "1 to 255 visible ASCII characters.",
    )
}

/// A product name's schema: not blank, at most [`MAX_NAME_LEN`] characters,
/// no control characters.
pub fn product_name() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("Not blank, at most 200 characters, no control characters."))
        .pattern(Some(NAME_PATTERN))
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_LEN))
        .build()
}

/// [`product_name`]'s rule as a pattern: a character that is neither a
/// control character nor white space, amid characters that are not control
/// characters (`char::is_control` is Unicode's `Cc`: U+0000 to U+001F and
/// U+007F to U+009F).
pub const NAME_PATTERN: &str =
    r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";

/// A price's schema ([`shop_domain::Cents`]).
pub fn price() -> Object {
    integer(Cents::MIN_PRICE, i64::MAX, "Minor units (euro cents); a negative price is refused with 422.")
}

/// A product's initial stock: not negative (422), at most `u32::MAX` (400).
pub fn stock() -> Object {
    integer(0, i64::from(u32::MAX), "Units in stock, 0 to 4294967295.")
}

/// A restock's units: positive (422 otherwise); the units on hand may not
/// pass `u32::MAX` (422).
pub fn restock() -> Object {
    integer(1, i64::from(u32::MAX), "Units arriving, positive.")
}

/// A consistency token: a reference to the `ConsistencyToken` schema,
/// which the served document states for its log ([`token_for`]).
pub fn token() -> utoipa::openapi::Ref {
    utoipa::openapi::Ref::from_schema_name("ConsistencyToken")
}

/// [`token`] for a log of `partitions` partitions: the pattern admits only
/// those partitions, as the queries do.
pub fn token_for(partitions: Option<u32>) -> Object {
    let partition = match partitions {
        Some(n) => (0..n.max(1)).map(|p| p.to_string()).collect::<Vec<_>>().join("|"),
        None => "0|[1-9][0-9]{0,9}".to_owned(),
    };
    ObjectBuilder::new()
        .schema_type(Type::String)
        .title(Some("ConsistencyToken"))
        .description(Some(
            "A consistency token from a command's answer: `p2.<log partition>.<position>`, \
             the partition one of the log's; a named tenant's token ends in `.<tenant>`.",
        ))
        .pattern(Some(format!("^p2\\.({partition})\\.{POSITION_PATTERN}(\\.[a-z0-9][a-z0-9_]{{0,39}})?$")))
        .build()
}

/// A log position in a token: a decimal without leading zeros, of at most
/// 18 digits (a log reaches 10^18 events never; the pattern stays simple).
const POSITION_PATTERN: &str = "(0|[1-9][0-9]{0,17})";

/// The largest log position: positions are `bigint` in PostgreSQL and
/// `INTEGER` in SQLite, so none is above `i64::MAX`.
pub const MAX_POSITION: u64 = i64::MAX as u64;

/// Parses a log position as the document states it: a decimal from 0 to
/// [`MAX_POSITION`].
pub fn position(raw: &str) -> Option<u64> {
    let canonical = raw == "0" || (!raw.starts_with('0') && raw.bytes().all(|b| b.is_ascii_digit()));
    raw.parse::<u64>().ok().filter(|&p| canonical && p <= MAX_POSITION)
}

/// Parses a consistency token strictly ([`token_for`]): `p2.`, a partition
/// below `partitions` and a position, both canonical decimals, and the
/// tenant's name for a named tenant's query. A well-formed token of another
/// tenant names a write the caller's tenant does not have: 404, as its ids.
pub fn consistency_token(raw: &str, partitions: u32, tenant: &Tenant) -> Result<ConsistencyToken, ApiError> {
    let (untenanted, named) = parallax_core::token::split_tenant(raw);
    let token = untenanted_token(untenanted, raw, partitions)?;
    if named.is_some_and(|name| Tenant::parse(name).is_err()) {
        return Err(ApiError::bad_request(format!(
            "consistent_with {raw:?} must be a consistency token from a command's answer (p2.<partition>.<position>[.<tenant>])"
        )));
    }
    if named != tenant.name() {
        return Err(ApiError::not_found(format!(
            "consistent_with {raw:?} is a token of {}: tenant {tenant} has no such write",
            named.map_or_else(|| "the default tenant".to_owned(), |name| format!("tenant {name}"))
        )));
    }
    Ok(token)
}

/// [`consistency_token`] of a token's text without its tenant (`raw`, the
/// whole text, for the errors).
fn untenanted_token(text: &str, raw: &str, partitions: u32) -> Result<ConsistencyToken, ApiError> {
    let malformed = || {
        ApiError::bad_request(format!(
            "consistent_with {raw:?} must be a consistency token from a command's answer (p2.<partition>.<position>)"
        ))
    };
    let (partition, at) =
        text.strip_prefix("p2.").and_then(|rest| rest.split_once('.')).ok_or_else(malformed)?;
    let decimal = |raw: &str, digits: usize| position(raw).filter(|_| raw.len() <= digits);
    let partition = decimal(partition, 10).and_then(|p| u32::try_from(p).ok()).ok_or_else(malformed)?;
    let at = decimal(at, 18).ok_or_else(malformed)?;
    if partition >= partitions {
        return Err(ApiError::bad_request(format!(
            "consistency token {raw:?} names log partition {partition}; the log has {partitions} (0 to {})",
            partitions - 1
        )));
    }
    Ok(ConsistencyToken::at(partition, at))
}

/// Query-string parameters parsed into `T`; one that breaks its rule is
/// refused with a 400 naming it. Parameters `T` does not name are ignored.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(params)) => Ok(Self(params)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// Longest name in a checkout's contact, in characters.
const MAX_CONTACT_NAME: usize = 200;
/// Longest e-mail address, in characters (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;
/// Longest shipping address, in characters.
const MAX_ADDRESS: usize = 1000;

/// [`ContactBody`]'s e-mail rule as a pattern: one `@` with characters
/// that are neither white space, `@` nor control characters on both sides.
const EMAIL_PATTERN: &str = r"^[^\s@\u0000-\u001F\u007F-\u009F]+@[^\s@\u0000-\u001F\u007F-\u009F]+$";
/// [`ContactBody`]'s address rule as a pattern: [`NAME_PATTERN`]'s, with
/// line feeds allowed between lines.
const ADDRESS_PATTERN: &str = r"^[^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0009\u000B-\u001F\u007F-\u009F]*$";

/// The buyer's personal data in a checkout, parsed once by serde with the
/// rules its schema ([`contact`]) states: a precise 400 otherwise.
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawContact")]
pub struct ContactBody(pub shop_events::Contact);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContact {
    name: String,
    email: String,
    address: String,
}

impl TryFrom<RawContact> for ContactBody {
    type Error = String;

    fn try_from(RawContact { name, email, address }: RawContact) -> Result<Self, String> {
        let len = |text: &str| text.chars().count();
        if name.trim().is_empty() || len(&name) > MAX_CONTACT_NAME || name.chars().any(char::is_control) {
            return Err(
                "contact.name must not be blank, at most 200 characters, no control characters".into()
            );
        }
        let (local, domain) = email.split_once('@').unwrap_or_default();
        let bad = |part: &str| {
            part.is_empty() || part.chars().any(|c| c == '@' || c.is_whitespace() || c.is_control())
        };
        if len(&email) > MAX_EMAIL || bad(local) || bad(domain) {
            return Err("contact.email must be one @ between characters that are not white space, \
                        at most 254 characters"
                .into());
        }
        if address.trim().is_empty()
            || len(&address) > MAX_ADDRESS
            || address.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err("contact.address must not be blank, at most 1000 characters, \
                        no control characters but line feeds"
                .into());
        }
        Ok(Self(shop_events::Contact { name, email, address }))
    }
}

/// [`ContactBody`]'s schema.
pub fn contact() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "The buyer's personal data, stored only sealed under the customer's own key \
             (`POST /api/customers/{customer_id}/forget` destroys it). All three or none.",
        ))
        .property("name", text("Name", NAME_PATTERN, 1, MAX_CONTACT_NAME, "Not blank, at most 200 characters, no control characters."))
        .property("email", text("Email", EMAIL_PATTERN, 3, MAX_EMAIL, "An e-mail address: one @, no white space, at most 254 characters."))
        .property(
            "address",
            text("Address", ADDRESS_PATTERN, 1, MAX_ADDRESS, "The shipping address, lines separated by line feeds: not blank, at most 1000 characters, no other control characters."),
        )
        .required("name")
        .required("email")
        .required("address")
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)))
        .build()
}
