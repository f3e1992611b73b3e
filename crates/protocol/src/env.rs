//! Environment variable names of wire.md §5, so that a rename is one edit,
//! and the rules every daemon reads them by ([`reads_as`], the boolean
//! readings [`is_true`], [`is_one_or_true`], [`is_truthy`]).

use std::ffi::OsString;

// --- read by the control plane -------------------------------------------------
pub const AMBIENT_API_SERVER_URL: &str = "AMBIENT_API_SERVER_URL";
pub const AMBIENT_API_TOKEN: &str = "AMBIENT_API_TOKEN";
pub const OIDC_TOKEN_URL: &str = "OIDC_TOKEN_URL";
pub const OIDC_CLIENT_ID: &str = "OIDC_CLIENT_ID";
pub const OIDC_CLIENT_SECRET: &str = "OIDC_CLIENT_SECRET";
pub const AMBIENT_GRPC_SERVER_ADDR: &str = "AMBIENT_GRPC_SERVER_ADDR";
pub const AMBIENT_GRPC_USE_TLS: &str = "AMBIENT_GRPC_USE_TLS";
pub const LOG_LEVEL: &str = "LOG_LEVEL";
pub const KUBECONFIG: &str = "KUBECONFIG";
pub const PLATFORM_MODE: &str = "PLATFORM_MODE";
pub const MPP_CONFIG_NAMESPACE: &str = "MPP_CONFIG_NAMESPACE";
pub const CP_RUNTIME_NAMESPACE: &str = "CP_RUNTIME_NAMESPACE";
/// Ours: the installation ID labelled on every object a control plane manages.
pub const CP_INSTALLATION_ID: &str = "CP_INSTALLATION_ID";
pub const NAMESPACE: &str = "NAMESPACE";
pub const RUNNER_IMAGE: &str = "RUNNER_IMAGE";
pub const BACKEND_API_URL: &str = "BACKEND_API_URL";
pub const MCP_IMAGE: &str = "MCP_IMAGE";
pub const MCP_API_SERVER_URL: &str = "MCP_API_SERVER_URL";
pub const GITHUB_MCP_IMAGE: &str = "GITHUB_MCP_IMAGE";
pub const JIRA_MCP_IMAGE: &str = "JIRA_MCP_IMAGE";
pub const K8S_MCP_IMAGE: &str = "K8S_MCP_IMAGE";
pub const GOOGLE_MCP_IMAGE: &str = "GOOGLE_MCP_IMAGE";
pub const GITLAB_MCP_IMAGE: &str = "GITLAB_MCP_IMAGE";
pub const RUNNER_LOG_LEVEL: &str = "RUNNER_LOG_LEVEL";
pub const CP_TOKEN_LISTEN_ADDR: &str = "CP_TOKEN_LISTEN_ADDR";
pub const CP_TOKEN_URL: &str = "CP_TOKEN_URL";
pub const HTTP_PROXY: &str = "HTTP_PROXY";
pub const HTTPS_PROXY: &str = "HTTPS_PROXY";
pub const NO_PROXY: &str = "NO_PROXY";
pub const IMAGE_PULL_SECRET: &str = "IMAGE_PULL_SECRET";
pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
pub const USE_VERTEX: &str = "USE_VERTEX";

