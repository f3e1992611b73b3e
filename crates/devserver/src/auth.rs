//! Bearer tokens: static ones from flags/files, and short-lived ones issued
//! by the OIDC token endpoint. Only SHA-256 digests of tokens are kept, so
//! lookups neither compare secrets byte by byte nor hold them in memory longer
//! than needed.
//!
//! Each token carries the caller's identity: a static token written
//! `NAME=SECRET` is `NAME` (otherwise [`DEFAULT_CALLER`]), an issued token is
//! the OIDC client it was issued to.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ambient_protocol::Secret;
use aws_lc_rs::digest;

use crate::service::{Caller, is_safe_value};
use crate::store::StoreError;

/// The identity of a static token given without a name.
pub const DEFAULT_CALLER: &str = "dev";

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
        "no token configured: set AMBIENT_DEVSERVER_TOKEN, give --token-file, or --oidc-client-id with AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET"
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
    static_tokens: HashMap<Digest, String>,
    issued: Mutex<HashMap<Digest, (Instant, String)>>,
    oidc: Option<OidcClient>,
    ttl: Duration,
}

/// Reads a token file: one token (`SECRET` or `NAME=SECRET`) per line; blank
/// lines and `#` comments skipped.
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

/// Splits `NAME=SECRET` into its name and secret when the part before the
/// first `=` is a plain name (`[A-Za-z0-9_.@:-]+`) and the rest is non-empty
/// and does not start with `=` (so base64 padding stays part of a token);
/// anything else is a secret of [`DEFAULT_CALLER`].
pub fn named_token(raw: &Secret) -> (String, Secret) {
    if let Some((name, secret)) = raw.expose().split_once('=')
        && is_safe_value(name)
        && !secret.is_empty()
        && !secret.starts_with('=')
    {
        return (name.to_owned(), Secret::from(secret));
    }
    (DEFAULT_CALLER.to_owned(), raw.clone())
}

impl Auth {
    /// Accepts `tokens` (each possibly `NAME=SECRET`, see [`named_token`])
    /// and, when `oidc` is set, the tokens it issues (valid for `ttl`).
    pub fn new(
        tokens: &[Secret],
        oidc: Option<OidcClient>,
        ttl: Duration,
    ) -> Result<Auth, AuthConfigError> {
        let static_tokens: HashMap<Digest, String> = tokens
            .iter()
            .map(named_token)
            .filter(|(_, t)| !t.is_empty())
            .map(|(name, t)| (sha256(t.expose()), name))
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

    /// The caller presenting `token`: a static token, or an issued one not
    /// yet expired.
    pub fn caller_of(&self, token: &str) -> Option<Caller> {
        if token.is_empty() {
            return None;
        }
        let d = sha256(token);
        if let Some(name) = self.static_tokens.get(&d) {
            return Some(Caller(name.clone()));
        }
        let issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued
            .get(&d)
            .filter(|(exp, _)| Instant::now() < *exp)
            .map(|(_, name)| Caller(name.clone()))
    }

    /// The caller of an `Authorization` header value `Bearer <accepted token>`.
    pub fn caller(&self, value: Option<&[u8]>) -> Option<Caller> {
        let value = std::str::from_utf8(value?).ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.caller_of(token.trim())
    }

    /// True when the client credentials match the configured OIDC client.
    pub fn client_matches(&self, id: &str, secret: &str) -> bool {
        self.oidc
            .as_ref()
            .is_some_and(|c| c.id == id && sha256(c.secret.expose()) == sha256(secret))
    }

    /// Issues a fresh token for `client` valid for [`Auth::ttl`]; expired
    /// ones are forgotten.
    pub fn issue(&self, client: &str) -> Result<Secret, StoreError> {
        let token = crate::ids::new_token()?;
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued.retain(|_, (exp, _)| *exp > now);
        issued.insert(sha256(&token), (now + self.ttl, client.to_owned()));
        Ok(Secret::new(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(auth: &Auth, header: &[u8]) -> Option<String> {
        auth.caller(Some(header)).map(|c| c.0)
    }

    #[test]
    fn static_and_issued_tokens_with_their_callers() {
        let client = OidcClient {
            id: "cp".into(),
            secret: "s3cret".into(),
        };
        let auth = Auth::new(
            &["tok".into(), "alice=a-secret".into(), "pad==".into()],
            Some(client),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(caller(&auth, b"Bearer tok").as_deref(), Some("dev"));
        assert_eq!(caller(&auth, b"bearer tok").as_deref(), Some("dev"));
        assert_eq!(caller(&auth, b"Bearer a-secret").as_deref(), Some("alice"));
        assert_eq!(caller(&auth, b"Bearer alice=a-secret"), None);
        assert_eq!(caller(&auth, b"Bearer pad==").as_deref(), Some("dev"));
        assert_eq!(caller(&auth, b"Bearer nope"), None);
        assert_eq!(caller(&auth, b"Basic tok"), None);
        assert_eq!(caller(&auth, b"Bearer "), None);
        assert_eq!(auth.caller(None), None);
        assert!(auth.client_matches("cp", "s3cret"));
        assert!(!auth.client_matches("cp", "wrong"));
        let t = auth.issue("cp").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            auth.caller_of(t.expose()).map(|c| c.0).as_deref(),
            Some("cp")
        );
    }

    #[test]
    fn named_tokens_split_only_on_a_plain_name() {
        for (raw, name, secret) in [
            ("bob=s", "bob", "s"),
            ("svc:cp=a=b", "svc:cp", "a=b"),
            ("abc==", "dev", "abc=="),
            ("=abc", "dev", "=abc"),
            ("a b=c", "dev", "a b=c"),
            ("plain", "dev", "plain"),
        ] {
            let (n, s) = named_token(&raw.into());
            assert_eq!((n.as_str(), s.expose()), (name, secret), "{raw}");
        }
    }

    #[test]
    fn issued_tokens_expire() {
        let client = OidcClient {
            id: "cp".into(),
            secret: "s".into(),
        };
        let auth = Auth::new(&[], Some(client), Duration::ZERO).unwrap_or_else(|e| panic!("{e}"));
        let t = auth.issue("cp").unwrap_or_else(|e| panic!("{e}"));
        assert!(auth.caller_of(t.expose()).is_none());
    }

    #[test]
    fn needs_some_way_in() {
        assert!(Auth::new(&[], None, Duration::from_secs(1)).is_err());
        assert!(Auth::new(&["".into()], None, Duration::from_secs(1)).is_err());
    }
}
