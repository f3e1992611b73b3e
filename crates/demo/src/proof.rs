//! Proof that a credential arrived, without showing it.

use ambient_protocol::provider::Provider;

/// `sha256:<first 12 hex digits>` of `secret`: enough to compare with what
/// was stored, useless to an attacker.
pub fn fingerprint(secret: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    let hex: String = digest
        .as_ref()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The full SHA-256 of `secret` in hex: to tell two secrets apart without
/// showing either.
pub fn sha256_hex(secret: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The environment variable a credential sidecar's command receives the
/// provider's secret in (wire.md §5 mapping).
pub fn secret_variable(provider: Provider) -> &'static str {
    match provider {
        Provider::Github => "GITHUB_PERSONAL_ACCESS_TOKEN",
        Provider::Gitlab => "GITLAB_TOKEN",
        Provider::Jira => "JIRA_API_TOKEN",
        Provider::Google => "GOOGLE_ACCESS_TOKEN",
        Provider::Kubeconfig => "KUBECONFIG",
        Provider::Vertex => "GOOGLE_APPLICATION_CREDENTIALS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_short_and_stable() {
        let f = fingerprint("ghp_secret");
        assert_eq!(f, fingerprint("ghp_secret"));
        assert_ne!(f, fingerprint("ghp_secreT"));
        assert_eq!(f.len(), "sha256:".len() + 12);
        assert!(!f.contains("ghp_secret"));
    }
}
