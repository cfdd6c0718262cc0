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
    } else if let Some(host) = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if let Ok(providers) = state.providers.read()
            && let Some(p) = providers.by_host(host)
        {
            name = Some(p.name.clone());
        }
    }
    request.extensions_mut().insert(ProviderName(
        name.unwrap_or_else(|| DEFAULT_PROVIDER.to_string()),
    ));
    next.run(request).await
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
