//! A Matrix Identity Service (Identity Service API v2) that also implements MSC4004, the
//! unified view of federated identity services.
//!
//! Layers, from the outside in (imports only go down; `docs/architecture.md` draws them):
//! [`cli`] (commands) and [`app`] (assembly, background work); [`http`] (routes and thin
//! handlers) and [`jobs`] (schedules); [`state`] (what a handler reaches); [`domain`] (the
//! services: validation, binding, invitations, directory sync, pushes) and [`lookups`] (the one
//! owner of what a lookup answers); the adapters: [`store`] (SQLite or PostgreSQL),
//! [`directory`], [`notify`], [`matrix`] (homeserver calls); and the leaves: [`config`] (the
//! drop-in configuration of the Node service), [`vocabulary`], [`clock`], [`secret`]. [`error`]
//! maps every failure to a Matrix error body in one table.
//!
//! # Embedding
//!
//! The binary is one user of [`App`]; an application can mount the service in its own axum
//! router, as the Node service is mounted in an express app:
//!
//! ```no_run
#![doc = include_str!("../examples/embedded.rs")]
//! ```

pub mod app;
pub mod background;
pub mod cli;
pub mod clock;
pub mod config;
pub mod directory;
pub mod domain;
pub mod error;
pub mod http;
pub mod jobs;
pub mod listener;
pub mod lookups;
pub mod matrix;
pub mod metrics;
pub mod node_import;
pub mod notify;
pub mod ratelimit;
pub mod scheduling;
pub mod secret;
pub mod settings;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod vocabulary;
pub mod wire;

pub use app::App;
pub use config::Config;
