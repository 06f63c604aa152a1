//! The request timeout: a request not answered within `http.request_timeout`
//! of its head is answered 503 (the work in progress is dropped). The time
//! counts the body's reading, which the key check precedes. A query (`GET`)
//! gets the longest `wait_ms` (10 s) on top, since waiting for its token is
//! bounded by that already. The live event stream's answer is its head: the
//! events that follow are not timed (the stream caps bound them).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::ApiError;
use super::query_api::MAX_WAIT;

/// The middleware, with the configured request timeout as its state.
pub async fn deadline(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let budget = match *request.method() {
        Method::GET | Method::HEAD => timeout + MAX_WAIT,
        _ => timeout,
    };
    match tokio::time::timeout(budget, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timed_out(format!("no answer within {} s", budget.as_secs())).into_response(),
    }
}
