//! Decoding requests the way Azure Attestation's clients send them.

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::{Map, Value};

use aver_attestation::TypedData;

use crate::error::ApiError;

/// The request field names the decoders look up (ignoring ASCII case), in
/// one place for the decoders and the OpenAPI document.
pub mod fields {
    pub const RUNTIME_DATA: &str = "runtimeData";
    pub const INIT_TIME_DATA: &str = "initTimeData";
    pub const NONCE: &str = "nonce";
    pub const DRAFT_POLICY: &str = "draftPolicyForAttestation";
    /// Aver's extension on TdxVm: the TD's CCEL event-log area.
    pub const CCEL_EVENT_LOG: &str = "ccelEventLog";
    /// The TPM protocol's message field.
    pub const TPM_DATA: &str = "data";
}

/// api-versions accepted on the paths that take one.
/// `2025-06-01` is what third-party SevSnpVm and TdxVm clients send.
pub const API_VERSIONS: &[&str] = &[
    "2020-10-01",
    "2022-08-01",
    "2022-09-01-preview",
    "2025-06-01",
];

/// Checks the `api-version` query parameter.
pub fn check_api_version(query: Option<&str>) -> Result<&'static str, ApiError> {
    let version = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        .map(|(_, v)| v);
    match version {
        None => Err(ApiError::bad_request(
            "MissingApiVersion",
            format!(
                "the api-version query parameter is required; supported: {}",
                API_VERSIONS.join(", ")
            ),
        )),
        Some(v) => API_VERSIONS
            .iter()
            .copied()
            .find(|s| *s == v)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "UnsupportedApiVersion",
                    format!(
                        "api-version {v:?} is not supported; supported: {}",
                        API_VERSIONS.join(", ")
                    ),
                )
            }),
    }
}

/// Reads the whole body within `timeout`, refusing more than `limit` bytes.
///
/// * Over the limit: `413 PayloadTooLarge`. A body that is at most twice
///   the limit is read to its end first (and discarded), so a client still
///   writing it receives the 413 instead of a connection reset; a larger
///   one (or a larger declared `Content-Length`) is refused at once.
/// * Not arrived whole within `timeout`: `408 RequestTimeout` (a client
///   trickling its body cannot hold a connection and its buffer forever).
/// * Malformed framing (a bad chunk size, a truncated body):
///   `400 MalformedRequest`.
pub async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<axum::body::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let drain_cap = limit.saturating_mul(2);
    let declared = http_body::Body::size_hint(&body).exact();
    if declared.is_some_and(|n| n > drain_cap as u64) {
        return Err(too_large());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut body = body;
    let mut buf = Vec::with_capacity(
        declared
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
            .min(limit),
    );
    let mut total = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "RequestTimeout",
                    format!(
                        "the request body did not arrive within {} seconds",
                        timeout.as_secs()
                    ),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad_request(
                    "MalformedRequest",
                    format!("the request body could not be read: {e}"),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > limit {
            if total > drain_cap {
                return Err(too_large());
            }
            continue; // keep draining, discard
        }
        buf.extend_from_slice(&data);
    }
    if total > limit {
        return Err(too_large());
    }
    Ok(axum::body::Bytes::from(buf))
}

/// Middleware: reads what a handler left unread of a request body before
/// the answer goes out.
///
/// Many refusals come before the body is read (no `api-version`, no admin
/// credential, no such path, a wrong method). Left unread, the body makes
/// the connection unusable: it is closed under a keep-alive client that
/// will send its next request on it, and a client still writing the body
/// (Python's `http.client` writes it whole before reading) can get a reset
/// instead of the answer. So the rest is read and discarded, on the same
/// terms as [`read_body`]: at most twice the body limit (a larger declared
/// `Content-Length` is not waited for: that connection is closed, as for a
/// 413) and within the body time-out.
pub async fn drain_unread_body(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use http_body::Body as _;
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    }
    let (back, mut left) = tokio::sync::oneshot::channel();
    let tracked = Body::new(Tracked {
        inner: Some(body),
        finished: false,
        back: Some(back),
    });
    let response = next
        .run(axum::extract::Request::from_parts(parts, tracked))
        .await;
    // The handler has returned and its future is dropped, body included:
    // unread, the body came back through the channel (never waited for).
    if let Ok(rest) = left.try_recv() {
        drain(
            rest,
            state.max_body_bytes.saturating_mul(2),
            state.body_read_timeout,
        )
        .await;
    }
    response
}

/// Reads and discards `body`, up to `cap` bytes and within `timeout`.
async fn drain(body: Body, cap: usize, timeout: std::time::Duration) {
    use http_body_util::BodyExt;
    if http_body::Body::size_hint(&body)
        .exact()
        .is_some_and(|n| n > cap as u64)
    {
        return;
    }
    let mut body = body;
    let mut total = 0usize;
    let deadline = tokio::time::Instant::now() + timeout;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total > cap {
                return;
            }
        }
    }
}

