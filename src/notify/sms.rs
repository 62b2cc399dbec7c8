//! Sending SMS through an HTTP gateway, with the request shape of the Node service
//! (`sms_api_url`, `sms_api_login`, `sms_api_key`; an Octopush-style API):
//! `POST <sms_api_url>/sms-campaign/send` with `api-login` and `api-key` headers and
//! `{"sender", "recipients": [{"phone_number"}], "text", "type"}`.

use std::fmt;
use std::time::Duration;

use serde_json::json;

use crate::matrix::dns::BoxFuture;

/// Something that delivers a text message to a phone number (E.164 with `+`).
pub trait SmsSender: Send + Sync + fmt::Debug {
    /// Sends `text` to `phone_number`.
    fn send<'a>(&'a self, phone_number: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// The HTTP gateway of the configuration.
#[derive(Debug, Clone)]
pub struct HttpSmsGateway {
    client: reqwest::Client,
    url: String,
    login: String,
    key: String,
}

impl HttpSmsGateway {
    /// A gateway client, or `None` when `sms_api_url` is empty.
    pub fn new(url: &str, login: &str, key: &str) -> Result<Option<Self>, String> {
        if url.is_empty() {
            return Ok(None);
        }
        let base = if url.contains("://") { url.to_owned() } else { format!("https://{url}") };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|error| format!("SMS client: {error}"))?;
        Ok(Some(Self {
            client,
            url: format!("{}/sms-campaign/send", base.trim_end_matches('/')),
            login: login.to_owned(),
            key: key.to_owned(),
        }))
    }
}

impl SmsSender for HttpSmsGateway {
    fn send<'a>(&'a self, phone_number: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let body = json!({
                "sender": "Twake",
                "recipients": [{ "phone_number": phone_number }],
                "text": text,
                "type": "sms_low_cost",
            });
            let response = self
                .client
                .post(&self.url)
                .header("api-login", &self.login)
                .header("api-key", &self.key)
                .json(&body)
                .send()
                .await
                .map_err(|error| format!("SMS gateway unreachable: {error}"))?;
            match response.status().as_u16() {
                200 | 201 => Ok(()),
                status => Err(format!("SMS gateway answered HTTP {status}")),
            }
        })
    }
}
