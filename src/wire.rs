//! The JSON bodies of the API as types, request and answer, shared by the handlers that serve
//! them and by the pusher that calls other servers' `hash_details` and `lookups`. A field
//! renamed here changes both sides at once.
//!
//! ruma's identity-service types are not used for the lookup bodies: they lack MSC4004's
//! `alt_lookup_peppers` and `third_party_mappings`, and this service's `inactive_mappings`.
//! Signed bodies (associations, `sign-ed25519`) stay JSON values, since their signature is
//! computed over the canonical JSON.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::background;
use crate::vocabulary::LookupHash;

/// `{}`: the answer of calls that only succeed (`account/logout`, `terms`, `3pid/unbind`, the
/// status endpoints).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Empty {}

/// `GET /health/live` and `GET /health/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Health {
    /// `live` or `ready`.
    pub status: &'static str,
}

/// `GET /_matrix/identity/versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Versions {
    /// The spec versions served.
    pub versions: &'static [&'static str],
}

/// `POST /account/register`: the token, also as `access_token` (what Synapse and Sydent send).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    /// The access token (spec).
    pub token: String,
    /// The same token (Sydent's name, read by some clients).
    pub access_token: String,
}

/// `GET /account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    /// The user the token belongs to.
    pub user_id: String,
}

/// `GET /hash_details`, with MSC4004's `alt_lookup_peppers` (omitted when empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HashDetails {
    /// The algorithms offered.
    pub algorithms: Vec<String>,
    /// The pepper to hash with.
    pub lookup_pepper: String,
    /// Older peppers still accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alt_lookup_peppers: Vec<String>,
}

/// The answer of `POST /lookup`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LookupAnswer {
    /// Address (as sent) to the Matrix user who owns it here.
    pub mappings: BTreeMap<String, String>,
    /// MSC4004: server name to the addresses (as sent) it knows.
    pub third_party_mappings: BTreeMap<String, Vec<String>>,
    /// With `additional_features`: addresses of users who are known but not published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_mappings: Option<BTreeMap<String, String>>,
}

/// The body of MSC4004's `POST /lookups`: a server's complete set of hashes for one pepper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PushRequest {
    /// Must be `sha256`.
    pub algorithm: String,
    /// One of the receiver's peppers (current or previous).
    pub pepper: String,
    /// Exactly one entry: the pushing server's name and its hashes.
    pub mappings: HashMap<String, Vec<String>>,
}

/// A [`PushRequest`] as the receiver reads it: the same body, its hashes decoded straight into
/// [`LookupHash`]es (32 bytes each, inline), so that a million-hash push is not a million strings
/// to allocate, sort and free, and each hash is decoded once.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReceivedPush {
    /// Must be `sha256`.
    pub algorithm: String,
    /// One of the receiver's peppers (current or previous).
    pub pepper: String,
    /// Exactly one entry: the pushing server's name and its hashes.
    pub mappings: HashMap<String, ReceivedHashes>,
}

impl From<PushRequest> for ReceivedPush {
    fn from(request: PushRequest) -> Self {
        let mappings = request
            .mappings
            .into_iter()
            .map(|(server, hashes)| (server, hashes.iter().map(String::as_str).collect()))
            .collect();
        Self { algorithm: request.algorithm, pepper: request.pepper, mappings }
    }
}

/// From how many hashes a push body's list is parsed in two stages on two threads
/// ([`background::pipeline`]): below, a second thread costs more than it saves.
const TWO_STAGES_FROM: usize = 50_000;

/// The bytes a hash takes at least in a push body: 43 characters, two quotes and a comma.
const HASH_BYTES_IN_JSON: usize = crate::vocabulary::SHA256_HASH_LENGTH + 3;

