//! `import-node-db`: carries the state of a Node identity service (`@twake/federated-identity-
//! service`) into this service's database, so that switching over loses nothing its users,
//! clients and trusted servers rely on.
//!
//! The Node database is only read ([`source`]). What it holds is carried over as this service
//! stores it: peppers (published by two rotations, so that the Node pepper is current and its
//! previous one still accepted), access tokens (hashed, expiring their Node-era epoch plus
//! `access_token_lifetime`), bindings (the plain address recovered from the validated session,
//! since the Node service kept only hashes), pushed hashes (as pushes), pending invitations,
//! live validation sessions, terms acceptances and a usable ed25519 long-term key. Rows the Node
//! service wrote wrongly are skipped or mended and counted in the [`report::ImportReport`],
//! never fatal.
//!
//! Every write inserts only where nothing holds the row's key, so running the import again
//! changes nothing; a database in use (user data of its own and no import recorded) is refused
//! unless forced.

mod report;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde_json::Value;

pub use self::report::{ImportReport, TableReport};
use self::source::{NodeDatabase, SourceLocation};
use crate::clock::Clock;
use crate::domain::keys::SigningKeys;
use crate::domain::tokens::token_digest;
use crate::lookups::Lookups;
use crate::lookups::rotation::rotate_to;
use crate::settings::Settings;
use crate::store::{
    AccessTokenRecord, AssociationTimes, InvitationRecord, LocalThreepidWrite, Store, ValidationSession,
};
use crate::vocabulary::{Source, hash_3pid, is_sha256_hash, normalize_address};
use crate::wire::PushRequest;

/// How long the Node service declared a signed association valid: 36,500 days.
const NODE_ASSOCIATION_LIFETIME_MS: i64 = 36_500 * 24 * 3600 * 1000;

/// Why an import stopped before writing anything, or part-way.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source cannot be read or is not a Node database.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// The destination holds data of its own and `--force` was not given.
    #[error(
        "the database of this service is in use ({0}); importing into it would mix two deployments' data. Import into \
         a new database, or pass --force to add the Node data to it"
    )]
    InUse(String),
    /// This source was imported completely before; nothing is done again unless forced.
    #[error(
        "this database was imported completely before (finished {0}): nothing changed. Pass \
         --force to import it again (rows already there are kept; tokens logged out since and invitations delivered \
         since come back)"
    )]
    Done(String),
    /// Writing failed; what was written stays, and running the import again completes it.
    #[error("cannot write into this service's database: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A write through the service's own rules failed (a pepper rotation, a binding, the key).
    #[error("cannot write into this service's database: {0}")]
    Write(String),
}

/// Imports the Node database at `from` into the database of `settings`.
pub async fn import(settings: &Settings, from: &str, force: bool) -> Result<ImportReport, ImportError> {
    let location = SourceLocation::parse(from);
    let node = NodeDatabase::open(&location).await?;
    let outcome = Importer::connect(settings, &location.display_name(), force).await;
    let outcome = match outcome {
        Ok(importer) => importer.run(&node).await,
        Err(error) => Err(error),
    };
    node.close().await;
    outcome
}

/// One import: the destination, its lookups, the settings and the report being written.
struct Importer<'a> {
    settings: &'a Settings,
    store: Store,
    lookups: Arc<Lookups>,
    clock: Clock,
    source: String,
    /// Whether an import finished before this one (a forced re-run): since then this service
    /// may have rotated its pepper. An unfinished one (a crash) is completed as a first import.
    rerun: bool,
    report: ImportReport,
}

