//! Logging: structured text or JSON lines to the console and/or files, at a level named as in
//! the Node service.
//!
//! The Node service uses winston's levels; they map to `tracing` levels as follows:
//! `error`, `warn`, `info` as they are; `http` to `info` (request lines are logged at `info`);
//! `verbose` and `debug` to `debug`; `silly` to `trace`. `RUST_LOG`, when set, replaces the
//! whole filter for finer control.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

use crate::config::LoggingConfig;

/// Maps a Node (winston) level name to a `tracing` level; `None` for an unknown name.
#[must_use]
pub fn level_filter(level: &str) -> Option<LevelFilter> {
    Some(match level.to_ascii_lowercase().as_str() {
        "error" => LevelFilter::ERROR,
        "warn" | "warning" => LevelFilter::WARN,
        "info" | "http" => LevelFilter::INFO,
        "verbose" | "debug" => LevelFilter::DEBUG,
        "silly" | "trace" => LevelFilter::TRACE,
        _ => return None,
    })
}

/// Keeps the background log writers alive; logs are flushed when it is dropped.
#[must_use = "dropping the guard stops file logging"]
pub struct LogGuard {
    _writers: Vec<WorkerGuard>,
}

/// Installs the global logger. Returns an error when a log file cannot be opened; a second
/// call in the same process (as in tests) leaves the first logger in place.
pub fn init(logging: &LoggingConfig) -> anyhow::Result<LogGuard> {
    let level = level_filter(&logging.log_level).unwrap_or(LevelFilter::INFO);
    let filter = std::env::var("RUST_LOG").ok().and_then(|spec| EnvFilter::try_new(spec).ok()).unwrap_or_else(|| {
        // Dependencies speak only about problems unless asked for more with RUST_LOG: at their
        // debug and trace levels some print what they carry (mails, URLs with tokens).
        EnvFilter::new(format!(
            "{level},sqlx=warn,hyper=warn,hyper_util=warn,h2=warn,rustls=warn,tokio_rustls=warn,reqwest=warn,\
             lettre=warn,ldap3=warn,hickory_resolver=warn,hickory_proto=warn"
        ))
    });

    let json = logging.log_format == "json";
    let mut guards = Vec::new();
    let mut layers: Vec<Box<dyn Layer<_> + Send + Sync>> = Vec::new();
    if !logging.silent {
        for transport in &logging.log_transports {
            let writer = match transport.kind() {
                "Console" => tracing_appender::non_blocking(std::io::stderr()),
                kind => {
                    let file = transport.filename().unwrap_or(&logging.log_file);
                    let path = Path::new(file);
                    let directory = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                    let name = path.file_name().ok_or_else(|| anyhow::anyhow!("log file `{file}` has no file name"))?;
                    std::fs::create_dir_all(directory)?;
                    let appender = if kind == "DailyRotateFile" {
                        tracing_appender::rolling::daily(directory, name)
                    } else {
                        tracing_appender::rolling::never(directory, name)
                    };
                    tracing_appender::non_blocking(appender)
                }
            };
            let (writer, guard) = writer;
            guards.push(guard);
            let layer = fmt::layer().with_writer(writer).with_ansi(false);
            layers.push(if json { layer.json().flatten_event(true).boxed() } else { layer.boxed() });
        }
    }
    // Ignore the error of a second initialisation in one process (tests start many servers).
    let _ = tracing_subscriber::registry().with(filter).with(layers).try_init();
    Ok(LogGuard { _writers: guards })
}

/// How often a long job reports its progress.
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The progress of a long job (a rotation, an import, a push of a big snapshot): rows done, of
/// how many, at what rate, logged at most every [`PROGRESS_EVERY`], then a summary. Fields are
/// numbers in JSON logs.
#[derive(Debug)]
pub struct Progress {
    job: &'static str,
    total: Option<u64>,
    done: u64,
    started: std::time::Instant,
    last_report: std::time::Instant,
    every: std::time::Duration,
}

impl Progress {
    /// Starts counting `total` rows (when known) for `job`.
    #[must_use]
    pub fn new(job: &'static str, total: Option<u64>) -> Self {
        Self::reporting_every(job, total, PROGRESS_EVERY)
    }

    /// As [`Self::new`], reporting every `every`.
    #[must_use]
    pub fn reporting_every(job: &'static str, total: Option<u64>, every: std::time::Duration) -> Self {
        let now = std::time::Instant::now();
        Self { job, total, done: 0, started: now, last_report: now, every }
    }

    /// Counts `rows` more rows done; logs the progress when the last report is older than the
    /// interval, and returns whether it did.
    pub fn add(&mut self, rows: u64) -> bool {
        self.done = self.done.saturating_add(rows);
        if self.last_report.elapsed() < self.every {
            return false;
        }
        self.last_report = std::time::Instant::now();
        let rows_per_second = self.rate();
        tracing::info!(job = self.job, done = self.done, total = self.total, rows_per_second, "progress");
        true
    }

    /// Logs the summary: rows done, seconds, rate.
    pub fn finish(&self) {
        let seconds = self.started.elapsed().as_secs_f64();
        let rows_per_second = self.rate();
        tracing::info!(job = self.job, done = self.done, seconds, rows_per_second, "progress: done");
    }

    /// Rows done so far.
    #[must_use]
    pub fn done(&self) -> u64 {
        self.done
    }

    fn rate(&self) -> u64 {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rate = (self.done as f64 / seconds) as u64;
        rate
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn progress_is_reported_only_once_the_interval_has_passed() {
        let mut quiet = Progress::new("test", Some(10));
        assert!(!quiet.add(5), "within the interval");
        let mut eager = Progress::reporting_every("test", Some(10), std::time::Duration::ZERO);
        assert!(eager.add(4));
        assert!(eager.add(6));
        assert_eq!(eager.done(), 10);
    }
}
