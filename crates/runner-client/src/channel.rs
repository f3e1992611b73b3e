//! The gRPC channel to the API server and the bearer on every call.
//!
//! The endpoint comes from [`ambient_protocol::grpc::endpoint`] (plain or
//! TLS with the system roots plus a CA file, HTTP/2 and TCP keep-alive so a
//! dead connection is noticed). The channel connects lazily and reconnects
//! by itself; each request carries `authorization: Bearer <token>` read from
//! the [`TokenSource`] at the time of the call, so a refreshed token is used
//! at once.

use std::path::Path;
use std::time::Duration;

use ambient_protocol::Secret;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::token::{TokenError, TokenSource};

/// Time limit of a unary call (a watch has none).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A call to the API server failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("gRPC endpoint: {0}")]
    Endpoint(String),
    #[error("cannot get an API token: {0}")]
    Token(#[from] TokenError),
    #[error("the token is not a valid header value")]
    BadToken,
    #[error("the API refused the token (UNAUTHENTICATED) and no other could be had: {0}")]
    Rejected(TokenError),
    #[error("API call failed: {}", describe(.0))]
    Status(Status),
}

impl CallError {
    /// The gRPC code, for a call the server (or transport) answered.
    pub fn code(&self) -> Option<Code> {
        match self {
            CallError::Status(s) => Some(s.code()),
            CallError::Rejected(_) => Some(Code::Unauthenticated),
            _ => None,
        }
    }
}

/// `CODE: message` plus the transport's cause chain, which is where TLS
/// failures ("invalid peer certificate: UnknownIssuer") are told.
pub fn describe(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The API server's gRPC side with the runner's token.
#[derive(Debug, Clone)]
pub struct Api {
    channel: Channel,
    tokens: TokenSource,
}

impl Api {
    /// A lazily connecting channel to `addr` (TLS when `use_tls` or an
    /// `https://` address, trusting the system roots and `ca_file`).
    pub fn new(
        addr: &str,
        use_tls: bool,
        ca_file: Option<&Path>,
        tokens: TokenSource,
    ) -> Result<Self, CallError> {
        let endpoint = ambient_protocol::grpc::endpoint(addr, use_tls, ca_file)
            .map_err(|e| CallError::Endpoint(e.to_string()))?;
        Ok(Self {
            channel: endpoint.connect_lazy(),
            tokens,
        })
    }

    /// The channel (clones share the connection).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The token source.
    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// `msg` with the current bearer; also returns the token used.
    pub async fn request<T>(&self, msg: T) -> Result<(Request<T>, Secret), CallError> {
        let token = self.tokens.token().await?.value;
        let req = with_bearer(msg, &token)?;
        Ok((req, token))
    }

    /// Runs a unary `call` (time limit [`CALL_TIMEOUT`]) once, and once more
    /// with a fresh token after `UNAUTHENTICATED`.
    pub async fn unary<M, R, F, Fut>(&self, msg: M, call: F) -> Result<R, CallError>
    where
        M: Clone,
        F: Fn(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        self.call(msg, Some(CALL_TIMEOUT), call).await
    }

    /// Opens a server stream like [`Api::unary`], without a time limit.
    pub async fn open_stream<M, R, F, Fut>(&self, msg: M, call: F) -> Result<R, CallError>
    where
        M: Clone,
        F: Fn(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        self.call(msg, None, call).await
    }

    async fn call<M, R, F, Fut>(
        &self,
        msg: M,
        timeout: Option<Duration>,
        call: F,
    ) -> Result<R, CallError>
    where
        M: Clone,
        F: Fn(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let (mut req, mut used) = self.request(msg.clone()).await?;
        for attempt in 0..2 {
            if let Some(t) = timeout {
                req.set_timeout(t);
            }
            match call(self.channel.clone(), req).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if s.code() == Code::Unauthenticated && attempt == 0 => {
                    tracing::info!(
                        "API answered UNAUTHENTICATED; refreshing the token and retrying once"
                    );
                    used = self
                        .tokens
                        .refresh_after_rejection(&used)
                        .await
                        .map_err(CallError::Rejected)?
                        .value;
                    req = with_bearer(msg.clone(), &used)?;
                }
                Err(s) => return Err(CallError::Status(s)),
            }
        }
        Err(CallError::Status(Status::unauthenticated(
            "still unauthenticated after a token refresh",
        )))
    }
}

fn with_bearer<T>(msg: T, token: &Secret) -> Result<Request<T>, CallError> {
    let mut req = Request::new(msg);
    let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
        format!("Bearer {}", token.expose())
            .parse()
            .map_err(|_| CallError::BadToken)?;
    value.set_sensitive(true);
    req.metadata_mut().insert("authorization", value);
    Ok(req)
}
