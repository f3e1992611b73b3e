//! `ambient-devserver`: a local, wire-compatible stand-in for `ambient-api-server`.
//!
//! It serves the `ambient.v1` gRPC services (sessions with their message
//! streams, projects, project settings, all with watches) and the REST subset
//! under `/api/ambient/v1` that the session-plane daemons use (wire.md §1–§2),
//! from one SQLite store and one watch hub, so a change made over REST shows up
//! on gRPC watches and the other way round. Calls need a bearer token (static
//! tokens from flags/files, or short-lived ones issued by the built-in OIDC
//! client-credentials endpoint).
//!
//! It follows the reference's semantics, not only its shapes (project ID =
//! name, project scope from `X-Ambient-Project`, PATCH replaces labels,
//! the tree-search language, roles and role bindings, caller identity from
//! named tokens), so every daemon is tested against what it will meet. It is
//! **not** a production API server: no users, role bindings are kept but not
//! enforced, one SQLite file.
//!
//! Modules:
//! - [`config`]: command-line flags and environment variables;
//! - [`server`]: binds the listeners, runs gRPC and HTTP, graceful shutdown;
//! - [`service`]: the operations REST and gRPC share (validation, phases);
//! - [`store`]: SQLite persistence; every committed change is published to
//!   [`events`], the watch hub (bounded broadcast), in commit order;
//! - [`grpc`] and [`rest`]: the two wires; [`mapping`]: proto ↔ REST JSON;
//!   [`model`]: the REST-only resources (agents, credentials, roles, role
//!   bindings);
//! - [`auth`] and [`oidc`]: bearer tokens and the token endpoint;
//! - [`search`]: the `search=` and `orderBy=` list parameters; [`labels`]:
//!   JSON-object strings; [`schema`]: data versions and upgrades;
//! - [`ids`] and [`time`]: identifiers and timestamps.

#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod grpc;
pub mod ids;
pub mod labels;
pub mod mapping;
pub mod model;
pub mod oidc;
pub mod rest;
pub mod schema;
pub mod search;
pub mod server;
pub mod service;
pub mod store;
pub mod time;

pub use config::Config;
pub use error::ApiError;
pub use server::run;