// --- injected into the runner container ------------------------------------------
pub const SESSION_ID: &str = "SESSION_ID";
pub const AGENTIC_SESSION_NAME: &str = "AGENTIC_SESSION_NAME";
pub const AGENTIC_SESSION_NAMESPACE: &str = "AGENTIC_SESSION_NAMESPACE";
pub const PROJECT_NAME: &str = "PROJECT_NAME";
pub const AGENT_ID: &str = "AGENT_ID";
pub const WORKSPACE_PATH: &str = "WORKSPACE_PATH";
pub const AGUI_PORT: &str = "AGUI_PORT";
pub const AMBIENT_CP_TOKEN_URL: &str = "AMBIENT_CP_TOKEN_URL";
pub const AMBIENT_CP_TOKEN_PUBLIC_KEY: &str = "AMBIENT_CP_TOKEN_PUBLIC_KEY";
/// Ours: the path of the session's v3 key file (exchange v3; never the key itself).
pub const AMBIENT_SESSION_KEY_FILE: &str = "AMBIENT_SESSION_KEY_FILE";
pub const AMBIENT_GRPC_URL: &str = "AMBIENT_GRPC_URL";
pub const AMBIENT_GRPC_ENABLED: &str = "AMBIENT_GRPC_ENABLED";
pub const AMBIENT_GRPC_CA_CERT_FILE: &str = "AMBIENT_GRPC_CA_CERT_FILE";
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
pub const REQUESTS_CA_BUNDLE: &str = "REQUESTS_CA_BUNDLE";
pub const AMBIENT_MCP_URL: &str = "AMBIENT_MCP_URL";
pub const CREDENTIAL_MCP_URLS: &str = "CREDENTIAL_MCP_URLS";
pub const CREDENTIAL_SIDECAR_MODE: &str = "CREDENTIAL_SIDECAR_MODE";
pub const INITIAL_PROMPT: &str = "INITIAL_PROMPT";
pub const LLM_MODEL: &str = "LLM_MODEL";
pub const LLM_TEMPERATURE: &str = "LLM_TEMPERATURE";
pub const LLM_MAX_TOKENS: &str = "LLM_MAX_TOKENS";
pub const TIMEOUT: &str = "TIMEOUT";
pub const REPOS_JSON: &str = "REPOS_JSON";
pub const IS_RESUME: &str = "IS_RESUME";
pub const BOT_TOKEN: &str = "BOT_TOKEN";
pub const RESUME_AFTER_SEQ: &str = "RESUME_AFTER_SEQ";
pub const ARTIFACTS_DIR: &str = "ARTIFACTS_DIR";
pub const USE_AGUI: &str = "USE_AGUI";
pub const CLAUDE_CODE_USE_VERTEX: &str = "CLAUDE_CODE_USE_VERTEX";
pub const ANTHROPIC_VERTEX_PROJECT_ID: &str = "ANTHROPIC_VERTEX_PROJECT_ID";
pub const CLOUD_ML_REGION: &str = "CLOUD_ML_REGION";
pub const GCE_METADATA_HOST: &str = "GCE_METADATA_HOST";
pub const GCE_METADATA_TIMEOUT: &str = "GCE_METADATA_TIMEOUT";

// --- every exchange client (runner client, ambient-mcp, credential entrypoint) -----
/// Ours: the token-exchange protocol a client speaks (`v1`, `v2`).
pub const AMBIENT_CP_TOKEN_PROTOCOL: &str = "AMBIENT_CP_TOKEN_PROTOCOL";
/// The older name of [`AMBIENT_CP_TOKEN_PROTOCOL`] (the credential
/// entrypoint's), still read when the current name is unset.
pub const AMBIENT_EXCHANGE_PROTOCOL: &str = "AMBIENT_EXCHANGE_PROTOCOL";

/// Old names still read when the current name is unset: `(name, alias)`.
pub const ALIASES: [(&str, &str); 1] = [(AMBIENT_CP_TOKEN_PROTOCOL, AMBIENT_EXCHANGE_PROTOCOL)];

/// Which variable a daemon reads for `name`, given the environment `get`:
/// `name` itself when it holds a value, else its alias (see [`ALIASES`])
/// when that holds one, else none. An empty value counts as unset, as the
/// reference's `envOrDefault` reads it: manifests rendered by templating
/// tools set empty values routinely.
pub fn reads_as(name: &str, get: impl Fn(&str) -> Option<OsString>) -> Option<&str> {
    let set = |n: &str| get(n).is_some_and(|v| !v.is_empty());
    if set(name) {
        return Some(name);
    }
    ALIASES
        .iter()
        .find(|(current, alias)| *current == name && set(alias))
        .map(|(_, alias)| *alias)
}

/// The reference control plane's boolean (`AMBIENT_GRPC_USE_TLS`, and every
/// boolean of ours in the Go daemons' places): exactly `true` is true,
/// anything else false.
pub fn is_true(value: &str) -> bool {
    value == "true"
}

/// The reference control plane's `USE_VERTEX`: `1` or `true`, anything else false.
pub fn is_one_or_true(value: &str) -> bool {
    matches!(value, "1" | "true")
}

/// The reference runner's booleans (`is_env_truthy`, `AMBIENT_GRPC_USE_TLS`
/// in its gRPC client): `1`, `true` or `yes` in any case, around any
/// whitespace; anything else false.
pub fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes"
    )
}

