//! Terms of service: the policies from the configuration, and whether a user accepted them.
//!
//! A policy is identified by its name and version; accepting any language's URL of a policy
//! accepts that version. A new version must be accepted again.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::store::Store;

/// One policy version and the URLs of its translations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The policy's key, e.g. `privacy_policy`.
    pub name: String,
    /// Its version, e.g. `1.2`.
    pub version: String,
    /// The `url` of every language.
    pub urls: Vec<String>,
}

/// The policies users must accept, as configured in `policies`.
#[derive(Debug, Clone, Default)]
pub struct Terms {
    document: Map<String, Value>,
    policies: Vec<Policy>,
}

impl Terms {
    /// Reads the `policies` setting: `null` (no terms), an object in the spec's shape, or the
    /// path of a JSON or YAML file holding one. A `{"policies": {...}}` wrapper is accepted.
    pub fn load(setting: &Value) -> Result<Self, String> {
        let document = match setting {
            Value::Null => return Ok(Self::default()),
            Value::String(path) if path.is_empty() => return Ok(Self::default()),
            Value::String(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {path}: {error}"))?;
                serde_json::from_str::<Value>(&text)
                    .or_else(|_| serde_norway::from_str::<Value>(&text))
                    .map_err(|error| format!("{path} is not JSON or YAML: {error}"))?
            }
            other => other.clone(),
        };
        let Value::Object(mut document) = document else {
            return Err("`policies` must be an object or a file path".to_owned());
        };
        if document.len() == 1
            && let Some(Value::Object(inner)) = document.get("policies")
        {
            document = inner.clone();
        }
        let mut policies = Vec::new();
        for (name, policy) in &document {
            let Value::Object(policy) = policy else {
                return Err(format!("policy `{name}` is not an object"));
            };
            let version = policy
                .get("version")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("policy `{name}` has no string `version`"))?
                .to_owned();
            let urls: Vec<String> = policy
                .iter()
                .filter(|(key, _)| *key != "version")
                .filter_map(|(_, translation)| translation.get("url").and_then(Value::as_str).map(str::to_owned))
                .collect();
            if urls.is_empty() {
                return Err(format!("policy `{name}` has no language with a `url`"));
            }
            policies.push(Policy { name: name.clone(), version, urls });
        }
        Ok(Self { document, policies })
    }

    /// The `policies` object of `GET /terms`.
    #[must_use]
    pub fn document(&self) -> Map<String, Value> {
        self.document.clone()
    }

    /// The `(name, version)` pairs every user must have accepted.
    #[must_use]
    pub fn required(&self) -> BTreeSet<(String, String)> {
        self.policies.iter().map(|policy| (policy.name.clone(), policy.version.clone())).collect()
    }

    /// The policy versions the URLs accept. An unknown URL is an error naming it.
    pub fn policies_for_urls(&self, urls: &[String]) -> ApiResult<Vec<(String, String)>> {
        let mut accepted = Vec::new();
        for url in urls {
            let policy =
                self.policies.iter().find(|policy| policy.urls.iter().any(|known| known == url)).ok_or_else(|| {
                    ApiError::new(ErrCode::InvalidParam, format!("`{url}` is not the URL of a current policy"))
                })?;
            accepted.push((policy.name.clone(), policy.version.clone()));
        }
        Ok(accepted)
    }

    /// Records acceptance, at `now`, of the policies behind `urls` (all or nothing).
    pub async fn accept(&self, store: &Store, user_id: &str, urls: &[String], now: i64) -> ApiResult<()> {
        let accepted = self.policies_for_urls(urls)?;
        store.record_terms_acceptance(user_id, &accepted, now).await?;
        Ok(())
    }

    /// Whether `user_id` accepted every current policy version.
    pub async fn has_accepted_all(&self, store: &Store, user_id: &str) -> ApiResult<bool> {
        if self.policies.is_empty() {
            return Ok(true);
        }
        let accepted: BTreeSet<(String, String)> = store.accepted_terms(user_id).await?.into_iter().collect();
        Ok(self.required().is_subset(&accepted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "privacy_policy": {"version": "1.2", "en": {"name": "Privacy", "url": "https://x/en/privacy"},
                               "fr": {"name": "Confidentialité", "url": "https://x/fr/privacy"}},
            "terms_of_service": {"version": "2.0", "en": {"name": "Terms", "url": "https://x/en/tos"}}
        })
    }

    #[test]
    fn urls_map_to_policy_versions() {
        let terms = Terms::load(&sample()).unwrap();
        assert_eq!(
            terms.policies_for_urls(&["https://x/fr/privacy".into()]).unwrap(),
            vec![("privacy_policy".to_owned(), "1.2".to_owned())]
        );
        assert_eq!(terms.policies_for_urls(&["https://x/other".into()]).unwrap_err().code(), ErrCode::InvalidParam);
        assert_eq!(terms.required().len(), 2);
    }

    #[test]
    fn wrapped_documents_and_bad_policies() {
        let terms = Terms::load(&json!({"policies": sample()})).unwrap();
        assert_eq!(terms.required().len(), 2);
        assert!(Terms::load(&json!({"p": {"en": {"url": "u"}}})).unwrap_err().contains("version"));
        assert!(Terms::load(&json!({"p": {"version": "1"}})).unwrap_err().contains("url"));
        assert!(Terms::load(&json!(["p"])).is_err());
        assert!(Terms::load(&Value::Null).unwrap().required().is_empty());
    }
}
