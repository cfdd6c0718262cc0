//! Which provider a request is for: `/providers/{name}/...` by path, a
//! provider's configured host name by `Host`, or the default provider at
//! the root (so an SDK client works with a plain base URL).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use crate::load::DEFAULT_PROVIDER;
use crate::state::{AppState, Provider};

/// The provider a request was routed to (set by [`route_provider`]).
#[derive(Debug, Clone)]
pub struct ProviderName(pub String);

/// Middleware: strips `/providers/{name}` from the path (or matches the
/// Host header) and records the provider name for the handlers.
pub async fn route_provider(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let mut name = None;
    if let Some(rest) = path.strip_prefix("/providers/") {
        let (provider, tail) = rest.split_once('/').unwrap_or((rest, ""));
        name = Some(provider.to_string());
        let mut new_path = format!("/{tail}");
        if let Some(query) = request.uri().query() {
            new_path.push('?');
            new_path.push_str(query);
        }
        if let Ok(uri) = new_path.parse() {
            *request.uri_mut() = uri;
        }
    } else if let Some(host) = request_host(&request)
        && let Ok(providers) = state.providers.read()
        && let Some(p) = providers.by_host(&host)
    {
        name = Some(p.name.clone());
    }
    request.extensions_mut().insert(ProviderName(
        name.unwrap_or_else(|| DEFAULT_PROVIDER.to_string()),
    ));
    next.run(request).await
}

/// The host a request is addressed to, normalised for matching: the URI's
/// authority (HTTP/2 `:authority`, or an HTTP/1.1 absolute-form target),
/// else the `Host` header; without the port, without a trailing dot (the
/// fully qualified `name.` is the same host), in lower case.
pub fn request_host(request: &Request) -> Option<String> {
    let raw = match request.uri().authority() {
        Some(authority) => authority.as_str().to_string(),
        None => request
            .headers()
            .get(axum::http::header::HOST)?
            .to_str()
            .ok()?
            .to_string(),
    };
    Some(host_part(&raw))
}

/// `host[:port]` or `[v6]:port` → the host, normalised (see [`request_host`]).
pub fn host_part(authority: &str) -> String {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Extractor: the provider the request is for.
pub struct Prov(pub Arc<Provider>);

impl FromRequestParts<AppState> for Prov {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let name = parts
            .extensions
            .get::<ProviderName>()
            .map(|n| n.0.clone())
            .unwrap_or_else(|| DEFAULT_PROVIDER.to_string());
        state.provider(&name).map(Prov)
    }
}

#[cfg(test)]
mod tests {
    use super::host_part;

    #[test]
    fn hosts_normalise() {
        assert_eq!(host_part("a.example"), "a.example");
        assert_eq!(host_part("A.Example.:8443"), "a.example");
        assert_eq!(host_part("a.example."), "a.example");
        assert_eq!(host_part("[::1]:8443"), "::1");
        assert_eq!(host_part("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(host_part("user@a.example:1"), "a.example");
    }
}
