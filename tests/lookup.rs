//! `hash_details` and `lookup`: spec hashes, peppers, rotation, bad input that never leaks
//! data, trusted servers without tokens, third-party mappings.

mod common;

use base64::Engine as _;
use common::TestServer;
use federated_identity_service::jobs::{self, RunOutcome};
use federated_identity_service::vocabulary::Source;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Digest as _;

/// The spec's hash, written here independently of the service's code.
fn spec_hash(address: &str, medium: &str, pepper: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{address} {medium} {pepper}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

#[test]
fn the_test_hash_matches_the_spec_vectors() {
    assert_eq!(spec_hash("alice@example.com", "email", "matrixrocks"), "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc");
    assert_eq!(spec_hash("bob@example.com", "email", "matrixrocks"), "LJwSazmv46n0hlMlsb_iYxI0_HXEqy_yj6Jm636cdT8");
    assert_eq!(spec_hash("18005552067", "msisdn", "matrixrocks"), "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I");
}

struct Client<'a> {
    server: &'a TestServer,
    token: String,
}

impl<'a> Client<'a> {
    async fn new(server: &'a TestServer) -> Self {
        Self { server, token: server.token_for("@carol:example.org").await }
    }

    async fn details(&self) -> Value {
        let response =
            self.server.call_as(Some(&self.token), Method::GET, "/_matrix/identity/v2/hash_details", None).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        response.body
    }

    async fn lookup(&self, body: Value) -> common::Response {
        self.server
            .call_as(Some(&self.token), Method::POST, "/_matrix/identity/v2/lookup", Some(&body.to_string()))
            .await
    }
}

async fn bind(server: &TestServer, medium: &str, address: &str, mxid: &str) {
    server.state.lookups.add_local_threepid(medium, address, mxid, Source::Binding, true).await.unwrap();
}

#[tokio::test]
async fn own_bindings_are_found_by_their_spec_hash() {
    let server = TestServer::start().await;
    bind(&server, "email", "Alice@Example.com", "@alice:example.org").await;
    bind(&server, "msisdn", "+1 800 555 2067", "@bob:example.org").await;
    let client = Client::new(&server).await;
    let pepper = client.details().await["lookup_pepper"].as_str().unwrap().to_owned();

    let alice = spec_hash("alice@example.com", "email", &pepper);
    let bob = spec_hash("18005552067", "msisdn", &pepper);
    let nobody = spec_hash("nobody@example.com", "email", &pepper);
    let response =
        client.lookup(json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [alice, bob, nobody] })).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(
        response.body,
        json!({
            "mappings": { alice.clone(): "@alice:example.org", bob: "@bob:example.org" },
            "third_party_mappings": {}
        })
    );
    response.assert_cors();
    server.stop().await;
}

#[tokio::test]
async fn bad_lookups_get_errors_and_never_leak_data() {
    let server = TestServer::start_with(|config| config.hashes_rate_limit = 3).await;
    bind(&server, "email", "alice@example.com", "@alice:example.org").await;
    let client = Client::new(&server).await;
    let pepper = client.details().await["lookup_pepper"].as_str().unwrap().to_owned();

    for addresses in [json!([]), json!([""])] {
        let response = client.lookup(json!({ "algorithm": "sha256", "pepper": pepper, "addresses": addresses })).await;
        assert_eq!(response.body, json!({ "mappings": {}, "third_party_mappings": {} }), "{addresses}");
    }
    let too_many = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": ["a", "b", "c", "d"] });
    client.lookup(too_many).await.assert_error(400, "M_INVALID_PARAM");
    let not_strings = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": ["a", 5] });
    client.lookup(not_strings).await.assert_error(400, "M_INVALID_PARAM");
    client.lookup(json!({ "algorithm": "sha256", "pepper": pepper })).await.assert_error(400, "M_MISSING_PARAMS");
    client.lookup(json!({ "algorithm": "sha256", "addresses": [] })).await.assert_error(400, "M_MISSING_PARAMS");
    client.lookup(json!({ "pepper": pepper, "addresses": [] })).await.assert_error(400, "M_MISSING_PARAMS");
    client
        .lookup(json!({ "algorithm": "sha256", "pepper": pepper, "addresses": "a" }))
        .await
        .assert_error(400, "M_BAD_JSON");
    let md5 = json!({ "algorithm": "md5", "pepper": pepper, "addresses": [] });
    client.lookup(md5).await.assert_error(400, "M_INVALID_PARAM");
    let none = json!({ "algorithm": "none", "pepper": pepper, "addresses": ["alice@example.com email"] });
    client.lookup(none).await.assert_error(400, "M_INVALID_PARAM");

    let wrong = client.lookup(json!({ "algorithm": "sha256", "pepper": "not-our-pepper", "addresses": [] })).await;
    wrong.assert_error(400, "M_INVALID_PEPPER");
    assert_eq!(wrong.body["algorithm"], "sha256");
    assert_eq!(wrong.body["lookup_pepper"], pepper.as_str());

    let raw = server.call_as(Some(&client.token), Method::POST, "/_matrix/identity/v2/lookup", Some("{")).await;
    raw.assert_error(400, "M_NOT_JSON");
    server.call(Method::POST, "/_matrix/identity/v2/lookup", Some("{}")).await.assert_error(401, "M_UNAUTHORIZED");
    server.stop().await;
}

