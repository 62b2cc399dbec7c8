//! How a call to a homeserver fails, shared by the connection layer and the calls above it.

/// Largest response body read from a homeserver.
pub const RESPONSE_LIMIT: usize = 64 * 1024;

/// Why a call to a homeserver failed. Each maps to its own Matrix error (see `error.rs`).
///
/// What a homeserver answered, and transport details, are for the log only: the messages shown
/// to clients never repeat them (an internal host must not be probed through error texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HomeserverError {
    /// The name is not a Matrix server name.
    #[error("`{0}` is not a valid Matrix server name")]
    InvalidServerName(String),
    /// The name is not in the configured allowlist of homeservers.
    #[error("the homeserver `{0}` is not allowed to use this identity server")]
    NameNotAllowed(String),
    /// The name resolves only to addresses the SSRF guard refuses.
    #[error("the homeserver `{0}` resolves to an address that is not allowed")]
    AddressForbidden(String),
    /// No connection, TLS failure or timeout.
    #[error("the homeserver is unreachable")]
    Unreachable {
        /// What failed, for the log.
        detail: String,
    },
    /// The homeserver answered, but not as the spec says.
    #[error("the homeserver gave an invalid answer")]
    InvalidResponse {
        /// What was wrong, for the log.
        detail: String,
    },
    /// The homeserver did not accept the OpenID token.
    #[error("the homeserver rejected the OpenID token")]
    TokenRejected,
    /// The homeserver vouched for a user of another server.
    #[error("the homeserver `{server}` answered for a user of another server")]
    ForeignUser {
        /// The server that was asked.
        server: String,
        /// The user it named.
        user: String,
    },
}

impl HomeserverError {
    /// A transport failure.
    pub(crate) fn unreachable(detail: impl Into<String>) -> Self {
        Self::Unreachable { detail: detail.into() }
    }

    /// An answer that is not what the spec says.
    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        Self::InvalidResponse { detail: detail.into() }
    }

    /// The details kept for the log (never sent to clients).
    #[must_use]
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Unreachable { detail } | Self::InvalidResponse { detail } => Some(detail),
            Self::ForeignUser { user, .. } => Some(user),
            _ => None,
        }
    }
}
