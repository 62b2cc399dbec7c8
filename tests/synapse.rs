//! End to end with a real Synapse (from PyPI, on SQLite): registration through OpenID, terms,
//! invitations by e-mail through our `store-invite`, delivery with `3pid/onbind`, plain
//! invitations after a lookup, and an X-Matrix-signed unbind.
//!
//! `FIS_TEST_SYNAPSE_PYTHON` names the Python of a virtualenv with `matrix-synapse` installed
//! (`scripts/test.sh` makes it). Without it the test fails: it is never skipped.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::homeserver::Pki;
use common::messages::SmtpCapture;
use common::{Backend, test_config};
use federated_identity_service::vocabulary::hash_3pid;
use serde_json::{Value, json};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn synapse_config(dir: &Path, client_port: u16, federation_port: u16) -> String {
    let path = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"server_name: "127.0.0.1:{federation_port}"
public_baseurl: "http://127.0.0.1:{client_port}/"
pid_file: "{pid}"
listeners:
  - port: {client_port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
  - port: {federation_port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: true
    resources:
      - names: [federation]
        compress: false
tls_certificate_path: "{cert}"
tls_private_key_path: "{key}"
database:
  name: sqlite3
  args:
    database: "{db}"
log_config: "{log_config}"
media_store_path: "{media}"
signing_key_path: "{signing_key}"
report_stats: false
enable_registration: true
enable_registration_without_verification: true
registration_shared_secret: "test-registration-secret-0123456789"
macaroon_secret_key: "test-macaroon-secret-0123456789"
form_secret: "test-form-secret-0123456789"
trusted_key_servers: []
suppress_key_server_warning: true
ip_range_whitelist: ["127.0.0.0/8"]
federation_ip_range_blacklist: []
rc_message: {{per_second: 1000, burst_count: 1000}}
rc_registration: {{per_second: 1000, burst_count: 1000}}
rc_login:
  address: {{per_second: 1000, burst_count: 1000}}
  account: {{per_second: 1000, burst_count: 1000}}
  failed_attempts: {{per_second: 1000, burst_count: 1000}}
rc_invites:
  per_room: {{per_second: 1000, burst_count: 1000}}
  per_user: {{per_second: 1000, burst_count: 1000}}
  per_issuer: {{per_second: 1000, burst_count: 1000}}
rc_third_party_invite: {{per_second: 1000, burst_count: 1000}}
"#,
        pid = path("homeserver.pid"),
        cert = path("cert.pem"),
        key = path("key.pem"),
        db = path("homeserver.db"),
        log_config = path("log.yaml"),
        media = path("media"),
        signing_key = path("signing.key"),
    )
}

const SYNAPSE_LOG: &str = "version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: LOGFILE
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
";

/// A user of the Synapse client API.
struct User {
    id: String,
    token: String,
}

struct World {
    http: reqwest::Client,
    synapse: String,
    identity: String,
    id_server: String,
    smtp: SmtpCapture,
}

impl World {
    async fn post(&self, url: String, token: &str, body: Value) -> (u16, Value) {
        let response = self.http.post(url).bearer_auth(token).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, url: String, token: &str) -> (u16, Value) {
        let response = self.http.get(url).bearer_auth(token).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn register_on_synapse(&self, name: &str) -> User {
        let body = json!({ "username": name, "password": "correct horse battery staple", "auth": { "type": "m.login.dummy" } });
        let response =
            self.http.post(format!("{}/_matrix/client/v3/register", self.synapse)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200, "register {name}");
        let body: Value = response.json().await.unwrap();
        User {
            id: body["user_id"].as_str().unwrap().to_owned(),
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// OpenID token from Synapse, exchanged for a token of ours; terms accepted.
    async fn identity_token(&self, user: &User) -> String {
        let url = format!("{}/_matrix/client/v3/user/{}/openid/request_token", self.synapse, user.id);
        let (status, openid) = self.post(url, &user.token, json!({})).await;
        assert_eq!(status, 200, "{openid}");
        let response = self
            .http
            .post(format!("{}/_matrix/identity/v2/account/register", self.identity))
            .json(&openid)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let token = response.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
        let terms: Value = self
            .http
            .get(format!("{}/_matrix/identity/v2/terms", self.identity))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = terms["policies"]["privacy_policy"]["en"]["url"].as_str().unwrap().to_owned();
        let (status, _) = self
            .post(format!("{}/_matrix/identity/v2/terms", self.identity), &token, json!({ "user_accepts": [url] }))
            .await;
        assert_eq!(status, 200);
        let (status, account) = self.get(format!("{}/_matrix/identity/v2/account", self.identity), &token).await;
        assert_eq!((status, account["user_id"].as_str()), (200, Some(user.id.as_str())));
        token
    }

    /// Validates `email` with our service (token from the captured mail) and binds it through
    /// Synapse's `/account/3pid/bind`.
    async fn validate_and_bind(&self, user: &User, identity_token: &str, email: &str) {
        let before = self.smtp.mails().len();
        let secret = format!("secret_{}", user.id.len());
        let (status, started) = self
            .post(
                format!("{}/_matrix/identity/v2/validate/email/requestToken", self.identity),
                identity_token,
                json!({ "client_secret": secret, "email": email, "send_attempt": 1 }),
            )
            .await;
        assert_eq!(status, 200, "{started}");
        let sid = started["sid"].as_str().unwrap().to_owned();
        let mail = self.smtp.wait_for(before + 1).await.pop().expect("validation mail");
        let submit = json!({ "sid": sid, "client_secret": secret, "token": mail.link_param("token") });
        let response = self
            .http
            .post(format!("{}/_matrix/identity/v2/validate/email/submitToken", self.identity))
            .json(&submit)
            .send()
            .await
            .unwrap();
        assert_eq!(response.json::<Value>().await.unwrap(), json!({ "success": true }));
        let bind = json!({ "client_secret": secret, "sid": sid, "id_server": self.id_server, "id_access_token": identity_token });
        let (status, answer) =
            self.post(format!("{}/_matrix/client/v3/account/3pid/bind", self.synapse), &user.token, bind).await;
        assert_eq!(status, 200, "Synapse bind: {answer}");
    }

    /// What our lookup says of `email` now.
    async fn lookup(&self, identity_token: &str, email: &str) -> Option<String> {
        let (_, details) =
            self.get(format!("{}/_matrix/identity/v2/hash_details", self.identity), identity_token).await;
        let pepper = details["lookup_pepper"].as_str().unwrap();
        let hash = hash_3pid(email, "email", pepper);
        let (status, answer) = self
            .post(
                format!("{}/_matrix/identity/v2/lookup", self.identity),
                identity_token,
                json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hash] }),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["mappings"][&hash].as_str().map(str::to_owned)
    }

    async fn membership(&self, viewer: &User, room: &str, user: &str) -> Option<String> {
        let url = format!("{}/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}", self.synapse);
        let (status, state) = self.get(url, &viewer.token).await;
        (status == 200).then(|| state["membership"].as_str().unwrap_or_default().to_owned())
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for `needle` in a log file and returns the word after it.
async fn wait_for_line(log: &Path, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split(needle).nth(1) {
            return rest.chars().take_while(|c| !c.is_whitespace()).collect();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no `{needle}` in {}: {text}", log.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn synapse_invites_binds_delivers_and_unbinds_through_our_service() {
    let python = std::env::var("FIS_TEST_SYNAPSE_PYTHON")
        .unwrap_or_else(|_| panic!("FIS_TEST_SYNAPSE_PYTHON is not set: run scripts/test.sh, which installs Synapse"));
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&["127.0.0.1", "localhost"]);
    for (name, text) in [("cert.pem", &pki.cert_pem), ("key.pem", &pki.key_pem), ("ca.pem", &pki.ca_pem)] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let (client_port, federation_port, identity_port) = (free_port(), free_port(), free_port());

    // Synapse, trusting the test CA for its calls to us.
    std::fs::create_dir_all(dir.path().join("media")).unwrap();
    std::fs::write(
        dir.path().join("log.yaml"),
        SYNAPSE_LOG.replace("LOGFILE", &dir.path().join("synapse.log").display().to_string()),
    )
    .unwrap();
    let config = dir.path().join("homeserver.yaml");
    std::fs::write(&config, synapse_config(dir.path(), client_port, federation_port)).unwrap();
    let generated = Command::new(&python)
        .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let _synapse = Process(
        Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(&config)
            .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Our service over HTTPS, trusting the same CA for its calls to Synapse.
    let smtp = SmtpCapture::start();
    let data = tempfile::tempdir().unwrap();
    let mut ours = test_config(&data, Backend::from_env()).await;
    ours.listen_port = identity_port;
    ours.base_url = format!("https://127.0.0.1:{identity_port}");
    ours.server_name = format!("127.0.0.1:{identity_port}");
    ours.tls_certificate = dir.path().join("cert.pem").display().to_string();
    ours.tls_private_key = dir.path().join("key.pem").display().to_string();
    ours.homeserver_ca_file = dir.path().join("ca.pem").display().to_string();
    ours.homeserver_allowed_networks = vec!["127.0.0.0/8".into()];
    ours.smtp_server = "127.0.0.1".into();
    ours.smtp_port = smtp.port;
    ours.smtp_sender = "Identity <identity@example.org>".into();
    ours.policies = json!({ "privacy_policy": { "version": "1.0",
        "en": { "name": "Privacy", "url": "https://127.0.0.1/privacy-1.0.html" } } });
    let ours_path = dir.path().join("identity.json");
    std::fs::write(&ours_path, serde_json::to_vec(&ours).unwrap()).unwrap();
    let ours_log = dir.path().join("identity.log");
    let child = Command::new(env!("CARGO_BIN_EXE_federated-identity-service"))
        .env_clear()
        .env("LOG_LEVEL", "debug")
        .arg("--config")
        .arg(&ours_path)
        .stderr(std::fs::File::create(&ours_log).unwrap())
        .spawn()
        .unwrap();
    let _ours = Process(child);
    let identity = wait_for_line(&ours_log, "listening on ").await;

    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let synapse = format!("http://127.0.0.1:{client_port}");
    eventually("Synapse to start", async || {
        http.get(format!("{synapse}/_matrix/client/versions")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let world = World { http, synapse, identity, id_server: format!("127.0.0.1:{identity_port}"), smtp };

    // Alice registers with Synapse and, through OpenID, with us; accepts the terms.
    let alice = world.register_on_synapse("alice").await;
    let bob = world.register_on_synapse("bob").await;
    let carol = world.register_on_synapse("carol").await;
    let alice_is = world.identity_token(&alice).await;
    let bob_is = world.identity_token(&bob).await;
    let carol_is = world.identity_token(&carol).await;

    // Bob binds his address; Synapse's lookup finds him and Bob gets a plain invite.
    world.validate_and_bind(&bob, &bob_is, "bob@example.org").await;
    assert_eq!(world.lookup(&alice_is, "bob@example.org").await.as_deref(), Some(bob.id.as_str()));
    let (status, room) = world
        .post(format!("{}/_matrix/client/v3/createRoom", world.synapse), &alice.token, json!({ "name": "Project" }))
        .await;
    assert_eq!(status, 200, "{room}");
    let room = room["room_id"].as_str().unwrap().to_owned();
    let invite = |address: &str| json!({ "id_server": world.id_server, "id_access_token": alice_is, "medium": "email", "address": address });
    let (status, answer) = world
        .post(
            format!("{}/_matrix/client/v3/rooms/{room}/invite", world.synapse),
            &alice.token,
            invite("bob@example.org"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(world.membership(&alice, &room, &bob.id).await.as_deref(), Some("invite"));

    // Carol's address is not bound: Synapse stores the invitation with us, the mail goes out.
    let mails_before = world.smtp.mails().len();
    let (status, answer) = world
        .post(
            format!("{}/_matrix/client/v3/rooms/{room}/invite", world.synapse),
            &alice.token,
            invite("carol@example.org"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let mail = world.smtp.wait_for(mails_before + 1).await.pop().unwrap();
    assert_eq!(mail.to, vec!["carol@example.org"]);
    assert!(mail.data.contains("Project"), "the invitation names the room");

    // Carol validates and binds through Synapse; we deliver the invitation with 3pid/onbind.
    world.validate_and_bind(&carol, &carol_is, "carol@example.org").await;
    eventually("Carol's invitation", async || {
        world.membership(&alice, &room, &carol.id).await.as_deref() == Some("invite")
    })
    .await;
    let (status, joined) =
        world.post(format!("{}/_matrix/client/v3/rooms/{room}/join", world.synapse), &carol.token, json!({})).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(world.membership(&alice, &room, &carol.id).await.as_deref(), Some("join"));

    // Carol removes the address through Synapse: its X-Matrix-signed unbind succeeds.
    assert_eq!(world.lookup(&alice_is, "carol@example.org").await.as_deref(), Some(carol.id.as_str()));
    let delete = json!({ "medium": "email", "address": "carol@example.org", "id_server": world.id_server });
    let (status, answer) =
        world.post(format!("{}/_matrix/client/v3/account/3pid/delete", world.synapse), &carol.token, delete).await;
    let log = || std::fs::read_to_string(dir.path().join("synapse.log")).unwrap_or_default();
    let tail =
        |log: String| log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    let ours = || std::fs::read_to_string(&ours_log).unwrap_or_default();
    assert_eq!(status, 200, "{answer}\n{}\n--- ours:\n{}", tail(log()), tail(ours()));
    assert_eq!(answer["id_server_unbind_result"], "success", "{answer}");
    assert_eq!(world.lookup(&alice_is, "carol@example.org").await, None);
}
