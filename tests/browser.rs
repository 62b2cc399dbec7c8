//! A real browser opens the validation link of a captured e-mail and sees the success page.
//!
//! Needs Chromium (`chromium` on the PATH, or `FIS_TEST_CHROMIUM`); `scripts/test.sh` installs
//! it. Without it the test fails: it is never skipped.

mod common;

use std::process::Command;

use common::TestServer;
use common::messages::SmtpCapture;
use reqwest::Method;
use serde_json::json;

fn chromium() -> String {
    if let Ok(path) = std::env::var("FIS_TEST_CHROMIUM") {
        return path;
    }
    for candidate in ["chromium", "chromium-browser", "/usr/bin/chromium"] {
        if Command::new(candidate).arg("--version").output().is_ok_and(|output| output.status.success()) {
            return candidate.to_owned();
        }
    }
    panic!("Chromium is not installed: run scripts/test.sh (it installs it) or set FIS_TEST_CHROMIUM");
}

#[tokio::test]
async fn a_browser_opens_the_mailed_link_and_sees_the_success_page() {
    let browser = chromium();
    let smtp = SmtpCapture::start();
    let port = smtp.port;
    let server = TestServer::start_with(move |config| {
        config.smtp_server = "127.0.0.1".into();
        config.smtp_port = port;
    })
    .await;
    let alice = server.token_for("@alice:example.org").await;
    let body =
        json!({ "client_secret": "browser_secret", "email": "alice@example.org", "send_attempt": 1 }).to_string();
    let sid = server
        .call_as(Some(&alice), Method::POST, "/_matrix/identity/v2/validate/email/requestToken", Some(&body))
        .await
        .body["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = smtp.wait_for(1).await.pop().unwrap().link();
    // The mail points at the public base URL; the browser reaches this test server instead.
    let url = server.url(&link[link.find("/_matrix").unwrap()..]);

    let profile = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(url)
            .output()
            .expect("run Chromium")
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("Your address is validated"),
        "the page Chromium saw:\n{dom}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let validated = server
        .call_as(
            Some(&alice),
            Method::GET,
            &format!("/_matrix/identity/v2/3pid/getValidated3pid?sid={sid}&client_secret=browser_secret"),
            None,
        )
        .await;
    assert_eq!(validated.status, 200, "{:?}", validated.body);
    server.stop().await;
}