impl<'a> Importer<'a> {
    async fn connect(settings: &'a Settings, source: &str, force: bool) -> Result<Importer<'a>, ImportError> {
        let clock = Clock::new();
        let store = Store::connect(&settings.config).await?;
        let earlier = store.node_imports().await?;
        if let Some(finished_at) = earlier.iter().find(|(earlier, _)| earlier == source).and_then(|(_, end)| *end)
            && !force
        {
            // Not even upserts: since then, users may have logged out (a token re-imported would
            // live again) and invitations may have been delivered.
            let finished = chrono::DateTime::from_timestamp_millis(finished_at)
                .map_or_else(|| finished_at.to_string(), |time| time.to_rfc3339());
            return Err(ImportError::Done(finished));
        }
        let rerun = earlier.iter().any(|(_, finished_at)| finished_at.is_some());
        let earlier: Vec<String> = earlier.into_iter().map(|(source, _)| source).collect();
        let own = store.own_data().await?;
        if earlier.is_empty() && !own.is_empty() && !force {
            let what: Vec<String> = own.iter().map(|(what, count)| format!("{count} {what}")).collect();
            return Err(ImportError::InUse(what.join(", ")));
        }
        if !earlier.is_empty() && !earlier.iter().any(|earlier| earlier == source) && !force {
            return Err(ImportError::InUse(format!("imported from {} already", earlier.join(", "))));
        }
        store.record_node_import_start(source, clock.now_ms()).await?;
        let lookups = Arc::new(Lookups::open(store.clone(), clock.clone()).await?);
        Ok(Importer {
            settings,
            store,
            lookups,
            clock,
            source: source.to_owned(),
            rerun,
            report: ImportReport::new(source),
        })
    }

    async fn run(mut self, node: &NodeDatabase) -> Result<ImportReport, ImportError> {
        self.peppers(node).await?;
        self.access_tokens(node).await?;
        let sessions = node.mappings().await?;
        self.bindings(node, &sessions).await?;
        self.sessions(node, sessions).await?;
        self.pushed_hashes(node).await?;
        self.invitations(node).await?;
        self.terms(node).await?;
        self.long_term_key(node).await?;
        for (table, reason) in [
            ("userHistory", "bookkeeping of the Node user-database job; the directory sync recomputes it"),
            ("attempts", "never used by the Node service"),
            ("shortTermKeypairs", "never written by the Node service"),
            ("invitations", "used only by the wider Twake server's invitation API"),
            ("addressbooks", "used only by the wider Twake server"),
            ("contacts", "used only by the wider Twake server"),
        ] {
            let rows = node.row_count(&table.to_lowercase()).await?;
            let mut line = TableReport::new(table);
            line.skip(reason, u64::try_from(rows).unwrap_or(0));
            self.report.tables.push(line);
        }
        self.store.record_node_import_end(&self.source, self.clock.now_ms()).await?;
        Ok(self.report)
    }

    /// `keys`: the Node pepper becomes the current one, its previous one stays accepted.
    async fn peppers(&mut self, node: &NodeDatabase) -> Result<(), ImportError> {
        let keys: HashMap<String, String> =
            node.keys().await?.into_iter().map(|(name, data)| (name, data.unwrap_or_default())).collect();
        let node_current = keys.get("pepper").map(|pepper| pepper.trim().to_owned()).unwrap_or_default();
        let node_previous = keys
            .get("previousPepper")
            .map(|pepper| pepper.trim().to_owned())
            .filter(|previous| *previous != node_current)
            .unwrap_or_default();
        let mut line = TableReport::new("keys (peppers)");
        if node_current.is_empty() {
            line.skip("the Node service never made a pepper (cron_service false): this service keeps its own", 1);
            self.report.tables.push(line);
            return Ok(());
        }
        let ours = self.store.peppers().await?;
        let steps: Vec<&String> = if ours.current.as_ref() == Some(&node_current) {
            Vec::new()
        } else if ours.previous.as_ref() == Some(&node_current)
            || self.rerun && ours.current.as_ref() != Some(&node_previous)
        {
            line.skip("this service has rotated its pepper since the last import: its own peppers are kept", 1);
            self.report.tables.push(line);
            return Ok(());
        } else if node_previous.is_empty() || ours.current.as_ref() == Some(&node_previous) {
            vec![&node_current]
        } else {
            vec![&node_previous, &node_current]
        };
        if steps.is_empty() {
            line.present = 1 + u64::from(!node_previous.is_empty());
        }
        for pepper in steps {
            rotate_to(&self.store, &self.clock, pepper.clone())
                .await
                .map_err(|error| ImportError::Write(format!("{error:#}")))?;
            line.imported += 1;
        }
        if node_previous.is_empty() {
            self.report.note("the Node database has no previous pepper: hash_details lists no Node-era alternate");
        }
        self.report.tables.push(line);
        Ok(())
    }

    /// `accessTokens`: stored as digests, expiring their Node-era epoch plus
    /// `access_token_lifetime` (the Node service never expired them).
    async fn access_tokens(&mut self, node: &NodeDatabase) -> Result<(), ImportError> {
        let lifetime_ms = seconds_to_ms(self.settings.config.access_token_lifetime);
        let now = self.clock.now_ms();
        let mut line = TableReport::new("accessTokens");
        for (token, data) in node.access_tokens().await? {
            let data: Value = data.as_deref().and_then(|data| serde_json::from_str(data).ok()).unwrap_or(Value::Null);
            let Some(user_id) = data["sub"].as_str().filter(|sub| is_user_id(sub)) else {
                line.skip("no valid Matrix user ID in `data.sub`", 1);
                continue;
            };
            if token.is_empty() {
                line.skip("empty token", 1);
                continue;
            }
            let created_at = data["epoch"].as_i64().unwrap_or(now);
            let expires_at = created_at.saturating_add(lifetime_ms);
            if expires_at <= now {
                line.skip("expired: issued longer ago than access_token_lifetime", 1);
                continue;
            }
            let record = AccessTokenRecord {
                token_hash: token_digest(&token),
                user_id: user_id.to_owned(),
                created_at,
                expires_at,
            };
            line.count(self.store.insert_access_token(&record).await?);
        }
        self.report.tables.push(line);
        Ok(())
    }

    /// `hashes`: the Node service kept only hashes of its bindings; the plain address is
    /// recovered from the validated session whose address hashes to one.
    async fn bindings(&mut self, node: &NodeDatabase, sessions: &[source::MappingRow]) -> Result<(), ImportError> {
        let rows = node.hashes().await?;
        // Every hash a validated session's address could have been bound under.
        let mut candidates: HashMap<String, (&str, &str, i64)> = HashMap::new();
        let peppers: Vec<&str> = rows.iter().filter_map(|row| row.1.as_deref()).collect();
        for (_, _, medium, valid, address, submit_time, _) in sessions {
            let (Some(medium), Some(1), Some(address)) = (medium.as_deref(), valid, address.as_deref()) else {
                continue;
            };
            let fields: &[&str] = if medium == "email" { &["mail", "email"] } else { &["msisdn"] };
            for pepper in &peppers {
                for field in fields {
                    candidates
                        .insert(hash_3pid(address, field, pepper), (medium, address, submit_time.unwrap_or_default()));
                }
            }
        }
        let mut line = TableReport::new("hashes (bindings)");
        let mut seen = std::collections::HashSet::new();
        let mut typed_mail = 0;
        for (hash, _, kind, value, _) in &rows {
            let Some(&(medium, address, verified_at)) = candidates.get(hash) else {
                if kind.as_deref() == Some("mail") {
                    line.skip("a binding whose address no validated session holds: not recoverable", 1);
                } else {
                    line.skip("a user-database entry: the directory sync of this service recomputes it", 1);
                }
                continue;
            };
            let Some(mxid) = value.as_deref().filter(|value| is_user_id(value)) else {
                line.skip("no valid Matrix user ID", 1);
                continue;
            };
            let Some(normalized) = normalize_address(medium, address) else {
                line.skip("an address this service cannot normalise", 1);
                continue;
            };
            if !seen.insert((medium, normalized.clone())) {
                line.present += 1;
                continue;
            }
            typed_mail += u64::from(kind.as_deref() == Some("mail"));
            let existing = self.store.association(medium, &normalized).await?;
            if existing.is_some_and(|existing| existing.source == Source::Binding.as_str() && existing.mxid == mxid) {
                line.present += 1;
                continue;
            }
            let verified_at = if verified_at > 0 { verified_at } else { self.clock.now_ms() };
            self.lookups
                .write_local_threepid(LocalThreepidWrite {
                    medium: medium.to_owned(),
                    address: normalized,
                    mxid: mxid.to_owned(),
                    source: Source::Binding,
                    active: true,
                    association: Some(AssociationTimes {
                        verified_at,
                        not_before: verified_at,
                        not_after: verified_at.saturating_add(NODE_ASSOCIATION_LIFETIME_MS),
                    }),
                })
                .await
                .map_err(|error| ImportError::Write(error.to_string()))?;
            line.imported += 1;
        }
        if typed_mail > 0 {
            self.report.note(&format!(
                "{typed_mail} binding(s) were hashed by the Node service with the medium `mail` instead of `email` (so \
                 spec clients never found them): stored as e-mail bindings, found by every client now"
            ));
        }
        self.report.tables.push(line);
        Ok(())
    }

    /// `mappings` and `oneTimeTokens`: sessions still within `validation_session_lifetime`.
    async fn sessions(&mut self, node: &NodeDatabase, sessions: Vec<source::MappingRow>) -> Result<(), ImportError> {
        let session_lifetime = seconds_to_ms(self.settings.config.validation_session_lifetime);
        let token_lifetime = seconds_to_ms(self.settings.config.mail_link_delay);
        let now = self.clock.now_ms();
        let mut tokens: HashMap<String, (String, i64, Value)> = HashMap::new();
        for (token, expires, data) in node.one_time_tokens().await? {
            let data: Value = data.as_deref().and_then(|data| serde_json::from_str(data).ok()).unwrap_or(Value::Null);
            if let Some(sid) = data["sid"].as_str() {
                tokens.insert(sid.to_owned(), (token, expires.unwrap_or_default(), data));
            }
        }
        let mut line = TableReport::new("mappings (validation sessions)");
        for (client_secret, sid, medium, valid, address, submit_time, send_attempt) in sessions {
            let (Some(sid), Some(medium), Some(address)) = (sid, medium, address) else {
                line.skip("incomplete row", 1);
                continue;
            };
            let Some(address) = normalize_address(&medium, &address) else {
                line.skip("an address this service cannot normalise", 1);
                continue;
            };
            if sid.is_empty() || client_secret.is_empty() {
                line.skip("incomplete row", 1);
                continue;
            }
            let token = tokens.remove(&sid);
            // (token digest, when it was sent, next_link, validation time): a validated session's
            // token was used up; a pending one keeps the token mailed for it.
            let (token_hash, sent_at, next_link, validated_at) = if valid == Some(1) {
                let validated_at = submit_time.filter(|time| *time > 0).unwrap_or(now);
                (String::new(), validated_at, None, Some(validated_at))
            } else {
                let Some((token, expires, data)) = token else {
                    line.skip("pending, without the token mailed for it", 1);
                    continue;
                };
                let next_link = data["next_link"].as_str().map(str::to_owned);
                (token_digest(&token), expires.saturating_sub(token_lifetime), next_link, None)
            };
            let session = ValidationSession {
                sid,
                client_secret,
                medium,
                address,
                send_attempt: send_attempt.unwrap_or(1),
                token_hash,
                token_sent_at: sent_at,
                failed_attempts: 0,
                next_link,
                created_at: sent_at,
                updated_at: sent_at,
                validated_at,
            };
            if session.updated_at.saturating_add(session_lifetime) <= now {
                line.skip("expired: older than validation_session_lifetime", 1);
                continue;
            }
            line.count(self.store.import_session(&session).await?);
        }
        self.report.tables.push(line);
        Ok(())
    }

    /// `hashByServer`: imported as the pushes they came from, per server and pepper.
    async fn pushed_hashes(&mut self, node: &NodeDatabase) -> Result<(), ImportError> {
        let live = self.store.peppers().await?;
        let mut snapshots: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        let mut line = TableReport::new("hashByServer (pushed hashes)");
        for (hash, server, pepper) in node.pushed_hashes().await? {
            let (Some(server), Some(pepper)) = (server, pepper) else {
                line.skip("no server or pepper", 1);
                continue;
            };
            if live.current.as_ref() != Some(&pepper) && live.previous.as_ref() != Some(&pepper) {
                line.skip("under a pepper no longer accepted", 1);
                continue;
            }
            if !is_sha256_hash(&hash) {
                line.skip("not a sha256 lookup hash", 1);
                continue;
            }
            snapshots.entry((server, pepper)).or_default().push(hash);
        }
        let total = snapshots.values().map(Vec::len).sum::<usize>();
        let mut progress = crate::telemetry::Progress::new("import-node-db", u64::try_from(total).ok());
        for ((server, pepper), hashes) in snapshots {
            let count = u64::try_from(hashes.len()).unwrap_or(u64::MAX);
            progress.add(count);
            let request = PushRequest {
                algorithm: "sha256".to_owned(),
                pepper,
                mappings: HashMap::from([(server.clone(), hashes)]),
            };
            match self.lookups.accept_push(None, request.into(), None).await {
                Ok(answer) => {
                    line.imported += answer.added;
                    line.present += answer.stored.saturating_sub(answer.added);
                }
                Err(error) => line.skip(&format!("refused as a push from `{server}`: {}", error.message()), count),
            }
        }
        progress.finish();
        self.report.tables.push(line);
        Ok(())
    }

    /// `invitationTokens`: pending invitations, delivered on bind as this service's own are.
    async fn invitations(&mut self, node: &NodeDatabase) -> Result<(), ImportError> {
        let now = self.clock.now_ms();
        let mut line = TableReport::new("invitationTokens (pending invitations)");
        let mut with_key_pair = 0;
        for (token, column_address, data) in node.invitation_tokens().await? {
            let Some(Value::Object(mut request)) = data.as_deref().and_then(|data| serde_json::from_str(data).ok())
            else {
                line.skip("`data` is not a JSON object", 1);
                continue;
            };
            with_key_pair += u64::from(request.remove("key").is_some());
            let text = |name: &str| request.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
            let medium = text("medium");
            let given = if medium == "msisdn" { text("phone") } else { text("address") };
            let given = if given.is_empty() { column_address.clone().unwrap_or_default() } else { given };
            let (room_id, sender) = (text("room_id"), text("sender"));
            let Some(address) = normalize_address(&medium, &given) else {
                line.skip("no usable medium and address", 1);
                continue;
            };
            if token.is_empty() || !room_id.starts_with('!') || !is_user_id(&sender) {
                line.skip("no token, room or sender", 1);
                continue;
            }
            let record = InvitationRecord {
                token,
                medium,
                address,
                room_id,
                sender,
                ephemeral_key_id: None,
                request: Value::Object(request).to_string(),
                created_at: now,
            };
            line.count(self.store.insert_invitation(&record).await?);
        }
        if with_key_pair > 0 {
            self.report.note(&format!(
                "{with_key_pair} invitation(s) carried the key pair the Node service made for them (a curve25519 pair, \
                 its private half stored in clear): not imported; this service signs their delivery with its long-term \
                 key. The Node service kept no creation time: they expire invitation_lifetime after this import"
            ));
        }
        self.report.tables.push(line);
        Ok(())
    }

    /// `userPolicies`: accepted policies, at the version configured now.
    async fn terms(&mut self, node: &NodeDatabase) -> Result<(), ImportError> {
        let rows = node.user_policies().await?;
        let mut line = TableReport::new("userPolicies (terms acceptances)");
        if rows.is_empty() {
            self.report.note(
                "userPolicies is empty: the Node service never recorded acceptances (its POST /terms updates rows that \
                 nobody inserts); with policies configured, users accept them again",
            );
        }
        let required = self.settings.terms.required();
        for (user_id, policy, accepted) in rows {
            let (Some(user_id), Some(policy), Some(1)) = (user_id, policy, accepted) else {
                line.skip("not accepted, or incomplete", 1);
                continue;
            };
            let Some((name, version)) = required.iter().find(|(name, _)| *name == policy) else {
                line.skip("a policy not configured now", 1);
                continue;
            };
            if !is_user_id(&user_id) {
                line.skip("no valid Matrix user ID", 1);
                continue;
            }
            let before = self.store.accepted_terms(&user_id).await?;
            let pair = (name.clone(), version.clone());
            let new = !before.contains(&pair);
            self.store.record_terms_acceptance(&user_id, &[pair], self.clock.now_ms()).await?;
            line.count(new);
        }
        self.report.tables.push(line);
        Ok(())
    }

    /// `longTermKeypairs`: a usable ed25519 key becomes the key this service signs with.
    async fn long_term_key(&mut self, node: &NodeDatabase) -> Result<(), ImportError> {
        let mut line = TableReport::new("longTermKeypairs");
        let now = self.clock.now_ms();
        for (name, key_id, public, private) in node.long_term_key_pairs().await? {
            let key_id = key_id.unwrap_or_default();
            let Some(version) = key_id.strip_prefix("ed25519:") else {
                let algorithm = key_id.split(':').next().unwrap_or_default();
                line.skip(&format!("a {algorithm} key (made by the Node service's store-invite): it cannot sign"), 1);
                continue;
            };
            let seed =
                private.as_deref().and_then(|private| URL_SAFE_NO_PAD.decode(private.trim_end_matches('=')).ok());
            let Some(seed) = seed.filter(|seed| seed.len() == 64 || seed.len() == 32) else {
                line.skip("an ed25519 key whose private half is not a NaCl secret key", 1);
                continue;
            };
            let created_at = if name == "currentKey" { now } else { now - 1 };
            let Ok((keys, record)) = SigningKeys::from_seed(&seed[..32], version, created_at) else {
                line.skip("an ed25519 key that does not load", 1);
                continue;
            };
            // The Node service wrote keys in base64url; this service answers standard base64.
            let derived = STANDARD_NO_PAD.decode(keys.public_key()).unwrap_or_default();
            let stated = public.as_deref().and_then(|public| URL_SAFE_NO_PAD.decode(public.trim_end_matches('=')).ok());
            if stated.is_some_and(|stated| stated != derived) {
                line.skip("an ed25519 key whose public half does not match its private half", 1);
                continue;
            }
            line.count(self.store.insert_signing_key(&record).await?);
        }
        if line.imported == 0 && line.present == 0 {
            let current = SigningKeys::load_or_create(&self.store, None, now)
                .await
                .map_err(|error| ImportError::Write(format!("{error:#}")))?;
            self.report.note(&format!(
                "no usable ed25519 long-term key in the Node database: this service signs with its own key {}",
                current.key_id()
            ));
        }
        self.report.tables.push(line);
        Ok(())
    }
}

/// Whether `text` is a Matrix user ID (the historical grammar included, as homeservers
/// still hold such users).
fn is_user_id(text: &str) -> bool {
    <&ruma::UserId>::try_from(text).is_ok()
}

fn seconds_to_ms(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}