/// A request body that, dropped before its end, hands itself back to
/// [`drain_unread_body`].
struct Tracked {
    inner: Option<Body>,
    finished: bool,
    back: Option<tokio::sync::oneshot::Sender<Body>>,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let polled = std::pin::Pin::new(inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(None) | std::task::Poll::Ready(Some(Err(_))) => {
                // At its end, or broken (nothing more to read either way).
                self.finished = true;
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| http_body::SizeHint::with_exact(0))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take())
            && !http_body::Body::is_end_stream(&inner)
        {
            let _ = back.send(inner);
        }
    }
}

/// Parses a JSON object body. Duplicate keys are refused, including keys
/// that differ only in ASCII case at the top level (see [`crate::json`]).
pub fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match crate::json::parse(bytes) {
        Ok(Value::Object(map)) => {
            if let Some((a, b)) = crate::json::case_insensitive_duplicate(&map) {
                return Err(ApiError::invalid_parameter(format!(
                    "the request body has both {a:?} and {b:?}; fields are matched ignoring case, so only one may be given"
                )));
            }
            Ok(map)
        }
        Ok(_) => Err(ApiError::invalid_parameter(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::invalid_parameter(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// Looks a field up by name, ignoring ASCII case (older clients send
/// `Quote`, the C++ SDK `inittimeData`).
pub fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name)
        .or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

/// A base64 (url or standard, padded or not) string field, decoded.
pub fn base64_field(obj: &Map<String, Value>, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => aver_token::b64::decode_lenient(s)
            .map(Some)
            .ok_or_else(|| ApiError::invalid_parameter(format!("{name} is not valid base64url"))),
        Some(_) => Err(ApiError::invalid_parameter(format!(
            "{name} must be a base64url string"
        ))),
    }
}

/// Decodes a typed-data field. A field without `data` counts as absent:
/// the Python SDK sends `{"dataType": "JSON"}` alone for `inittime_json=`.
pub fn typed_data(obj: &Map<String, Value>, name: &str) -> Result<Option<TypedData>, ApiError> {
    let Some(value) = field(obj, name) else {
        return Ok(None);
    };
    let Value::Object(inner) = value else {
        return Err(ApiError::invalid_parameter(format!(
            "{name} must be an object with data and dataType"
        )));
    };
    if let Some((a, b)) = crate::json::case_insensitive_duplicate(inner) {
        return Err(ApiError::invalid_parameter(format!(
            "{name} has both {a:?} and {b:?}; only one may be given"
        )));
    }
    let Some(bytes) = base64_field(inner, "data")? else {
        return Ok(None);
    };
    let data_type = match field(inner, "dataType") {
        None => "Binary".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ApiError::invalid_parameter(format!(
                "{name}.dataType must be a string"
            )));
        }
    };
    let json = if data_type.eq_ignore_ascii_case("json") {
        let parsed: Value = crate::json::parse(&bytes).map_err(|e| {
            ApiError::invalid_parameter(format!(
                "{name} has dataType JSON but its data is not JSON: {e}"
            ))
        })?;
        Some(parsed)
    } else if data_type.eq_ignore_ascii_case("binary") {
        None
    } else {
        return Err(ApiError::invalid_parameter(format!(
            "{name}.dataType must be Binary or JSON, not {data_type:?}"
        )));
    };
    Ok(Some(TypedData { bytes, json }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        assert!(check_api_version(Some("api-version=2020-10-01")).is_ok());
        assert!(check_api_version(Some("x=1&api-version=2022-08-01")).is_ok());
        assert_eq!(
            check_api_version(None).unwrap_err().code,
            "MissingApiVersion"
        );
        assert_eq!(
            check_api_version(Some("api-version=2019-01-01"))
                .unwrap_err()
                .code,
            "UnsupportedApiVersion"
        );
    }

    #[test]
    fn fields_match_case_insensitively() {
        let obj = json_object(br#"{"Quote":"AAEC","inittimeData":{"dataType":"JSON"}}"#).unwrap();
        assert_eq!(base64_field(&obj, "quote").unwrap(), Some(vec![0, 1, 2]));
        assert_eq!(
            typed_data(&obj, "initTimeData").unwrap(),
            None,
            "no data = absent"
        );
        let bad = json_object(br#"{"runtimeData":{"data":"e30","dataType":"XML"}}"#).unwrap();
        assert_eq!(
            typed_data(&bad, "runtimeData").unwrap_err().code,
            "InvalidParameter"
        );
        let json =
            json_object(br#"{"runtimeData":{"data":"eyJhIjoxfQ","dataType":"JSON"}}"#).unwrap();
        assert_eq!(
            typed_data(&json, "runtimeData").unwrap().unwrap().json,
            Some(serde_json::json!({"a": 1}))
        );
    }
}
