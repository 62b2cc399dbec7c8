//! Directory sync (`update_users_cron`): the users of the directory become local 3PIDs, found
//! by `lookup` as `@<uid>:<server_name>` and pushed to federated services.
//!
//! The sync compares the directory with what is stored and writes only the difference: new
//! addresses are added (and hashed for every live pepper), removed ones deleted, a changed
//! owner or state updated. An address whose owner changed is "removed and added". Invalid
//! entries and addresses claimed by two users are skipped with a warning; they never stop the
//! job. A user is published (active) when they have an active Matrix account in the Synapse
//! database, or, without a Synapse database, when `directory_publish_all` is on.

use std::collections::{BTreeMap, BTreeSet};

use super::validation::{normalize_email, normalize_msisdn};
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Directory;
use crate::directory::synapse::SynapseDatabase;
use crate::lookups::{DirectoryChanges, Lookups};
use crate::store::{NewThreepid, Store};

/// What a sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncSummary {
    /// Users read from the directory.
    pub users: usize,
    /// 3PIDs added.
    pub added: usize,
    /// 3PIDs removed.
    pub removed: usize,
    /// 3PIDs whose user or state changed.
    pub changed: usize,
    /// Entries skipped (invalid, duplicate).
    pub skipped: usize,
}

/// The directory sync, with what it needs: the directory, the Synapse database that says
/// who is active, the store and the clock. Built once per service; cheap to clone.
#[derive(Debug, Clone)]
pub struct DirectorySync {
    directory: Arc<dyn Directory>,
    synapse: Option<SynapseDatabase>,
    store: Store,
    lookups: Arc<Lookups>,
    clock: Clock,
    /// `server_name`: directory users become `@<uid>:<server_name>`.
    server_name: String,
    /// `phone_default_region`: the region of national phone numbers, if any.
    phone_region: Option<String>,
    /// `directory_publish_all`: without a Synapse database, publish every directory user.
    publish_all: bool,
}

impl DirectorySync {
    /// The sync of `directory` into `store`, publishing the users `synapse` knows as active.
    #[must_use]
    pub fn new(
        config: &Config,
        directory: Arc<dyn Directory>,
        synapse: Option<SynapseDatabase>,
        store: Store,
        lookups: Arc<Lookups>,
        clock: Clock,
    ) -> Self {
        Self {
            directory,
            synapse,
            store,
            lookups,
            clock,
            server_name: config.server_name.clone(),
            phone_region: Some(config.phone_default_region.clone()).filter(|region| !region.is_empty()),
            publish_all: config.directory_publish_all,
        }
    }

    /// Reads the directory and applies the difference.
    pub async fn sync(&self) -> anyhow::Result<SyncSummary> {
        let users = self.directory.users().await.map_err(anyhow::Error::msg)?;
        let matrix_users = match &self.synapse {
            Some(synapse) => Some(synapse.active_localparts(&self.server_name).await.map_err(anyhow::Error::msg)?),
            None => None,
        };
        let server_name = &self.server_name;
        let region = self.phone_region.as_deref();
        let mut summary = SyncSummary { users: users.len(), ..SyncSummary::default() };
        let mut wanted: BTreeMap<(String, String), (String, bool)> = BTreeMap::new();
        let mut progress = crate::telemetry::Progress::new("directory-sync", u64::try_from(users.len()).ok());
        for user in users {
            progress.add(1);
            let localpart = user.uid.trim().to_lowercase();
            let mxid = format!("@{localpart}:{server_name}");
            // Historical user IDs (spaces, `!`, quotes, non-ASCII...) are only accepted for old
            // accounts; a new publication needs a localpart of the current grammar (spec,
            // "User Identifiers": `a-z 0-9 - . = _ / +`).
            let conforming = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.=_/+".contains(c);
            if localpart.is_empty() || !localpart.chars().all(conforming) || ruma::UserId::parse(mxid.as_str()).is_err()
            {
                tracing::warn!(uid = %user.uid, "directory user skipped: the uid is not a valid Matrix localpart");
                summary.skipped += 1;
                continue;
            }
            let active = matrix_users.as_ref().map_or(self.publish_all, |set| set.contains(&localpart));
            let mails = user.mails.iter().map(|mail| ("email", normalize_email(mail).ok(), mail));
            let phones = user.mobiles.iter().map(|mobile| ("msisdn", directory_msisdn(region, mobile), mobile));
            for (medium, address, raw) in mails.chain(phones) {
                let Some(address) = address else {
                    tracing::warn!(uid = %user.uid, medium, value = %raw, "directory entry skipped: invalid address");
                    summary.skipped += 1;
                    continue;
                };
                match wanted.get(&(medium.to_owned(), address.clone())) {
                    Some((owner, _)) if *owner != mxid => {
                        tracing::warn!(%owner, duplicate = %mxid, medium, "directory entry skipped: address of two users");
                        summary.skipped += 1;
                    }
                    Some(_) => {}
                    None => {
                        wanted.insert((medium.to_owned(), address), (mxid.clone(), active));
                    }
                }
            }
        }

        progress.finish();

        let mut changes = DirectoryChanges::default();
        let mut seen = BTreeSet::new();
        for row in self.store.directory_threepids().await? {
            let key = (row.medium.clone(), row.address.clone());
            match wanted.get(&key) {
                None => changes.removed.push(row.id),
                Some((mxid, active)) => {
                    if *mxid != row.mxid || *active != row.active {
                        changes.updated.push((row.id, mxid.clone(), *active));
                    }
                    seen.insert(key);
                }
            }
        }
        changes.added = wanted
            .into_iter()
            .filter(|(key, _)| !seen.contains(key))
            .map(|((medium, address), (mxid, active))| NewThreepid { medium, address, mxid, active })
            .collect();
        summary.changed = changes.updated.len();
        summary.removed = changes.removed.len();
        summary.added = self.lookups.apply_directory_changes(&changes).await?;
        let users = i64::try_from(summary.users).unwrap_or(i64::MAX);
        self.store.record_directory_sync(users, self.clock.now_ms()).await?;
        Ok(summary)
    }
}

/// A directory phone number as lookups hash it (E.164 digits): a number in international form
/// (`+33 6 12 34 56 78`), a national one when `phone_default_region` says where from, or
/// digits only, which is the Matrix `msisdn` form (`33612345678`) and is published as it is,
/// as the Node pusher did. A national number without a region (a leading 0: no country code
/// starts with 0) is refused rather than published under the wrong country.
fn directory_msisdn(region: Option<&str>, raw: &str) -> Option<String> {
    if let Ok(digits) = normalize_msisdn(region, raw) {
        return Some(digits);
    }
    let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    let msisdn_form = digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0');
    msisdn_form.then(|| crate::vocabulary::normalize_address("msisdn", digits)).flatten()
}
