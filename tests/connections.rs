//! Connection limits and timeouts of the listener, against the binary run under a small
//! open-files limit: a flood of idle connections, and a client that never finishes its headers.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_federated-identity-service");

struct Running {
    child: Child,
    address: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service with `ulimit -n 1024`, a 2 s header timeout, SQLite in `dir`.
fn spawn(dir: &std::path::Path) -> Running {
    spawn_under(dir, "ulimit -n 1024", &[("HTTP_HEADER_TIMEOUT", "2")])
}

/// The service started by `sh` after `setup` (limits), with `env`, SQLite in `dir`.
fn spawn_under(dir: &std::path::Path, setup: &str, env: &[(&str, &str)]) -> Running {
    let mut child = Command::new("sh")
        .args(["-c", &format!("{setup} && exec \"$0\""), BINARY])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LISTEN_PORT", "0")
        .envs(env.iter().copied())
        .current_dir(dir)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the service");
    let (url, log) = common::process::listening_address(&mut child);
    Running { child, address: url.trim_start_matches("http://").to_owned(), log }
}

/// `GET /_matrix/identity/v2` on a new connection; the status, or the I/O error.
fn status(address: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /_matrix/identity/v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    answer.split_whitespace().nth(1).and_then(|code| code.parse().ok()).ok_or_else(|| format!("no status: {answer:?}"))
}

#[test]
fn a_flood_of_idle_connections_does_not_lock_out_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    let running = spawn(dir.path());
    let started = Instant::now();
    while !running.log.lock().unwrap().contains("http_max_connections lowered to fit the open-files limit") {
        assert!(started.elapsed() < Duration::from_secs(5), "{}", running.log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    let idle: Vec<TcpStream> = (0..1_100).filter_map(|_| TcpStream::connect(&running.address).ok()).collect();
    assert_eq!(idle.len(), 1_100, "the backlog takes every connection");
    for attempt in 0..5 {
        let started = Instant::now();
        assert_eq!(status(&running.address), Ok(200), "health check {attempt} during the flood");
        assert!(started.elapsed() < Duration::from_secs(2), "answered in {:?}", started.elapsed());
    }
    drop(idle);
}

#[test]
fn a_request_head_that_never_ends_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let running = spawn(dir.path());
    let mut slow = TcpStream::connect(&running.address).unwrap();
    slow.write_all(b"GET /_matrix/identity/v2 HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "the slow client was cut off after {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(1500), "not before the header timeout: {elapsed:?}");
    // An idle keep-alive connection is closed the same way.
    let mut idle = TcpStream::connect(&running.address).unwrap();
    idle.write_all(b"GET /_matrix/identity/v2 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = idle.read_to_end(&mut answer);
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() < Duration::from_secs(5), "idle keep-alive closed after {:?}", started.elapsed());
    assert_eq!(status(&running.address), Ok(200), "the service still answers");
}

/// A push of `count` fresh hashes from a trusted caller, with the current pepper.
fn push(address: &str, pepper: &str, prefix: &str, count: usize) -> Result<u16, String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hashes: Vec<String> = (0..count)
        .map(|n| {
            let digest = sha2::Sha256::digest(format!("{prefix}{n}").as_bytes());
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
        })
        .collect();
    let body =
        serde_json::json!({ "algorithm": "sha256", "pepper": pepper, "mappings": { "full.example:443": hashes } });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("http://{address}/_matrix/identity/v2/lookups"))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok(response.status().as_u16())
    })
}

fn current_pepper(address: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let details: serde_json::Value = reqwest::get(format!("http://{address}/_matrix/identity/v2/hash_details"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        details["lookup_pepper"].as_str().unwrap().to_owned()
    })
}

/// Hashes in a push that cannot be written under an 8 MB file-size limit: their packed copy
/// alone takes 12.8 MB (32 bytes each).
const HASHES_OVER_8_MB: usize = 400_000;

#[test]
fn a_full_disk_fails_writes_cleanly_and_the_service_recovers_when_space_is_freed() {
    // The service's own SQLite file fills up here, whatever the suite's engine.
    let dir = tempfile::tempdir().unwrap();
    // The file-size limit stands for a full disk (SIGXFSZ ignored, so writes fail with EFBIG),
    // and raising it with prlimit for freeing space.
    let running =
        spawn_under(dir.path(), "trap '' XFSZ; ulimit -S -f 16384", &[("TRUSTED_SERVERS_ADDRESSES", "127.0.0.1")]);
    let pepper = current_pepper(&running.address);
    assert_eq!(push(&running.address, &pepper, "small", 10), Ok(201));
    // The push does not fit in 8 MB: it fails, as a Matrix error, nothing half-written.
    let failed = push(&running.address, &pepper, "big", HASHES_OVER_8_MB);
    assert!(matches!(failed, Ok(500 | 503)), "{failed:?}\n{}", running.log.lock().unwrap());
    // Space freed: writes succeed again within seconds, without a restart.
    let freed = Command::new("prlimit")
        .args(["--pid", &running.child.id().to_string(), "--fsize=unlimited:unlimited"])
        .output()
        .unwrap();
    assert!(freed.status.success(), "{}\n{}", String::from_utf8_lossy(&freed.stderr), running.log.lock().unwrap());
    let started = Instant::now();
    loop {
        match push(&running.address, &pepper, "after", 10) {
            Ok(201) => break,
            other => assert!(
                started.elapsed() < Duration::from_secs(5),
                "writes still fail after space was freed: {other:?}\n{}",
                running.log.lock().unwrap()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every pooled connection comes round (the pool hands them out in turn): none is left broken.
    for attempt in 0..12 {
        let pushed = push(&running.address, &pepper, &format!("again{attempt}-"), 10);
        assert_eq!(pushed, Ok(201), "write {attempt} after recovery:\n{}", running.log.lock().unwrap());
    }
    let pushed = push(&running.address, &pepper, "big", HASHES_OVER_8_MB);
    assert_eq!(pushed, Ok(201), "the big push fits now:\n{}", running.log.lock().unwrap());
}
