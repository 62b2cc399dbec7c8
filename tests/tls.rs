//! The HTTPS listener: serving with a certificate, reloading it on file change and on SIGHUP,
//! and the healthcheck against it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use common::homeserver::Pki;

fn write_pki(dir: &Path, pki: &Pki) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

fn client_trusting(pki: &Pki) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

async fn served_with(client: &reqwest::Client, url: &str) -> bool {
    client.get(url).send().await.is_ok_and(|response| response.status() == 200)
}

#[tokio::test]
async fn https_is_served_and_the_certificate_reloads_when_its_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let first = Pki::new(&["127.0.0.1"]);
    let (cert, key) = write_pki(dir.path(), &first);
    let server = TestServer::start_with(|config| {
        config.tls_certificate = cert;
        config.tls_private_key = key;
        config.tls_reload_interval = 1;
    })
    .await;
    let url = format!("https://{}/_matrix/identity/versions", server.address);
    assert!(served_with(&client_trusting(&first), &url).await, "HTTPS with the configured certificate");
    assert!(
        reqwest::get(format!("http://{}/_matrix/identity/versions", server.address)).await.is_err(),
        "no plain HTTP"
    );

    let second = Pki::new(&["127.0.0.1"]);
    write_pki(dir.path(), &second);
    let started = Instant::now();
    while !served_with(&client_trusting(&second), &url).await {
        assert!(started.elapsed() < Duration::from_secs(10), "the new certificate is not served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!served_with(&client_trusting(&first), &url).await, "the old certificate is gone");
    server.stop().await;
}

#[test]
fn sighup_reloads_the_certificate_and_healthcheck_speaks_https() {
    let dir = tempfile::tempdir().unwrap();
    let first = Pki::new(&["127.0.0.1"]);
    let (cert, key) = write_pki(dir.path(), &first);
    let binary = env!("CARGO_BIN_EXE_federated-identity-service");
    let mut child = Command::new(binary)
        .env_clear()
        .current_dir(dir.path())
        .env("LISTEN_PORT", "0")
        .env("TLS_CERTIFICATE", &cert)
        .env("TLS_PRIVATE_KEY", &key)
        .env("TLS_RELOAD_INTERVAL", "3600")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (base, _log) = common::process::listening_address(&mut child);
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = format!("{base}/_matrix/identity/versions");
    assert!(runtime.block_on(served_with(&client_trusting(&first), &url)));

    let port = base.rsplit(':').next().unwrap();
    let health = Command::new(binary)
        .env_clear()
        .current_dir(dir.path())
        .env("LISTEN_PORT", port)
        .env("TLS_CERTIFICATE", &cert)
        .env("TLS_PRIVATE_KEY", &key)
        .arg("healthcheck")
        .status()
        .unwrap();
    assert!(health.success(), "healthcheck over HTTPS");

    let second = Pki::new(&["127.0.0.1"]);
    write_pki(dir.path(), &second);
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    let started = Instant::now();
    while !runtime.block_on(served_with(&client_trusting(&second), &url)) {
        assert!(started.elapsed() < Duration::from_secs(10), "SIGHUP did not reload the certificate");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
}
