//! The HTTP layer: routes, shared middleware and the state handlers see.
//!
//! Handlers are thin: they parse the request, call the domain layer and shape the answer.
//! Everything common to all routes (CORS, pre-flight, the 404/405 bodies, body limits,
//! timeouts, request ids, panic safety) is set up here once.

pub mod extract;
pub mod layers;
pub mod v2;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Level;

use crate::config::Config;
use crate::error::ApiError;
use crate::store::Store;

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The repository.
    pub store: Store,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the router with every route and the shared middleware.
pub fn router(state: AppState) -> Router {
    let config = Arc::clone(&state.config);
    let body_limit = usize::try_from(config.request_body_limit).unwrap_or(usize::MAX);

    let api = Router::new()
        .route("/_matrix/identity/versions", get(v2::status::versions))
        .route("/_matrix/identity/v2", get(v2::status::status))
        // A known path with a method it does not serve: a CORS pre-flight (OPTIONS) or a 405.
        .method_not_allowed_fallback(layers::preflight_or_method_not_allowed)
        .fallback(|| async { ApiError::unknown_endpoint().into_response() })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);

    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<_>| {
            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            // The path only: query strings may carry access tokens.
            tracing::info_span!("request", id, method = %request.method(), path = request.uri().path())
        })
        .on_request(())
        .on_response(tower_http::trace::DefaultOnResponse::new().level(Level::INFO))
        .on_failure(());

    api.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, layers::RandomRequestId))
            .layer(trace)
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(from_fn(layers::cors_headers))
            .layer(CatchPanicLayer::custom(layers::panic_response))
            .layer(from_fn_with_state(Duration::from_secs(config.request_timeout), layers::timeout)),
    )
}
