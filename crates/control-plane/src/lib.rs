//! `ambient-control-plane`: turns sessions in the API server into pods and
//! keeps both sides true under failure.
//!
//! - [`config`]: flags and environment (wire.md §5), validated into [`config::Settings`];
//! - [`api`]: the gRPC client of the API server (bearer from the token provider);
//! - [`rest`]: its REST side (roles, role bindings, credentials, prompts);
//! - [`credentials`]: which credentials a session gets, and its grants;
//! - [`informer`]: list + watch caches that relist and diff on every reconnect;
//! - [`queue`]: the keyed, de-duplicating work queue with per-key backoff;
//! - [`reconcile`]: the session, project and project-settings reconcilers;
//! - [`runtime`]: the `SessionRuntime` trait and `KubeRuntime`;
//! - [`names`] and [`objects`]: names/labels/ports and the typed Kubernetes
//!   objects of a session (wire.md §4) and of a project;
//! - [`render`]: the objects of one session as YAML, without a cluster;
//! - [`keypair`]: the token-exchange key and the session tokens' signing
//!   keys in one Secret (race-safe bootstrap);
//! - [`session_identity`]: exchanges bound to the caller's pod, and what the
//!   session gateway knows of sessions;
//! - [`session_keys`]: exchange v3's roots and per-pod session key files;
//! - [`permissions`]: the startup check of every verb of `rbac.yaml`;
//! - [`leader`]: Lease-based leader election;
//! - [`daemon`]: everything wired together, with the embedded token server;
//! - [`supervisor`]: restarts a long-running task that panicked;
//! - [`metrics`]: Prometheus metrics.

pub mod api;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod informer;
pub mod keypair;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod objects;
pub mod permissions;
pub mod queue;
pub mod reconcile;
pub mod render;
pub mod rest;
pub mod runtime;
pub mod session_identity;
pub mod session_keys;
pub mod supervisor;
