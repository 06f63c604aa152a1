//! Talking back: the shop's command API, `POST /api/orders/{order_id}/ship`.
//!
//! Every call carries the `Idempotency-Key` `fulfilment:ship:{order_id}`:
//! one per shipment, so a call repeated after a timeout or a crash gets the
//! shop's first answer and appends nothing. A call is retried, with backoff
//! and without end, until the shop answers something final:
//!
//! | the shop answers | outcome |
//! |---|---|
//! | 2xx | [`ShopOutcome::Shipped`] |
//! | 422 with the code `order-already-shipped` | [`ShopOutcome::AlreadyShipped`] |
//! | 400, 404, 413, another 422 | [`ShopOutcome::Refused`], with the problem's `detail` |
//! | 409 (concurrent changes), 429, 401/403, 5xx, no answer | tried again |
//!
//! 401 and 403 are tried again because a key the operator fixes makes them
//! pass; the shop's refusal of a cancelled order is the usual `Refused`.

use std::time::Duration;

use parallax_core::Tenant;
use parallax_runtime::RetryPolicy;
use reqwest::StatusCode;
use uuid::Uuid;

use crate::shipment::ShopOutcome;

/// The code of the shop's refusal that says the order was shipped before
/// (its `detail` is for humans, and may be reworded).
const ALREADY_SHIPPED: &str = "order-already-shipped";

/// The members of the shop's problem document that are read here.
#[derive(Debug, Default, serde::Deserialize)]
struct Problem {
    detail: Option<String>,
    code: Option<String>,
}

/// The shop's final answer to a ship call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopAnswer {
    /// What it means for the shipment.
    pub outcome: ShopOutcome,
    /// The problem's `detail`, for a refusal.
    pub detail: Option<String>,
}

/// A client of the shop's command API.
#[derive(Debug, Clone)]
pub struct ShopApi {
    base: String,
    http: reqwest::Client,
    retry: RetryPolicy,
}

impl ShopApi {
    /// The shop at `base` (`http://127.0.0.1:8080`), each call given
    /// `timeout` to answer and carrying `api_key`, if any, as its bearer
    /// token.
    pub fn new(base: &str, timeout: Duration, api_key: Option<&str>) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = api_key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| anyhow::anyhow!("shop_api_key holds characters a header cannot carry"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder().timeout(timeout).default_headers(headers).build()?;
        let retry = RetryPolicy {
            max_attempts: u32::MAX,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        };
        Ok(Self { base: base.trim_end_matches('/').to_owned(), http, retry })
    }

    /// The idempotency key of a shipment's ship call.
    pub fn idempotency_key(order_id: Uuid) -> String {
        format!("fulfilment:ship:{order_id}")
    }

    /// Tells the shop that `order_id` left the warehouse; returns once it
    /// answered for good (retrying until then).
    pub async fn ship(&self, order_id: Uuid, tenant: &Tenant) -> ShopAnswer {
        let mut attempt = 0u32;
        loop {
            match self.try_ship(order_id, tenant).await {
                Ok(answer) => return answer,
                Err(reason) => {
                    attempt = attempt.saturating_add(1);
                    let delay = self.retry.delay(attempt);
                    tracing::warn!(%order_id, attempt, ?delay, %reason, "the shop did not take the shipment; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One call: the final answer, or why to try again.
    async fn try_ship(&self, order_id: Uuid, tenant: &Tenant) -> Result<ShopAnswer, String> {
        let mut request = self
            .http
            .post(format!("{}/api/orders/{order_id}/ship", self.base))
            .header("Idempotency-Key", Self::idempotency_key(order_id));
        if let Some(name) = tenant.name() {
            // The order's tenant's; the key must be an operator key (no tenant of its own).
            request = request.header("Parallax-Tenant", name);
        }
        let response = request.send().await.map_err(|e| parallax_runtime::error_chain(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(ShopAnswer { outcome: ShopOutcome::Shipped, detail: None });
        }
        let body = response.text().await.unwrap_or_default();
        let problem = serde_json::from_str::<Problem>(&body).unwrap_or_default();
        let detail = problem.detail.unwrap_or(body);
        match status {
            StatusCode::UNPROCESSABLE_ENTITY if problem.code.as_deref() == Some(ALREADY_SHIPPED) => {
                Ok(ShopAnswer { outcome: ShopOutcome::AlreadyShipped, detail: Some(detail) })
            }
            StatusCode::BAD_REQUEST
            | StatusCode::NOT_FOUND
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNPROCESSABLE_ENTITY => {
                Ok(ShopAnswer { outcome: ShopOutcome::Refused, detail: Some(detail) })
            }
            _ => Err(format!("{status}: {detail}")),
        }
    }
}
