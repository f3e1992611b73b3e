//! [`TokenSource`]: where the runner's API token comes from.
//!
//! - the control-plane exchange ([`TokenExchanger`]): a first token at
//!   [`TokenSource::start`], then refreshed in the background every 5 min or
//!   at 80 % of its lifetime, whichever is sooner — ahead of expiry, not only
//!   after a failure;
//! - a token file (`/var/run/secrets/ambient/bot-token`), re-read when its
//!   modification time or size changes;
//! - a fixed `BOT_TOKEN`.
//!
//! After the API refused a token, [`TokenSource::refresh_after_rejection`]
//! gives a different one or says that this source cannot.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ambient_protocol::Secret;
use ambient_protocol::exchanger::{ExchangeError, ExchangerConfig, TokenExchanger};

use crate::config::TokenConfig;

/// No token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token exchange failed: {0}")]
    Exchange(#[from] ExchangeError),
    #[error("cannot read the token file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("the token file {0} is empty")]
    EmptyFile(String),
    #[error("the API refused the {0} and this source cannot produce another")]
    CannotRefresh(&'static str),
}

/// A token as handed out, with its expiry when the source knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub value: Secret,
    pub expires_at: Option<SystemTime>,
}

/// The runner's token source. Cheap to clone; clones share the token.
#[derive(Debug, Clone)]
pub struct TokenSource {
    kind: Arc<Kind>,
}

#[derive(Debug)]
enum Kind {
    Exchange(TokenExchanger),
    File {
        path: PathBuf,
        cached: Mutex<Option<(FileStamp, Secret)>>,
    },
    Static(Secret),
}

/// What identifies a version of the token file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl TokenSource {
    /// The source `config` describes (validated by [`crate::config::Config::validate`]).
    pub fn from_config(config: &TokenConfig) -> Result<Self, TokenError> {
        Ok(match config {
            TokenConfig::Exchange {
                url,
                public_key,
                session_id,
                protocol,
                session_key_file,
            } => {
                let mut cfg = ExchangerConfig::new(url, public_key.clone(), session_id);
                cfg.protocol = *protocol;
                cfg.session_key_file = session_key_file.clone();
                Self::exchange(TokenExchanger::new(cfg)?)
            }
            TokenConfig::File(path) => Self::file(path.clone()),
            TokenConfig::Static(token) => Self::fixed(token.clone()),
        })
    }

    /// Tokens from the control-plane exchange.
    pub fn exchange(exchanger: TokenExchanger) -> Self {
        Self::new(Kind::Exchange(exchanger))
    }

    /// Tokens read from `path`, re-read when the file changes.
    pub fn file(path: PathBuf) -> Self {
        Self::new(Kind::File {
            path,
            cached: Mutex::new(None),
        })
    }

    /// Always `token`.
    pub fn fixed(token: Secret) -> Self {
        Self::new(Kind::Static(token))
    }

    fn new(kind: Kind) -> Self {
        Self {
            kind: Arc::new(kind),
        }
    }

    /// `exchange`, `file` or `static`.
    pub fn kind(&self) -> &'static str {
        match &*self.kind {
            Kind::Exchange(_) => "exchange",
            Kind::File { .. } => "file",
            Kind::Static(_) => "static",
        }
    }

    /// Gets a first token (failing if none can be had) and, for the
    /// exchange, starts the background refresh.
    pub async fn start(&self) -> Result<Token, TokenError> {
        match &*self.kind {
            Kind::Exchange(x) => {
                let t = x.start().await?;
                Ok(Token {
                    value: t.token,
                    expires_at: t.expires_at,
                })
            }
            _ => self.token().await,
        }
    }

    /// Stops the background refresh, if any.
    pub async fn stop(&self) {
        if let Kind::Exchange(x) = &*self.kind {
            x.stop().await;
        }
    }

    /// The current token: a cached one while it is valid, else a fresh one.
    pub async fn token(&self) -> Result<Token, TokenError> {
        match &*self.kind {
            Kind::Exchange(x) => {
                let value = x.token().await?;
                let expires_at = x
                    .current()
                    .filter(|t| t.token == value)
                    .and_then(|t| t.expires_at);
                Ok(Token { value, expires_at })
            }
            Kind::File { path, cached } => read_file(path, cached).map(|value| Token {
                value,
                expires_at: None,
            }),
            Kind::Static(value) => Ok(Token {
                value: value.clone(),
                expires_at: None,
            }),
        }
    }

    /// The API answered `UNAUTHENTICATED` to `rejected`: a fresh token from
    /// the exchange, the file's new content, or [`TokenError::CannotRefresh`]
    /// when this source can only give the refused token again.
    pub async fn refresh_after_rejection(&self, rejected: &Secret) -> Result<Token, TokenError> {
        match &*self.kind {
            Kind::Exchange(x) => {
                // Someone else may have refreshed meanwhile: use theirs.
                if x.current().is_none_or(|t| &t.token == rejected) {
                    x.invalidate();
                }
                self.token().await
            }
            Kind::File { .. } => {
                let t = self.token().await?;
                if &t.value == rejected {
                    Err(TokenError::CannotRefresh("token of the token file"))
                } else {
                    Ok(t)
                }
            }
            Kind::Static(_) => Err(TokenError::CannotRefresh("static BOT_TOKEN")),
        }
    }
}

fn read_file(
    path: &std::path::Path,
    cached: &Mutex<Option<(FileStamp, Secret)>>,
) -> Result<Secret, TokenError> {
    let err = |e: std::io::Error| TokenError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    let stamp = FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    };
    let mut cached = cached.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((seen, token)) = cached.as_ref()
        && *seen == stamp
    {
        return Ok(token.clone());
    }
    let token = Secret::from_file(path).map_err(err)?;
    if token.is_empty() {
        return Err(TokenError::EmptyFile(path.display().to_string()));
    }
    *cached = Some((stamp, token.clone()));
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_source_cannot_refresh() {
        let s = TokenSource::fixed(Secret::new("static-tok"));
        let t = s.start().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.value.expose(), "static-tok");
        assert_eq!(
            s.refresh_after_rejection(&t.value).await,
            Err(TokenError::CannotRefresh("static BOT_TOKEN"))
        );
    }

    #[tokio::test]
    async fn file_source_rereads_a_changed_file() {
        let dir = std::env::temp_dir().join(format!("rc-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("bot-token");
        std::fs::write(&path, "first-token\n").unwrap_or_else(|e| panic!("{e}"));
        let s = TokenSource::file(path.clone());
        let first = s.start().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.value.expose(), "first-token");
        assert!(matches!(
            s.refresh_after_rejection(&first.value).await,
            Err(TokenError::CannotRefresh(_))
        ));
        // A different length changes the stamp even within one mtime tick.
        std::fs::write(&path, "second-token-longer\n").unwrap_or_else(|e| panic!("{e}"));
        let second = s
            .refresh_after_rejection(&first.value)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(second.value.expose(), "second-token-longer");
        std::fs::write(&path, "\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(s.token().await, Err(TokenError::EmptyFile(_))));
        std::fs::remove_dir_all(&dir).ok();
    }
}
