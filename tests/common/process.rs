//! The service as a child process: waiting for the address it logs.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Reads the stderr of `child` (spawned with `Stdio::piped()`) until its "listening on" line
/// and returns the address logged there (`http://127.0.0.1:PORT` or `https://...`), with the
/// log so far and to come. Panics with the log when nothing is logged within 30 s.
pub fn listening_address(child: &mut Child) -> (String, Arc<Mutex<String>>) {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    let log = Arc::new(Mutex::new(String::new()));
    let written = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let address: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != '"').collect();
                let _ = sender.send(address);
            }
            let mut log = written.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let address = receiver.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|error| {
        std::thread::sleep(Duration::from_millis(200));
        let status = child.try_wait();
        panic!("the service did not log its address ({error}, exit: {status:?}); its log:\n{}", log.lock().unwrap())
    });
    (address, log)
}