#[tokio::test]
async fn the_none_algorithm_is_offered_only_when_configured() {
    let server = TestServer::start_with(|config| config.lookup_algorithms = vec!["sha256".into(), "none".into()]).await;
    bind(&server, "email", "alice@example.com", "@alice:example.org").await;
    let client = Client::new(&server).await;
    let details = client.details().await;
    assert_eq!(details["algorithms"], json!(["sha256", "none"]));
    let pepper = details["lookup_pepper"].as_str().unwrap();
    let response = client
        .lookup(
            json!({ "algorithm": "none", "pepper": pepper, "addresses": ["Alice@example.com email", "x@y.z email"] }),
        )
        .await;
    assert_eq!(response.body["mappings"], json!({ "Alice@example.com email": "@alice:example.org" }));
    server.stop().await;
}

#[tokio::test]
async fn inactive_users_appear_only_with_additional_features() {
    let server = TestServer::start_with(|config| config.additional_features = true).await;
    server.add_inactive_directory_email("gone@example.com", "@gone:example.org").await;
    let client = Client::new(&server).await;
    let pepper = client.details().await["lookup_pepper"].as_str().unwrap().to_owned();
    let hash = spec_hash("gone@example.com", "email", &pepper);
    let response = client.lookup(json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hash] })).await;
    assert_eq!(response.body["mappings"], json!({}));
    assert_eq!(response.body["inactive_mappings"], json!({ hash.clone(): "@gone:example.org" }));

    let server = server.restart_with(|config| config.additional_features = false).await;
    let client = Client::new(&server).await;
    let response = client.lookup(json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hash] })).await;
    assert_eq!(response.body, json!({ "mappings": {}, "third_party_mappings": {} }));
    server.stop().await;
}

#[tokio::test]
async fn after_a_rotation_both_peppers_work_and_after_two_the_oldest_is_refused() {
    let server = TestServer::start().await;
    bind(&server, "email", "alice@example.com", "@alice:example.org").await;
    let client = Client::new(&server).await;
    let first = client.details().await["lookup_pepper"].as_str().unwrap().to_owned();

    server.state.lookups.rotate_pepper().await.unwrap();
    let details = client.details().await;
    let second = details["lookup_pepper"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(details["alt_lookup_peppers"], json!([first.clone()]));
    for pepper in [&first, &second] {
        let hash = spec_hash("alice@example.com", "email", pepper);
        let response = client.lookup(json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hash] })).await;
        assert_eq!(response.body["mappings"][&hash], "@alice:example.org", "pepper {pepper}");
    }
    // A hash of one live pepper sent naming the other matches too: a hash names its pepper.
    let crossed = spec_hash("alice@example.com", "email", &first);
    let response = client.lookup(json!({ "algorithm": "sha256", "pepper": second, "addresses": [crossed] })).await;
    assert_eq!(response.body["mappings"], json!({ crossed: "@alice:example.org" }));

    server.state.lookups.rotate_pepper().await.unwrap();
    let details = client.details().await;
    assert_eq!(details["alt_lookup_peppers"], json!([second.clone()]));
    let hash = spec_hash("alice@example.com", "email", &first);
    let response = client.lookup(json!({ "algorithm": "sha256", "pepper": first, "addresses": [hash] })).await;
    response.assert_error(400, "M_INVALID_PEPPER");
    // A hash of the retired pepper matches nothing, whatever live pepper the request names.
    let response = client.lookup(json!({ "algorithm": "sha256", "pepper": second, "addresses": [hash] })).await;
    assert_eq!(response.body["mappings"], json!({}));
    server.stop().await;
}

