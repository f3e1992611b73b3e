//! `ambient-control-plane`: turns sessions in the API server into pods and
//! keeps both sides true under failure.
//!
//! - [`config`]: flags and environment (wire.md §5), validated into [`config::Settings`];
//! - [`names`] and [`objects`]: names/labels/ports and the typed Kubernetes
//!   objects of a session (wire.md §4);
//! - [`render`]: the objects of one session as YAML, without a cluster.

pub mod config;
pub mod names;
pub mod objects;
pub mod render;
