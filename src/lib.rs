//! A Matrix Identity Service (Identity Service API v2) that also implements MSC4004, the
//! unified view of federated identity services.
//!
//! Layers, from the outside in: [`cli`] (commands), [`app`] (assembly), [`http`] (routes and
//! handlers), the domain logic, and the adapters ([`store`] for the database). [`config`]
//! loads the drop-in configuration of the Node service; [`error`] maps every failure to a
//! Matrix error body.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod directory;
pub mod domain;
pub mod error;
pub mod http;
pub mod jobs;
pub mod listener;
pub mod matrix;
pub mod notify;
pub mod ratelimit;
pub mod secret;
pub mod settings;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;

pub use app::App;
pub use config::Config;
