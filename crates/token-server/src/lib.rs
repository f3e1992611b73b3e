//! `ambient-token-server`: the hardened token exchange (wire.md §3).
//!
//! Every session container gets its API token here: it sends
//! `GET /token` with `Authorization: Bearer base64(RSA-OAEP(plaintext))`
//! under the control plane's public key, and gets `{"token", "expires_at"}`
//! back if, in this order:
//!
//! 1. the method is `GET` (else 405, before any authentication);
//! 2. the header is `Bearer <non-empty>` (else 401);
//! 3. the bearer is standard base64 and decrypts under one of the keys (else 401);
//! 4. the plaintext is a session ID of ≥ 8 bytes without whitespace (else 403) —
//!    or, for v2, a JSON `{"v":2,"sid","iat","nonce"}` with `iat` within 60 s and
//!    an unseen nonce (else 401), whose `sid` then passes the same rule;
//! 5. the [`SessionDirectory`] knows the session and it is not in a terminal
//!    phase — `Stopping` still gets its token (else 403);
//! 6. the [`CallerBinding`] says the connection is the session's pod (or
//!    process) and gives its generation (else 403, also while the pod is
//!    not ready: the client retries);
//! 7. the [`Identity`] gives the token (else 500): by default a **session
//!    token** ([`SessionTokens`]: an RS256 JWT naming the session, its
//!    project — a session without one gets 403 — and generation, ≤ 10 min, cached per session for most of its
//!    lifetime, signed on the blocking pool like a decryption; the signing
//!    keys' JWKS is served at `/.well-known/jwks.json`); or, as the
//!    escape hatch [`Identity::Platform`], the [`TokenProvider`]'s own API
//!    token (every session then acts as the platform).
//!
//! **Exchange v3** (issue 26): a request whose `Authorization` is
//! `Ambient-HMAC kid=…,sid=…,gen=…,ts=…,nonce=…,mac=…` proves the session's
//! per-session key instead (`ambient_protocol::exchange::v3`): the MAC under
//! the named root of the [`V3Roots`] given with
//! [`TokenServer::with_v3_roots`] (none: 401), the time window and the nonce
//! (the v2 nonce memory) replace rules 2–4 — two HMACs on the reactor, no
//! private-key operation — then rules 5–7 apply as above, and the header's
//! `gen` must be the generation the [`CallerBinding`] reports (else 403:
//! the key of a replaced pod). [`Config::require_v3`] refuses v1 and v2
//! (401) before any decryption. Every 401/403 body is the reference's
//! (`unauthorized` / `forbidden`): the reason is only logged. `/metrics`
//! counts private-key operations (RSA decryptions + session-token
//! signatures) as `ambient_token_server_private_key_operations_total`.
//!
//! The decoding and checks are `ambient_protocol::exchange`; this crate adds
//! the session check, the token, and the serving hardening: an 8 KiB head
//! limit (431), a header-read timeout, a request timeout, a per-client-IP
//! token bucket (429 with `Retry-After`), a bound on concurrent RSA
//! operations (which run on the blocking pool, never on the reactor) and on
//! the requests waiting for one (a dropped waiter gives its place back;
//! `/readyz` says 503 while the queue is full), a global and a per-client-IP
//! connection cap, and no request body read. Logs never contain a token, a
//! ciphertext or a rejected plaintext; an accepted request logs its session ID.
//!
//! Nothing here is process-global: no global metrics registry, no tracing
//! subscriber, no signal handling, no `exit`. The control plane embeds it:
//!
//! ```no_run
//! use std::sync::Arc;
//! use ambient_protocol::{exchange::KeySet, keys::PrivateKey};
//! use ambient_session_gateway::token::{DEFAULT_LIFETIME, KeyRing, SigningKey};
//! use ambient_token_server::{Config, Identity, SessionTokens, StaticDirectory, TokenServer};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = KeySet::new(vec![PrivateKey::generate()?]).ok_or("no key")?;
//! let directory = Arc::new(StaticDirectory::new()); // the informer cache, in the control plane
//! let ring = KeyRing::new(SigningKey::generate()?);
//! let tokens = Arc::new(SessionTokens::new(ring, DEFAULT_LIFETIME)?);
//! let identity = Identity::SessionTokens(tokens);
//! let server = TokenServer::new(keys, directory, identity, Config::default());
//! let running = server.bind("127.0.0.1:0".parse()?).await?;
//! println!("token server listening on {}", running.local_addr());
//! // ...
//! running.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Key rotation
//!
//! The server holds a [`KeySet`]: the first key is *current* (its public half
//! is the one published to sessions as `AMBIENT_CP_TOKEN_PUBLIC_KEY`, and the
//! one `--print-public-key` prints); every key is tried for decryption.
//! To rotate without refusing any session:
//!
//! 1. Generate the new key (`ambient-token-server --key-file new.pem
//!    --generate-key --print-public-key > new.pub`).
//! 2. Restart the server(s) with the new key first and the old one after it:
//!    `--key-file new.pem --key-file old.pem`. Both decrypt.
//! 3. Publish the new public key to sessions (new pods get it; the control
//!    plane's keypair Secret gets the new pair).
//! 4. Once every session started with the old public key has ended (or been
//!    restarted), restart with `--key-file new.pem` alone and destroy `old.pem`.
//!
//! Exchange v3 roots rotate the same way, through the shared [`V3Roots`]
//! (or repeated `--session-root-key-file`s): the new root first, the old one
//! kept until every key file derived from it has been rewritten (the
//! clients re-read theirs at each exchange) and at least one session-token
//! lifetime has passed.
//!
//! A v2 (or v3) nonce is remembered per server process: a replay to *another*
//! replica inside the 60 s window is not detected. Run replicas behind a
//! session-affine balancer, or accept that bound.

pub mod binding;
pub mod connections;
pub mod directory;
pub mod identity;
pub mod limit;
pub mod metrics;
pub mod provider;
mod routes;
pub mod server;
pub mod session_facts;
pub mod v3;

use std::future::Future;
use std::pin::Pin;

pub use ambient_protocol::exchange::KeySet;
pub use ambient_session_gateway::SessionTokens;
pub use binding::{Addresses, Binding, CallerBinding, Unbound};
pub use directory::{
    DirectoryError, GrpcDirectory, NoSessionCheck, SessionDirectory, SessionRecord, StaticDirectory,
};
pub use identity::Identity;
pub use limit::RateLimit;
pub use metrics::{Metrics, Outcome};
pub use provider::{IssuedToken, OidcClientCredentials, ProviderError, StaticToken, TokenProvider};
pub use server::{Clock, Config, ConfigError, Hooks, RunningServer, ServeError, TokenServer};
pub use v3::V3Roots;

/// A boxed, `Send` future: what the object-safe [`SessionDirectory`] and
/// [`TokenProvider`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
