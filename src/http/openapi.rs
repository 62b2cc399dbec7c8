//! The API description (OpenAPI 3.1), served at `GET /_matrix/identity/openapi.json` and
//! shipped as `docs/openapi.json`.
//!
//! It is derived from the code: each handler carries its method, path, parameters and answers
//! (`#[utoipa::path]`), the request and answer types carry their schemas (`ToSchema`), and the
//! router registers every route from that same attribute (`utoipa_axum::routes!`), so a route
//! cannot exist without its description, nor a description without its route. The error
//! answers a handler can give are named once per kind below and listed on each handler.

use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

/// The path the description is served at: under `/_matrix/identity`, so that a reverse proxy
/// forwarding the identity API forwards it too.
pub const PATH: &str = "/_matrix/identity/openapi.json";

/// The parts of the description that no handler carries: title, tags, security schemes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Federated identity service",
        description = "Matrix Identity Service API v2 with MSC4004 (the unified view of identity services). \
            Error answers carry the Matrix error body (`errcode`, `error`).",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later"),
    ),
    components(schemas(MatrixError)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "status", description = "Discovery and health"),
        (name = "authentication", description = "Access tokens (`v2_auth.yaml`)"),
        (name = "terms", description = "Terms of service (`v2_terms.yaml`)"),
        (name = "lookup", description = "Hashed lookups with MSC4004's third-party mappings (`v2_lookup.yaml`)"),
        (name = "msc4004", description = "Pushes of trusted servers' hashes (MSC4004)"),
        (name = "validation", description = "3PID validation sessions (`v2_email_associations.yaml`, `v2_phone_associations.yaml`)"),
        (name = "associations", description = "Bindings of 3PIDs to Matrix IDs (`v2_associations.yaml`)"),
        (name = "invitations", description = "Invitations to rooms by 3PID (`v2_store_invite.yaml`, `v2_invitation_signing.yaml`)"),
        (name = "keys", description = "Public keys (`v2_pubkey.yaml`)"),
        (name = "v1", description = "The deprecated v1 API, served only with `enable_v1_api`"),
    )
)]
pub struct ApiDescription;

/// The name of the security scheme of users' access tokens.
pub const ACCESS_TOKEN: &str = "access_token";
/// The name of the security scheme of trusted servers that authenticate by shared secret.
pub const TRUSTED_SERVER: &str = "trusted_server";

/// The name of the security scheme of homeservers that sign their requests (`3pid/unbind`).
pub const X_MATRIX: &str = "x_matrix";

/// What the attributes cannot say: the security schemes.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ACCESS_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token from `POST /_matrix/identity/v2/account/register` \
                         (also accepted as the `access_token` query parameter)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            TRUSTED_SERVER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The secret of a server in `trusted_servers`; servers trusted by address \
                         send nothing",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            X_MATRIX,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "A homeserver's request signature: `X-Matrix origin=...,key=...,sig=...`",
            ))),
        );
    }
}

/// The Matrix error body every error answer carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatrixError {
    /// The Matrix error code, e.g. `M_INVALID_PARAM`.
    pub errcode: String,
    /// A human-readable explanation.
    pub error: String,
}

/// Declares each error answer a handler may list in its `responses(...)`: a type per
/// status, carrying the Matrix error body, documented by its doc comment.
macro_rules! error_answers {
    ($($(#[doc = $doc:literal])+ $name:ident = $status:literal;)+) => {
        $(
            $(#[doc = $doc])+
            #[derive(IntoResponses)]
            #[response(status = $status)]
            pub struct $name(pub MatrixError);
        )+
    };
}

error_answers! {
    /// The body is not JSON, not an object, lacks a field or has an invalid value (`M_NOT_JSON`,
    /// `M_BAD_JSON`, `M_MISSING_PARAMS`, `M_INVALID_PARAM`, and the codes of the operation).
    BadRequest = 400;
    /// Missing, unknown or expired access token (`M_UNAUTHORIZED`).
    Unauthorized = 401;
    /// The terms of service are not accepted (`M_TERMS_NOT_SIGNED`), or the caller may not do this.
    Forbidden = 403;
    /// The user has not accepted the current terms of service (`M_TERMS_NOT_SIGNED`).
    TermsNotSigned = 403;
    /// Not found (`M_NOT_FOUND`, `M_NO_VALID_SESSION`, `M_UNRECOGNIZED`).
    NotFound = 404;
    /// The body is larger than the configured limit (`M_TOO_LARGE`).
    TooLarge = 413;
    /// Too many requests (`M_LIMIT_EXCEEDED`, with `retry_after_ms` and a `Retry-After` header).
    RateLimited = 429;
    /// The homeserver could not be reached or answered nonsense (`M_UNKNOWN`).
    BadGateway = 502;
    /// The database is unreachable or the request took longer than `request_timeout` (`M_UNKNOWN`).
    Unavailable = 503;
}

/// The schema of `send_attempt`: an integer, or a string holding one (matrix-js-sdk sends a
/// string). The string pattern admits everything the parser takes (`trim`, then an `i64`).
#[must_use]
pub fn send_attempt() -> Schema {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^\s*[+-]?[0-9]+\s*$")))
        .into()
}

/// The description as JSON, without the summaries taken from the handlers' doc comments
/// (their first line only repeats the method and path).
#[must_use]
pub fn to_json(description: &utoipa::openapi::OpenApi) -> String {
    let mut description = description.clone();
    for item in description.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            if operation.summary.as_deref().is_some_and(|summary| summary.starts_with("# ")) {
                operation.summary = None;
            }
        }
    }
    description.to_pretty_json().unwrap_or_else(|error| {
        tracing::error!(%error, "the API description cannot be written as JSON");
        String::from("{}")
    })
}

/// # `GET /_matrix/identity/openapi.json`
///
/// This description, as JSON. No authentication.
pub async fn serve(description: std::sync::Arc<String>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], description.as_str().to_owned())
}
