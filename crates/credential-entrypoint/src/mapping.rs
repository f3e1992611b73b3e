//! Provider mapping of wire.md §5: what the child receives for a fetched
//! credential — environment variables, files, and defaults that apply only
//! when the inherited environment does not set them. Pure: nothing is
//! written here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ambient_protocol::Secret;
use ambient_protocol::env;
use ambient_protocol::provider::Provider;
use base64::Engine as _;
use reqwest::Url;

use crate::fetch::Credential;

/// File name of a Google service-account key inside the private directory.
pub const GOOGLE_KEY_FILE: &str = "google-application-credentials.json";
/// Email variable of the Google Workspace MCP server.
pub const USER_GOOGLE_EMAIL: &str = "USER_GOOGLE_EMAIL";
/// Enterprise host variable of the GitHub MCP server.
pub const GITHUB_HOST: &str = "GITHUB_HOST";
/// Toolsets variable of the GitHub MCP server and our default for it.
pub const GITHUB_TOOLSETS: (&str, &str) = (
    "GITHUB_TOOLSETS",
    "repos,issues,pull_requests,code_security",
);

/// mcp-atlassian (0.23 and later) answers every MCP request `401` unless
/// the request carries a per-user Atlassian identity, or this is `true`,
/// which lets it use the server-wide credential from its environment. A
/// credential sidecar serves exactly one session's one credential, and only
/// its own pod reaches it (loopback binding, NetworkPolicy): the
/// server-wide credential *is* that user's. Set unless the environment
/// already says otherwise.
pub const ALLOW_GLOBAL_CRED_FALLBACK: (&str, &str) = (env::ALLOW_GLOBAL_CRED_FALLBACK, "true");

/// Where files go.
#[derive(Debug, Clone)]
pub struct Paths {
    pub kubeconfig: PathBuf,
    pub private_dir: PathBuf,
}

/// What the child receives. Compared as a whole to detect a rotation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Delivery {
    /// Set in the child's environment (overriding inherited values).
    pub env: BTreeMap<String, Secret>,
    /// Set only when the inherited environment lacks them.
    pub defaults: BTreeMap<String, String>,
    /// Files to write (mode 0600) before the child starts.
    pub files: BTreeMap<PathBuf, Secret>,
}

/// A credential that cannot be handed to the child.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("the {provider} credential has no {field}")]
    Missing {
        provider: Provider,
        field: &'static str,
    },
    #[error("the {provider} credential's url is not a valid URL")]
    BadUrl { provider: Provider },
    #[error("provider {0} is not served by a credential sidecar")]
    Unsupported(Provider),
}

/// Maps a credential for `provider`.
pub fn map(provider: Provider, cred: &Credential, paths: &Paths) -> Result<Delivery, MappingError> {
    let mut out = Delivery::default();
    let missing = |field| MappingError::Missing { provider, field };
    match provider {
        Provider::Github => {
            let token = cred.str("token").ok_or_else(|| missing("token"))?;
            out.set(env::GITHUB_PERSONAL_ACCESS_TOKEN, token);
            out.set(env::GITHUB_TOKEN, token);
            if let Some(url) = cred.str("url") {
                let parsed = Url::parse(url).map_err(|_| MappingError::BadUrl { provider })?;
                let public = matches!(
                    parsed.host_str(),
                    Some("github.com" | "www.github.com" | "api.github.com")
                );
                if !public {
                    out.set(GITHUB_HOST, url.trim_end_matches('/'));
                }
            }
            let (name, value) = GITHUB_TOOLSETS;
            out.defaults.insert(name.into(), value.into());
        }
        Provider::Gitlab => {
            let token = cred.str("token").ok_or_else(|| missing("token"))?;
            out.set(env::GITLAB_TOKEN, token);
            if let Some(url) = cred.str("url") {
                Url::parse(url).map_err(|_| MappingError::BadUrl { provider })?;
                let host = url.trim_end_matches('/');
                let api = if host.ends_with("/api/v4") {
                    host.to_owned()
                } else {
                    format!("{host}/api/v4")
                };
                out.set(env::GITLAB_HOST, host);
                out.set(env::GITLAB_API_URL, &api);
            }
        }
        Provider::Jira => {
            let token = cred
                .str("apiToken")
                .or_else(|| cred.str("token"))
                .ok_or_else(|| missing("apiToken or token"))?;
            out.set(env::JIRA_API_TOKEN, token);
            if let Some(url) = cred.str("url") {
                out.set(env::JIRA_URL, url);
            }
            if let Some(email) = cred.str("email") {
                out.set(env::JIRA_USERNAME, email);
                out.set(env::JIRA_EMAIL, email);
            }
            let (name, value) = ALLOW_GLOBAL_CRED_FALLBACK;
            out.defaults.insert(name.into(), value.into());
        }
        Provider::Kubeconfig => {
            let token = cred.str("token").ok_or_else(|| missing("token"))?;
            out.files
                .insert(paths.kubeconfig.clone(), Secret::new(decode_base64(token)));
            out.set(env::KUBECONFIG, &paths.kubeconfig.to_string_lossy());
        }
        Provider::Google => {
            if let Some(access) = cred.str("accessToken") {
                out.set(env::GOOGLE_ACCESS_TOKEN, access);
            } else {
                let token = cred
                    .str("token")
                    .ok_or_else(|| missing("accessToken or token"))?;
                if is_service_account_key(token) {
                    let path = paths.private_dir.join(GOOGLE_KEY_FILE);
                    out.set(env::GOOGLE_APPLICATION_CREDENTIALS, &path.to_string_lossy());
                    out.files.insert(path, Secret::new(token));
                } else {
                    out.set(env::GOOGLE_ACCESS_TOKEN, token);
                }
            }
            if let Some(email) = cred.str("email") {
                out.set(USER_GOOGLE_EMAIL, email);
            }
        }
        Provider::Vertex => return Err(MappingError::Unsupported(provider)),
    }
    Ok(out)
}

