//! The test OpenLDAP server (started by `scripts/test.sh`): a branch per test, filled from an
//! LDIF fixture.

use std::collections::HashSet;

use ldap3::{LdapConnAsync, Mod};

/// The server's settings; missing settings are a failure, never a skip.
pub struct LdapServer {
    pub url: String,
    pub base: String,
    pub admin_dn: String,
    pub password: String,
}

impl LdapServer {
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/test.sh, which starts slapd"))
        };
        Self {
            url: var("FIS_TEST_LDAP_URL"),
            base: var("FIS_TEST_LDAP_BASE"),
            admin_dn: var("FIS_TEST_LDAP_ADMIN_DN"),
            password: var("FIS_TEST_LDAP_ADMIN_PASSWORD"),
        }
    }

    async fn connect(&self) -> ldap3::Ldap {
        let (connection, mut ldap) = LdapConnAsync::new(&self.url).await.expect("connect to slapd");
        ldap3::drive!(connection);
        ldap.simple_bind(&self.admin_dn, &self.password).await.unwrap().success().expect("admin bind");
        ldap
    }

    /// Creates a fresh branch and loads `ldif` into it (`{base}` and `{ou}` replaced); returns
    /// the branch DN.
    pub async fn branch_from_ldif(&self, ldif: &str) -> String {
        let ou = format!("t{:016x}", rand::random::<u64>());
        let base = format!("ou={ou},{}", self.base);
        let text = ldif.replace("{base}", &base).replace("{ou}", &ou);
        let mut ldap = self.connect().await;
        for block in text.split("\n\n") {
            let lines: Vec<&str> =
                block.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty()).collect();
            let Some(dn) = lines.first().and_then(|line| line.strip_prefix("dn: ")) else { continue };
            let mut attributes: Vec<(String, HashSet<String>)> = Vec::new();
            for line in &lines[1..] {
                let (name, value) = line.split_once(": ").expect("attribute: value");
                match attributes.iter_mut().find(|(existing, _)| existing == name) {
                    Some((_, values)) => {
                        values.insert(value.to_owned());
                    }
                    None => attributes.push((name.to_owned(), HashSet::from([value.to_owned()]))),
                }
            }
            ldap.add(dn, attributes).await.unwrap().success().unwrap_or_else(|e| panic!("add {dn}: {e}"));
        }
        let _ = ldap.unbind().await;
        base
    }

    /// Adds users `prefix0..prefixN` with one mail each.
    pub async fn add_users(&self, base: &str, prefix: &str, count: usize) {
        let mut ldap = self.connect().await;
        for n in 0..count {
            let uid = format!("{prefix}{n}");
            let attributes = vec![
                ("objectClass".to_owned(), HashSet::from(["inetOrgPerson".to_owned()])),
                ("uid".to_owned(), HashSet::from([uid.clone()])),
                ("cn".to_owned(), HashSet::from([uid.clone()])),
                ("sn".to_owned(), HashSet::from([uid.clone()])),
                ("mail".to_owned(), HashSet::from([format!("{uid}@example.org")])),
            ];
            ldap.add(&format!("uid={uid},{base}"), attributes).await.unwrap().success().unwrap();
        }
        let _ = ldap.unbind().await;
    }

    /// Replaces the mails of a user.
    pub async fn set_mails(&self, dn: &str, mails: &[&str]) {
        let mut ldap = self.connect().await;
        let values: HashSet<String> = mails.iter().map(|m| (*m).to_owned()).collect();
        ldap.modify(dn, vec![Mod::Replace("mail".to_owned(), values)]).await.unwrap().success().unwrap();
        let _ = ldap.unbind().await;
    }

    /// Deletes an entry.
    pub async fn delete(&self, dn: &str) {
        let mut ldap = self.connect().await;
        ldap.delete(dn).await.unwrap().success().unwrap();
        let _ = ldap.unbind().await;
    }
}
