//! `ambient-runner-client`: the runner's token and session-message client.
//!
//! A runner inside a session pod needs an API token and its session's
//! message stream, through disconnects, API server restarts and token
//! expiry, without losing or repeating a message:
//!
//! - [`config`]: the runner environment of wire.md §5, each variable also a flag;
//! - [`token`]: [`TokenSource`] — the control-plane exchange (refreshed ahead
//!   of expiry), a token file, or a static `BOT_TOKEN`;
//! - [`channel`]: [`Api`] — the gRPC channel (TLS per `AMBIENT_GRPC_USE_TLS`,
//!   keep-alive) with the current bearer on every call and one
//!   refresh-and-retry on `UNAUTHENTICATED`;
//! - [`messages`]: [`SessionMessages`] — `push`, and `watch` as a `Stream`
//!   that resumes after the last seq it yielded;
//! - [`session`]: waiting for the session's terminal phase;
//! - [`cli`]: the `token`, `push` and `watch` commands of the binary.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ambient_runner_client::{Api, SessionMessages, TokenSource};
//! use futures::StreamExt as _;
//!
//! let tokens = TokenSource::fixed("dev-token".into());
//! let api = Api::new("127.0.0.1:9000", false, None, tokens)?;
//! let messages = SessionMessages::new(api, "session-id");
//! messages.push("assistant", "hello").await?;
//! let mut watch = Box::pin(messages.watch(0));
//! while let Some(m) = watch.next().await {
//!     println!("{}", m?.seq);
//! }
//! # Ok(()) }
//! ```

pub mod channel;
pub mod cli;
pub mod config;
pub mod messages;
pub mod session;
pub mod token;

pub use channel::{Api, CallError};
pub use messages::{PushError, SessionMessages, WatchError};
pub use token::{TokenError, TokenSource};
