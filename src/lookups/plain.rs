//! The `none` algorithm (off by default): entries are `"<address> <medium>"` in clear. Our own
//! 3PIDs are found in the database; pushed hashes in memory, after hashing each entry with the
//! request's pepper. Answers use the entries as the client sent them.

use std::collections::{BTreeMap, BTreeSet};

use super::{LookupRequest, Lookups, check_pepper};
use crate::error::ApiResult;
use crate::store::LocalMatch;
use crate::vocabulary::{Algorithm, Source, hash_3pid, normalize_address};
use crate::wire::LookupAnswer;

impl Lookups {
    /// A `none` lookup; the caller checked that `none` is offered.
    pub(super) async fn lookup_plain(&self, request: &LookupRequest, with_inactive: bool) -> ApiResult<LookupAnswer> {
        check_pepper(&self.index.peppers(), Algorithm::None, &request.pepper)?;

        let addresses: Vec<String> = request.addresses.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        // Matches come back under the normalised "<address> <medium>"; answer under the
        // entries as the client sent them.
        let mut sent_as: BTreeMap<String, Vec<&String>> = BTreeMap::new();
        for entry in &addresses {
            if let Some((medium, address)) = parse_plain(entry) {
                sent_as.entry(format!("{address} {medium}")).or_default().push(entry);
            }
        }
        let pairs: Vec<(String, String)> = addresses.iter().filter_map(|entry| parse_plain(entry)).collect();
        let (found, found_inactive) = split_local(self.store.find_local_plain(&pairs).await?);
        let rekey = |found: BTreeMap<String, String>| -> BTreeMap<String, String> {
            found
                .into_iter()
                .flat_map(|(key, mxid)| {
                    sent_as.get(&key).into_iter().flatten().map(move |entry| ((*entry).clone(), mxid.clone()))
                })
                .collect()
        };
        let (mappings, inactive) = (rekey(found), rekey(found_inactive));

        let remaining: Vec<String> = addresses
            .into_iter()
            .filter(|key| !(mappings.contains_key(key) || (with_inactive && inactive.contains_key(key))))
            .collect();
        let third_party_mappings = self.plain_third_party_mappings(&request.pepper, &remaining);
        Ok(LookupAnswer { mappings, third_party_mappings, inactive_mappings: with_inactive.then_some(inactive) })
    }

    /// `{"<server>": [entry, ...]}` for the entries that other servers pushed: each entry is
    /// hashed with the request's pepper to find it, and given back as sent.
    fn plain_third_party_mappings(&self, pepper: &str, remaining: &[String]) -> BTreeMap<String, Vec<String>> {
        let hashed: BTreeMap<String, &String> = remaining
            .iter()
            .filter_map(|entry| {
                parse_plain(entry).map(|(medium, address)| (hash_3pid(&address, &medium, pepper), entry))
            })
            .collect();
        let hashes: Vec<String> = hashed.keys().cloned().collect();
        let mut by_server: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (hash, server) in self.index.pushed_by(pepper, &hashes) {
            if let Some(entry) = hashed.get(&hash) {
                by_server.entry(server).or_default().insert((*entry).clone());
            }
        }
        by_server.into_iter().map(|(server, entries)| (server, entries.into_iter().collect())).collect()
    }
}

/// Splits matches into active and inactive maps, keeping for each hash the owner that wins
/// ([`Source::precedence`]).
fn split_local(local: Vec<LocalMatch>) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let rank = |found: &LocalMatch| Source::from_stored(&found.source).precedence(found.active);
    let mut best: BTreeMap<String, LocalMatch> = BTreeMap::new();
    for found in local {
        if best.get(&found.hash).is_none_or(|kept| rank(kept) < rank(&found)) {
            best.insert(found.hash.clone(), found);
        }
    }
    let (active, inactive): (Vec<_>, Vec<_>) = best.into_values().partition(|found| found.active);
    let as_map = |list: Vec<LocalMatch>| list.into_iter().map(|found| (found.hash, found.mxid)).collect();
    (as_map(active), as_map(inactive))
}

/// Parses a `none` entry, `"<address> <medium>"`, into `(medium, normalised address)`.
fn parse_plain(entry: &str) -> Option<(String, String)> {
    let (address, medium) = entry.rsplit_once(' ')?;
    let address = normalize_address(medium, address)?;
    Some((medium.to_owned(), address))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(hash: &str, mxid: &str, active: bool, source: &str) -> LocalMatch {
        LocalMatch { hash: hash.into(), mxid: mxid.into(), active, source: source.into() }
    }

    #[test]
    fn bindings_win_over_directory_entries_and_active_over_inactive() {
        let (mappings, inactive) = split_local(vec![
            found("h1", "@dir:x", true, "directory"),
            found("h1", "@bound:x", true, "binding"),
            found("h2", "@old:x", false, "directory"),
            found("h3", "@gone:x", false, "binding"),
            found("h3", "@here:x", true, "directory"),
        ]);
        assert_eq!(mappings.get("h1").map(String::as_str), Some("@bound:x"));
        assert_eq!(mappings.get("h3").map(String::as_str), Some("@here:x"));
        assert_eq!(inactive.len(), 1);
        assert_eq!(inactive.get("h2").map(String::as_str), Some("@old:x"));
    }
}
