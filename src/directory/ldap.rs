//! An LDAP directory: `ldap://` or `ldaps://` (`ldap_uri`), optional StartTLS, simple bind with
//! `ldap_user`/`ldap_password` or anonymous, a paged search of `ldap_base` with `ldap_filter`,
//! and configurable attribute names (Node defaults `uid`, `mail`, `mobile`). Multi-valued
//! attributes give several addresses. The filter comes from the configuration only.

use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use super::{Directory, DirectoryUser};
use crate::config::Config;
use crate::matrix::dns::BoxFuture;

/// Entries per page of the search.
const PAGE_SIZE: i32 = 500;

/// The LDAP directory of the configuration.
#[derive(Clone)]
pub struct LdapDirectory {
    uri: String,
    base: String,
    filter: String,
    bind_dn: String,
    password: String,
    starttls: bool,
    verify_tls: bool,
    uid_attribute: String,
    mail_attribute: String,
    mobile_attribute: String,
}

impl std::fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapDirectory").field("uri", &self.uri).field("base", &self.base).finish_non_exhaustive()
    }
}

impl LdapDirectory {
    /// The directory of `ldap_*` keys.
    pub fn new(config: &Config) -> Result<Self, String> {
        if config.ldap_uri.is_empty() {
            return Err("userdb_engine is ldap but ldap_uri is empty".to_owned());
        }
        Ok(Self {
            uri: config.ldap_uri.clone(),
            base: config.ldap_base.clone(),
            filter: if config.ldap_filter.is_empty() {
                "(objectClass=*)".to_owned()
            } else {
                config.ldap_filter.clone()
            },
            bind_dn: config.ldap_user.clone(),
            password: config.ldap_password.clone(),
            starttls: config.ldap_starttls,
            verify_tls: config.ldap_verify_certificate,
            uid_attribute: config.ldap_uid_field.clone(),
            mail_attribute: config.ldap_mail_field.clone(),
            mobile_attribute: config.ldap_mobile_field.clone(),
        })
    }

    async fn search(&self) -> Result<Vec<DirectoryUser>, String> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(10))
            .set_starttls(self.starttls)
            .set_no_tls_verify(!self.verify_tls);
        let (connection, mut ldap) = LdapConnAsync::with_settings(settings, &self.uri)
            .await
            .map_err(|error| format!("cannot reach {}: {error}", self.uri))?;
        ldap3::drive!(connection);
        ldap.with_timeout(Duration::from_secs(60));
        if !self.bind_dn.is_empty() {
            ldap.simple_bind(&self.bind_dn, &self.password)
                .await
                .and_then(ldap3::LdapResult::success)
                .map_err(|error| format!("bind as {} refused: {error}", self.bind_dn))?;
        }
        let attributes = [self.uid_attribute.as_str(), self.mail_attribute.as_str(), self.mobile_attribute.as_str()];
        let adapters: Vec<Box<dyn Adapter<_, _>>> =
            vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(PAGE_SIZE))];
        let mut search = ldap
            .streaming_search_with(adapters, &self.base, Scope::Subtree, &self.filter, attributes.to_vec())
            .await
            .map_err(|error| format!("search of {} failed: {error}", self.base))?;
        let mut users = Vec::new();
        while let Some(entry) = search.next().await.map_err(|error| format!("search failed: {error}"))? {
            let entry = SearchEntry::construct(entry);
            let values = |name: &str| -> Vec<String> {
                entry
                    .attrs
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let Some(uid) = values(&self.uid_attribute).into_iter().next() else { continue };
            users.push(DirectoryUser {
                uid,
                mails: values(&self.mail_attribute),
                mobiles: values(&self.mobile_attribute),
            });
        }
        search.finish().await.success().map_err(|error| format!("search failed: {error}"))?;
        let _ = ldap.unbind().await;
        Ok(users)
    }
}

impl Directory for LdapDirectory {
    fn users(&self) -> BoxFuture<'_, Result<Vec<DirectoryUser>, String>> {
        Box::pin(self.search())
    }
}
