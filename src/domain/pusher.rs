//! The pushing side of MSC4004 (`federated_identity_services`,
//! `update_federated_identity_hashes_cron`): for each federated service, read its peppers from
//! `hash_details`, hash our active local 3PIDs with each, and push one snapshot per pepper to
//! its `POST /lookups`, under our `host:port` (from `base_url`, as the Node pusher does).
//!
//! A snapshot identical to the last one the target accepted is not sent again. Bodies over
//! 1 MiB are gzip-compressed (sent plain again if the target answers 415). Each push is
//! retried with a backoff; a failing target never blocks the others. The outcome per target
//! and pepper is kept for `inspect`.

use std::io::Write as _;
use std::time::Duration;

use crate::clock::Clock;
use crate::config::Config;
use crate::store::Store;
use crate::vocabulary::{Algorithm, LookupHash, snapshot_digest, sort_and_dedup};
use crate::wire::{HashDetails, PushRequest};

pub use crate::config::PushTarget;

/// Bodies larger than this are compressed.
const COMPRESS_ABOVE: usize = 1024 * 1024;
/// Delays between attempts of one push.
const RETRIES: [Duration; 3] = [Duration::ZERO, Duration::from_secs(2), Duration::from_secs(10)];

/// The key this server pushes under: `host:port` of `base_url` (port 443 when absent).
pub fn push_key(base_url: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(base_url).map_err(|_| anyhow::anyhow!("base_url must be set to push hashes"))?;
    let host = url.host_str().ok_or_else(|| anyhow::anyhow!("base_url has no host"))?;
    Ok(format!("{host}:{}", url.port_or_known_default().unwrap_or(443)))
}

/// The pusher, with what it needs: the targets, the store it reads our 3PIDs from, its HTTP
/// client and the clock. Built once per service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Pusher {
    targets: Vec<PushTarget>,
    /// `base_url`, whose `host:port` we push under.
    base_url: String,
    /// Whether a user directory feeds the local 3PIDs (then nothing is pushed before its
    /// first successful read).
    has_directory: bool,
    store: Store,
    client: reqwest::Client,
    clock: Clock,
}

impl Pusher {
    /// The pusher of `config`'s `federated_identity_services`, sending with `client`;
    /// `has_directory` when a user directory feeds the local 3PIDs.
    #[must_use]
    pub fn new(config: &Config, store: Store, client: reqwest::Client, has_directory: bool, clock: Clock) -> Self {
        Self {
            targets: config.federated_identity_services.clone(),
            base_url: config.base_url.clone(),
            has_directory,
            store,
            client,
            clock,
        }
    }

    /// Pushes to every target; returns a summary, or an error naming the targets that failed.
    pub async fn push_all(&self) -> anyhow::Result<String> {
        let targets = self.targets.clone();
        if targets.is_empty() {
            return Ok("no federated identity service configured".to_owned());
        }
        let key = push_key(&self.base_url)?;
        // With a directory, nothing is known of our users before its first successful read: an
        // empty snapshot now would withdraw every one of them from the targets.
        let directory_users = if self.has_directory {
            match self.store.last_directory_sync().await? {
                Some((_, users)) => Some(users),
                None => return Ok("nothing pushed: waiting for the first successful directory sync".to_owned()),
            }
        } else {
            None
        };
        let threepids = std::sync::Arc::new(self.store.active_threepids().await?);
        let mut tasks = tokio::task::JoinSet::new();
        for target in targets {
            let (pusher, key, threepids) = (self.clone(), key.clone(), std::sync::Arc::clone(&threepids));
            tasks.spawn(async move {
                let outcome = pusher.push_target(&target, &key, &threepids, directory_users).await;
                (target.name().to_owned(), outcome)
            });
        }
        let mut done = Vec::new();
        let mut failed = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((target, Ok(summary))) => done.push(format!("{target}: {summary}")),
                Ok((target, Err(error))) => {
                    tracing::warn!(%target, %error, "push failed");
                    failed.push(format!("{target}: {error:#}"));
                }
                Err(panic) => failed.push(format!("push task failed: {panic}")),
            }
        }
        if failed.is_empty() {
            Ok(done.join("; "))
        } else {
            Err(anyhow::anyhow!("{} (succeeded: {})", failed.join("; "), done.join("; ")))
        }
    }

    async fn push_target(
        &self,
        target: &PushTarget,
        key: &str,
        threepids: &[(String, String)],
        directory_users: Option<i64>,
    ) -> anyhow::Result<String> {
        let client = &self.client;
        let base = target.base_url();
        let mut request = client.get(format!("{base}/_matrix/identity/v2/hash_details"));
        if let Some(secret) = target.secret() {
            request = request.bearer_auth(secret);
        }
        let response = request.send().await?;
        if !response.status().is_success() {
            anyhow::bail!("hash_details answered HTTP {}", response.status());
        }
        let details: HashDetails = response.json().await.map_err(|error| anyhow::anyhow!("hash_details: {error}"))?;
        if !details.algorithms.iter().any(|algorithm| algorithm == Algorithm::Sha256.name()) {
            anyhow::bail!("the target does not offer sha256");
        }
        let mut peppers: Vec<String> =
            std::iter::once(details.lookup_pepper).chain(details.alt_lookup_peppers).collect();
        peppers.retain(|pepper| !pepper.is_empty());
        peppers.dedup();
        if peppers.is_empty() {
            anyhow::bail!("hash_details has no pepper");
        }
        self.store.forget_push_statuses(target.name(), &peppers).await?;

        let mut summary = Vec::new();
        for pepper in &peppers {
            let mut hashes: Vec<LookupHash> =
                threepids.iter().map(|(medium, address)| LookupHash::of(address, medium, pepper)).collect();
            sort_and_dedup(&mut hashes);
            let digest = snapshot_digest(&hashes);
            let last = self.store.push_status(target.name(), pepper).await?;
            if last.as_ref().is_some_and(|status| {
                status.digest.as_deref() == Some(digest.as_str()) && status.last_success_at.is_some()
            }) {
                summary.push(format!("{} hashes unchanged", hashes.len()));
                continue;
            }
            if let Some(refusal) = empty_snapshot_refusal(hashes.len(), last.as_ref(), directory_users) {
                self.store.record_push_failure(target.name(), pepper, &refusal, self.clock.now_ms()).await?;
                anyhow::bail!(refusal);
            }
            let count = hashes.len();
            let body = PushRequest {
                algorithm: Algorithm::Sha256.name().to_owned(),
                pepper: pepper.clone(),
                mappings: std::iter::once((key.to_owned(), hashes.iter().map(LookupHash::text).collect())).collect(),
            };
            match send_with_retries(client, &base, target.secret(), &body).await {
                Ok(()) => {
                    crate::metrics::federation_push(target.name(), true);
                    let stored = i64::try_from(count).unwrap_or(i64::MAX);
                    self.store.record_push_success(target.name(), pepper, &digest, stored, self.clock.now_ms()).await?;
                    tracing::info!(target = target.name(), hashes = count, "hashes pushed");
                    summary.push(format!("{count} hashes pushed"));
                }
                Err(error) => {
                    crate::metrics::federation_push(target.name(), false);
                    self.store
                        .record_push_failure(target.name(), pepper, &format!("{error:#}"), self.clock.now_ms())
                        .await?;
                    return Err(error);
                }
            }
        }
        Ok(summary.join(", "))
    }
}

