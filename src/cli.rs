//! Command line: `serve` (the default), `check-config`, the operator commands and `healthcheck`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::config::{self, Config, ConfigSources, LoadedConfig};
use crate::settings::Settings;
use crate::{App, telemetry};

/// Matrix Identity Service with the MSC4004 unified view of federated identity services.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file (JSON or YAML). Default: the file named by
    /// TWAKE_FEDERATED_IDENTITY_SERVICE_CONF, else /etc/twake/federated-identity-service.conf,
    /// else built-in defaults.
    #[arg(long, short, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Load and validate the configuration, print it with secrets masked, and exit non-zero
    /// naming every problem.
    CheckConfig,
    /// Print the state kept in the database: peppers, local 3PIDs and hashes, hashes pushed
    /// per server and pepper with the time of the last push, scheduled job runs.
    Inspect,
    /// Read the user directory and apply the difference now (as the `update_users_cron` job
    /// does); prints what changed.
    SyncDirectory,
    /// Rotate the lookup pepper now (as the `pepperCron` job does; running instances see the
    /// new pepper at once).
    RotatePepper,
    /// Import the database of a Node identity service (`@twake/federated-identity-service`)
    /// into this service's database: peppers, access tokens, bindings, pushed hashes, pending
    /// invitations, live validation sessions, terms acceptances and a usable signing key. The
    /// Node database is only read. Prints what was imported per table, what was skipped and
    /// why; running it again changes nothing.
    ImportNodeDb {
        /// The Node database: a SQLite file, or a `postgres://` URL.
        #[arg(long, value_name = "SQLITE FILE | POSTGRES URL")]
        from: String,
        /// Import even into a database that already holds data of its own (access tokens,
        /// bindings, pushes, invitations, sessions or terms acceptances): the Node rows are
        /// added; rows of the same key already there are kept.
        #[arg(long)]
        force: bool,
    },
    /// Forget a 3PID (an erasure request): remove its bindings (whoever it is bound to) with
    /// their lookup hashes, the invitations to it and its validation sessions; prints what was
    /// removed, and how many directory entries still hold it (remove it from the directory
    /// too, or the next sync publishes it again). Running instances drop it at once.
    #[command(name = "forget-3pid")]
    ForgetThreepid {
        /// `email` or `msisdn`.
        #[arg(long)]
        medium: String,
        /// The address (normalised as the service stores it: e-mail lower-cased, phone digits).
        #[arg(long)]
        address: String,
    },
    /// List the access tokens of a user (creation and expiry; a digest prefix, never the
    /// token, which is not stored).
    ListTokens {
        /// The Matrix user ID.
        #[arg(long)]
        user: String,
    },
    /// Revoke every access token of a user (a compromised account); running instances refuse
    /// them within a second (they believe a token read for at most that long). The user's
    /// clients register again.
    RevokeTokens {
        /// The Matrix user ID.
        #[arg(long)]
        user: String,
    },
    /// Print the long-term signing keys in the Synapse/Sydent key file format
    /// (`ed25519 <version> <seed>`), newest first, for a backup or another deployment. They are
    /// private keys: written to `--output` with mode 0600, or to standard output.
    ExportKeys {
        /// File to write (created with mode 0600; must not exist).
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Make the key of a Synapse/Sydent key file the key this service signs with (key
    /// rotation); older keys stay valid for verification. Restart running instances to sign
    /// with it.
    ImportKeys {
        /// The key file (`ed25519 <version> <seed>`).
        #[arg(long, value_name = "PATH")]
        from: PathBuf,
    },
    /// Print the API description (OpenAPI 3.1, every route including v1), as served at
    /// `/_matrix/identity/openapi.json` and shipped as `docs/openapi.json`.
    Openapi,
    /// Exit 0 when a running instance answers its status endpoint (for container health
    /// checks).
    Healthcheck {
        /// Base URL of the instance; default: the configured listen address and port.
        #[arg(long)]
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

/// Parses the command line and runs the command; the process exit code is returned.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if matches!(cli.command, None | Some(Command::Serve)) {
        // Lookups woken while the database or a push works on the same cores get one at once.
        crate::scheduling::serve_promptly();
        builder.on_thread_start(crate::scheduling::serve_promptly);
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let sources = ConfigSources::from_process(cli.config);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => runtime.block_on(serve(&sources)),
        Command::CheckConfig => check_config(&sources),
        Command::Openapi => {
            println!("{}", crate::http::openapi::to_json(&crate::http::api_description()));
            ExitCode::SUCCESS
        }
        Command::Inspect => runtime.block_on(inspect(&sources)),
        Command::RotatePepper => runtime.block_on(rotate_pepper(&sources)),
        Command::SyncDirectory => runtime.block_on(sync_directory(&sources)),
        Command::ForgetThreepid { medium, address } => runtime.block_on(forget_threepid(&sources, &medium, &address)),
        Command::ListTokens { user } => runtime.block_on(list_tokens(&sources, &user)),
        Command::RevokeTokens { user } => runtime.block_on(revoke_tokens(&sources, &user)),
        Command::ExportKeys { output } => runtime.block_on(export_keys(&sources, output.as_deref())),
        Command::ImportKeys { from } => runtime.block_on(import_keys(&sources, &from)),
        Command::ImportNodeDb { from, force } => runtime.block_on(import_node_db(&sources, &from, force)),
        Command::Healthcheck { url, timeout } => runtime.block_on(healthcheck(&sources, url, timeout)),
    }
}

/// Loads and validates; on failure prints every problem to stderr.
fn load_valid(sources: &ConfigSources) -> Option<(LoadedConfig, Settings)> {
    let problems = match config::load(sources) {
        Ok(loaded) => match Settings::from_config(loaded.config.clone()) {
            Ok(settings) => return Some((loaded, settings)),
            Err(invalid) => invalid.problems,
        },
        Err(error) => error.problems,
    };
    eprintln!("invalid configuration:");
    for problem in problems {
        eprintln!("  - {problem}");
    }
    None
}

async fn serve(sources: &ConfigSources) -> ExitCode {
    // First of all, so that a stop request during startup is honoured once serving begins.
    let shutdown = crate::app::shutdown_signal();
    let Some((loaded, settings)) = load_valid(sources) else { return ExitCode::from(2) };
    let _log_guard = match telemetry::init(&loaded.config.logging) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("cannot set up logging: {error}");
            return ExitCode::from(2);
        }
    };
    log_configuration(&loaded);
    let config = loaded.config;
    let address = SocketAddr::new(config.listen_address, config.listen_port);
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%address, %error, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let app = match App::builder_for(settings).build().await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!("cannot start: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    match app.serve(listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("server error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn log_configuration(loaded: &LoadedConfig) {
    match &loaded.file {
        Some(file) => tracing::info!(file = %file.display(), "configuration file"),
        None => tracing::info!("no configuration file: built-in defaults"),
    }
    if !loaded.env_overrides.is_empty() {
        tracing::info!(variables = %loaded.env_overrides.join(", "), "configuration from the environment");
    }
    if !loaded.ignored_keys.is_empty() {
        tracing::warn!(
            keys = %loaded.ignored_keys.join(", "),
            "these keys belong to the wider Twake server or the base identity server and are ignored"
        );
    }
    if let Some(variables) = crowdsec_variables() {
        tracing::warn!(
            %variables,
            "CrowdSec is not supported: no bouncer runs in this service; put one in the reverse proxy in front of it"
        );
    }
}

/// The CrowdSec variables of the Node service that are set, if any: that service mounted a
/// bouncer when they were; this one does not, and says so rather than ignore them silently.
fn crowdsec_variables() -> Option<String> {
    let set: Vec<&str> =
        ["CROWDSEC_URI", "CROWDSEC_KEY"].into_iter().filter(|name| std::env::var_os(name).is_some()).collect();
    (!set.is_empty()).then(|| set.join(", "))
}

fn check_config(sources: &ConfigSources) -> ExitCode {
    // 2, as every command for an unusable configuration.
    let Some((loaded, _)) = load_valid(sources) else { return ExitCode::from(2) };
    match &loaded.file {
        Some(file) => eprintln!("configuration file: {}", file.display()),
        None => eprintln!("configuration file: none (built-in defaults)"),
    }
    if !loaded.env_overrides.is_empty() {
        eprintln!("environment overrides: {}", loaded.env_overrides.join(", "));
    }
    if !loaded.ignored_keys.is_empty() {
        eprintln!("ignored keys of the Twake server or the base identity server: {}", loaded.ignored_keys.join(", "));
    }
    if let Some(variables) = crowdsec_variables() {
        eprintln!("not supported, ignored: {variables} (no CrowdSec bouncer runs in this service)");
    }
    let shown = masked(&loaded.config);
    println!("{}", serde_json::to_string_pretty(&shown).unwrap_or_default());
    ExitCode::SUCCESS
}

/// The configuration as JSON with every secret replaced by `********`.
#[must_use]
pub fn masked(config: &Config) -> Value {
    fn mask(value: &mut Value) {
        if let Value::Array(items) = value {
            items.iter_mut().for_each(mask);
        }
        if let Value::Object(map) = value {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(text) if config::is_secret_key(key) && !text.is_empty() => {
                        *text = "********".to_owned();
                    }
                    Value::String(text) => {
                        // A connection URL may carry a password: postgres://user:secret@host/db
                        if let Ok(mut url) = reqwest::Url::parse(text)
                            && url.password().is_some()
                            && url.set_password(Some("********")).is_ok()
                        {
                            *text = url.to_string();
                        }
                    }
                    other => mask(other),
                }
            }
        }
    }
    let mut value = serde_json::to_value(config).unwrap_or(Value::Null);
    mask(&mut value);
    value
}

