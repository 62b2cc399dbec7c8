//! The HTTP layer: routes, shared middleware and the state handlers see.
//!
//! Handlers are thin: they parse the request, call the domain layer and shape the answer.
//! Everything common to all routes (CORS, pre-flight, the 404/405 bodies, body limits,
//! timeouts, request ids, panic safety) is set up here once.

pub mod auth;
pub mod client_ip;
pub mod error_response;
pub mod extract;
pub mod health;
pub mod layers;
pub mod metrics;
pub mod openapi;
pub mod v1;
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
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route of the API, each registered from its description (`#[utoipa::path]`); the
/// MSC4004 push route goes through `push_layers` (its gate, decompression and body limit).
fn described_routes(
    enable_v1_api: bool,
    push_layers: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::with_openapi(openapi::ApiDescription::openapi())
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(v2::status::versions))
        .routes(routes!(v2::status::status))
        .routes(routes!(v2::account::register))
        .routes(routes!(v2::account::account))
        .routes(routes!(v2::account::logout))
        .routes(routes!(v2::terms::get_terms, v2::terms::accept_terms))
        .routes(routes!(v2::lookup::hash_details))
        .routes(routes!(v2::lookup::lookup))
        .merge(push_layers(OpenApiRouter::new().routes(routes!(v2::msc4004::push))))
        .routes(routes!(v2::validate::email_request_token))
        .routes(routes!(v2::validate::email_submit_token_get, v2::validate::email_submit_token_post))
        .routes(routes!(v2::validate::msisdn_request_token))
        .routes(routes!(v2::validate::msisdn_submit_token_get, v2::validate::msisdn_submit_token_post))
        .routes(routes!(v2::threepid::get_validated))
        .routes(routes!(v2::threepid::bind))
        .routes(routes!(v2::threepid::unbind))
        .routes(routes!(v2::invite::store_invite))
        .routes(routes!(v2::invite::sign_ed25519))
        .routes(routes!(v2::pubkey::is_valid))
        .routes(routes!(v2::pubkey::ephemeral_is_valid))
        .routes(routes!(v2::pubkey::public_key));
    if enable_v1_api { api.merge(v1::routes()) } else { api }
}

/// The API description of every route, the v1 ones included (what `docs/openapi.json` holds
/// and the `openapi` command prints).
#[must_use]
pub fn api_description() -> utoipa::openapi::OpenApi {
    described_routes(true, |push| push).into_openapi()
}

/// Builds the router with every route and the shared middleware.
pub fn router(state: AppState) -> Router {
    let config = Arc::clone(&state.config);
    let body_limit = usize::try_from(config.request_body_limit).unwrap_or(usize::MAX);

    let push_limit = usize::try_from(config.lookups_body_limit).unwrap_or(usize::MAX);
    let push_state = state.clone();
    let api = described_routes(config.enable_v1_api, move |push| {
        push.layer(
            ServiceBuilder::new()
                .layer(from_fn_with_state(push_state, layers::push_gate))
                // Pushes may come gzip-compressed; the limit applies to the decompressed body.
                .layer(tower_http::decompression::RequestDecompressionLayer::new())
                .map_request(|request: Request<_>| request.map(axum::body::Body::new))
                .layer(DefaultBodyLimit::max(push_limit)),
        )
    });
    let (api, description) = api.split_for_parts();
    let description = Arc::new(openapi::to_json(&description));
    let api = api.route(openapi::PATH, get(move || openapi::serve(Arc::clone(&description))));
    let api = api
        // A known path with a method it does not serve: a CORS pre-flight (OPTIONS) or a 405.
        .method_not_allowed_fallback(layers::preflight_or_method_not_allowed)
        .fallback(|| async { ApiError::unknown_endpoint().into_response() })
        .layer(from_fn(metrics::count_requests))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);

    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<_>| {
            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            // The path only: query strings may carry access tokens.
            tracing::info_span!("request", id, method = %request.method(), path = request.uri().path())
        })
        .on_request(())
        // Status and latency as numbers (the default writes the latency as text, "0 ms").
        .on_response(|response: &axum::response::Response, latency: Duration, _: &tracing::Span| {
            let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
            let status = response.status().as_u16();
            if response.extensions().get::<health::QuietLog>().is_some() {
                tracing::debug!(status, latency_ms, "answered");
            } else {
                tracing::info!(status, latency_ms, "answered");
            }
        })
        .on_failure(());

    api.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, layers::RandomRequestId))
            .layer(trace)
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(from_fn(layers::cors_headers))
            .layer(from_fn(layers::matrix_error_bodies))
            .layer(CatchPanicLayer::custom(layers::panic_response))
            .layer(from_fn_with_state(Duration::from_secs(config.request_timeout), layers::timeout)),
    )
}
