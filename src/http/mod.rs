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
pub mod v1;
pub mod v2;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the router with every route and the shared middleware.
pub fn router(state: AppState) -> Router {
    let config = Arc::clone(&state.config);
    let body_limit = usize::try_from(config.request_body_limit).unwrap_or(usize::MAX);

    let mut api = Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/_matrix/identity/versions", get(v2::status::versions))
        .route("/_matrix/identity/v2", get(v2::status::status))
        .route("/_matrix/identity/v2/account/register", post(v2::account::register))
        .route("/_matrix/identity/v2/account", get(v2::account::account))
        .route("/_matrix/identity/v2/account/logout", post(v2::account::logout))
        .route("/_matrix/identity/v2/terms", get(v2::terms::get_terms).post(v2::terms::accept_terms))
        .route("/_matrix/identity/v2/hash_details", get(v2::lookup::hash_details))
        .route("/_matrix/identity/v2/lookup", post(v2::lookup::lookup))
        .route(
            "/_matrix/identity/v2/lookups",
            post(v2::msc4004::push).layer(
                ServiceBuilder::new()
                    .layer(from_fn_with_state(state.clone(), layers::push_gate))
                    // Pushes may come gzip-compressed; the limit applies to the decompressed body.
                    .layer(tower_http::decompression::RequestDecompressionLayer::new())
                    .map_request(|request: Request<_>| request.map(axum::body::Body::new))
                    .layer(DefaultBodyLimit::max(usize::try_from(config.lookups_body_limit).unwrap_or(usize::MAX))),
            ),
        )
        .route("/_matrix/identity/v2/validate/email/requestToken", post(v2::validate::email_request_token))
        .route(
            "/_matrix/identity/v2/validate/email/submitToken",
            get(v2::validate::submit_token_get).post(v2::validate::submit_token_post),
        )
        .route("/_matrix/identity/v2/validate/msisdn/requestToken", post(v2::validate::msisdn_request_token))
        .route(
            "/_matrix/identity/v2/validate/msisdn/submitToken",
            get(v2::validate::submit_token_get).post(v2::validate::submit_token_post),
        )
        .route("/_matrix/identity/v2/3pid/getValidated3pid", get(v2::threepid::get_validated))
        .route("/_matrix/identity/v2/3pid/bind", post(v2::threepid::bind))
        .route("/_matrix/identity/v2/3pid/unbind", post(v2::threepid::unbind))
        .route("/_matrix/identity/v2/store-invite", post(v2::invite::store_invite))
        .route("/_matrix/identity/v2/sign-ed25519", post(v2::invite::sign_ed25519))
        .route("/_matrix/identity/v2/pubkey/isvalid", get(v2::pubkey::is_valid))
        .route("/_matrix/identity/v2/pubkey/ephemeral/isvalid", get(v2::pubkey::ephemeral_is_valid))
        .route("/_matrix/identity/v2/pubkey/{key_id}", get(v2::pubkey::public_key));
    if config.enable_v1_api {
        api = api.merge(v1::routes());
    }
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