async fn sync_directory(sources: &ConfigSources) -> ExitCode {
    let Some((loaded, settings)) = load_valid(sources) else { return ExitCode::from(2) };
    let _log = telemetry::init(&loaded.config.logging).ok();
    const NO_DIRECTORY: &str = "no user directory is configured (userdb_engine)";
    if loaded.config.userdb_engine.is_empty() {
        eprintln!("{NO_DIRECTORY}");
        return ExitCode::from(2);
    }
    if let Err(code) = require_existing_database(&loaded.config).await {
        return code;
    }
    let app = match App::builder_for(settings).build().await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("cannot start: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let Some(sync) = &app.state().directory_sync else {
        eprintln!("{NO_DIRECTORY}");
        return ExitCode::from(2);
    };
    match sync.sync().await {
        Ok(summary) => {
            let report = serde_json::json!({
                "users": summary.users, "added": summary.added, "removed": summary.removed,
                "changed": summary.changed, "skipped": summary.skipped,
                "seconds": started.elapsed().as_secs_f64(),
            });
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("directory sync failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The database of a valid configuration, for the commands that need nothing else, with the
/// configured logging (on standard error, so that what a command prints stays clean); the exit
/// code to return otherwise (2: bad configuration, 1: database unreachable).
async fn open_store(sources: &ConfigSources) -> Result<(crate::store::Store, Option<telemetry::LogGuard>), ExitCode> {
    let Some((loaded, _)) = load_valid(sources) else { return Err(ExitCode::from(2)) };
    let log = telemetry::init(&loaded.config.logging).ok();
    require_existing_database(&loaded.config).await?;
    let store = crate::store::Store::connect(&loaded.config).await.map_err(|error| {
        eprintln!("cannot open the database: {error}");
        ExitCode::FAILURE
    })?;
    Ok((store, log))
}

/// Refuses a database that does not exist (exit 2, naming it) or cannot be reached (exit 1).
async fn require_existing_database(config: &Config) -> Result<(), ExitCode> {
    match crate::store::Store::require_existing(config).await {
        Ok(()) => Ok(()),
        Err(error @ crate::store::StoreError::Missing(_)) => {
            eprintln!("{error}: only `serve` creates a database; check data_dir / database_* keys");
            Err(ExitCode::from(2))
        }
        Err(error @ crate::store::StoreError::NodeDatabase(_)) => {
            eprintln!("{error}");
            Err(ExitCode::from(2))
        }
        Err(error) => {
            eprintln!("cannot open the database: {error}");
            Err(ExitCode::FAILURE)
        }
    }
}

async fn rotate_pepper(sources: &ConfigSources) -> ExitCode {
    let (store, _log) = match open_store(sources).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    // The scheduler's lease: never two rotations at once, whoever starts them.
    let holder = format!("rotate-pepper-command-{}", crate::secret::random_secret(6));
    let clock = crate::clock::Clock::new();
    let rotation = crate::lookups::rotation::rotate_pepper(&store, &clock);
    let outcome = crate::jobs::run_leased(
        &store,
        &clock,
        crate::lookups::ROTATION_JOB,
        &holder,
        clock.now_ms(),
        crate::jobs::LEASE,
        rotation,
    )
    .await;
    match outcome {
        crate::jobs::RunOutcome::Ran(Ok(summary)) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        crate::jobs::RunOutcome::Ran(Err(error)) => {
            eprintln!("rotation failed: {error}");
            ExitCode::FAILURE
        }
        crate::jobs::RunOutcome::Skipped => {
            eprintln!("a rotation is running on another instance (see `inspect`); try again when it has finished");
            ExitCode::FAILURE
        }
    }
}

async fn import_node_db(sources: &ConfigSources, from: &str, force: bool) -> ExitCode {
    let Some((loaded, settings)) = load_valid(sources) else { return ExitCode::from(2) };
    let _log = telemetry::init(&loaded.config.logging).ok();
    match crate::node_import::import(&settings, from, force).await {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(error @ crate::node_import::ImportError::Done(_)) => {
            eprintln!("{error}");
            ExitCode::SUCCESS
        }
        Err(error @ (crate::node_import::ImportError::Source(_) | crate::node_import::ImportError::InUse(_))) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("import failed: {error}; what was written stays, and running the import again completes it");
            ExitCode::FAILURE
        }
    }
}

async fn forget_threepid(sources: &ConfigSources, medium: &str, address: &str) -> ExitCode {
    let Some(normalized) = crate::vocabulary::normalize_address(medium, address) else {
        eprintln!("`{address}` is not a valid {medium} address (medium: email or msisdn)");
        return ExitCode::from(2);
    };
    let (store, _log) = match open_store(sources).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    match store.forget_threepid(medium, &normalized, crate::clock::Clock::new().now_ms()).await {
        Ok(forgotten) => {
            println!("{}", serde_json::json!({ "medium": medium, "address": normalized, "removed": forgotten }));
            if forgotten.directory_entries > 0 {
                eprintln!(
                    "the user directory still holds this address: remove it there, or the next sync publishes it again"
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot forget the 3PID: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The database and the user ID of `--user` (exit 2 when it is not a Matrix user ID).
async fn store_for_user<'a>(
    sources: &ConfigSources,
    user: &'a str,
) -> Result<(crate::store::Store, Option<telemetry::LogGuard>, &'a str), ExitCode> {
    if <&ruma::UserId>::try_from(user).is_err() {
        eprintln!("`{user}` is not a Matrix user ID (@localpart:server)");
        return Err(ExitCode::from(2));
    }
    let (store, log) = open_store(sources).await?;
    Ok((store, log, user))
}

/// Prints `outcome` as one JSON line (exit 0), or `cannot <what>: <error>` (exit 1).
fn print_outcome<E: std::fmt::Display>(outcome: Result<serde_json::Value, E>, what: &str) -> ExitCode {
    match outcome {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot {what}: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn list_tokens(sources: &ConfigSources, user: &str) -> ExitCode {
    let (store, _log, user) = match store_for_user(sources, user).await {
        Ok(found) => found,
        Err(code) => return code,
    };
    let listed = store.user_tokens(user).await.map(|tokens| {
        let tokens: Vec<serde_json::Value> = tokens
            .iter()
            .map(|token| {
                serde_json::json!({
                    "digest_prefix": token.token_hash.chars().take(8).collect::<String>(),
                    "created_at": token.created_at,
                    "expires_at": token.expires_at,
                })
            })
            .collect();
        serde_json::json!({ "user_id": user, "tokens": tokens })
    });
    print_outcome(listed, "list the tokens")
}

async fn revoke_tokens(sources: &ConfigSources, user: &str) -> ExitCode {
    let (store, _log, user) = match store_for_user(sources, user).await {
        Ok(found) => found,
        Err(code) => return code,
    };
    let revoked = store.revoke_user_tokens(user).await;
    print_outcome(
        revoked.map(|revoked| serde_json::json!({ "user_id": user, "revoked": revoked })),
        "revoke the tokens",
    )
}

async fn export_keys(sources: &ConfigSources, output: Option<&std::path::Path>) -> ExitCode {
    let (store, _log) = match open_store(sources).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let lines = match store.long_term_keys().await {
        Ok(keys) => {
            keys.iter().map(crate::domain::keys::SigningKeys::key_file_line).collect::<anyhow::Result<Vec<_>>>()
        }
        Err(error) => Err(error.into()),
    };
    let text = match lines {
        Ok(lines) if lines.is_empty() => {
            eprintln!("no long-term key yet (start `serve` once)");
            return ExitCode::FAILURE;
        }
        Ok(lines) => lines.join("\n") + "\n",
        Err(error) => {
            eprintln!("cannot export the keys: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let Some(path) = output else {
        print!("{text}");
        return ExitCode::SUCCESS;
    };
    let written = {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cannot write {}: {error}", path.display());
            ExitCode::from(2)
        }
    }
}

async fn import_keys(sources: &ConfigSources, from: &std::path::Path) -> ExitCode {
    let (store, _log) = match open_store(sources).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let now = crate::clock::Clock::new().now_ms();
    match crate::domain::keys::SigningKeys::import_file(&store, from, now).await {
        Ok((keys, new)) => {
            let key_id = keys.key_id();
            println!("{}", serde_json::json!({ "key_id": key_id, "public_key": keys.public_key(), "new": new }));
            if new {
                eprintln!(
                    "{key_id} signs from the next start of each instance; older keys stay valid for verification"
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot import {}: {error:#}", from.display());
            ExitCode::from(2)
        }
    }
}

async fn inspect(sources: &ConfigSources) -> ExitCode {
    let (store, _log) = match open_store(sources).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    match crate::domain::inspect::report(&store).await {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot read the state: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck(sources: &ConfigSources, url: Option<String>, timeout: u64) -> ExitCode {
    let base = match url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let Some((loaded, _)) = load_valid(sources) else { return ExitCode::from(2) };
            let host = match loaded.config.listen_address {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            let scheme = if loaded.config.tls_certificate.is_empty() { "http" } else { "https" };
            format!("{scheme}://{}", SocketAddr::new(host, loaded.config.listen_port))
        }
    };
    // A liveness probe of a local instance: its certificate is for its public name, not for the
    // loopback address, so it is not verified.
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout))
        .tls_danger_accept_invalid_certs(true)
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            eprintln!("cannot build an HTTP client: {error}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("{base}/health/ready");
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("{url}: HTTP {}", response.status());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{url}: {error}");
            ExitCode::FAILURE
        }
    }
}
