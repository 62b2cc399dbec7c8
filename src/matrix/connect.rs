//! The one place where this service opens connections to homeservers.
//!
//! Every outbound homeserver exchange (userinfo, key fetches, `3pid/onbind`, well-known
//! delegation and its redirects) ends here with a host name for TLS and a list of socket
//! addresses. Each address passes the SSRF guard immediately before the socket connects, so no
//! URL spelling (`0x7f000001`, `127.1`, a redirect, an IPv4-mapped IPv6 address), DNS answer or
//! delegation can reach an address the guard refuses. Requests are HTTP/1.1, one connection
//! each: homeserver calls are rare, and a pool would keep connections whose address was
//! checked for another request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName as TlsName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::error::{HomeserverError, RESPONSE_LIMIT};
use super::guard::AddressGuard;

/// Where one exchange goes: the name TLS verifies (and sends as SNI), the `Host` header and the
/// candidate addresses, tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A DNS name or an IP address (without brackets): what the certificate must cover.
    pub tls_name: String,
    /// The `Host` header.
    pub host_header: String,
    /// Addresses to try, ports included.
    pub addresses: Vec<SocketAddr>,
}

/// A homeserver's answer, its body capped at [`RESPONSE_LIMIT`].
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The `Location` header, for redirects.
    pub location: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// Opens guarded TLS connections and runs one HTTP/1.1 exchange on each.
#[derive(Clone)]
pub struct Connector {
    guard: AddressGuard,
    tls: TlsConnector,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("guard", &self.guard).field("timeout", &self.timeout).finish()
    }
}

impl Connector {
    /// A connector admitting what `guard` admits, trusting the platform's roots plus
    /// `extra_roots` (or nothing at all when `verify_tls` is off). `timeout` bounds a whole
    /// exchange: connection, TLS, request and body.
    pub fn new(
        guard: AddressGuard,
        verify_tls: bool,
        extra_roots: Vec<CertificateDer<'static>>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let config = tls_client_config(verify_tls, extra_roots, &[b"http/1.1"])?;
        Ok(Self { guard, tls: TlsConnector::from(Arc::new(config)), timeout })
    }

    /// The guard this connector applies.
    #[must_use]
    pub fn guard(&self) -> &AddressGuard {
        &self.guard
    }

    /// Sends one request to `target` and reads the answer, within the timeout.
    pub async fn exchange(
        &self,
        target: &Target,
        method: hyper::Method,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<Answer, HomeserverError> {
        tokio::time::timeout(self.timeout, self.exchange_unbounded(target, method, path_and_query, json_body))
            .await
            .unwrap_or_else(|_| Err(HomeserverError::unreachable("timed out")))
    }

    async fn exchange_unbounded(
        &self,
        target: &Target,
        method: hyper::Method,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<Answer, HomeserverError> {
        let stream = self.connect(target).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| HomeserverError::unreachable(format!("HTTP handshake: {error}")))?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "homeserver connection closed");
            }
        });
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, &target.host_header)
            .header(hyper::header::USER_AGENT, concat!("federated-identity-service/", env!("CARGO_PKG_VERSION")));
        if json_body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(json_body.unwrap_or_default())))
            .map_err(|error| HomeserverError::unreachable(format!("cannot build the request: {error}")))?;
        let outcome = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|error| HomeserverError::unreachable(format!("request: {error}")))?;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let body = Limited::new(response.into_body(), RESPONSE_LIMIT).collect().await.map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    HomeserverError::invalid(format!("answer larger than {RESPONSE_LIMIT} bytes"))
                } else {
                    HomeserverError::unreachable(format!("reading the answer: {error}"))
                }
            })?;
            Ok(Answer { status, location, body: body.to_bytes().to_vec() })
        }
        .await;
        driver.abort();
        outcome
    }

    /// Connects to the first address of `target` that the guard permits and that answers, then
    /// does the TLS handshake for `target.tls_name`.
    async fn connect(&self, target: &Target) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HomeserverError> {
        let tls_name = TlsName::try_from(target.tls_name.clone())
            .map_err(|_| HomeserverError::InvalidServerName(target.tls_name.clone()))?;
        let mut last_error = None;
        for address in &target.addresses {
            // The guard, where the socket connects: whatever led to this address.
            if !self.guard.permits(address.ip()) {
                tracing::debug!(%address, "outbound connection refused by the address guard");
                continue;
            }
            let tcp = match TcpStream::connect(address).await {
                Ok(tcp) => tcp,
                Err(error) => {
                    last_error = Some(format!("connect to {address}: {error}"));
                    continue;
                }
            };
            // The connected peer, in case the address was rewritten on the way (belt and braces).
            match tcp.peer_addr() {
                Ok(peer) if self.guard.permits(peer.ip()) => {}
                _ => continue,
            }
            let _ = tcp.set_nodelay(true);
            match self.tls.connect(tls_name.clone(), tcp).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last_error = Some(format!("TLS with {address}: {error}")),
            }
        }
        Err(match last_error {
            Some(error) => HomeserverError::unreachable(error),
            // Every address was refused (or there was none).
            None => HomeserverError::AddressForbidden(target.tls_name.clone()),
        })
    }
}

/// A rustls client configuration: the platform's roots plus `extra_roots`, or no verification
/// at all when `verify_tls` is off (test deployments only; the service warns at startup).
pub fn tls_client_config(
    verify_tls: bool,
    extra_roots: Vec<CertificateDer<'static>>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .dangerous();
    let mut config = if verify_tls {
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider)
            .map_err(|error| format!("cannot load the trusted certificates: {error}"))?;
        builder.with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
    } else {
        builder.with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider))).with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

/// Reads PEM certificates (a CA bundle).
pub fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let certificates = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    if certificates.is_empty() {
        return Err("no certificate in the file".to_owned());
    }
    Ok(certificates)
}

/// The verifier of `homeserver_verify_tls = false`: any certificate for any name. Signatures
/// are still checked, so the handshake itself stays sound.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &TlsName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
