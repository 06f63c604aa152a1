//! Errors as RFC 9457 problem details (`application/problem+json`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shop_domain::Refusal;

use super::openapi::Problem;
use crate::commands::ShopCommandError;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    /// An aggregate's refusal code, for programs.
    code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self { status, kind, title, detail: detail.into(), code: None }
    }

    /// With an aggregate's refusal code.
    fn with_code(self, code: &'static str) -> Self {
        Self { code: Some(code), ..self }
    }

    /// 400: malformed JSON, a missing or invalid field or parameter.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-request", "The request is invalid", detail)
    }

    /// 401: no API key, or an unknown one.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "An API key is needed", detail)
    }

    /// 403: the API key lacks the scope the route needs.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "The API key does not allow this", detail)
    }

    /// 404: no such thing.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 413: the body is over the limit.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "The request body is too large", detail)
    }

    /// 429: the caller holds as many live event streams as it may, or the
    /// server does.
    pub fn too_many_streams(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-streams",
            "Too many live event streams are open",
            detail,
        )
    }

    /// 503: the request took longer than the request timeout.
    pub fn timed_out(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "request-timeout", "The request took too long", detail)
    }

    /// 503: the view has not absorbed the consistency token in time.
    pub fn not_caught_up(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "view-not-caught-up",
            "The view has not caught up with the consistency token yet",
            detail,
        )
    }

    /// 503: this process does not run the role the route needs.
    pub fn role_not_served(role: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "role-not-served",
            "This process does not serve that role",
            format!("this process runs without the {role} role"),
        )
    }

    /// 500: details go to the log, not to the client.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %parallax_runtime::error_chain(error), "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server failed; the error is logged",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<ShopCommandError> for ApiError {
    fn from(error: ShopCommandError) -> Self {
        match error {
            ShopCommandError::Refused { kind, code, message } => match kind {
                Refusal::Invalid => Self::bad_request(message),
                Refusal::NotFound => Self::not_found(message),
                Refusal::AlreadyExists => {
                    Self::new(StatusCode::CONFLICT, "already-exists", "It exists already", message)
                }
                Refusal::RuleViolated => Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "rule-violated",
                    "The command breaks a business rule",
                    message,
                ),
            }
            .with_code(code),
            ShopCommandError::Conflict(message) => Self::new(
                StatusCode::CONFLICT,
                "concurrent-change",
                "Concurrent changes kept conflicting; retry",
                message,
            ),
            ShopCommandError::IdempotencyMismatch(message) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "The idempotency key was used for a different request",
                message,
            ),
            ShopCommandError::Internal(source) => Self::internal(source.as_ref()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The document the OpenAPI schema describes, so the two cannot drift apart.
        let body = Problem {
            kind: format!("https://parallax.dev/problems/{}", self.kind),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.map(str::to_owned),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if matches!(self.status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// How much of a refused body is still read (and thrown away) before the
/// 413 is answered, and for how long at most: a client that is still
/// sending when the server answers and closes gets a broken pipe instead of
/// the answer (what nginx's lingering close avoids). A body declared larger
/// is not read at all.
const DRAIN_BYTES: u64 = 16 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Refuses a request whose body is over [`super::MAX_BODY_BYTES`] with a 413
/// problem, whatever the route: also one that reads no body (a `GET`, a
/// probe), whose handler would otherwise answer without looking. A declared
/// `Content-Length` over the limit is refused without being kept; a body of
/// unknown length (chunked) is read up to the limit and handed on whole.
/// Before answering, the rest of a refused body is drained (bounded by
/// `DRAIN_BYTES` and `DRAIN_TIME`) so the client gets to read the answer.
pub async fn refuse_large_bodies(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::body::{Body, HttpBody as _};
    use futures::StreamExt as _;

    let limit = super::MAX_BODY_BYTES;
    let too_large = || ApiError::too_large(format!("the body must be at most {limit} bytes")).into_response();
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let (parts, body) = request.into_parts();
    if let Some(declared) = declared.filter(|&length| length > limit as u64) {
        if declared <= DRAIN_BYTES {
            drain(body.into_data_stream()).await;
        }
        return too_large();
    }
    if body.size_hint().upper().is_some_and(|upper| upper <= limit as u64) {
        return next.run(axum::extract::Request::from_parts(parts, body)).await;
    }
    let mut read = Vec::new();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                return ApiError::bad_request(format!("the body could not be read: {error}")).into_response()
            }
        };
        if read.len() + chunk.len() > limit {
            drain(chunks).await;
            return too_large();
        }
        read.extend_from_slice(&chunk);
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(read))).await
}

/// Reads and throws away what is left of a refused body, up to
/// `DRAIN_BYTES` and for at most `DRAIN_TIME`.
async fn drain(mut chunks: axum::body::BodyDataStream) {
    use futures::StreamExt as _;

    let draining = async {
        let mut drained = 0u64;
        while let Some(Ok(chunk)) = chunks.next().await {
            drained += chunk.len() as u64;
            if drained > DRAIN_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, draining).await;
}

/// 404 for routes that do not exist.
pub async fn not_found_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

/// Turns the framework's own refusals (a path segment that is not UTF-8,
/// 405 for a method a route lacks, ...), which come as plain text or empty,
/// into problem details like every other error. Responses that are problems
/// already, or not errors, pass unchanged.
pub async fn plain_errors_as_problems(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    // The shop's own answers are JSON (problems, and `/ready`'s 503 with its
    // reasons per role): only the framework's plain-text ones are rewritten.
    let is_json = response.headers().get(header::CONTENT_TYPE).is_some_and(|value| {
        let value = value.as_bytes();
        value.starts_with(b"application/problem+json") || value.starts_with(b"application/json")
    });
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    // These bodies are the framework's short messages: a few KiB at most.
    let text = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
    let detail = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("refused").to_owned(),
        text => text.to_owned(),
    };
    let mut problem = match status {
        StatusCode::BAD_REQUEST => ApiError::bad_request(detail),
        StatusCode::NOT_FOUND => ApiError::not_found(detail),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(detail),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::new(status, "method-not-allowed", "The route does not accept this method", detail)
        }
        _ if status.is_client_error() => ApiError::new(
            status,
            "refused",
            status.canonical_reason().unwrap_or("The request is refused"),
            detail,
        ),
        _ => {
            tracing::error!(%status, detail, "request failed");
            ApiError::new(status, "internal", "Internal error", "the server failed; the error is logged")
        }
    }
    .into_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    problem
}
