//! Who session pods act as (wire.md §3 "Session tokens and the session
//! gateway"): `CP_SESSION_IDENTITY` and the gateway's listener and URL.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{ConfigError, parse_listen};

/// What the token exchange hands a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SessionIdentityMode {
    /// A session token (a JWT naming one session), accepted only by the
    /// session gateway, which confines the session to itself, its project
    /// and its delivered credentials. Pods reach the API only through it.
    Gateway,
    /// The reference's behaviour: the control plane's own API token, and
    /// pods talk to the API server directly. Every session can then act as
    /// the control plane (read any project's credentials): only for an
    /// installation that cannot route pods to the gateway.
    Platform,
}

/// The session-identity flags.
#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// What the token exchange hands a session: `gateway` (a session token,
    /// usable only through the session gateway) or `platform` (the control
    /// plane's own API token, as the reference does: any session can then
    /// act as the control plane).
    #[arg(long, env = "CP_SESSION_IDENTITY", value_enum, default_value_t = SessionIdentityMode::Gateway)]
    pub session_identity: SessionIdentityMode,

    /// Listen address of the session gateway (gRPC `ambient.v1` and REST
    /// `/api/ambient/v1` on one port; `:8082` = all interfaces).
    #[arg(long, env = "CP_GATEWAY_LISTEN_ADDR", default_value = ":8082")]
    pub gateway_listen_addr: String,

    /// Base URL session pods reach the gateway at, e.g.
    /// http://ambient-control-plane.ambient-code.svc:8082 (their
    /// AMBIENT_GRPC_URL, AMBIENT_API_URL and BACKEND_API_URL). Default: the
    /// host of CP_TOKEN_URL with the gateway's port.
    #[arg(long, env = "CP_GATEWAY_URL")]
    pub gateway_url: Option<String>,

    /// Hours between two session-token signing keys: every half period a
    /// new key is published (JWKS, keypair Secret), then made the one that
    /// signs; 0 = never rotate.
    #[arg(
        long,
        env = "CP_SESSION_KEY_ROTATION_HOURS",
        value_name = "HOURS",
        default_value_t = 24
    )]
    pub session_key_rotation_hours: u64,

    /// The rotation period in seconds, overriding the hours (tests).
    #[arg(long, env = "CP_SESSION_KEY_ROTATION_SECONDS", hide = true)]
    pub session_key_rotation_seconds: Option<u64>,

    /// Seconds between two readings of the signing keys by every replica.
    #[arg(long, env = "CP_SESSION_KEY_RELOAD_SECONDS", hide = true, default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub session_key_reload_seconds: u64,
}

/// The validated session-identity settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySettings {
    pub mode: SessionIdentityMode,
    pub gateway_listen: SocketAddr,
    /// `http://host:port` pods use, when known (else derived at startup).
    pub gateway_url: Option<String>,
    /// Signing-key rotation period (`None`: never).
    pub key_rotation: Option<Duration>,
    /// How often every replica re-reads the signing keys.
    pub key_reload: Duration,
}

impl IdentityArgs {
    /// Validates the flags; `token_url` (CP_TOKEN_URL) gives the default host.
    pub fn validate(&self, token_url: Option<&str>) -> Result<IdentitySettings, ConfigError> {
        let gateway_listen = parse_listen("CP_GATEWAY_LISTEN_ADDR", &self.gateway_listen_addr)?;
        let gateway_url = match self.gateway_url.as_deref().map(str::trim) {
            Some("") | None => token_url.and_then(|t| gateway_url_beside(t, gateway_listen.port())),
            Some(raw) => Some(checked_url(raw)?),
        };
        let (key_rotation, key_reload) = self.key_rotation()?;
        Ok(IdentitySettings {
            mode: self.session_identity,
            gateway_listen,
            gateway_url,
            key_rotation,
            key_reload,
        })
    }