thread_local! {
    /// How many hashes the push body being parsed on this thread can hold, for the first list of
    /// hashes to be allocated once at that size (see [`ReceivedPush::sized_for_body`]).
    static EXPECTED_HASHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl ReceivedPush {
    /// Runs `parse` (the parse of a push body of `body_length` bytes, on this thread) with its
    /// list of hashes allocated at once for as many hashes as the body can hold. Grown from
    /// empty, a million hashes take twenty reallocations that copy and fault in about twice
    /// the 32 MB they end at, old and new buffers both held at each step (the peak memory of a
    /// push). Capacity that the list does not fill is never touched, so never resident.
    pub fn sized_for_body<T>(body_length: usize, parse: impl FnOnce() -> T) -> T {
        EXPECTED_HASHES.set(body_length / HASH_BYTES_IN_JSON);
        let parsed = parse();
        EXPECTED_HASHES.set(0);
        parsed
    }
}

/// The hashes of one server in a push: those that are lookup hashes, and the position of the
/// first string that is not (the push is refused, naming it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedHashes {
    /// The valid hashes, in the order sent.
    pub hashes: Vec<LookupHash>,
    /// Where the first string that is not a lookup hash was.
    pub first_invalid: Option<usize>,
}

impl ReceivedHashes {
    /// The hashes `texts` write, with room for `capacity` of them.
    fn decoded<T: AsRef<str>>(capacity: usize, texts: impl Iterator<Item = T>) -> Self {
        let mut received = Self { hashes: Vec::with_capacity(capacity), first_invalid: None };
        for (position, text) in texts.enumerate() {
            received.add(position, text.as_ref());
        }
        received
    }

    /// Adds the string sent at `position`.
    fn add(&mut self, position: usize, text: &str) {
        match LookupHash::parse(text) {
            Some(hash) => self.hashes.push(hash),
            None => {
                self.first_invalid.get_or_insert(position);
            }
        }
    }
}

impl<'a> FromIterator<&'a str> for ReceivedHashes {
    fn from_iter<I: IntoIterator<Item = &'a str>>(texts: I) -> Self {
        Self::decoded(0, texts.into_iter())
    }
}

impl<'de> Deserialize<'de> for ReceivedHashes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// A string borrowed from the body when it has no escapes.
        #[derive(Deserialize)]
        struct Text<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ReceivedHashes;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a list of lookup hashes")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut list: A) -> Result<Self::Value, A::Error> {
                // Only the first list of a body gets the body's capacity.
                let capacity = list.size_hint().unwrap_or(0).max(EXPECTED_HASHES.take());
                // The strings of the list until its end or the first JSON error, kept for after.
                let mut failed = None;
                let texts = std::iter::from_fn(|| {
                    let next = list.next_element::<Text>().unwrap_or_else(|error| {
                        failed = Some(error);
                        None
                    });
                    next.map(|Text(text)| text)
                });
                let received = if capacity < TWO_STAGES_FROM {
                    ReceivedHashes::decoded(capacity, texts)
                } else {
                    // The JSON scanned here, the base64 decoded on a second core meanwhile: each
                    // takes about half of a million-hash parse.
                    let ((), received) = background::pipeline(
                        |handoff| texts.for_each(|text| handoff.push(text)),
                        |texts| ReceivedHashes::decoded(capacity, texts),
                    );
                    received
                };
                failed.map_or(Ok(received), Err)
            }
        }
        deserializer.deserialize_seq(Visitor)
    }
}

/// The answer of `POST /lookups` (201).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PushAnswer {
    /// Hashes in the snapshot now.
    pub stored: u64,
    /// Hashes that were not in the previous snapshot.
    pub added: u64,
    /// Hashes of the previous snapshot that are gone.
    pub removed: u64,
}

/// `validate/email/requestToken`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionId {
    /// The session.
    pub sid: String,
}

/// `validate/msisdn/requestToken`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MsisdnSession {
    /// The session.
    pub sid: String,
    /// The number, as E.164 digits.
    pub msisdn: String,
    /// The number in international format.
    pub intl_fmt: String,
}

/// `POST submitToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Success {
    /// Always true (failures are errors).
    pub success: bool,
}

