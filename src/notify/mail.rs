//! Sending e-mail through SMTP with the Node service's keys (`smtp_server`, `smtp_port`,
//! `smtp_tls`, `smtp_user`, `smtp_password`, `smtp_sender`, `smtp_verify_certificate`).
//!
//! `smtp_tls` means implicit TLS (SMTPS, usually port 465); otherwise STARTTLS is used as
//! `smtp_starttls` says (`opportunistic` by default). No authentication without `smtp_user`.
//! Messages are sent as the template renders them (raw RFC 5322 text).

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::Config;

/// An SMTP client for the configured relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for the configured relay (no connection is made until the first message).
    pub fn new(config: &Config) -> Result<Self, String> {
        let host = config.smtp_server.clone();
        let tls = || {
            TlsParameters::builder(host.clone())
                .dangerous_accept_invalid_certs(!config.smtp_verify_certificate)
                .build_rustls()
                .map_err(|error| format!("SMTP TLS settings: {error}"))
        };
        let mode = if config.smtp_tls {
            Tls::Wrapper(tls()?)
        } else {
            match config.smtp_starttls.as_str() {
                "required" => Tls::Required(tls()?),
                "never" => Tls::None,
                _ => Tls::Opportunistic(tls()?),
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(config.smtp_port)
            .tls(mode)
            .timeout(Some(Duration::from_secs(15)));
        if !config.smtp_user.is_empty() {
            builder = builder.credentials(Credentials::new(config.smtp_user.clone(), config.smtp_password.clone()));
        }
        Ok(Self { transport: builder.build(), from: sender_address(config) })
    }

    /// The `From` address.
    #[must_use]
    pub fn from(&self) -> &str {
        &self.from
    }

    /// Sends a rendered message to `to`.
    pub async fn send(&self, to: &str, message: &str) -> Result<(), String> {
        let envelope = Envelope::new(
            Some(self.from.parse().map_err(|error| format!("invalid sender `{}`: {error}", self.from))?),
            vec![to.parse().map_err(|error| format!("invalid recipient: {error}"))?],
        )
        .map_err(|error| error.to_string())?;
        self.transport.send_raw(&envelope, message.as_bytes()).await.map(|_| ()).map_err(|error| error.to_string())
    }
}

/// `smtp_sender`, or `no-reply@<host of server_name>`; a `Name <address>` form keeps the
/// address.
fn sender_address(config: &Config) -> String {
    let sender = if config.smtp_sender.is_empty() {
        // The server name may carry a port, which an address cannot.
        let host = crate::matrix::ServerName::parse(&config.server_name)
            .map_or_else(|| config.server_name.clone(), |name| name.host_text());
        format!("no-reply@{host}")
    } else {
        config.smtp_sender.clone()
    };
    match (sender.find('<'), sender.rfind('>')) {
        (Some(start), Some(end)) if start < end => sender[start + 1..end].trim().to_owned(),
        _ => sender.trim().to_owned(),
    }
}
