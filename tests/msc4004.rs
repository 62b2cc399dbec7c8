//! MSC4004 pushes (`POST /lookups`) and `third_party_mappings`: who may push, snapshot
//! semantics, validation, rotation, and a push of a million hashes.

mod common;

use std::time::{Duration, Instant};

use common::{Response, TestServer};
use federated_identity_service::Config;
use federated_identity_service::domain::trusted::TrustedServerConfig;
use federated_identity_service::vocabulary::{LookupHash, hash_3pid};
use reqwest::Method;
use serde_json::{Value, json};

const PUSH: &str = "/_matrix/identity/v2/lookups";
const SECRET: &str = "tom-example-shared-secret";

fn trusting(addresses: &'static [&'static str]) -> impl FnOnce(&mut Config) {
    move |config| config.trusted_servers_addresses = addresses.iter().map(|a| (*a).to_owned()).collect()
}

async fn current_pepper(server: &TestServer) -> String {
    server.state.store.peppers().await.unwrap().current.unwrap()
}

fn push_body(server: &str, pepper: &str, hashes: &[String]) -> String {
    json!({ "algorithm": "sha256", "pepper": pepper, "mappings": { server: hashes } }).to_string()
}

fn hashes_of(addresses: &[&str], pepper: &str) -> Vec<String> {
    addresses.iter().map(|address| hash_3pid(address, "email", pepper)).collect()
}

async fn push(server: &TestServer, body: &str) -> Response {
    server.call(Method::POST, PUSH, Some(body)).await
}

/// A push through a proxy that says it forwards for `forwarded_for`.
async fn push_forwarded_for(server: &TestServer, forwarded_for: &str, body: &str) -> Response {
    let request = server.client.post(server.url(PUSH)).header("x-forwarded-for", forwarded_for).body(body.to_owned());
    Response::from(request.send().await.unwrap()).await
}

/// A lookup as a trusted server (no token).
async fn lookup(server: &TestServer, pepper: &str, hashes: &[String]) -> Value {
    let body = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": hashes }).to_string();
    let response = server.call(Method::POST, "/_matrix/identity/v2/lookup", Some(&body)).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.body
}

#[tokio::test]
async fn a_push_is_stored_and_appears_in_third_party_mappings() {
    let server = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let pepper = current_pepper(&server).await;
    let pushed = hashes_of(&["dave@tom.example", "erin@tom.example"], &pepper);
    let response = push(&server, &push_body("tom.example:443", &pepper, &pushed)).await;
    assert_eq!((response.status, response.body.clone()), (201, json!({ "stored": 2, "added": 2, "removed": 0 })));
    response.assert_cors();

    let unknown = hash_3pid("nobody@tom.example", "email", &pepper);
    let answer = lookup(&server, &pepper, &[pushed[0].clone(), unknown]).await;
    assert_eq!(answer, json!({ "mappings": {}, "third_party_mappings": { "tom.example:443": [pushed[0].clone()] } }));

    // The same hash from two servers, asked twice in one lookup: each server once, no duplicate.
    let response = push(&server, &push_body("other.example:8443", &pepper, &pushed[..1])).await;
    assert_eq!(response.status, 201);
    let answer = lookup(&server, &pepper, &[pushed[0].clone(), pushed[0].clone()]).await;
    assert_eq!(
        answer["third_party_mappings"],
        json!({ "other.example:8443": [pushed[0].clone()], "tom.example:443": [pushed[0].clone()] })
    );
    server.stop().await;
}

#[tokio::test]
async fn plain_lookups_find_pushed_hashes_under_the_entries_as_sent() {
    let server = TestServer::start_with(|config| {
        trusting(&["127.0.0.1"])(config);
        config.lookup_algorithms = vec!["sha256".into(), "none".into()];
    })
    .await;
    let pepper = current_pepper(&server).await;
    let pushed = hashes_of(&["dave@tom.example"], &pepper);
    assert_eq!(push(&server, &push_body("tom.example:443", &pepper, &pushed)).await.status, 201);
    let body = json!({ "algorithm": "none", "pepper": pepper, "addresses": ["Dave@Tom.example email", "x@y.z email"] });
    let response = server.call(Method::POST, "/_matrix/identity/v2/lookup", Some(&body.to_string())).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(
        response.body,
        json!({ "mappings": {}, "third_party_mappings": { "tom.example:443": ["Dave@Tom.example email"] } })
    );

    let wrong = json!({ "algorithm": "none", "pepper": "nope", "addresses": ["dave@tom.example email"] });
    let response = server.call(Method::POST, "/_matrix/identity/v2/lookup", Some(&wrong.to_string())).await;
    assert_eq!((response.status, response.body["errcode"].as_str()), (400, Some("M_INVALID_PEPPER")));
    server.stop().await;
}

#[tokio::test]
async fn a_push_from_an_ipv6_peer_is_accepted() {
    let server = TestServer::start_with(|config| {
        config.listen_address = "::1".parse().unwrap();
        config.trusted_servers_addresses = vec!["::1/128".into()];
    })
    .await;
    assert!(server.address.is_ipv6());
    let pepper = current_pepper(&server).await;
    let pushed = hashes_of(&["v6@tom.example"], &pepper);
    let response = push(&server, &push_body("tom.example:443", &pepper, &pushed)).await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(lookup(&server, &pepper, &pushed).await["third_party_mappings"]["tom.example:443"], json!(pushed));
    server.stop().await;
}

#[tokio::test]
async fn re_pushes_replace_the_snapshot_and_are_idempotent() {
    let server = TestServer::start_with(trusting(&["127.0.0.0/8"])).await;
    let pepper = current_pepper(&server).await;
    let all = hashes_of(&["a@t.example", "b@t.example", "c@t.example"], &pepper);
    assert_eq!(push(&server, &push_body("t.example:443", &pepper, &all)).await.status, 201);

    let again = push(&server, &push_body("t.example:443", &pepper, &all)).await;
    assert_eq!((again.status, again.body), (201, json!({ "stored": 3, "added": 0, "removed": 0 })));
    let snapshot = server.state.store.push_snapshot("t.example:443", &pepper).await.unwrap().unwrap();
    assert_eq!(snapshot.hash_count, 3, "nothing stored twice");

    // A smaller snapshot removes what is missing from it.
    let smaller = push(&server, &push_body("t.example:443", &pepper, &all[..1])).await;
    assert_eq!(smaller.body, json!({ "stored": 1, "added": 0, "removed": 2 }));
    let answer = lookup(&server, &pepper, &all).await;
    assert_eq!(answer["third_party_mappings"], json!({ "t.example:443": [all[0].clone()] }));

    // An empty snapshot removes everything of that server for that pepper.
    assert_eq!(push(&server, &push_body("t.example:443", &pepper, &[])).await.body["removed"], 1);
    assert_eq!(lookup(&server, &pepper, &all).await["third_party_mappings"], json!({}));
    server.stop().await;
}