/// `GET 3pid/getValidated3pid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ValidatedThreepid {
    /// `email` or `msisdn`.
    pub medium: String,
    /// The normalised address.
    pub address: String,
    /// When it was validated (ms since the epoch).
    pub validated_at: i64,
}

/// `GET pubkey/{keyId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublicKey {
    /// Unpadded base64.
    pub public_key: String,
}

/// `GET pubkey/isvalid` and `pubkey/ephemeral/isvalid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Validity {
    /// Whether the key is (still) valid.
    pub valid: bool,
}

/// `POST store-invite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoredInvite {
    /// The invitation token.
    pub token: String,
    /// The long-term public key (deprecated field, still read by homeservers).
    pub public_key: String,
    /// The long-term and the ephemeral key, with where to check them.
    pub public_keys: Vec<InviteKey>,
    /// The invitee's address, redacted.
    pub display_name: String,
}

/// A public key of an invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InviteKey {
    /// Unpadded base64.
    pub public_key: String,
    /// The URL that says whether it is still valid.
    pub key_validity_url: String,
}

/// The signed association `3pid/bind` answers (and v1 `lookup`). The handlers sign and return
/// a JSON value, since the signature covers its canonical form; this type describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignedAssociation {
    /// The normalised address.
    pub address: String,
    /// `email` or `msisdn`.
    pub medium: String,
    /// The Matrix user the 3PID is bound to.
    pub mxid: String,
    /// Valid from (ms since the epoch).
    pub not_before: i64,
    /// Valid until (ms since the epoch).
    pub not_after: i64,
    /// When the 3PID was validated (ms since the epoch).
    pub ts: i64,
    /// This server's ed25519 signature: server name to key id to unpadded base64.
    pub signatures: BTreeMap<String, BTreeMap<String, String>>,
}

/// The answer of `sign-ed25519`: the invitation's fields signed with its ephemeral key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignedInvitation {
    /// The user accepting the invitation.
    pub mxid: String,
    /// The user who invited.
    pub sender: String,
    /// The invitation token.
    pub token: String,
    /// The ephemeral key's signature: server name to key id to unpadded base64.
    pub signatures: BTreeMap<String, BTreeMap<String, String>>,
}

/// The `policies` of `GET /terms`: policy name to its `version` and, per language, its
/// `name` and `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Policies {
    /// The policies users must accept.
    #[schema(value_type = Object)]
    pub policies: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::ReceivedPush;

    /// A body of `servers` lists of `hashes` hashes each.
    fn body(servers: usize, hashes: usize) -> String {
        let hash = crate::vocabulary::hash_3pid("a@example.org", "email", "pepper");
        let lists: Vec<String> =
            (0..servers).map(|server| format!("\"s{server}.example\": {:?}", vec![hash.as_str(); hashes])).collect();
        format!("{{\"algorithm\": \"sha256\", \"pepper\": \"pepper\", \"mappings\": {{{}}}}}", lists.join(", "))
    }

    #[test]
    fn the_first_list_of_a_push_is_allocated_for_what_the_body_can_hold() {
        let text = body(2, 1_000);
        let parsed: ReceivedPush =
            ReceivedPush::sized_for_body(text.len(), || serde_json::from_str(&text)).expect("a push body");
        let mut capacities: Vec<usize> = parsed.mappings.values().map(|list| list.hashes.capacity()).collect();
        capacities.sort_unstable();
        assert!(capacities[1] >= 2_000, "the first list: room for every hash of the body, {capacities:?}");
        assert!(capacities[0] < 2_000, "the second list grows as usual, {capacities:?}");
        assert!(parsed.mappings.values().all(|list| list.hashes.len() == 1_000));
        // Outside it, lists grow from empty.
        let again: ReceivedPush = serde_json::from_str(&body(1, 10)).expect("a push body");
        assert!(again.mappings.values().all(|list| list.hashes.capacity() < 2_000));
    }
}
