//! Who may call what: API keys with scopes, checked before any handler runs.
//!
//! A key comes as `Authorization: Bearer <key>`; the live event stream,
//! which a browser's `EventSource` opens without headers, also takes it as
//! `?api_key=<key>`. The settings hold only each key's SHA-256: the
//! presented key is hashed and compared with every configured hash in
//! constant time. No key, or an unknown one: 401 with `WWW-Authenticate:
//! Bearer`; a known key without the scope the route needs: 403.
//!
//! Open whatever the keys: `/health`, `/ready` (probes) and the dashboard's
//! page and assets (they hold no data; the APIs they call need keys);
//! `/ready` shows its details only to a key with `admin`.
//! `/metrics`, `/api/admin/*` and `POST /api/customers/{id}/forget` need
//! `admin`; the live event stream and
//! every other `GET` (the API's documents `/openapi.json` and
//! `/asyncapi.json` too) need `query`; every other method needs `command`.
//! Without configured keys every route is open; the server then listens on
//! loopback only ([`crate::config::Settings::validate_exposure`]).
//!
//! The check runs before anything reads the request's body: a client
//! without a key never makes the server read a byte of it. It leaves the
//! [`Caller`] in the request's extensions for the handlers.
//!
//! Tenants: a key configured with a `tenant` acts for that tenant alone
//! (every stream, document, token and idempotency key it touches is that
//! tenant's; a `Parallax-Tenant` header naming another is refused with
//! 403). A key without one is an operator key: it acts for the tenant its
//! request names in `Parallax-Tenant`, or for the default tenant without the
//! header; so does every request when no keys are configured.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use parallax_core::Tenant;

use super::problem::ApiError;
use crate::config::{ApiKeySettings, Scope};

/// The header an operator key (or any request, without keys) names its tenant in.
pub const TENANT_HEADER: &str = "parallax-tenant";

/// The configured keys; empty: the API is open.
#[derive(Default)]
pub struct Access {
    keys: Vec<Key>,
}

struct Key {
    name: Arc<str>,
    digest: [u8; 32],
    scopes: Vec<Scope>,
    /// The tenant it acts for alone; `None`: an operator key.
    tenant: Option<Tenant>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|key| &*key.name)).finish()
    }
}

impl Access {
    /// The keys of the settings (validated: those with a malformed hash are skipped).
    pub fn new(keys: &[ApiKeySettings]) -> Self {
        let keys = keys
            .iter()
            .filter_map(|key| {
                Some(Key {
                    name: key.name.as_str().into(),
                    digest: key.digest()?,
                    scopes: key.scopes.iter().copied().collect(),
                    tenant: key.tenant().ok()?,
                })
            })
            .collect();
        Self { keys }
    }

    /// Whether keys are asked for at all.
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key whose hash is `presented`'s, looking at every key whatever matches.
    fn find(&self, presented: &str) -> Option<&Key> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(&key.digest, &digest) {
                found = Some(key);
            }
        }
        found
    }
}

/// Who calls, as the check found it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The name of the key presented; `None` when the API is open, or on an
    /// open route called without a known key.
    pub key: Option<Arc<str>>,
    /// Whether the caller may see what `admin` may (always, on an open API).
    pub admin: bool,
    /// The tenant it acts for.
    pub tenant: Tenant,
}

/// Equal, in a time that does not depend on where the bytes differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// What a route asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Nothing,
    Scope(Scope),
}

/// The routes' needs, by path and method (see the module's documentation).
fn need(method: &Method, path: &str) -> Need {
    match path {
        "/health" | "/ready" | "/" | "/dashboard.css" | "/dashboard.js" => Need::Nothing,
        "/metrics" => Need::Scope(Scope::Admin),
        _ if path == "/api/admin" || path.starts_with("/api/admin/") => Need::Scope(Scope::Admin),
        // Forgetting a customer destroys data for good.
        _ if path.starts_with("/api/customers/") && path.ends_with("/forget") => Need::Scope(Scope::Admin),
        _ if method == Method::GET || method == Method::HEAD => Need::Scope(Scope::Query),
        _ => Need::Scope(Scope::Command),
    }
}

/// The key the request presents: the bearer token, or `api_key` in the
/// query of the live event stream.
fn presented(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned());
    }
    if request.method() == Method::GET && request.uri().path() == "/api/events/stream" {
        let query = request.uri().query()?;
        return query.split('&').find_map(|param| {
            let (name, value) = param.split_once('=')?;
            (name == "api_key").then(|| percent_decode(value))
        });
    }
    None
}