#[tokio::test]
async fn restarts_do_not_rotate_and_instances_rotate_each_occurrence_once() {
    let server = TestServer::start().await;
    let pepper = server.state.store.peppers().await.unwrap();
    let server = server.restart_with(|_| {}).await;
    assert_eq!(server.state.store.peppers().await.unwrap(), pepper, "a restart keeps the pepper");

    let twin = server.twin().await;
    let job = jobs::jobs(&server.state).unwrap().into_iter().find(|job| job.name == "pepper-rotation").unwrap();
    let (a, b) = tokio::join!(
        jobs::run_occurrence(&server.state, "instance-a", &job, 1_000),
        jobs::run_occurrence(&twin.state, "instance-b", &job, 1_000),
    );
    let ran = [&a, &b].iter().filter(|outcome| matches!(outcome, RunOutcome::Ran(Ok(_)))).count();
    let skipped = [&a, &b].iter().filter(|outcome| ***outcome == RunOutcome::Skipped).count();
    assert_eq!((ran, skipped), (1, 1), "{a:?} {b:?}");
    let after = server.state.store.peppers().await.unwrap();
    assert_eq!(after.previous, pepper.current, "exactly one rotation: the old pepper is the previous one");
    // The same occurrence again, on either instance: nothing.
    assert_eq!(jobs::run_occurrence(&twin.state, "instance-b", &job, 1_000).await, RunOutcome::Skipped);
    assert_eq!(server.state.store.peppers().await.unwrap(), after);
    twin.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_scheduler_rotates_on_its_cron_schedule() {
    let server = TestServer::start_with(|config| {
        config.cron_service = true;
        config.pepper_cron = "* * * * * *".into(); // every second (6 fields: seconds first)
    })
    .await;
    let first = server.state.store.peppers().await.unwrap().current;
    let started = std::time::Instant::now();
    loop {
        if server.state.store.peppers().await.unwrap().previous == first {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "no rotation within 5 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The run records its outcome after the rotation it made has committed.
    loop {
        let lease = server.state.store.job_lease("pepper-rotation").await.unwrap().expect("the run is recorded");
        if let Some(status) = lease.last_status {
            assert_eq!(status, "ok");
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "no outcome recorded within 5 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn trusted_servers_need_no_token_and_untrusted_callers_do() {
    let server = TestServer::start_with(|config| config.trusted_servers_addresses = vec!["127.0.0.1".into()]).await;
    let details = server.call(Method::GET, "/_matrix/identity/v2/hash_details", None).await;
    assert_eq!(details.status, 200, "{:?}", details.body);
    let pepper = details.body["lookup_pepper"].as_str().unwrap();
    let body = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [] }).to_string();
    assert_eq!(server.call(Method::POST, "/_matrix/identity/v2/lookup", Some(&body)).await.status, 200);
    // A trusted server is not a user: account still needs a token.
    server.call(Method::GET, "/_matrix/identity/v2/account", None).await.assert_error(401, "M_UNAUTHORIZED");
    server.stop().await;

    let untrusted = TestServer::start_with(|config| config.trusted_servers_addresses = vec!["10.0.0.1".into()]).await;
    let forged = common::Response::from(
        untrusted
            .client
            .get(untrusted.url("/_matrix/identity/v2/hash_details"))
            .header("x-forwarded-for", "10.0.0.1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    forged.assert_error(401, "M_UNAUTHORIZED");
    untrusted.stop().await;
}

#[tokio::test]
async fn a_crash_mid_rotation_leaves_nothing_behind_and_blocks_rotations_only_briefly() {
    use federated_identity_service::lookups::ROTATION_JOB;
    let server = TestServer::start().await;
    server.bind_email("a@example.org", "@a:example.org").await;
    let peppers = server.state.store.peppers().await.unwrap();
    // An instance took the lease, started a rotation, and died (kill -9): a pending pepper and its
    // hashes, a lease nobody renews.
    let store = &server.state.store;
    let lease_ms = i64::try_from(jobs::LEASE.as_millis()).unwrap();
    let died_at = server.clock.now_ms() - lease_ms - 1;
    assert!(store.try_start_run(ROTATION_JOB, "dead", died_at, died_at, died_at + lease_ms).await.unwrap());
    store.insert_pending_pepper("abandoned-pepper", died_at).await.unwrap();
    store.insert_local_hashes("abandoned-pepper", &[("orphan-hash".into(), 1)]).await.unwrap();
    assert!(jobs::LEASE <= std::time::Duration::from_secs(60), "a dead holder blocks for a minute at most");

    // The next start clears the abandoned rotation; the next occurrence runs.
    let server = server.restart_with(|_| {}).await;
    let states: Vec<String> =
        server.state.store.all_peppers().await.unwrap().into_iter().map(|(_, state)| state).collect();
    assert!(!states.contains(&"pending".to_owned()), "{states:?}");
    let counts = server.state.store.local_hash_counts().await.unwrap();
    assert!(counts.iter().all(|(pepper, _)| pepper != "abandoned-pepper"), "{counts:?}");
    assert_eq!(server.state.store.peppers().await.unwrap(), peppers, "the published peppers are untouched");
    let job = jobs::jobs(&server.state).unwrap().into_iter().find(|job| job.name == ROTATION_JOB).unwrap();
    assert!(matches!(
        jobs::run_occurrence(&server.state, "alive", &job, server.clock.now_ms()).await,
        RunOutcome::Ran(Ok(_))
    ));

    // A pending pepper removed under a rotation's feet is never "published" as nothing: the
    // switch fails and the current pepper stays.
    let before = server.state.store.peppers().await.unwrap();
    server.state.store.insert_pending_pepper("vanishing", server.clock.now_ms()).await.unwrap();
    server.state.store.discard_pending_peppers().await.unwrap();
    assert!(server.state.store.activate_pepper("vanishing", server.clock.now_ms()).await.is_err());
    assert_eq!(server.state.store.peppers().await.unwrap(), before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_renews_its_lease_and_the_command_takes_the_same_lease() {
    use federated_identity_service::lookups::ROTATION_JOB;
    use std::time::Duration;
    let server = TestServer::start().await;
    let store = server.state.store.clone();
    // A job with a 600 ms lease running for 1.5 s: another holder cannot take over meanwhile.
    let long_job = jobs::run_leased(&store, &server.clock, "slow-job", "first", 1, Duration::from_millis(600), async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok("done".to_owned())
    });
    let contender = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = server.clock.now_ms();
        store.try_start_run("slow-job", "second", 2, now, now + 600).await.unwrap()
    };
    let (outcome, taken_over) = tokio::join!(long_job, contender);
    assert_eq!(outcome, RunOutcome::Ran(Ok("done".into())));
    assert!(!taken_over, "the lease was renewed while the job ran");

    // `rotate-pepper` refuses while a scheduled rotation holds the lease, then runs.
    let now = server.clock.now_ms();
    assert!(store.try_start_run(ROTATION_JOB, "scheduler", now, now, now + 60_000).await.unwrap());
    let config_path = server.config_file();
    let binary = env!("CARGO_BIN_EXE_federated-identity-service");
    // Waiting for the command must not stall the server's tasks, which share this runtime.
    let rotate = || {
        tokio::task::block_in_place(|| {
            std::process::Command::new(binary).arg("--config").arg(&config_path).arg("rotate-pepper").output().unwrap()
        })
    };
    let refused = rotate();
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("a rotation is running"));
    let before = store.peppers().await.unwrap();
    store.finish_run(ROTATION_JOB, "scheduler", server.clock.now_ms(), "ok").await.unwrap();
    let ran = rotate();
    let log = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "{log}");
    assert_eq!(store.peppers().await.unwrap().previous, before.current, "the command rotated");
    let summary = log.lines().find(|line| line.contains("progress: done")).unwrap_or_else(|| panic!("{log}"));
    assert!(summary.contains("job=\"pepper-rotation\"") && summary.contains("rows_per_second="), "{summary}");
    server.stop().await;
}