#[tokio::test]
async fn only_trusted_callers_may_push() {
    let server = TestServer::start_with(trusting(&["10.0.0.1", "2001:db8::/32"])).await;
    let pepper = current_pepper(&server).await;
    let body = push_body("tom.example:443", &pepper, &hashes_of(&["x@tom.example"], &pepper));

    push(&server, &body).await.assert_error(403, "M_FORBIDDEN");
    let token = server.token_for("@alice:example.org").await;
    server.call_as(Some(&token), Method::POST, PUSH, Some(&body)).await.assert_error(403, "M_FORBIDDEN");
    let forged = push_forwarded_for(&server, "10.0.0.1", &body).await;
    forged.assert_error(403, "M_FORBIDDEN");
    assert!(server.state.store.push_snapshots().await.unwrap().is_empty(), "nothing stored");
    server.stop().await;

    // Behind a trusted proxy, the forwarded address counts.
    let proxied = TestServer::start_with(|config| {
        config.trusted_servers_addresses = vec!["10.0.0.1".into()];
        config.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let pepper = current_pepper(&proxied).await;
    let body = push_body("tom.example:443", &pepper, &hashes_of(&["x@tom.example"], &pepper));
    let through_proxy = push_forwarded_for(&proxied, "10.0.0.1", &body).await;
    assert_eq!(through_proxy.status, 201, "{:?}", through_proxy.body);
    let spoofed_chain = push_forwarded_for(&proxied, "10.0.0.1, 203.0.113.9", &body).await;
    spoofed_chain.assert_error(403, "M_FORBIDDEN");
    proxied.stop().await;
}

#[tokio::test]
async fn named_servers_push_only_under_their_own_name() {
    let server = TestServer::start_with(|config| {
        config.trusted_servers =
            vec![TrustedServerConfig { name: "tom.example:443".into(), networks: vec![], secret: SECRET.into() }];
    })
    .await;
    let pepper = current_pepper(&server).await;
    let hashes = hashes_of(&["x@tom.example"], &pepper);
    let own =
        server.call_as(Some(SECRET), Method::POST, PUSH, Some(&push_body("tom.example:443", &pepper, &hashes))).await;
    assert_eq!(own.status, 201, "{:?}", own.body);
    let other =
        server.call_as(Some(SECRET), Method::POST, PUSH, Some(&push_body("evil.example:443", &pepper, &hashes))).await;
    other.assert_error(403, "M_FORBIDDEN");
    let wrong_secret = server
        .call_as(
            Some("not-the-secret-at-all"),
            Method::POST,
            PUSH,
            Some(&push_body("tom.example:443", &pepper, &hashes)),
        )
        .await;
    wrong_secret.assert_error(403, "M_FORBIDDEN");
    // The secret also opens hash_details and lookup, as for the Node pusher by address.
    let details = server.call_as(Some(SECRET), Method::GET, "/_matrix/identity/v2/hash_details", None).await;
    assert_eq!(details.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn invalid_pushes_are_refused_and_change_nothing() {
    let server = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let pepper = current_pepper(&server).await;
    let good = hashes_of(&["x@t.example"], &pepper);
    for (body, errcode) in [
        (push_body("t.example:443", "not-our-pepper", &good), "M_INVALID_PEPPER"),
        (json!({ "algorithm": "sha256", "pepper": pepper, "mappings": {} }).to_string(), "M_INVALID_PARAM"),
        (
            json!({ "algorithm": "sha256", "pepper": pepper, "mappings": { "a.example": good, "b.example": good } })
                .to_string(),
            "M_INVALID_PARAM",
        ),
        (
            json!({ "algorithm": "none", "pepper": pepper, "mappings": { "a.example": good } }).to_string(),
            "M_INVALID_PARAM",
        ),
        (push_body("t.example:443", &pepper, &["too-short".to_owned()]), "M_INVALID_PARAM"),
        (push_body("t.example:443", &pepper, &[format!("{}=", &good[0][..42])]), "M_INVALID_PARAM"),
        (push_body("not a name", &pepper, &good), "M_INVALID_PARAM"),
        (
            json!({ "algorithm": "sha256", "pepper": pepper, "mappings": { "a.example": [1, 2] } }).to_string(),
            "M_BAD_JSON",
        ),
        (json!({ "algorithm": "sha256", "mappings": { "a.example": [] } }).to_string(), "M_MISSING_PARAMS"),
        ("{".to_owned(), "M_NOT_JSON"),
    ] {
        push(&server, &body).await.assert_error(400, errcode);
    }
    let wrong_pepper = push(&server, &push_body("t.example:443", "nope", &good)).await;
    assert_eq!(wrong_pepper.body["lookup_pepper"], pepper.as_str());
    assert!(server.state.store.push_snapshots().await.unwrap().is_empty(), "nothing stored");
    server.stop().await;
}

/// A pusher re-sends its unchanged snapshot every interval: the same bytes are recognised from
/// their digest before they are parsed, answered as any identical push is, and only for a
/// caller allowed to push as that server.
#[tokio::test]
async fn an_identical_body_is_recognised_from_its_bytes_for_its_own_server_only() {
    const EVIL_SECRET: &str = "evil-example-shared-secret";
    let server = TestServer::start_with(|config| {
        config.trusted_servers = vec![
            TrustedServerConfig { name: "tom.example:443".into(), networks: vec![], secret: SECRET.into() },
            TrustedServerConfig { name: "evil.example:443".into(), networks: vec![], secret: EVIL_SECRET.into() },
        ];
    })
    .await;
    let pepper = current_pepper(&server).await;
    let hashes = hashes_of(&["a@tom.example", "b@tom.example", "c@tom.example"], &pepper);
    let body = push_body("tom.example:443", &pepper, &hashes);
    let first = server.call_as(Some(SECRET), Method::POST, PUSH, Some(&body)).await;
    assert_eq!((first.status, first.body), (201, json!({ "stored": 3, "added": 3, "removed": 0 })));
    let digest = federated_identity_service::vocabulary::content_digest(body.as_bytes());
    let found = server.state.store.push_snapshot_with_body(&digest).await.unwrap().expect("the body's snapshot");
    assert_eq!((found.server.as_str(), found.hash_count), ("tom.example:443", 3));

    let again = server.call_as(Some(SECRET), Method::POST, PUSH, Some(&body)).await;
    assert_eq!((again.status, again.body), (201, json!({ "stored": 3, "added": 0, "removed": 0 })));
    // Another named server sending those very bytes is refused, as it would be parsed.
    server.call_as(Some(EVIL_SECRET), Method::POST, PUSH, Some(&body)).await.assert_error(403, "M_FORBIDDEN");

    // The same snapshot in other bytes is parsed, found identical, and its bytes remembered.
    let reordered: Vec<String> = hashes.iter().rev().cloned().collect();
    let other_bytes = push_body("tom.example:443", &pepper, &reordered);
    let parsed = server.call_as(Some(SECRET), Method::POST, PUSH, Some(&other_bytes)).await;
    assert_eq!(parsed.body, json!({ "stored": 3, "added": 0, "removed": 0 }));
    let other_digest = federated_identity_service::vocabulary::content_digest(other_bytes.as_bytes());
    assert!(server.state.store.push_snapshot_with_body(&other_digest).await.unwrap().is_some());

    // A changed snapshot replaces the remembered bytes: the first body is a change again.
    let changed = server
        .call_as(Some(SECRET), Method::POST, PUSH, Some(&push_body("tom.example:443", &pepper, &hashes[..1])))
        .await;
    assert_eq!(changed.body["removed"], 2);
    let back = server.call_as(Some(SECRET), Method::POST, PUSH, Some(&body)).await;
    assert_eq!(back.body, json!({ "stored": 3, "added": 2, "removed": 0 }));
    let asked = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": hashes }).to_string();
    let answer = server.call_as(Some(SECRET), Method::POST, "/_matrix/identity/v2/lookup", Some(&asked)).await;
    assert_eq!(answer.body["third_party_mappings"]["tom.example:443"].as_array().map(Vec::len), Some(3));
    server.stop().await;
}

/// Runs `sql` on the server's database, as an older version or an operator would have left it.
async fn run_sql(server: &TestServer, sql: &str) {
    let config = server.config();
    let sql = || sqlx::AssertSqlSafe(sql.to_owned());
    if config.database_engine == "pg" {
        let pool = sqlx::PgPool::connect(&config.database_host).await.unwrap();
        sqlx::query(sql()).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(config.sqlite_path());
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::query(sql()).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

/// The rows `sql` selects from the server's database.
async fn select<T>(server: &TestServer, sql: &'static str) -> Vec<T>
where
    T: Send + Unpin,
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
{
    let config = server.config();
    if config.database_engine == "pg" {
        let pool = sqlx::PgPool::connect(&config.database_host).await.unwrap();
        let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    } else {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(config.sqlite_path());
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    }
}

/// For each stored snapshot, by server: the size of its packed copy in bytes (`None`: not
/// packed), the deltas after it and the hashes they hold, and the delta rows stored for it.
async fn snapshot_storage(server: &TestServer) -> Vec<(Option<i64>, i64, i64, i64)> {
    select(
        server,
        "SELECT (SELECT CAST(length(hashes) AS BIGINT) FROM push_copies c WHERE c.server = s.server AND c.pepper = s.pepper), \
         delta_count, delta_hashes, \
         (SELECT COUNT(*) FROM push_deltas d WHERE d.server = s.server AND d.pepper = s.pepper) \
         FROM push_snapshots s ORDER BY server, pepper",
    )
    .await
}

/// The size of each stored snapshot's packed copy, in bytes (`None`: not packed).
async fn packed_sizes(server: &TestServer) -> Vec<Option<i64>> {
    snapshot_storage(server).await.into_iter().map(|(packed, ..)| packed).collect()
}

/// A stored snapshot whose packed copy no longer decodes (damaged outside the service: it is the
/// only copy of its hashes) is reported and served as absent, by the instance that stored it
/// once it reloads and by a fresh one; the server's next push stores it whole again.
#[tokio::test]
async fn a_damaged_snapshot_is_served_as_absent_until_the_next_push_stores_it_whole() {
    let server = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let pepper = current_pepper(&server).await;
    let all = hashes_of(&["a@t.example", "b@t.example", "c@t.example", "d@t.example"], &pepper);
    assert_eq!(push(&server, &push_body("t.example:443", &pepper, &all[..3])).await.status, 201);
    assert_eq!(packed_sizes(&server).await, [Some(3 * 32)], "a push stores its packed copy");
    // One byte short, and a digest this instance does not hold (as if another instance had
    // stored it): the push must read the stored snapshot, which does not decode.
    run_sql(&server, "UPDATE push_copies SET hashes = substr(hashes, 2)").await;
    run_sql(&server, "UPDATE push_snapshots SET body_digest = NULL, digest = 'damaged'").await;
    let fresh = server.twin().await;
    let answer = lookup(&fresh, &pepper, &all).await;
    assert_eq!(answer["third_party_mappings"], json!({}), "nothing served from a damaged copy: {answer}");

    let stored = push(&server, &push_body("t.example:443", &pepper, &all[1..])).await;
    assert_eq!((stored.status, stored.body), (201, json!({ "stored": 3, "added": 3, "removed": 0 })));
    assert_eq!(snapshot_storage(&server).await, [(Some(3 * 32), 0, 0, 0)], "a whole copy, no delta");
    for instance in [&server, &fresh] {
        let started = Instant::now();
        loop {
            let answer = lookup(instance, &pepper, &all).await;
            let mut found: Vec<String> =
                serde_json::from_value(answer["third_party_mappings"]["t.example:443"].clone()).unwrap_or_default();
            found.sort();
            let mut expected = all[1..].to_vec();
            expected.sort();
            if found == expected {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "the new snapshot is served: {answer}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    fresh.stop().await;
    server.stop().await;
}

/// A push that changes a few hashes of a snapshot stores them as a delta after the packed copy,
/// until the deltas add up to an eighth of the snapshot: then the copy is written again. What the
/// store reads back, a fresh instance and the instance that stored the pushes all agree with the
/// last snapshot at every step.
#[tokio::test]
async fn small_changes_are_stored_as_deltas_until_they_add_up_to_an_eighth() {
    let server = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let pepper = current_pepper(&server).await;
    let addresses: Vec<String> = (0..80).map(|n| format!("member{n}@d.example")).collect();
    let named = |range: std::ops::Range<usize>| -> Vec<String> {
        let names: Vec<&str> = addresses[range].iter().map(String::as_str).collect();
        hashes_of(&names, &pepper)
    };
    let mut step = 0;
    let mut push_and_check = async |hashes: Vec<String>, answer: Value, storage: (Option<i64>, i64, i64, i64)| {
        step += 1;
        let pushed = push(&server, &push_body("d.example:443", &pepper, &hashes)).await;
        assert_eq!((pushed.status, pushed.body), (201, answer), "step {step}");
        assert_eq!(snapshot_storage(&server).await, [storage], "step {step}: packed copy, deltas");
        let mut stored: Vec<String> = server
            .state
            .store
            .find_pushed_hashes(&pepper, &named(0..80))
            .await
            .unwrap()
            .into_iter()
            .map(|(hash, _)| hash)
            .collect();
        stored.sort();
        let mut expected = hashes.clone();
        expected.sort();
        assert_eq!(stored, expected, "step {step}: copy and deltas are the snapshot");
        let written = answers(&server, &addresses).await;
        let found: Vec<String> =
            serde_json::from_value(written[0]["body"]["third_party_mappings"]["d.example:443"].clone())
                .unwrap_or_else(|_| panic!("step {step}: {}", written[0]));
        assert_eq!(found.len(), hashes.len(), "step {step}: the pushing instance finds the snapshot");
        let fresh = server.twin().await;
        assert_eq!(answers(&fresh, &addresses).await, written, "step {step}: a fresh instance reads copy and deltas");
        fresh.stop().await;
    };
    push_and_check(named(0..64), json!({ "stored": 64, "added": 64, "removed": 0 }), (Some(64 * 32), 0, 0, 0)).await;
    // One removed, one added: a delta of two hashes.
    push_and_check(named(1..65), json!({ "stored": 64, "added": 1, "removed": 1 }), (Some(64 * 32), 1, 2, 1)).await;
    // The one removed comes back, two more go: five hashes changed since the copy.
    let mut back = named(0..1);
    back.extend(named(3..65));
    push_and_check(back, json!({ "stored": 63, "added": 1, "removed": 2 }), (Some(64 * 32), 2, 5, 2)).await;
    // Nine more changes, fourteen since the copy: over an eighth of the snapshot, the copy is
    // written again.
    push_and_check(named(6..70), json!({ "stored": 64, "added": 5, "removed": 4 }), (Some(64 * 32), 0, 0, 0)).await;
    // And deltas start again from it.
    push_and_check(named(6..71), json!({ "stored": 65, "added": 1, "removed": 0 }), (Some(64 * 32), 1, 1, 1)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_rotation_drops_the_pushed_hashes_of_the_oldest_pepper() {
    let server = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let first = current_pepper(&server).await;
    let hashes = hashes_of(&["x@t.example"], &first);
    let others: Vec<String> = (0..32).map(|n| hash_3pid(&format!("other{n}@t.example"), "email", &first)).collect();
    let with = |others: &[String]| -> Vec<String> { hashes.iter().chain(others).cloned().collect() };
    assert_eq!(push(&server, &push_body("t.example:443", &first, &with(&others))).await.status, 201);
    // One change: stored as a delta after the packed copy.
    assert_eq!(push(&server, &push_body("t.example:443", &first, &with(&others[1..]))).await.status, 201);
    assert_eq!(select::<(i64,)>(&server, "SELECT COUNT(*) FROM push_deltas").await, [(1,)]);

    server.state.lookups.rotate_pepper().await.unwrap();
    // The previous pepper still works, for lookups and pushes.
    assert_eq!(lookup(&server, &first, &hashes).await["third_party_mappings"]["t.example:443"], json!(hashes));
    assert_eq!(push(&server, &push_body("t.example:443", &first, &with(&others[2..]))).await.status, 201);
    assert_eq!(select::<(i64,)>(&server, "SELECT COUNT(*) FROM push_deltas").await, [(2,)]);

    server.state.lookups.rotate_pepper().await.unwrap();
    let body = json!({ "algorithm": "sha256", "pepper": first, "addresses": hashes }).to_string();
    server.call(Method::POST, "/_matrix/identity/v2/lookup", Some(&body)).await.assert_error(400, "M_INVALID_PEPPER");
    assert!(
        server.state.store.push_snapshots().await.unwrap().iter().all(|snapshot| snapshot.pepper != first),
        "snapshots of the oldest pepper are gone"
    );
    assert!(server.state.store.find_pushed_hashes(&first, &hashes).await.unwrap().is_empty(), "its hashes are gone");
    assert_eq!(select::<(i64,)>(&server, "SELECT COUNT(*) FROM push_deltas").await, [(0,)], "and its deltas");
    assert_eq!(select::<(i64,)>(&server, "SELECT COUNT(*) FROM push_copies").await, [(0,)], "and its packed copy");
    // A push for a pepper that is no longer valid is refused.
    push(&server, &push_body("t.example:443", &first, &hashes)).await.assert_error(400, "M_INVALID_PEPPER");
    server.stop().await;
}

/// Twake Chat after a rotation: it hashes every address with each live pepper and sends all
/// the hashes in one lookup naming the current pepper, while the other server has pushed only
/// under the previous one.
#[tokio::test]
async fn hashes_of_every_live_pepper_are_matched_in_one_lookup() {
    let server = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    server.bind_email("alice@example.org", "@alice:example.org").await;
    let first = current_pepper(&server).await;
    let bob_first = hash_3pid("bob@remote.example", "email", &first);
    assert_eq!(
        push(&server, &push_body("remote.example:443", &first, std::slice::from_ref(&bob_first))).await.status,
        201
    );
    server.state.lookups.rotate_pepper().await.unwrap();

    let token = server.token_for("@reader:example.org").await;
    let details = server.call_as(Some(&token), Method::GET, "/_matrix/identity/v2/hash_details", None).await;
    let current = details.body["lookup_pepper"].as_str().unwrap().to_owned();
    assert_eq!(details.body["alt_lookup_peppers"], json!([first]));
    let peppers = [current.clone(), first.clone()];
    let mut addresses = Vec::new();
    for address in ["alice@example.org", "bob@remote.example", "nobody@example.org"] {
        addresses.extend(peppers.iter().map(|pepper| hash_3pid(address, "email", pepper)));
    }
    let body = json!({ "algorithm": "sha256", "pepper": current, "addresses": addresses }).to_string();
    let found = server.call_as(Some(&token), Method::POST, "/_matrix/identity/v2/lookup", Some(&body)).await;
    assert_eq!(found.status, 200, "{:?}", found.body);
    let alice: Vec<&String> = addresses[0..2].iter().collect();
    assert_eq!(
        found.body["mappings"],
        json!({ alice[0].as_str(): "@alice:example.org", alice[1].as_str(): "@alice:example.org" }),
        "our own 3PID under both peppers"
    );
    assert_eq!(
        found.body["third_party_mappings"],
        json!({ "remote.example:443": [bob_first] }),
        "the other server's hash under the previous pepper, though the lookup names the current one"
    );
    // Naming the previous pepper finds hashes of the current one too.
    let named_previous = lookup(&server, &first, &addresses[0..1]).await;
    assert_eq!(named_previous["mappings"][&addresses[0]], "@alice:example.org");
    server.stop().await;
}

/// A push of more than 50,000 hashes is parsed in two stages (its JSON scanned on one thread,
/// its hashes decoded on another): it is refused and accepted as a small one is, naming the
/// first string that is not a hash, reading escaped characters, storing nothing when refused.
#[tokio::test]
async fn a_large_push_parsed_in_two_stages_is_refused_and_accepted_as_a_small_one() {
    let server = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let pepper = current_pepper(&server).await;
    let hashes: Vec<String> =
        (0..120_000).map(|n| hash_3pid(&format!("user{n}@large.example"), "email", &pepper)).collect();
    let with = |position: usize, value: Value| {
        let mut list: Vec<Value> = hashes.iter().map(|hash| json!(hash)).collect();
        list[position] = value;
        json!({ "algorithm": "sha256", "pepper": pepper, "mappings": { "large.example": list } }).to_string()
    };
    let mut two_invalid: Vec<String> = hashes.clone();
    two_invalid[70_000] = "too-short".to_owned();
    two_invalid[100_000] = non_canonical(&hashes[100_000]);
    let refused = push(&server, &push_body("large.example", &pepper, &two_invalid)).await;
    refused.assert_error(400, "M_INVALID_PARAM");
    assert!(refused.body["error"].as_str().unwrap().contains("[70000]"), "{:?}", refused.body);
    push(&server, &with(90_000, json!(90_000))).await.assert_error(400, "M_BAD_JSON");
    let whole = push_body("large.example", &pepper, &hashes);
    push(&server, &whole[..whole.len() - 1_000]).await.assert_error(400, "M_NOT_JSON");
    assert!(server.state.store.push_snapshots().await.unwrap().is_empty(), "nothing stored");

    // The hash at 80,000 with its first character written as a JSON escape.
    let escaped =
        whole.replacen(&hashes[80_000], &format!("\\u{:04x}{}", hashes[80_000].as_bytes()[0], &hashes[80_000][1..]), 1);
    assert_ne!(escaped, whole);
    let stored = push(&server, &escaped).await;
    assert_eq!(stored.status, 201, "{:?}", stored.body);
    assert_eq!(stored.body["stored"], 120_000);
    let answer = lookup(&server, &pepper, &hashes[79_999..80_002]).await;
    assert_eq!(answer["third_party_mappings"]["large.example:443"].as_array().map(Vec::len), Some(3));
    server.stop().await;
}

#[tokio::test]
async fn a_push_of_a_million_hashes_succeeds() {
    let server = TestServer::start_with(|config| {
        config.trusted_servers_addresses = vec!["127.0.0.1".into()];
        config.request_timeout = 300;
    })
    .await;
    let pepper = current_pepper(&server).await;
    let hashes: Vec<String> =
        (0..1_000_000).map(|n| hash_3pid(&format!("user{n}@big.example"), "email", &pepper)).collect();
    let body = push_body("big.example:443", &pepper, &hashes);
    assert!(body.len() > 40_000_000, "{} bytes", body.len());
    let started = std::time::Instant::now();
    let response = push(&server, &body).await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(response.body["stored"], 1_000_000);
    eprintln!("push of 1,000,000 hashes (debug build): {:?}", started.elapsed());
    let answer = lookup(&server, &pepper, &hashes[500_000..500_010]).await;
    assert_eq!(answer["third_party_mappings"]["big.example:443"].as_array().map(Vec::len), Some(10));
    server.stop().await;
}

#[tokio::test]
async fn inspect_reports_peppers_hashes_and_pushes() {
    let server = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let pepper = current_pepper(&server).await;
    server.bind_email("alice@example.com", "@alice:example.org").await;
    let hashes = hashes_of(&["a@t.example", "b@t.example"], &pepper);
    assert_eq!(push(&server, &push_body("t.example:443", &pepper, &hashes)).await.status, 201);

    let config = server.config();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_federated-identity-service"))
        .env_clear()
        .env("DATABASE_ENGINE", &config.database_engine)
        .env(
            "DATABASE_HOST",
            if config.database_engine == "pg" {
                config.database_host.clone()
            } else {
                config.sqlite_path().display().to_string()
            },
        )
        .arg("inspect")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["peppers"]["current"], pepper.as_str());
    assert_eq!(report["local_3pids"], json!({ "active": 1, "inactive": 0 }));
    assert_eq!(report["local_hashes_per_pepper"][&pepper], 1);
    assert_eq!(report["pushed_hashes"][0]["server"], "t.example:443");
    assert_eq!(report["pushed_hashes"][0]["hashes"], 2);
    assert!(report["pushed_hashes"][0]["last_push_ms"].as_i64().is_some_and(|ms| ms > 0));
    server.stop().await;
}

#[tokio::test]
async fn compressed_pushes_are_accepted_and_limited_after_decompression() {
    use std::io::Write as _;
    let server = TestServer::start_with(|config| {
        config.trusted_servers_addresses = vec!["127.0.0.1".into()];
        config.lookups_body_limit = 10_000;
    })
    .await;
    let pepper = current_pepper(&server).await;
    let gzip = |text: &str| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap()
    };
    let send = |body: Vec<u8>| {
        let server = &server;
        async move {
            Response::from(
                server
                    .client
                    .post(server.url(PUSH))
                    .header("content-encoding", "gzip")
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let small = push_body("t.example:443", &pepper, &hashes_of(&["a@t.example"], &pepper));
    let accepted = send(gzip(&small)).await;
    assert_eq!(accepted.status, 201, "{:?}", accepted.body);
    // The body is digested as it is decompressed, frame by frame: the same bytes re-sent
    // compressed or not are recognised before they are parsed.
    let digest = federated_identity_service::vocabulary::content_digest(small.as_bytes());
    assert!(server.state.store.push_snapshot_with_body(&digest).await.unwrap().is_some());
    // 40 kB of JSON that compresses to almost nothing: refused once decompressed past the limit.
    let big = push_body("t.example:443", &pepper, &vec![hashes_of(&["a@t.example"], &pepper)[0].clone(); 1_000]);
    assert!(big.len() > 40_000 && gzip(&big).len() < 10_000);
    send(gzip(&big)).await.assert_error(413, "M_TOO_LARGE");
    // Said to be gzip, but not: the body cannot be read.
    send(small.clone().into_bytes()).await.assert_error(400, "M_NOT_JSON");
    server.stop().await;
}

#[tokio::test]
async fn a_push_or_a_rotation_on_one_instance_is_seen_by_another() {
    let a = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let b = a.twin().await;
    let first = current_pepper(&a).await;
    let hashes = hashes_of(&["x@t.example"], &first);
    assert_eq!(push(&a, &push_body("t.example:443", &first, &hashes)).await.status, 201);
    let started = std::time::Instant::now();
    loop {
        let answer = lookup(&b, &first, &hashes).await;
        if answer["third_party_mappings"]["t.example:443"] == json!(hashes) {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "B does not see A's push: {answer}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    a.state.lookups.rotate_pepper().await.unwrap();
    let second = current_pepper(&a).await;
    let started = std::time::Instant::now();
    loop {
        let details = b.call(Method::GET, "/_matrix/identity/v2/hash_details", None).await.body;
        if details["lookup_pepper"] == second.as_str() {
            assert_eq!(details["alt_lookup_peppers"], json!([first]));
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "B does not see A's rotation: {details}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The push made with the old pepper still answers, now as the previous pepper's.
    assert_eq!(lookup(&b, &first, &hashes).await["third_party_mappings"]["t.example:443"], json!(hashes));
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn server_names_of_pushes_are_normalised_to_one_snapshot() {
    let server = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let pepper = current_pepper(&server).await;
    let first = hashes_of(&["a@named.test"], &pepper);
    let second = hashes_of(&["b@named.test"], &pepper);
    assert_eq!(push(&server, &push_body("NAMED.test:443", &pepper, &first)).await.status, 201);
    let response = push(&server, &push_body("named.test", &pepper, &second)).await;
    assert_eq!(response.body, json!({ "stored": 1, "added": 1, "removed": 1 }), "the same snapshot was replaced");
    let snapshots = server.state.store.push_snapshots().await.unwrap();
    assert_eq!(snapshots.iter().map(|s| s.server.as_str()).collect::<Vec<_>>(), vec!["named.test:443"]);
    let answer = lookup(&server, &pepper, &[first[0].clone(), second[0].clone()]).await;
    assert_eq!(answer["third_party_mappings"], json!({ "named.test:443": [second[0]] }));
    server.stop().await;
}

/// The same 32 bytes as `hash`, spelt with non-zero trailing bits.
fn non_canonical(hash: &str) -> String {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = ALPHABET.find(hash.chars().last().unwrap()).unwrap();
    format!("{}{}", &hash[..42], ALPHABET.chars().nth(last + 1).unwrap())
}

#[tokio::test]
async fn non_canonical_base64_hashes_are_refused_in_pushes_and_lookups() {
    let server = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let pepper = current_pepper(&server).await;
    let hash = hash_3pid("a@tom.example", "email", &pepper);
    let odd = non_canonical(&hash);
    push(&server, &push_body("tom.example:443", &pepper, std::slice::from_ref(&odd)))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    assert!(server.state.store.push_snapshots().await.unwrap().is_empty(), "nothing stored");
    let body = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hash, odd] }).to_string();
    let response = server.call(Method::POST, "/_matrix/identity/v2/lookup", Some(&body)).await;
    response.assert_error(400, "M_INVALID_PARAM");
    server.stop().await;
}

#[tokio::test]
async fn push_encodings_other_than_gzip_get_matrix_errors_and_strangers_are_refused_first() {
    let trusted = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let stranger = TestServer::start().await;
    let pepper = current_pepper(&trusted).await;
    let body = push_body("tom.example:443", &pepper, &hashes_of(&["a@tom.example"], &pepper));
    for encoding in ["br", "deflate", "gzip, gzip", "compress"] {
        let send = |server: &TestServer| {
            server.client.post(server.url(PUSH)).header("content-encoding", encoding).body(body.clone()).send()
        };
        Response::from(send(&trusted).await.unwrap()).await.assert_error(415, "M_UNRECOGNIZED");
        Response::from(send(&stranger).await.unwrap()).await.assert_error(403, "M_FORBIDDEN");
    }
    // Content codings are case-insensitive; `identity` is no coding at all.
    let gzipped = {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(body.as_bytes()).unwrap();
        encoder.finish().unwrap()
    };
    for (encoding, payload) in [("GZIP", gzipped), (" Identity ", body.clone().into_bytes())] {
        let sent = trusted.client.post(trusted.url(PUSH)).header("content-encoding", encoding).body(payload);
        let response = Response::from(sent.send().await.unwrap()).await;
        assert_eq!(response.status, 201, "{encoding}: {:?}", response.body);
    }
    trusted.stop().await;
    stranger.stop().await;
}

#[tokio::test]
async fn hashes_sharing_a_prefix_cost_what_random_hashes_cost() {
    use base64::Engine as _;
    let server = TestServer::start_with(|config| {
        trusting(&["127.0.0.1"])(config);
        config.lookups_body_limit = 50_000_000;
    })
    .await;
    let pepper = current_pepper(&server).await;
    // 50,000 hashes whose first 16 bytes are the same.
    let crafted: Vec<String> = (0..50_000_u32)
        .map(|n| {
            let mut bytes = [7_u8; 32];
            bytes[16..20].copy_from_slice(&n.to_be_bytes());
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        })
        .collect();
    assert_eq!(push(&server, &push_body("evil.example:443", &pepper, &crafted)).await.status, 201);
    let started = std::time::Instant::now();
    lookup(&server, &pepper, &crafted[..10]).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "loading took {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let answer = lookup(&server, &pepper, &crafted[40_000..40_100]).await;
    let elapsed = started.elapsed();
    assert_eq!(answer["third_party_mappings"]["evil.example:443"].as_array().map(Vec::len), Some(100));
    assert!(elapsed < std::time::Duration::from_millis(50), "a lookup of 100 crafted hashes took {elapsed:?}");
    let server = server.restart_with(|_| {}).await;
    let started = std::time::Instant::now();
    lookup(&server, &pepper, &crafted[..10]).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "after a restart: {:?}", started.elapsed());
    server.stop().await;
}

// Several threads, as a deployed service has: on one thread the three pushers' requests take
// turns with B's follower at every row it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_are_never_missed_by_another_instance_under_concurrent_pushes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let a = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let b = Arc::new(a.twin().await);
    // Enough local 3PIDs that a rotation's deletes take a while: the window of the race, which
    // PostgreSQL has (SQLite serialises its writers, and is only checked for the outcome).
    let count = if common::Backend::from_env() == common::Backend::Postgres { 40_000 } else { 10_000 };
    let rows: Vec<federated_identity_service::store::NewThreepid> = (0..count)
        .map(|n| federated_identity_service::store::NewThreepid {
            medium: "email".into(),
            address: format!("u{n}@org.example"),
            mxid: format!("@u{n}:org.example"),
            active: true,
        })
        .collect();
    let changes = federated_identity_service::store::DirectoryChanges { added: rows, ..Default::default() };
    a.state.lookups.apply_directory_changes(&changes).await.unwrap();
    a.state.lookups.rotate_pepper().await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut pushers = Vec::new();
    for pusher in 0..3 {
        let (b, stop) = (Arc::clone(&b), Arc::clone(&stop));
        pushers.push(tokio::spawn(async move {
            let mut pushed = 0;
            while !stop.load(Ordering::Relaxed) {
                let details = b.call(Method::GET, "/_matrix/identity/v2/hash_details", None).await.body;
                let pepper = details["lookup_pepper"].as_str().unwrap_or_default().to_owned();
                let hashes = hashes_of(&[&format!("p{pusher}-{pushed}@t.example")], &pepper);
                let server = format!("pusher{pusher}.example:443");
                if push(&b, &push_body(&server, &pepper, &hashes)).await.status == 201 {
                    pushed += 1;
                }
            }
            pushed
        }));
    }
    for round in 0..3 {
        a.state.lookups.rotate_pepper().await.unwrap();
        let new = current_pepper(&a).await;
        let started = Instant::now();
        for server in [&a, b.as_ref()] {
            loop {
                let details = server.call(Method::GET, "/_matrix/identity/v2/hash_details", None).await.body;
                if details["lookup_pepper"] == new.as_str() {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "round {round}: an instance stays on the old pepper: {details}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for pusher in pushers {
        assert!(pusher.await.unwrap() > 0, "the pushes ran during the rotations");
    }
    Arc::into_inner(b).expect("no pusher holds B").stop().await;
    a.stop().await;
}

/// The answers of `server` to lookups of every address in `addresses` (at most 50: a lookup
/// takes 100 hashes), hashed with each live
/// pepper, naming each live pepper in turn.
async fn answers(server: &TestServer, addresses: &[String]) -> Vec<Value> {
    let peppers = server.state.store.peppers().await.unwrap();
    let live: Vec<String> = peppers.current.into_iter().chain(peppers.previous).collect();
    let everything: Vec<String> =
        live.iter().flat_map(|pepper| addresses.iter().map(|address| hash_3pid(address, "email", pepper))).collect();
    let mut answers = Vec::new();
    for pepper in &live {
        let body = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": everything }).to_string();
        let response = server.call(Method::POST, "/_matrix/identity/v2/lookup", Some(&body)).await;
        answers.push(json!({ "status": response.status, "body": response.body }));
    }
    answers
}

// The index is changed in place (a push merged by the push itself, another instance reading
// one snapshot, a rotation moving the current pepper's data to the previous slot): after each
// kind of change, the instance that wrote it, an instance that followed the change log, and an
// instance started afresh on the database must answer the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_each_kind_of_change_the_index_answers_what_a_rebuild_would() {
    let a = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let follower = a.twin().await;
    let addresses: Vec<String> = (0..48).map(|n| format!("person{n}@org.example")).collect();
    let named = |range: std::ops::Range<usize>| -> Vec<&str> { addresses[range].iter().map(String::as_str).collect() };
    let mut step = 0;
    let mut check = async |what: &str| {
        step += 1;
        let written = answers(&a, &addresses).await;
        assert!(
            written.iter().all(|answer| answer["status"] == 200)
                && written.iter().any(|answer| answer["body"] != json!({ "mappings": {}, "third_party_mappings": {} })),
            "step {step} ({what}): the lookups answer and find something: {written:?}"
        );
        let rebuilt = a.twin().await;
        assert_eq!(answers(&rebuilt, &addresses).await, written, "step {step} ({what}): a fresh instance");
        rebuilt.stop().await;
        let started = Instant::now();
        while answers(&follower, &addresses).await != written {
            assert!(started.elapsed() < Duration::from_secs(2), "step {step} ({what}): the follower differs");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let pepper = current_pepper(&a).await;
    assert_eq!(push(&a, &push_body("one.example", &pepper, &hashes_of(&named(0..30), &pepper))).await.status, 201);
    check("a first push").await;
    assert_eq!(push(&a, &push_body("two.example", &pepper, &hashes_of(&named(15..45), &pepper))).await.status, 201);
    check("a second server, overlapping").await;
    a.bind_email(&addresses[10], "@ten:org.example").await;
    a.bind_email(&addresses[46], "@forty-six:org.example").await;
    a.add_inactive_directory_email(&addresses[40], "@forty:org.example").await;
    check("local 3PIDs").await;
    assert_eq!(push(&a, &push_body("one.example", &pepper, &hashes_of(&named(24..36), &pepper))).await.status, 201);
    check("a snapshot replaced").await;
    assert_eq!(push(&a, &push_body("one.example", &pepper, &hashes_of(&named(24..37), &pepper))).await.status, 201);
    assert_eq!(select::<(i64,)>(&a, "SELECT COUNT(*) FROM push_deltas").await, [(1,)], "one hash more: a delta");
    check("a small change, stored as a delta").await;
    a.state.lookups.rotate_pepper().await.unwrap();
    check("a rotation").await;
    let new = current_pepper(&a).await;
    assert_eq!(push(&a, &push_body("one.example", &new, &hashes_of(&named(0..6), &new))).await.status, 201);
    assert_eq!(push(&a, &push_body("two.example", &pepper, &hashes_of(&named(40..48), &pepper))).await.status, 201);
    check("pushes under the new and the previous pepper").await;
    assert!(a.state.lookups.remove_binding("email", &addresses[10], "@ten:org.example").await.unwrap());
    check("an unbind").await;
    use federated_identity_service::store::{DirectoryChanges, NewThreepid};
    let added = (20..24)
        .map(|n| NewThreepid {
            medium: "email".into(),
            address: addresses[n].clone(),
            mxid: format!("@directory{n}:org.example"),
            active: n % 2 == 0,
        })
        .collect();
    a.state.lookups.apply_directory_changes(&DirectoryChanges { added, ..Default::default() }).await.unwrap();
    check("a directory sync adding users").await;
    let rows = a.state.store.directory_threepids().await.unwrap();
    let id_of = |n: usize| rows.iter().find(|row| row.address == addresses[n]).map(|row| row.id).unwrap();
    let changes = DirectoryChanges {
        updated: vec![
            (id_of(20), "@renamed:org.example".into(), false),
            (id_of(21), "@directory21:org.example".into(), true),
        ],
        removed: vec![id_of(22), id_of(40)],
        added: Vec::new(),
    };
    a.state.lookups.apply_directory_changes(&changes).await.unwrap();
    check("a directory sync changing and removing users").await;
    // More 3PIDs than a change row lists (10,000): every instance reads its own part again.
    let added = (0..10_001)
        .map(|n| NewThreepid {
            medium: "email".into(),
            address: addresses.get(30 + n).cloned().unwrap_or_else(|| format!("filler{n}@org.example")),
            mxid: format!("@large{n}:org.example"),
            active: true,
        })
        .collect();
    a.state.lookups.apply_directory_changes(&DirectoryChanges { added, ..Default::default() }).await.unwrap();
    check("a directory sync too large to list its 3PIDs").await;
    assert_eq!(push(&follower, &push_body("one.example", &new, &hashes_of(&named(3..9), &new))).await.status, 201);
    let started = Instant::now();
    while answers(&a, &addresses).await != answers(&follower, &addresses).await {
        assert!(started.elapsed() < Duration::from_secs(2), "a push on the follower reaches the writer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check("a push on another instance").await;
    a.state.lookups.rotate_pepper().await.unwrap();
    check("a second rotation, retiring the first pepper").await;
    let newest = current_pepper(&a).await;
    assert_eq!(push(&a, &push_body("two.example", &newest, &[])).await.status, 201);
    assert_eq!(push(&a, &push_body("one.example", &new, &[])).await.status, 201);
    a.bind_email(&addresses[3], "@three:org.example").await;
    check("emptied snapshots").await;
    follower.stop().await;
    a.stop().await;
}

// Two instances receiving pushes from the same server at the same moment take turns from
// reading the stored snapshot to their commit: the rows stay exactly the snapshot that won, and
// a later push is not refused over rows a lost race left behind (on PostgreSQL the rows are
// written by `COPY`, which fails on a duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_one_server_on_two_instances_take_turns() {
    let a = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let b = a.twin().await;
    let pepper = current_pepper(&a).await;
    let snapshot_of = |round: usize, side: &str| -> Vec<String> {
        let addresses: Vec<String> = (0..5_000).map(|n| format!("r{round}{side}{n}@org.example")).collect();
        hashes_of(&addresses.iter().map(String::as_str).collect::<Vec<_>>(), &pepper)
    };
    let sorted = |mut hashes: Vec<String>| {
        hashes.sort();
        hashes
    };
    for round in 0..4 {
        let (left, right) = (snapshot_of(round, "a"), snapshot_of(round, "b"));
        let (body_a, body_b) = (push_body("one.example", &pepper, &left), push_body("one.example", &pepper, &right));
        let (on_a, on_b) = tokio::join!(push(&a, &body_a), push(&b, &body_b));
        assert_eq!((on_a.status, on_b.status), (201, 201), "round {round}: {:?} {:?}", on_a.body, on_b.body);
        let server = a.state.store.push_snapshots().await.unwrap().remove(0).server;
        let held = a.state.store.snapshot_hashes(&server, &pepper).await.unwrap().expect("a snapshot");
        let stored = sorted(held.hashes.iter().map(LookupHash::text).collect());
        assert!(
            stored == sorted(left.clone()) || stored == sorted(right.clone()),
            "round {round}: the stored snapshot is one of the two, not a mix ({} hashes)",
            stored.len()
        );
        for (instance, snapshot) in [(&a, &left), (&b, &right)] {
            let again = push(instance, &push_body("one.example", &pepper, snapshot)).await;
            assert_eq!(again.status, 201, "round {round}: a push after the race: {:?}", again.body);
        }
    }
    b.stop().await;
    a.stop().await;
}

// A push whose caller goes away at any moment (dropped after 0, 2, 4, ... 58 ms: before, during
// or after its write) leaves the instance answering what the database holds within a few polls,
// as a fresh instance would: no half-merged or unstored snapshot in memory. The narrow window
// between the commit and the merge, where the refresh skips the push as this instance's own,
// is rarely hit by timing; the unit test
// `a_push_gone_between_its_commit_and_its_merge_is_read_again` (lookups/index.rs) covers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_dropped_at_any_point_leaves_the_index_answering_what_is_stored() {
    use federated_identity_service::lookups::push::PushRequest;
    use std::collections::HashMap;
    let a = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let pepper = current_pepper(&a).await;
    let probes: Vec<String> = (0..30).map(|n| format!("probe{n}@org.example")).collect();
    for attempt in 0..30 {
        let mut addresses: Vec<String> = (0..5_000).map(|n| format!("a{attempt}-{n}@org.example")).collect();
        addresses.push(probes[attempt].clone());
        let hashes = hashes_of(&addresses.iter().map(String::as_str).collect::<Vec<_>>(), &pepper);
        let request = PushRequest {
            algorithm: "sha256".into(),
            pepper: pepper.clone(),
            mappings: HashMap::from([("one.example".to_owned(), hashes)]),
        };
        let waited = Duration::from_millis(2 * attempt as u64);
        let _ = tokio::time::timeout(waited, a.state.lookups.accept_push(None, request.into(), None)).await;
        let rebuilt = a.twin().await;
        let stored = answers(&rebuilt, &probes).await;
        rebuilt.stop().await;
        let started = Instant::now();
        while answers(&a, &probes).await != stored {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "attempt {attempt}: the index differs from the database"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    a.stop().await;
}

// A push the database refuses at its last write (here a check that its snapshot breaks, after
// the deltas were deleted and, on PostgreSQL, the previous row too) answers a Matrix error and
// leaves the previous snapshot whole, in the database and in lookups; the same push goes
// through once the obstacle is gone.
#[tokio::test]
async fn a_push_refused_halfway_by_the_database_leaves_the_previous_snapshot() {
    let server = TestServer::start_with(trusting(&["127.0.0.1"])).await;
    let pepper = current_pepper(&server).await;
    let before: Vec<String> = (0..10).map(|n| format!("before{n}@org.example")).collect();
    let after: Vec<String> = (0..30_000).map(|n| format!("after{n}@org.example")).collect();
    let hashes = |addresses: &[String]| hashes_of(&addresses.iter().map(String::as_str).collect::<Vec<_>>(), &pepper);
    assert_eq!(push(&server, &push_body("org.example", &pepper, &hashes(&before))).await.status, 201);
    let (check, uncheck) = if server.config().database_engine == "pg" {
        (
            "ALTER TABLE push_snapshots ADD CONSTRAINT poisoned CHECK (hash_count <> 30000)".to_owned(),
            "ALTER TABLE push_snapshots DROP CONSTRAINT poisoned".to_owned(),
        )
    } else {
        (
            "CREATE TRIGGER poisoned BEFORE UPDATE ON push_snapshots WHEN NEW.hash_count = 30000 \
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
                .to_owned(),
            "DROP TRIGGER poisoned".to_owned(),
        )
    };
    run_sql(&server, &check).await;
    let body = push_body("org.example", &pepper, &hashes(&after));
    let failed = push(&server, &body).await;
    assert_eq!(failed.status, 500, "{:?}", failed.body);
    assert_eq!(failed.body["errcode"], "M_UNKNOWN");
    assert!(!failed.body["error"].as_str().unwrap_or_default().contains("poisoned"), "no database text leaks");
    let probe = |addresses: &[String]| {
        json!({ "algorithm": "sha256", "pepper": pepper, "addresses": hashes(&addresses[..5]) }).to_string()
    };
    let found = |response: &Response| response.body["third_party_mappings"]["org.example:443"].as_array().map(Vec::len);
    for instance in [&server, &server.twin().await] {
        let old = instance.call(Method::POST, "/_matrix/identity/v2/lookup", Some(&probe(&before))).await;
        assert_eq!(found(&old), Some(5), "the previous snapshot answers: {:?}", old.body);
        let new = instance.call(Method::POST, "/_matrix/identity/v2/lookup", Some(&probe(&after))).await;
        assert_eq!(found(&new), None, "nothing of the refused one: {:?}", new.body);
    }
    run_sql(&server, &uncheck).await;
    let stored = push(&server, &body).await;
    assert_eq!(stored.body, json!({ "stored": 30_000, "added": 30_000, "removed": 10 }));
    let new = server.call(Method::POST, "/_matrix/identity/v2/lookup", Some(&probe(&after))).await;
    assert_eq!(found(&new), Some(5));
    server.stop().await;
}
