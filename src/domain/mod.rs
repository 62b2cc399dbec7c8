//! The rules of the service, independent of HTTP: tokens, terms, keys, accounts, lookups.
//! Handlers call these; these call the store and the adapters.

pub mod account;
pub mod binding;
pub mod directory;
pub mod inspect;
pub mod invite;
pub mod keys;
pub mod pusher;
pub mod terms;
pub mod tokens;
pub mod trusted;
pub mod validation;
pub mod xmatrix;
