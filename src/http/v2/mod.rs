//! Handlers of the Identity Service API, one file per section of the spec.

pub mod status;
