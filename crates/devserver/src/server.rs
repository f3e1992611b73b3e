//! Startup and shutdown: open the store, bind both listeners, announce them
//! on stdout, serve until the shutdown future resolves, then stop gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::auth::{Auth, AuthConfigError, OidcClient, read_token_file};
use crate::config::Config;
use crate::events::Hub;
use crate::service::Api;
use crate::store::{Store, StoreError};

/// How long open streams and requests get to finish after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start or failed while running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The gRPC TLS settings are unusable.
    #[error("gRPC TLS: {0}")]
    Tls(String),
    /// The token configuration is unusable.
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    /// The database could not be opened.
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// `grpc` or `http`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A server failed while running.
    #[error("{what} server failed: {reason}")]
    Serve {
        /// `grpc` or `http`.
        what: &'static str,
        /// What went wrong.
        reason: String,
    },
}

async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ServerError> {
    let err = |source| ServerError::Bind { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

/// Accepted connections with Nagle's algorithm off: gRPC sends many small
/// frames (responses, watch events) and would otherwise stall on delayed ACKs.
fn no_delay(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Runs the devserver until `shutdown` resolves, then stops gracefully
/// (watch streams end, in-flight calls finish, at most [`SHUTDOWN_GRACE`]).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let mut tokens = config.tokens.clone();
    for file in &config.token_files {
        tokens.extend(read_token_file(file)?);
    }
    let oidc = match (&config.oidc_client_id, &config.oidc_client_secret) {
        (Some(id), Some(secret)) => Some(OidcClient {
            id: id.clone(),
            secret: secret.clone(),
        }),
        _ => None,
    };
    let auth = Arc::new(Auth::new(&tokens, oidc, config.oidc_token_ttl())?);

    let db_dir = config.database_dir();
    let store = Store::open(db_dir.as_deref(), Hub::new())?;
    match &db_dir {
        Some(dir) => tracing::info!(data_dir = %dir.display(), "database opened"),
        None => tracing::info!("in-memory database"),
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let api = Api::new(store, stop_rx.clone());

    let (grpc_listener, grpc_addr) = bind("grpc", config.grpc_listen).await?;
    let (http_listener, http_addr) = bind("http", config.http_listen).await?;

    let (sessions, projects, settings) = crate::grpc::services(api.clone(), auth.clone());
    let mut builder = tonic::transport::Server::builder();
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        let read = |p: &std::path::PathBuf| {
            std::fs::read(p)
                .map_err(|e| ServerError::Tls(format!("cannot read {}: {e}", p.display())))
        };
        let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| ServerError::Tls(e.to_string()))?;
    }
    let grpc = {
        let mut stop = stop_rx.clone();
        builder
            .add_service(sessions)
            .add_service(projects)
            .add_service(settings)
            .serve_with_incoming_shutdown(no_delay(grpc_listener), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
    };
    let http = {
        let mut stop = stop_rx.clone();
        axum::serve(
            // SSE frames are small too: no Nagle.
            axum::serve::ListenerExt::tap_io(http_listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            }),
            crate::rest::router(api, auth),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
    };
    let grpc = tokio::spawn(grpc);
    let http = tokio::spawn(async move { http.await });

    ambient_daemon::announce_listening("grpc", grpc_addr);
    ambient_daemon::announce_listening("http", http_addr);
    tracing::info!(%grpc_addr, %http_addr, "ambient-devserver ready");

    tokio::pin!(shutdown);
    let mut grpc = grpc;
    let mut http = http;
    let early = tokio::select! {
        () = &mut shutdown => None,
        r = &mut grpc => Some(("grpc", r.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())))),
        r = &mut http => Some(("http", r.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())))),
    };
    if let Some((what, result)) = early {
        let _ = stop_tx.send(true);
        return Err(ServerError::Serve {
            what,
            reason: result
                .err()
                .unwrap_or_else(|| "stopped unexpectedly".into()),
        });
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let both = async {
        let _ = grpc.await;
        let _ = http.await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, both).await.is_err() {
        tracing::warn!("connections still open after the grace period; exiting anyway");
    }
    tracing::info!("stopped");
    Ok(())
}
