//! User directories (`userdb_engine`): where an organisation's users, their e-mail addresses
//! and phone numbers come from. LDAP or an SQL table; plus, optionally, the Synapse database
//! to know who has an active Matrix account.

pub mod ldap;
pub mod sql;
pub mod synapse;

use std::fmt;

use crate::config::Config;
use crate::matrix::dns::BoxFuture;

/// One user as a directory describes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The user id (the localpart of the Matrix ID).
    pub uid: String,
    /// E-mail addresses, as stored.
    pub mails: Vec<String>,
    /// Phone numbers, as stored.
    pub mobiles: Vec<String>,
}

/// A source of users. Two implementations (LDAP, SQL), so a trait.
pub trait Directory: Send + Sync + fmt::Debug {
    /// Every user of the directory.
    fn users(&self) -> BoxFuture<'_, Result<Vec<DirectoryUser>, String>>;
}

/// The directory of the configuration, if `userdb_engine` names one.
pub fn from_config(config: &Config) -> Result<Option<Box<dyn Directory>>, String> {
    match config.userdb_engine.as_str() {
        "" => Ok(None),
        "ldap" => Ok(Some(Box::new(ldap::LdapDirectory::new(config)?))),
        "sqlite" | "pg" => Ok(Some(Box::new(sql::SqlDirectory::new(config)?))),
        other => Err(format!("userdb_engine `{other}` is not supported")),
    }
}
