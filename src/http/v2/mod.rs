//! Handlers of the Identity Service API, one file per section of the spec.

pub mod account;
pub mod invite;
pub mod lookup;
pub mod msc4004;
pub mod pubkey;
pub mod status;
pub mod terms;
pub mod threepid;
pub mod validate;