impl Delivery {
    fn set(&mut self, name: &str, value: &str) {
        self.env.insert(name.to_owned(), Secret::new(value));
    }

    /// True when `other` differs from `self` in what the child's
    /// environment would hold (files aside).
    pub fn env_differs(&self, other: &Delivery) -> bool {
        self.env != other.env || self.defaults != other.defaults
    }

    /// The files whose content differs in `next` (or are new there).
    pub fn changed_files<'a>(&self, next: &'a Delivery) -> Vec<(&'a Path, &'a Secret)> {
        next.files
            .iter()
            .filter(|(p, c)| self.files.get(*p) != Some(*c))
            .map(|(p, c)| (p.as_path(), c))
            .collect()
    }
}

/// Standard base64 decoded to UTF-8 text when it decodes, else the input.
fn decode_base64(token: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| token.to_owned())
}

/// A Google service-account key: a JSON object of `"type": "service_account"`.
fn is_service_account_key(token: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(token)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .is_some_and(|t| t == "service_account")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cred(v: serde_json::Value) -> Credential {
        match v {
            serde_json::Value::Object(m) => Credential(m),
            _ => Credential(Default::default()),
        }
    }

    fn paths() -> Paths {
        Paths {
            kubeconfig: "/tmp/k".into(),
            private_dir: "/run/p".into(),
        }
    }

    fn env_of(d: &Delivery) -> BTreeMap<&str, &str> {
        d.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect()
    }

    #[test]
    fn github_enterprise_and_public() {
        let d = map(
            Provider::Github,
            &cred(json!({"token": "t1", "url": "https://ghe.corp.example/"})),
            &paths(),
        )
        .unwrap_or_default();
        let e = env_of(&d);
        assert_eq!(e.get("GITHUB_PERSONAL_ACCESS_TOKEN"), Some(&"t1"));
        assert_eq!(e.get("GITHUB_TOKEN"), Some(&"t1"));
        assert_eq!(e.get("GITHUB_HOST"), Some(&"https://ghe.corp.example"));
        assert_eq!(
            d.defaults.get("GITHUB_TOOLSETS").map(String::as_str),
            Some("repos,issues,pull_requests,code_security")
        );
        let d = map(
            Provider::Github,
            &cred(json!({"token": "t1", "url": "https://github.com"})),
            &paths(),
        )
        .unwrap_or_default();
        assert!(!d.env.contains_key("GITHUB_HOST"));
    }

    #[test]
    fn gitlab_jira_google_kubeconfig() {
        let d = map(
            Provider::Gitlab,
            &cred(json!({"token": "g", "url": "https://gl.example/"})),
            &paths(),
        )
        .unwrap_or_default();
        let e = env_of(&d);
        assert_eq!(e.get("GITLAB_HOST"), Some(&"https://gl.example"));
        assert_eq!(e.get("GITLAB_API_URL"), Some(&"https://gl.example/api/v4"));

        let d = map(
            Provider::Jira,
            &cred(json!({"token": "x", "apiToken": "j", "url": "https://j", "email": "a@b"})),
            &paths(),
        )
        .unwrap_or_default();
        let e = env_of(&d);
        assert_eq!(e.get("JIRA_API_TOKEN"), Some(&"j"));
        assert_eq!(e.get("JIRA_USERNAME"), Some(&"a@b"));
        assert_eq!(e.get("JIRA_EMAIL"), Some(&"a@b"));
        assert_eq!(
            d.defaults
                .get("ALLOW_GLOBAL_CRED_FALLBACK")
                .map(String::as_str),
            Some("true"),
            "mcp-atlassian refuses every request without it"
        );

        let sa = r#"{"type":"service_account","client_email":"x@y"}"#;
        let d = map(Provider::Google, &cred(json!({"token": sa})), &paths()).unwrap_or_default();
        let key = PathBuf::from("/run/p").join(GOOGLE_KEY_FILE);
        assert_eq!(d.files.get(&key).map(Secret::expose), Some(sa));
        assert_eq!(
            env_of(&d).get("GOOGLE_APPLICATION_CREDENTIALS").copied(),
            key.to_str()
        );
        let d = map(
            Provider::Google,
            &cred(json!({"token": "ya29", "email": "u@g"})),
            &paths(),
        )
        .unwrap_or_default();
        assert_eq!(env_of(&d).get("GOOGLE_ACCESS_TOKEN"), Some(&"ya29"));
        assert_eq!(env_of(&d).get("USER_GOOGLE_EMAIL"), Some(&"u@g"));

        let yaml = "apiVersion: v1\nkind: Config\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(yaml);
        for token in [yaml.to_owned(), b64] {
            let d = map(
                Provider::Kubeconfig,
                &cred(json!({"token": token})),
                &paths(),
            )
            .unwrap_or_default();
            assert_eq!(
                d.files.get(Path::new("/tmp/k")).map(Secret::expose),
                Some(yaml)
            );
            assert_eq!(env_of(&d).get("KUBECONFIG"), Some(&"/tmp/k"));
        }
    }

    #[test]
    fn unusable_credentials_are_refused() {
        for (p, v) in [
            (Provider::Github, json!({"token": ""})),
            (Provider::Gitlab, json!({"url": "https://x"})),
            (Provider::Jira, json!({"email": "a@b"})),
            (Provider::Kubeconfig, json!({})),
            (Provider::Google, json!({"email": "a@b"})),
            (Provider::Github, json!({"token": "t", "url": "not a url"})),
        ] {
            assert!(map(p, &cred(v.clone()), &paths()).is_err(), "{p} {v}");
        }
    }
}
