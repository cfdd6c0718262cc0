//! Errors as the wire sees them: `{"error": {"code", "message"}}`.
//!
//! A client's mistake is always a 4xx with a stable `code` (see
//! `docs/errors.md`); only a fault of the service itself is a 500. Azure's
//! SDKs retry 5xx ten times, so misclassifying a bad request as 5xx would
//! stall their callers for minutes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (503 answers).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header to the answer.
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 with the given code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 InvalidParameter: a request field is missing or malformed.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::bad_request("InvalidParameter", message)
    }

    /// 500: the service failed; logged with its cause, which is not sent.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("{context}; see the service log"),
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = crate::openapi::CloudError {
            error: crate::openapi::CloudErrorBody {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let body = serde_json::to_string(&body).unwrap_or_else(|_| {
            // Two strings cannot fail to serialize; keep a valid body anyway.
            r#"{"error":{"code":"InternalError","message":"encoding the error failed"}}"#.into()
        });
        let mut response = (
            self.status,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )],
            body,
        )
            .into_response();
        if let Ok(value) = axum::http::HeaderValue::from_str(self.code) {
            response.headers_mut().insert("x-ms-error-code", value);
        }
        response
            .extensions_mut()
            .insert(crate::observe::ErrorCode(self.code));
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<aver_attestation::AttestError> for ApiError {
    /// The core's errors: the client's fault is a 400 with the code; the
    /// service's own is a 500, logged with its cause.
    fn from(e: aver_attestation::AttestError) -> Self {
        if e.is_internal() {
            ApiError::internal("attestation failed inside the service", e.message)
        } else {
            ApiError::bad_request(e.code, e.message)
        }
    }
}
