//! The client of MSC4004 pushes to other identity services.

use std::time::Duration;

use super::client::HomeserverSettings;

/// Time allowed for one request of a push (a push of a million hashes is a few dozen MB).
const PUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// The client MSC4004 pushes go through: the TLS trust of homeserver calls (system roots plus
/// `homeserver_ca_file`, or none with `homeserver_verify_tls` off). Unlike homeserver calls it
/// has no address guard: its only targets are the `federated_identity_services` the operator
/// named, often on the organisation's own network, never a name taken from a request.
pub fn push_client(settings: &HomeserverSettings) -> Result<reqwest::Client, String> {
    let extra_roots = match &settings.extra_ca_pem {
        Some(pem) => super::connect::parse_pem_certificates(pem)?,
        None => Vec::new(),
    };
    let tls = super::connect::tls_client_config(settings.verify_tls, extra_roots, &[b"http/1.1"])?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .http1_only()
        .timeout(PUSH_TIMEOUT)
        .build()
        .map_err(|error| format!("cannot build the push client: {error}"))
}
