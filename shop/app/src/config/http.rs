//! The HTTP edge: `[http]` (the server's limits), `[[api_keys]]` (who may
//! call what) and `[readiness]` (what `/ready` asks).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// What an API key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The commands (`POST`, `DELETE` under `/api/`).
    Command,
    /// The queries and the live event stream (`GET` under `/api/`).
    Query,
    /// `/api/admin/*` and `/metrics`.
    Admin,
}

/// An API key: its name, the SHA-256 of the key (never the key), its scopes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    /// Who holds it (logged; the key is not).
    pub name: String,
    /// The key's SHA-256, 64 hex digits: `printf %s "$KEY" | sha256sum`.
    pub key_sha256: String,
    /// What it allows.
    pub scopes: BTreeSet<Scope>,
    /// The tenant it acts for, alone; without one it is an operator key,
    /// which may name a tenant per request (the `Parallax-Tenant` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl std::fmt::Debug for ApiKeySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeySettings")
            .field("name", &self.name)
            .field("key_sha256", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl ApiKeySettings {
    /// The key's tenant, if it names a valid one; `Ok(None)` for an operator key.
    pub fn tenant(&self) -> Result<Option<parallax_core::Tenant>, parallax_core::TenantError> {
        self.tenant.as_deref().map(parallax_core::Tenant::parse).transpose()
    }

    /// The hash as bytes, if it is 64 hex digits.
    pub fn digest(&self) -> Option<[u8; 32]> {
        let hex = self.key_sha256.trim().as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut digest = [0u8; 32];
        for (byte, pair) in digest.iter_mut().zip(hex.chunks(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(digest)
    }
}

/// What `/ready` asks of the roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessSettings {
    /// The query role is ready while every projection is at most this many
    /// positions behind the event store's head.
    pub max_lag: u64,
}

impl Default for ReadinessSettings {
    fn default() -> Self {
        Self { max_lag: 1_000 }
    }
}

/// The HTTP server's limits. A connection is closed when a request's head
/// takes longer than `header_read_timeout_secs` to arrive (counted from when
/// the connection opens, or from the previous answer on a kept-alive one:
/// hyper counts the wait for the next request against it too), or when it
/// has carried no byte either way for `idle_timeout_secs` (after the answer
/// in progress, if any). A request that takes longer than
/// `request_timeout_secs` from its head to its answer, its body included, is
/// answered 503; a query gets its `wait_ms` on top, and the live event stream
/// is bounded by its own caps instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// At least 1; at least `idle_timeout_secs` (hyper's timer would close
    /// an idle connection first).
    pub header_read_timeout_secs: u64,
    /// At least 1.
    pub idle_timeout_secs: u64,
    /// At least 1.
    pub request_timeout_secs: u64,
    /// Connections served at once; further ones wait in the listen backlog
    /// until one closes. Keep it below the open-file limit (`ulimit -n`).
    pub max_connections: usize,
    /// Live event streams open at once, in all; one more is answered 429.
    pub max_streams: usize,
    /// Live event streams open at once per API key (without keys only
    /// `max_streams` applies).
    pub max_streams_per_key: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            idle_timeout_secs: 5,
            request_timeout_secs: 30,
            max_connections: 4096,
            max_streams: 256,
            max_streams_per_key: 32,
        }
    }
}

impl HttpSettings {
    /// How long a request's head may take.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    /// How long a connection may carry nothing.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// How long a request may take, from its head to its answer.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let durations = [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
        ];
        let counts = [
            ("max_connections", self.max_connections),
            ("max_streams", self.max_streams),
            ("max_streams_per_key", self.max_streams_per_key),
        ];
        let zero = durations.iter().map(|&(name, value)| (name, value as usize)).chain(counts);
        if let Some((name, _)) = zero.into_iter().find(|&(_, value)| value == 0) {
            return Err(ConfigError(format!("http.{name} must be at least 1")));
        }
        if self.idle_timeout_secs > self.header_read_timeout_secs {
            return Err(ConfigError(format!(
                "http.idle_timeout_secs ({}) must not exceed http.header_read_timeout_secs ({}): a kept-alive \
                 connection's wait for its next request counts against the header-read timeout",
                self.idle_timeout_secs, self.header_read_timeout_secs
            )));
        }
        Ok(())
    }
}
