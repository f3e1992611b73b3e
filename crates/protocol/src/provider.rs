//! Credential providers (wire.md §2, §4, §5).

use std::fmt;

/// A third-party credential provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provider {
    Github,
    Gitlab,
    Jira,
    Google,
    Vertex,
    Kubeconfig,
}

/// A provider string that is none of the six.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown credential provider {0:?} (expected github, gitlab, jira, google, vertex or kubeconfig)"
)]
pub struct UnknownProvider(pub String);

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 6] = [
        Provider::Github,
        Provider::Gitlab,
        Provider::Jira,
        Provider::Google,
        Provider::Vertex,
        Provider::Kubeconfig,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
            Provider::Jira => "jira",
            Provider::Google => "google",
            Provider::Vertex => "vertex",
            Provider::Kubeconfig => "kubeconfig",
        }
    }

    /// Parses the wire string exactly.
    pub fn parse(s: &str) -> Result<Provider, UnknownProvider> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProvider(s.to_owned()))
    }

    /// The credential sidecar of this provider in a session pod: container
    /// name and port (wire.md §4). Vertex has no sidecar.
    pub fn sidecar(self) -> Option<(&'static str, u16)> {
        match self {
            Provider::Github => Some(("credential-github", 8091)),
            Provider::Jira => Some(("credential-jira", 8092)),
            Provider::Kubeconfig => Some(("credential-k8s", 8093)),
            Provider::Google => Some(("credential-google", 8094)),
            Provider::Gitlab => Some(("credential-gitlab", 8095)),
            Provider::Vertex => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_and_sidecar_ports() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Ok(p));
        }
        assert!(Provider::parse("GitHub").is_err());
        let ports: Vec<u16> = Provider::ALL
            .iter()
            .filter_map(|p| p.sidecar())
            .map(|(_, port)| port)
            .collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![8091, 8092, 8093, 8094, 8095]);
        assert_eq!(
            Provider::Kubeconfig.sidecar(),
            Some(("credential-k8s", 8093))
        );
        assert_eq!(Provider::Vertex.sidecar(), None);
    }
}
