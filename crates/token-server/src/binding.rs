//! Binding an exchange to the caller's pod (issue 25): knowing another
//! session's ID is not enough to get its token.
//!
//! After the session check, the server asks a [`CallerBinding`] whether the
//! connection that asked (its peer and local socket addresses) belongs to
//! the claimed session, and for which pod generation. The control plane
//! plugs in the real bindings (pod IP on Kubernetes, process group in the
//! process runtime); [`Unbound`] binds every caller.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::BoxFuture;
use crate::directory::DirectoryError;

/// What a [`CallerBinding`] says about a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The caller is the session's pod (or process), of this generation.
    Bound { generation: String },
    /// The caller is not the session's: `403` (the reason is logged, not
    /// sent).
    Refused { reason: String },
    /// The session's pod is not there yet (e.g. not Running): `403` too; the
    /// client retries.
    NotYet,
}

/// Decides whether the connection `peer` → `local` speaks for `session_id`.
/// Called once per exchange, after the session was found live.
pub trait CallerBinding: Send + Sync + 'static {
    fn bind<'a>(
        &'a self,
        session_id: &'a str,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> BoxFuture<'a, Result<Binding, DirectoryError>>;
}

/// Every caller is bound, generation `"0"` (the standalone server, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unbound;

/// The generation [`Unbound`] gives.
pub const UNBOUND_GENERATION: &str = "0";

impl CallerBinding for Unbound {
    fn bind<'a>(
        &'a self,
        _session_id: &'a str,
        _peer: SocketAddr,
        _local: SocketAddr,
    ) -> BoxFuture<'a, Result<Binding, DirectoryError>> {
        Box::pin(async {
            Ok(Binding::Bound {
                generation: UNBOUND_GENERATION.to_owned(),
            })
        })
    }
}

/// Both ends of an accepted connection, as a request extension
/// (`ConnectInfo<Addresses>`). [`crate::TokenServer::serve`] inserts it; an
/// embedder serving [`crate::TokenServer::router`] with `axum::serve` gets it
/// from `into_make_service_with_connect_info::<Addresses>()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address the client connected to.
    pub local: SocketAddr,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for Addresses
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        let peer = *stream.remote_addr();
        let local = stream
            .io()
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Self { peer, local }
    }
}
