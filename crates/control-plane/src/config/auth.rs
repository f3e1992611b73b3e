//! How the control plane authenticates to the API server: a static token
//! (flag, environment or file) or OIDC client credentials, which win when
//! both are set (as in the reference).

use ambient_protocol::{Secret, env};

use super::{Config, ConfigError};

/// How the control plane authenticates to the API server.
#[derive(Debug, Clone)]
pub enum ApiAuth {
    Static(Secret),
    Oidc {
        token_url: String,
        client_id: String,
        client_secret: Secret,
    },
}

impl Config {
    /// True when a static token and OIDC client credentials are both set
    /// (OIDC is used, as by the reference).
    pub(super) fn oidc_wins(&self) -> bool {
        let set = |s: &Option<Secret>| s.as_ref().is_some_and(|s| !s.is_empty());
        (set(&self.api_token) || self.api_token_file.is_some())
            && self
                .oidc_client_id
                .as_deref()
                .is_some_and(|s| !s.is_empty())
            && (set(&self.oidc_client_secret) || self.oidc_client_secret_file.is_some())
    }

    /// The API credentials: a static token, or OIDC client credentials
    /// (which win when both are set).
    pub fn auth(&self) -> Result<ApiAuth, ConfigError> {
        let token = direct_or_file(&self.api_token, self.api_token_file.as_deref())?;
        if token.as_ref().is_some_and(Secret::is_empty) {
            return Err(ConfigError::Empty {
                name: "the API token file",
            });
        }
        let id = self.oidc_client_id.clone().filter(|s| !s.is_empty());
        let secret = direct_or_file(
            &self.oidc_client_secret,
            self.oidc_client_secret_file.as_deref(),
        )?
        .filter(|s| !s.is_empty());
        match (token, id, secret) {
            (Some(t), None, None) => Ok(ApiAuth::Static(t)),
            (_, Some(_), None) => Err(ConfigError::HalfOidc(
                env::OIDC_CLIENT_ID,
                env::OIDC_CLIENT_SECRET,
            )),
            (_, None, Some(_)) => Err(ConfigError::HalfOidc(
                env::OIDC_CLIENT_SECRET,
                env::OIDC_CLIENT_ID,
            )),
            (None, None, None) => Err(ConfigError::NoAuth),
            (_, Some(client_id), Some(client_secret)) => {
                let token_url = self
                    .oidc_token_url
                    .clone()
                    .filter(|s| !s.is_empty())
                    .ok_or(ConfigError::NoOidcUrl)?;
                ambient_protocol::url_policy::oidc_token_url(&token_url, self.allow_insecure_oidc)
                    .map_err(|e| ConfigError::Invalid {
                        name: env::OIDC_TOKEN_URL,
                        reason: e.to_string(),
                    })?;
                Ok(ApiAuth::Oidc {
                    token_url,
                    client_id,
                    client_secret,
                })
            }
        }
    }
}

/// A secret given directly (empty counts as unset) or as a file, not both.
fn direct_or_file(
    direct: &Option<Secret>,
    file: Option<&std::path::Path>,
) -> Result<Option<Secret>, ConfigError> {
    let from_file = match file {
        Some(path) => Some(Secret::from_file(path).map_err(|e| ConfigError::TokenFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    match (direct.clone().filter(|s| !s.is_empty()), from_file) {
        (Some(_), Some(_)) => Err(ConfigError::TwoTokens),
        (one, None) | (None, one) => Ok(one),
    }
}
