//! Messages to users: e-mail (SMTP), SMS (HTTP gateway), the templates they are made from,
//! and the pages `GET submitToken` shows.

pub mod mail;
pub mod sms;
pub mod templates;

use std::sync::Arc;

use mail::Mailer;
use sms::{HttpSmsGateway, SmsSender};
use templates::Template;

use crate::config::Config;
use crate::secret::random_secret;

/// Renders templates and delivers them.
#[derive(Debug, Clone)]
pub struct Notifier {
    mailer: Mailer,
    sms: Option<Arc<dyn SmsSender>>,
    template_dir: String,
    public_base: String,
    server_name: String,
}

impl Notifier {
    /// The notifier of the configuration (nothing is contacted yet).
    pub fn new(config: &Config) -> Result<Self, String> {
        let sms = HttpSmsGateway::new(&config.sms_api_url, &config.sms_api_login, &config.sms_api_key)?
            .map(|gateway| Arc::new(gateway) as Arc<dyn SmsSender>);
        let public_base = if config.base_url.is_empty() {
            format!("https://{}", config.server_name)
        } else {
            config.base_url.trim_end_matches('/').to_owned()
        };
        Ok(Self {
            mailer: Mailer::new(config)?,
            sms,
            template_dir: config.template_dir.clone(),
            public_base,
            server_name: config.server_name.clone(),
        })
    }

    /// The public URL of `path` on this service (`base_url`, else `https://<server_name>`).
    #[must_use]
    pub fn public_url(&self, path: &str) -> String {
        format!("{}{path}", self.public_base)
    }

    /// Whether SMS can be sent.
    #[must_use]
    pub fn has_sms(&self) -> bool {
        self.sms.is_some()
    }

    /// Renders `template` for `to` and sends it. Besides `values`, the placeholders `__from__`,
    /// `__to__`, `__date__`, `__messageid__` and `__multipart_boundary__` are filled.
    pub async fn send_mail(&self, template: &Template, to: &str, values: &[(&str, &str)]) -> Result<(), String> {
        let text = template.load(&self.template_dir).map_err(|error| format!("template {}: {error}", template.name))?;
        let message = templates::crlf(&self.render_mail(&text, to, values));
        let sent = self.mailer.send(to, &message).await;
        crate::metrics::message("mail", sent.is_ok());
        sent
    }

    /// The message `send_mail` would send (for tests and previews).
    #[must_use]
    pub fn render_mail(&self, text: &str, to: &str, values: &[(&str, &str)]) -> String {
        let date = chrono::Utc::now().to_rfc2822();
        let message_id = format!("<{}@{}>", random_secret(18), self.server_name);
        let boundary = random_secret(24);
        let mut all: Vec<(&str, &str)> = values.to_vec();
        all.extend([
            ("from", self.mailer.from()),
            ("to", to),
            ("date", date.as_str()),
            ("messageid", message_id.as_str()),
            ("multipart_boundary", boundary.as_str()),
        ]);
        templates::render_message(text, &all)
    }

    /// Renders `template` and sends it by SMS to `digits` (E.164 without `+`).
    pub async fn send_sms(&self, template: &Template, digits: &str, values: &[(&str, &str)]) -> Result<(), String> {
        let sms = self.sms.as_ref().ok_or("SMS is not configured (sms_api_url)")?;
        let text = template.load(&self.template_dir).map_err(|error| format!("template {}: {error}", template.name))?;
        let rendered = templates::render(&text, values);
        let sent = sms.send(&format!("+{digits}"), rendered.trim()).await;
        crate::metrics::message("sms", sent.is_ok());
        sent
    }

    /// An HTML page from a template (`__message__` and the like filled, HTML-escaped).
    #[must_use]
    pub fn page(&self, template: &Template, values: &[(&str, &str)]) -> String {
        let text = template.load(&self.template_dir).unwrap_or_default();
        let escaped: Vec<(&str, String)> =
            values.iter().map(|(key, value)| (*key, templates::html_escape(value))).collect();
        let borrowed: Vec<(&str, &str)> = escaped.iter().map(|(key, value)| (*key, value.as_str())).collect();
        templates::render(&text, &borrowed)
    }
}
