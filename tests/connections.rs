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
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -n 1024 && exec \"$0\"", BINARY])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LISTEN_PORT", "0")
        .env("HTTP_HEADER_TIMEOUT", "2")
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