// --- ambient-mcp sidecar ------------------------------------------------------------
pub const MCP_TRANSPORT: &str = "MCP_TRANSPORT";
pub const MCP_BIND_ADDR: &str = "MCP_BIND_ADDR";
pub const AMBIENT_API_URL: &str = "AMBIENT_API_URL";
pub const AMBIENT_TOKEN: &str = "AMBIENT_TOKEN";

// --- credential sidecar -------------------------------------------------------------
pub const CREDENTIAL_PROVIDER: &str = "CREDENTIAL_PROVIDER";
pub const CREDENTIAL_IDS: &str = "CREDENTIAL_IDS";
pub const JIRA_READ_ONLY_MODE: &str = "JIRA_READ_ONLY_MODE";

// --- handed to third-party MCP servers by the credential entrypoint ---------------
pub const GITHUB_PERSONAL_ACCESS_TOKEN: &str = "GITHUB_PERSONAL_ACCESS_TOKEN";
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
pub const GITLAB_TOKEN: &str = "GITLAB_TOKEN";
pub const GITLAB_HOST: &str = "GITLAB_HOST";
pub const GITLAB_API_URL: &str = "GITLAB_API_URL";
pub const JIRA_API_TOKEN: &str = "JIRA_API_TOKEN";
pub const JIRA_URL: &str = "JIRA_URL";
pub const JIRA_USERNAME: &str = "JIRA_USERNAME";
pub const JIRA_EMAIL: &str = "JIRA_EMAIL";
/// mcp-atlassian (0.23 on) refuses MCP requests without a per-user identity
/// unless this is `true` (set for the jira sidecar: it serves one session's
/// one credential to its own pod only).
pub const ALLOW_GLOBAL_CRED_FALLBACK: &str = "ALLOW_GLOBAL_CRED_FALLBACK";
pub const GOOGLE_ACCESS_TOKEN: &str = "GOOGLE_ACCESS_TOKEN";
pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn empty_is_unset_and_an_alias_is_read_only_when_the_name_is_unset() {
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cells: [(Pairs<'_>, Option<&str>); 6] = [
            (&[], None),
            (&[(AMBIENT_CP_TOKEN_PROTOCOL, "")], None),
            (
                &[(AMBIENT_CP_TOKEN_PROTOCOL, "v1")],
                Some(AMBIENT_CP_TOKEN_PROTOCOL),
            ),
            (
                &[(AMBIENT_EXCHANGE_PROTOCOL, "v1")],
                Some(AMBIENT_EXCHANGE_PROTOCOL),
            ),
            (
                &[
                    (AMBIENT_CP_TOKEN_PROTOCOL, ""),
                    (AMBIENT_EXCHANGE_PROTOCOL, "v1"),
                ],
                Some(AMBIENT_EXCHANGE_PROTOCOL),
            ),
            (
                &[
                    (AMBIENT_CP_TOKEN_PROTOCOL, "v2"),
                    (AMBIENT_EXCHANGE_PROTOCOL, "v1"),
                ],
                Some(AMBIENT_CP_TOKEN_PROTOCOL),
            ),
        ];
        for (pairs, want) in cells {
            assert_eq!(
                reads_as(AMBIENT_CP_TOKEN_PROTOCOL, env(pairs)),
                want,
                "{pairs:?}"
            );
        }
        // No alias: empty is unset all the same.
        assert_eq!(reads_as(MODE_FOR_TEST, env(&[(MODE_FOR_TEST, "")])), None);
        assert_eq!(
            reads_as(MODE_FOR_TEST, env(&[(MODE_FOR_TEST, " ")])),
            Some(MODE_FOR_TEST)
        );
    }

    const MODE_FOR_TEST: &str = "MODE";

    #[test]
    fn booleans_read_as_the_reference_reads_them() {
        for (value, exact, vertex, truthy) in [
            ("true", true, true, true),
            ("TRUE", false, false, true),
            ("1", false, true, true),
            ("yes", false, false, true),
            (" Yes ", false, false, true),
            ("false", false, false, false),
            ("0", false, false, false),
            ("", false, false, false),
            ("on", false, false, false),
        ] {
            assert_eq!(is_true(value), exact, "{value:?}");
            assert_eq!(is_one_or_true(value), vertex, "{value:?}");
            assert_eq!(is_truthy(value), truthy, "{value:?}");
        }
    }
}