    /// The rotation period and the reload interval; a half period must
    /// leave every replica two readings of a next key before it signs.
    fn key_rotation(&self) -> Result<(Option<Duration>, Duration), ConfigError> {
        let reload = Duration::from_secs(self.session_key_reload_seconds.max(1));
        let seconds = match self.session_key_rotation_seconds {
            Some(s) => s,
            None => self
                .session_key_rotation_hours
                .checked_mul(3600)
                .ok_or_else(|| ConfigError::Invalid {
                    name: "CP_SESSION_KEY_ROTATION_HOURS",
                    reason: "is too large".into(),
                })?,
        };
        if seconds == 0 {
            return Ok((None, reload));
        }
        let period = Duration::from_secs(seconds);
        if period / 2 < reload * 2 {
            return Err(ConfigError::Invalid {
                name: "CP_SESSION_KEY_ROTATION_HOURS",
                reason: format!(
                    "a {seconds} s period publishes a key for less than two key readings \
                     ({} s apart) before it signs",
                    reload.as_secs()
                ),
            });
        }
        Ok((Some(period), reload))
    }
}

/// `scheme://host:port` with no path, query or credentials.
fn checked_url(raw: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: "CP_GATEWAY_URL",
        reason: format!("{raw:?} {reason}"),
    };
    let url = url::Url::parse(raw).map_err(|_| invalid("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("is not http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("carries credentials"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("has a path: give scheme://host:port"));
    }
    let host = url.host_str().ok_or_else(|| invalid("has no host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| invalid("has no port"))?;
    Ok(format!("{}://{}:{port}", url.scheme(), bracketed(host)))
}

fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The gateway beside the token server: CP_TOKEN_URL's scheme and host, the
/// gateway's port.
pub fn gateway_url_beside(token_url: &str, port: u16) -> Option<String> {
    let url = url::Url::parse(token_url).ok()?;
    let host = url.host_str()?;
    Some(format!("{}://{}:{port}", url.scheme(), bracketed(host)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>) -> IdentityArgs {
        IdentityArgs {
            session_identity: SessionIdentityMode::Gateway,
            gateway_listen_addr: ":8082".into(),
            gateway_url: url.map(str::to_owned),
            session_key_rotation_hours: 24,
            session_key_rotation_seconds: None,
            session_key_reload_seconds: 60,
        }
    }

    #[test]
    fn key_rotation_is_daily_by_default_never_at_zero_and_slower_than_two_readings() {
        let s = args(None).validate(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.key_rotation, Some(Duration::from_secs(24 * 3600)));
        assert_eq!(s.key_reload, Duration::from_secs(60));
        let mut a = args(None);
        a.session_key_rotation_hours = 0;
        assert_eq!(a.validate(None).ok().map(|s| s.key_rotation), Some(None));
        a.session_key_rotation_seconds = Some(10);
        a.session_key_reload_seconds = 2;
        assert!(a.validate(None).is_ok());
        a.session_key_reload_seconds = 3;
        let e = a
            .validate(None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("CP_SESSION_KEY_ROTATION_HOURS"), "{e}");
    }

    #[test]
    fn the_gateway_url_defaults_to_the_token_servers_host() {
        let s = args(None)
            .validate(Some(
                "http://ambient-control-plane.ambient-code.svc:8080/token",
            ))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.gateway_url.as_deref(),
            Some("http://ambient-control-plane.ambient-code.svc:8082")
        );
        assert_eq!(
            args(Some(""))
                .validate(None)
                .ok()
                .and_then(|s| s.gateway_url),
            None
        );
    }

    #[test]
    fn a_gateway_url_is_scheme_host_port_only() {
        let ok = args(Some("https://gw.example.svc"))
            .validate(None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ok.gateway_url.as_deref(),
            Some("https://gw.example.svc:443")
        );
        for bad in [
            "gw:8082",
            "ftp://gw:1",
            "http://u:p@gw:1",
            "http://gw:1/api",
            "http://gw:1?x=1",
        ] {
            let err = args(Some(bad)).validate(None).err();
            assert!(
                matches!(
                    err,
                    Some(ConfigError::Invalid {
                        name: "CP_GATEWAY_URL",
                        ..
                    })
                ),
                "{bad}: {err:?}"
            );
        }
    }
}