async fn send_with_retries(
    client: &reqwest::Client,
    base: &str,
    secret: Option<&str>,
    body: &PushRequest,
) -> anyhow::Result<()> {
    let json = serde_json::to_vec(body)?;
    let compressed = if json.len() > COMPRESS_ABOVE { Some(gzip(&json)?) } else { None };
    let bytes = compressed.as_ref().map_or(json.len(), Vec::len);
    tracing::info!(%base, bytes, compressed = compressed.is_some(), "sending a snapshot");
    let url = format!("{base}/_matrix/identity/v2/lookups");
    let mut last_error = anyhow::anyhow!("not sent");
    for delay in RETRIES {
        tokio::time::sleep(delay).await;
        let mut outcome =
            post(client, &url, secret, compressed.as_deref().map_or(&json, |bytes| bytes), compressed.is_some()).await;
        if compressed.is_some() && matches!(outcome, Ok((415, _))) {
            outcome = post(client, &url, secret, &json, false).await;
        }
        match outcome {
            Ok((status, _)) if (200..300).contains(&status) => return Ok(()),
            Ok((status, answer)) if (400..500).contains(&status) && status != 429 => {
                anyhow::bail!("the target refused the push: HTTP {status} {answer}");
            }
            Ok((status, answer)) => last_error = anyhow::anyhow!("HTTP {status} {answer}"),
            Err(error) => last_error = error.into(),
        }
    }
    Err(last_error)
}

/// Sends one push; returns the status and the start of the answer (for error messages).
async fn post(
    client: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    body: &[u8],
    gzipped: bool,
) -> Result<(u16, String), reqwest::Error> {
    let mut request = client.post(url).header("content-type", "application/json").body(body.to_vec());
    if gzipped {
        request = request.header("content-encoding", "gzip");
    }
    if let Some(secret) = secret {
        request = request.bearer_auth(secret);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let answer: String = response.text().await.unwrap_or_default().chars().take(300).collect();
    Ok((status, answer))
}

/// Why an empty snapshot must not replace the last one sent, if it must not: it would withdraw
/// every user from the target, which is right only when the directory itself listed nobody (or,
/// without a directory, when the last binding went).
fn empty_snapshot_refusal(
    hashes: usize,
    last: Option<&crate::store::PushStatus>,
    directory_users: Option<i64>,
) -> Option<String> {
    let replaced = last.filter(|status| status.last_success_at.is_some()).map_or(0, |status| status.hashes_sent);
    let listed = directory_users.unwrap_or(0);
    (hashes == 0 && replaced > 0 && listed > 0).then(|| {
        format!(
            "refusing to replace {replaced} pushed hashes with none: the directory lists {listed} users but none \
             is published (is the Synapse database reachable and is server_name right?)"
        )
    })
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_key_is_host_and_port_of_base_url() {
        assert_eq!(push_key("https://tom.example.com/").unwrap(), "tom.example.com:443");
        assert_eq!(push_key("https://tom.example.com:8443").unwrap(), "tom.example.com:8443");
        assert_eq!(push_key("http://127.0.0.1:8090").unwrap(), "127.0.0.1:8090");
        assert!(push_key("").is_err());
        assert_eq!(PushTarget::Name("fed.example.org".into()).base_url(), "https://fed.example.org");
        assert_eq!(PushTarget::Name("http://127.0.0.1:1/".into()).base_url(), "http://127.0.0.1:1");
    }
}
