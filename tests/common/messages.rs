//! A real SMTP server on loopback that keeps every message, and an SMS gateway stand-in.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use mailin_embedded::response::OK;
use mailin_embedded::{Handler, Response, Server};
use serde_json::Value;

/// A message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    /// The submitToken link of a validation mail, and its query parameters.
    pub fn link(&self) -> String {
        let start = self.data.find("http").expect("a link in the mail");
        self.data[start..].split_whitespace().next().unwrap().trim_end_matches(['"', '>']).to_owned()
    }

    /// A query parameter of the link.
    pub fn link_param(&self, name: &str) -> String {
        let link = self.link();
        let url = reqwest::Url::parse(&link).unwrap();
        url.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned()).expect(name)
    }

    /// Placeholders left in the message: `__name__` words (random tokens may hold `__`, but
    /// not between two lowercase words like this).
    pub fn placeholders(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut rest = self.data.as_str();
        while let Some(start) = rest.find("__") {
            let after = &rest[start + 2..];
            let name: String = after.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if let Some(end) = name
                .find("__")
                .filter(|end| *end > 0 && name[..*end].chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            {
                let word = &name[..end];
                if !word.starts_with('_') && !word.ends_with('_') {
                    found.push(format!("__{word}__"));
                }
            }
            rest = after;
        }
        found
    }

    /// The value of a header of the message.
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.data
            .split("\r\n")
            .take_while(|line| !line.is_empty())
            .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
            .map(|line| line[prefix.len()..].trim().to_owned())
    }
}

#[derive(Clone, Default)]
struct Capture {
    to: Vec<String>,
    data: Vec<u8>,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl Handler for Capture {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.data.clear();
        OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mail = Mail { to: self.to.clone(), data: String::from_utf8_lossy(&self.data).into_owned() };
        self.mails.lock().unwrap().push(mail);
        OK
    }
}

/// An SMTP server on 127.0.0.1 that keeps what it receives.
pub struct SmtpCapture {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpCapture {
    /// Starts the server in a thread of its own.
    pub fn start() -> Self {
        Self::start_with_tls(None)
    }

    /// Starts a server that offers STARTTLS with this PEM certificate and key.
    pub fn start_with_starttls(cert_pem: &str, key_pem: &str) -> Self {
        Self::start_with_tls(Some((cert_pem, key_pem)))
    }

    fn start_with_tls(tls: Option<(&str, &str)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handler = Capture::default();
        let mails = Arc::clone(&handler.mails);
        let mut server = Server::new(handler);
        server.with_name("smtp.test").with_tcp_listener(listener);
        if let Some((cert, key)) = tls {
            let dir = tempfile::tempdir().unwrap().keep();
            let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
            std::fs::write(&cert_path, cert).unwrap();
            std::fs::write(&key_path, key).unwrap();
            server
                .with_ssl(mailin_embedded::SslConfig::SelfSigned {
                    cert_path: cert_path.display().to_string(),
                    key_path: key_path.display().to_string(),
                })
                .unwrap();
        }
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Self { port, mails }
    }

    /// Messages received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until `count` messages arrived (they are sent before the HTTP answer, so this is
    /// immediate unless something is wrong).
    pub async fn wait_for(&self, count: usize) -> Vec<Mail> {
        let started = Instant::now();
        loop {
            let mails = self.mails();
            if mails.len() >= count || started.elapsed() > Duration::from_secs(10) {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One request the SMS gateway received.
#[derive(Debug, Clone)]
pub struct Sms {
    pub login: String,
    pub key: String,
    pub body: Value,
}

impl Sms {
    /// The recipient's number.
    pub fn to(&self) -> String {
        self.body["recipients"][0]["phone_number"].as_str().unwrap_or_default().to_owned()
    }

    /// The text.
    pub fn text(&self) -> String {
        self.body["text"].as_str().unwrap_or_default().to_owned()
    }
}

/// An HTTP SMS gateway stand-in with the Node service's request shape.
pub struct SmsGateway {
    pub url: String,
    received: Arc<Mutex<Vec<Sms>>>,
}

impl SmsGateway {
    /// Starts the gateway on loopback.
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let router = axum::Router::new()
            .route(
                "/sms-campaign/send",
                post(|State(received): State<Arc<Mutex<Vec<Sms>>>>, headers: HeaderMap, Json(body): Json<Value>| async move {
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    received.lock().unwrap().push(Sms { login: header("api-login"), key: header("api-key"), body });
                    Json(serde_json::json!({ "ticket": "t" }))
                }),
            )
            .with_state(Arc::clone(&received));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, received }
    }

    /// Messages received so far.
    pub fn received(&self) -> Vec<Sms> {
        self.received.lock().unwrap().clone()
    }
}
