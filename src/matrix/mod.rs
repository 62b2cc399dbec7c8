//! Talking to Matrix homeservers: server-name resolution as the server-server spec says, an
//! SSRF guard on every outbound connection, and the calls an identity server makes
//! (OpenID userinfo); and the client of pushes to other identity services.

pub mod client;
pub mod connect;
pub mod dns;
pub mod error;
pub mod guard;
pub mod push_client;
pub mod resolve;
pub mod server_name;

pub use client::{HomeserverClient, HomeserverError};
pub use dns::{Dns, SystemDns};
pub use guard::AddressGuard;
pub use server_name::ServerName;
