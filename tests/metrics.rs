//! Prometheus metrics on their own listener: a scripted session against the binary (one
//! process, so that nothing else moves its counters), then one scrape whose counters must have
//! moved by exactly what the session did.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use common::Backend;
use federated_identity_service::vocabulary::hash_3pid;
use serde_json::{Value, json};

/// The samples of a scrape: `name{labels}` -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(series, value)| (series.to_owned(), value.parse().expect("a number")))
        .collect()
}

#[tokio::test]
async fn a_scripted_session_moves_the_counters_by_exactly_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(&dir, Backend::from_env()).await;
    config.metrics_listen = "127.0.0.1:0".into();
    config.trusted_servers_addresses = vec!["127.0.0.1".into()];
    let file = dir.path().join("config.json");
    std::fs::write(&file, serde_json::to_string(&config).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_federated-identity-service"))
        .arg("--config")
        .arg(&file)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (public, log) = common::process::listening_address(&mut child);
    let metrics = {
        let started = std::time::Instant::now();
        loop {
            let text = log.lock().unwrap().clone();
            if let Some(rest) = text.split("metrics listening on ").nth(1) {
                break rest.split(|c: char| c.is_whitespace() || c == '"').next().unwrap().to_owned();
            }
            assert!(started.elapsed().as_secs() < 10, "no metrics listener logged:\n{text}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{public}{path}")).send();
    let post = |path: &str, body: Value| client.post(format!("{public}{path}")).json(&body).send();

    for _ in 0..3 {
        assert_eq!(get("/_matrix/identity/v2").await.unwrap().status(), 200);
    }
    assert_eq!(get("/no/such/path").await.unwrap().status(), 404);
    assert_eq!(get("/metrics").await.unwrap().status(), 404, "no metrics on the public listener");
    let details: Value = get("/_matrix/identity/v2/hash_details").await.unwrap().json().await.unwrap();
    let pepper = details["lookup_pepper"].as_str().unwrap().to_owned();
    let hashes: Vec<String> = (0..5).map(|n| hash_3pid(&format!("user{n}@pusher.example"), "email", &pepper)).collect();
    let push = json!({ "algorithm": "sha256", "pepper": pepper, "mappings": { "pusher.example": hashes } });
    let push_length = serde_json::to_vec(&push).unwrap().len();
    assert_eq!(post("/_matrix/identity/v2/lookups", push).await.unwrap().status(), 201);
    let wrong = json!({ "algorithm": "sha256", "pepper": "not-ours", "mappings": { "pusher.example": [] } });
    let pushed_bytes = push_length + serde_json::to_vec(&wrong).unwrap().len();
    assert_eq!(post("/_matrix/identity/v2/lookups", wrong).await.unwrap().status(), 400);
    let asked = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hashes[0], hashes[1], hash_3pid("x@y.z", "email", &pepper)] });
    let answer: Value = post("/_matrix/identity/v2/lookup", asked).await.unwrap().json().await.unwrap();
    assert_eq!(answer["third_party_mappings"]["pusher.example:443"].as_array().map(Vec::len), Some(2), "{answer}");

    // The index counts pushed hashes once the push is merged into its arrays, which follows the
    // push's answer in the background (within a second).
    let index_gauge = r#"fis_index_hashes{source="pushed",pepper="current"}"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let found = loop {
        let scrape = client.get(&metrics).send().await.unwrap();
        assert_eq!(scrape.status(), 200);
        assert!(scrape.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        let found = samples(&scrape.text().await.unwrap());
        if found.get(index_gauge) == Some(&5.0) || std::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let expect = [
        (r#"fis_http_requests_total{route="/_matrix/identity/v2",method="GET",status="200"}"#, 3.0),
        (r#"fis_http_requests_total{route="unmatched",method="GET",status="404"}"#, 2.0),
        (r#"fis_http_requests_total{route="/_matrix/identity/v2/hash_details",method="GET",status="200"}"#, 1.0),
        (r#"fis_http_requests_total{route="/_matrix/identity/v2/lookups",method="POST",status="201"}"#, 1.0),
        (r#"fis_http_requests_total{route="/_matrix/identity/v2/lookups",method="POST",status="400"}"#, 1.0),
        (r#"fis_http_requests_total{route="/_matrix/identity/v2/lookup",method="POST",status="200"}"#, 1.0),
        (r#"fis_http_request_duration_seconds_count{route="/_matrix/identity/v2"}"#, 3.0),
        (r#"fis_pushes_total{result="accepted"}"#, 1.0),
        (r#"fis_pushes_total{result="refused",reason="M_INVALID_PEPPER"}"#, 1.0),
        ("fis_push_hashes_added_total", 5.0),
        ("fis_push_hashes_removed_total", 0.0),
        ("fis_push_body_bytes_count", 2.0),
        ("fis_push_body_bytes_sum", pushed_bytes as f64),
        (r#"fis_lookup_requests_total{algorithm="sha256"}"#, 1.0),
        (r#"fis_lookup_addresses_total{algorithm="sha256"}"#, 3.0),
        (r#"fis_lookup_found_total{algorithm="sha256",kind="own"}"#, 0.0),
        (r#"fis_lookup_found_total{algorithm="sha256",kind="third_party"}"#, 2.0),
        (index_gauge, 5.0),
        (r#"fis_index_hashes{source="local",pepper="current"}"#, 0.0),
        ("fis_database_up", 1.0),
    ];
    for (series, value) in expect {
        assert_eq!(found.get(series), Some(&value), "{series} in {found:#?}");
    }
    let build_info = format!("fis_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(found.get(&build_info), Some(&1.0), "{build_info}");
    assert!(!found.keys().any(|series| series.starts_with("fis_rate_limited_total")), "nothing was rate limited");
    assert!(found.keys().any(|series| series.starts_with("fis_database_connections{state=\"open\"}")));
    let _ = child.kill();
    let _ = child.wait();
}

/// The Grafana dashboard in docs/ plots only series the service records and documents: a
/// series renamed in `src/metrics.rs` must be renamed there too.
#[test]
fn the_dashboard_plots_only_recorded_and_documented_series() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let dashboard = read("docs/grafana/federated-identity-service.json");
    let parsed: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(!parsed["panels"].as_array().unwrap().is_empty());
    let (recorder, documented) = (read("src/metrics.rs"), read("docs/operations.md"));
    let mut names: Vec<&str> = dashboard
        .match_indices("fis_")
        .map(|(start, _)| {
            let rest = &dashboard[start..];
            &rest[..rest.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(rest.len())]
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 15, "{names:?}");
    for name in names {
        let series = name.trim_end_matches("_bucket");
        assert!(recorder.contains(&format!("\"{series}\"")), "{series} is not recorded by src/metrics.rs");
        assert!(documented.contains(&format!("`{series}`")), "{series} is not documented in docs/operations.md");
    }
}
