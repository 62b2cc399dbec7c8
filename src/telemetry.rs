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
