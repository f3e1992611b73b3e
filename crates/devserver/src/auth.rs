//! Bearer tokens: static ones from flags/files, and short-lived ones issued
//! by the OIDC token endpoint. Only SHA-256 digests of tokens are kept, so
//! lookups neither compare secrets byte by byte nor hold them in memory longer
//! than needed.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ambient_protocol::Secret;
use aws_lc_rs::digest;

use crate::store::StoreError;

type Digest = [u8; 32];

fn sha256(s: &str) -> Digest {
    let d = digest::digest(&digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Why the token configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A token file could not be read.
    #[error("cannot read token file {}: {source}", path.display())]
    TokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No way to authenticate was configured.
    #[error(
        "no token configured: give --token, --token-file, or --oidc-client-id with --oidc-client-secret"
    )]
    NoToken,
}

/// The client-credentials client the OIDC endpoint accepts.
#[derive(Debug, Clone)]
pub struct OidcClient {
    /// Client ID.
    pub id: String,
    /// Client secret.
    pub secret: Secret,
}

/// Who may call the API.
#[derive(Debug)]
pub struct Auth {
    static_tokens: HashSet<Digest>,
    issued: Mutex<HashMap<Digest, Instant>>,
    oidc: Option<OidcClient>,
    ttl: Duration,
}

/// Reads a token file: one token per line; blank lines and `#` comments skipped.
pub fn read_token_file(path: &Path) -> Result<Vec<Secret>, AuthConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|source| AuthConfigError::TokenFile {
        path: path.to_owned(),
        source,
    })?;
    Ok(raw
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Secret::from)
        .collect())
}

impl Auth {
    /// Accepts `tokens` and, when `oidc` is set, the tokens it issues (valid for `ttl`).
    pub fn new(
        tokens: &[Secret],
        oidc: Option<OidcClient>,
        ttl: Duration,
    ) -> Result<Auth, AuthConfigError> {
        let static_tokens: HashSet<Digest> = tokens
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| sha256(t.expose()))
            .collect();
        if static_tokens.is_empty() && oidc.is_none() {
            return Err(AuthConfigError::NoToken);
        }
        Ok(Auth {
            static_tokens,
            issued: Mutex::new(HashMap::new()),
            oidc,
            ttl,
        })
    }

    /// Lifetime of issued tokens.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// True when `token` is a static token or an issued one not yet expired.
    pub fn accepts_token(&self, token: &str) -> bool {
        if token.is_empty() {
            return false;
        }
        let d = sha256(token);
        if self.static_tokens.contains(&d) {
            return true;
        }
        let issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued.get(&d).is_some_and(|exp| Instant::now() < *exp)
    }

    /// True when an `Authorization` header value is `Bearer <accepted token>`.
    pub fn accepts_header(&self, value: Option<&[u8]>) -> bool {
        let Some(value) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
            return false;
        };
        let Some((scheme, token)) = value.split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer") && self.accepts_token(token.trim())
    }

    /// True when the client credentials match the configured OIDC client.
    pub fn client_matches(&self, id: &str, secret: &str) -> bool {
        self.oidc
            .as_ref()
            .is_some_and(|c| c.id == id && sha256(c.secret.expose()) == sha256(secret))
    }

    /// Issues a fresh token valid for [`Auth::ttl`]; expired ones are forgotten.
    pub fn issue(&self) -> Result<Secret, StoreError> {
        let token = crate::ids::new_token()?;
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued.retain(|_, exp| *exp > now);
        issued.insert(sha256(&token), now + self.ttl);
        Ok(Secret::new(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_issued_tokens() {
        let client = OidcClient {
            id: "cp".into(),
            secret: "s3cret".into(),
        };
        let auth = Auth::new(&["tok".into()], Some(client), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(auth.accepts_header(Some(b"Bearer tok")));
        assert!(auth.accepts_header(Some(b"bearer tok")));
        assert!(!auth.accepts_header(Some(b"Bearer nope")));
        assert!(!auth.accepts_header(Some(b"Basic tok")));
        assert!(!auth.accepts_header(Some(b"Bearer ")));
        assert!(!auth.accepts_header(None));
        assert!(auth.client_matches("cp", "s3cret"));
        assert!(!auth.client_matches("cp", "wrong"));
        let t = auth.issue().unwrap_or_else(|e| panic!("{e}"));
        assert!(auth.accepts_token(t.expose()));
    }

    #[test]
    fn issued_tokens_expire() {
        let client = OidcClient {
            id: "cp".into(),
            secret: "s".into(),
        };
        let auth = Auth::new(&[], Some(client), Duration::ZERO).unwrap_or_else(|e| panic!("{e}"));
        let t = auth.issue().unwrap_or_else(|e| panic!("{e}"));
        assert!(!auth.accepts_token(t.expose()));
    }

    #[test]
    fn needs_some_way_in() {
        assert!(Auth::new(&[], None, Duration::from_secs(1)).is_err());
        assert!(Auth::new(&["".into()], None, Duration::from_secs(1)).is_err());
    }
}