/// `%XX` and `+` decoded (keys are usually plain, but a browser may encode them).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The middleware: 401 or 403 before the handler (and before the body is
/// read), or the handler's answer with the [`Caller`] in the extensions.
pub async fn require(State(access): State<Arc<Access>>, mut request: Request, next: Next) -> Response {
    let need = need(request.method(), request.uri().path());
    if access.is_open() {
        let tenant = match tenant(&request, None) {
            Ok(tenant) => tenant,
            Err(refusal) => return refusal.into_response(),
        };
        request.extensions_mut().insert(Caller { key: None, admin: true, tenant });
        return next.run(request).await;
    }
    let key = presented(&request).and_then(|presented| access.find(&presented));
    let tenant = match (need, key) {
        (Need::Scope(_), Some(key)) => match tenant(&request, Some(key)) {
            Ok(tenant) => tenant,
            Err(refusal) => return refusal.into_response(),
        },
        _ => Tenant::DEFAULT,
    };
    match (need, key) {
        (Need::Nothing, key) => {
            let caller = Caller {
                key: key.map(|key| key.name.clone()),
                admin: key.is_some_and(|key| key.scopes.contains(&Scope::Admin)),
                tenant,
            };
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        (Need::Scope(_), None) => {
            let mut response =
                ApiError::unauthorized("this API needs a key: send `Authorization: Bearer <key>`")
                    .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        (Need::Scope(scope), Some(key)) if !key.scopes.contains(&scope) => {
            tracing::debug!(key = %key.name, ?scope, path = request.uri().path(), "key lacks the scope");
            ApiError::forbidden(format!("the key {:?} lacks the {} scope", key.name, scope_name(scope)))
                .into_response()
        }
        (Need::Scope(_), Some(key)) => {
            let caller =
                Caller { key: Some(key.name.clone()), admin: key.scopes.contains(&Scope::Admin), tenant };
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
    }
}

/// The tenant a request acts for: its key's, or the one its
/// `Parallax-Tenant` header names for an operator key (or without keys), or
/// the default one; 400 for a header that names no valid tenant, 403 for a
/// tenant key's request naming another tenant.
fn tenant(request: &Request, key: Option<&Key>) -> Result<Tenant, ApiError> {
    let named = match request.headers().get(TENANT_HEADER) {
        None => None,
        Some(value) => {
            let name = value.to_str().unwrap_or_default();
            Some(Tenant::parse(name).map_err(|e| ApiError::bad_request(format!("{TENANT_HEADER}: {e}")))?)
        }
    };
    match (key.and_then(|key| key.tenant.as_ref()), named) {
        (Some(own), Some(named)) if *own != named => Err(ApiError::forbidden(format!(
            "the key {:?} acts for tenant {own} only, not {named}",
            key.map_or("", |key| &*key.name)
        ))),
        (Some(own), _) => Ok(own.clone()),
        (None, named) => Ok(named.unwrap_or_default()),
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Command => "command",
        Scope::Query => "query",
        Scope::Admin => "admin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_their_scopes() {
        assert_eq!(need(&Method::GET, "/health"), Need::Nothing);
        assert_eq!(need(&Method::GET, "/ready"), Need::Nothing);
        assert_eq!(need(&Method::GET, "/"), Need::Nothing);
        assert_eq!(need(&Method::GET, "/metrics"), Need::Scope(Scope::Admin));
        assert_eq!(need(&Method::GET, "/api/admin/projections"), Need::Scope(Scope::Admin));
        assert_eq!(need(&Method::GET, "/api/products"), Need::Scope(Scope::Query));
        assert_eq!(need(&Method::GET, "/api/events/stream"), Need::Scope(Scope::Query));
        assert_eq!(need(&Method::GET, "/openapi.json"), Need::Scope(Scope::Query));
        assert_eq!(need(&Method::GET, "/asyncapi.json"), Need::Scope(Scope::Query));
        assert_eq!(need(&Method::POST, "/api/products"), Need::Scope(Scope::Command));
        assert_eq!(need(&Method::DELETE, "/api/carts/c/items/s"), Need::Scope(Scope::Command));
        assert_eq!(need(&Method::POST, "/health/../api/products"), Need::Scope(Scope::Command));
        assert_eq!(need(&Method::POST, "/api/customers/alice/forget"), Need::Scope(Scope::Admin));
        assert_eq!(need(&Method::GET, "/api/customers/alice/orders"), Need::Scope(Scope::Query));
    }

    #[test]
    fn keys_are_found_by_their_hash_only() {
        let hash = |key: &str| -> String {
            Sha256::digest(key.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
        };
        let access = Access::new(&[ApiKeySettings {
            name: "reader".into(),
            key_sha256: hash("s3cret"),
            scopes: [Scope::Query].into_iter().collect(),
            tenant: None,
        }]);
        assert_eq!(access.find("s3cret").map(|key| &*key.name), Some("reader"));
        assert!(access.find("s3cre").is_none());
        assert!(access.find(&hash("s3cret")).is_none(), "the hash is not the key");
        assert!(!format!("{access:?}").contains(&hash("s3cret")));
        assert_eq!(percent_decode("a%2Bb+c%"), "a+b c%");
    }
}
