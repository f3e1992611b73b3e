//! THE allow-list: every call a session pod may make through the gateway,
//! in one table (the same table is in ARCHITECTURE.md). Anything not here
//! is refused `403` / `PERMISSION_DENIED`.
//!
//! gRPC `ambient.v1.SessionService`, on the token's own session only:
//! `GetSession`, `UpdateSessionStatus`, `PushSessionMessage`,
//! `WatchSessionMessages` (forwarded), `WatchSessions` (forwarded, events of
//! other sessions dropped). Every other RPC of every service is refused.
//!
//! REST under `/api/ambient/v1`, within the session's project ([`TABLE`]).
//! Who calls what:
//! - ambient-mcp's 16 tools: `GET /sessions` (list), `GET /sessions/{id}`,
//!   `POST /sessions` + `POST /sessions/{id}/start` (create, delegation; a
//!   session whose start failed stays, as the reference leaves it),
//!   `POST /sessions/{id}/messages`, `PATCH /sessions/{id}` (labels,
//!   annotations), `GET /sessions/{id}/messages` (JSON and SSE, the watch),
//!   `GET /projects` (`search=name=…` fallback), `GET/PATCH /projects/{id}`,
//!   `GET/POST /projects/{p}/agents`, `GET/PATCH /projects/{p}/agents/{a}`.
//! - credential entrypoint: `GET /credentials/{id}/token`, `GET /credentials/{id}`.
//! - ambient-runner-client: gRPC only.
//! - reference runner (`components/runners/ambient-runner`): gRPC
//!   `PushSessionMessage`, `WatchSessionMessages`, `InboxService/WatchInboxMessages`
//!   (refused: an agent's inbox is not the session's); REST
//!   `GET {BACKEND_API_URL}/api/ambient/v1/projects/{p}/credentials/{id}/token`
//!   (allowed, forwarded as `/credentials/{id}/token`). Its legacy backend
//!   paths are answered `404`, as the API server answers them (they are the
//!   reference backend's, not the API's; the runner takes `401`/`403` there
//!   as fatal, a `404` as "no credential"):
//!   `/projects/{p}/agentic-sessions[/{s}]` (list, get, create),
//!   `…/{s}/start`, `…/{s}/stop`, `…/{s}/agui/run`, `…/{s}/export`,
//!   `…/{s}/credentials/{provider}`.

/// The REST prefix of the API server and of the gateway.
pub const API_PREFIX: &str = "/api/ambient/v1";

/// How a rule confines its call to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A collection scoped by project: `project_id` query and
    /// `X-Ambient-Project` must be the session's project (the header is set
    /// to it), a body's `project_id` too; a list answer keeps only items of
    /// the project (a caller's `search` ANDed with `project_id = '<own>'`).
    ProjectQuery,
    /// `GET /projects`: asks for just the session's project (a caller's
    /// `search` ANDed with `id = '<own>'`), and the answer keeps only it,
    /// `total` counted from what is kept.
    ProjectList,
    /// `{project}` is the session's project.
    Project,
    /// `{session}` is a session of the session's project (looked up).
    SessionInProject,
    /// `{session}` is the token's own session.
    OwnSession,
    /// `{project}` is the session's project and `{agent}` one of its agents
    /// (looked up).
    AgentInProject,
    /// `{credential}` was delivered to the session (and `{project}`, when
    /// present, is its project).
    DeliveredCredential,
}

/// One allowed REST call.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// HTTP method.
    pub method: &'static str,
    /// Path under [`API_PREFIX`]; `{name}` matches one segment.
    pub path: &'static str,
    /// The confinement.
    pub scope: Scope,
    /// The upstream path when it differs (same placeholders).
    pub upstream: Option<&'static str>,
    /// The top-level body fields it may carry.
    pub fields: Fields,
}

/// The top-level fields a rule's JSON body may carry. Every body is
/// re-serialised from the gateway's parse, and a key that is not lowercase
/// `[a-z0-9_]` is refused: the API matches keys ignoring case (Go's
/// `encoding/json`), so `Project_Id` would reach `project_id` unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// Any field.
    Any,
    /// Only these.
    Only(&'static [&'static str]),
    /// Any but these.
    Not(&'static [&'static str]),
}

impl Fields {
    /// The first of `keys` this refuses.
    pub fn refused<'k>(self, mut keys: impl Iterator<Item = &'k str>) -> Option<&'k str> {
        match self {
            Fields::Any => None,
            Fields::Only(allowed) => keys.find(|k| !allowed.contains(k)),
            Fields::Not(refused) => keys.find(|k| refused.contains(k)),
        }
    }
}

/// `PATCH /sessions/{s}`: what ambient-mcp's label and annotation tools
/// merge; the rest (prompt, repos, environment, bot account, owner,
/// parent...) would rewrite a sibling session before its restart.
pub const SESSION_PATCH: Fields = Fields::Only(&["labels", "annotations"]);
/// `POST /sessions`: not the fields that give a new session another
/// environment, identity, resources or owner (ambient-mcp's create sends
/// `name`, `project_id`, `prompt`, `agent_id`, `llm_model`,
/// `parent_session_id`).
pub const SESSION_CREATE: Fields = Fields::Not(&[
    "environment_variables",
    "bot_account_name",
    "resource_overrides",
    "assigned_user_id",
]);
/// The own session's status: the runner's SDK fields and conditions; never
/// the phase (a Pending after a Stop would keep its credentials alive),
/// times, `kube_*` or `reconciled_*`, which are the control plane's.
pub const SESSION_STATUS: Fields =
    Fields::Only(&["sdk_session_id", "sdk_restart_count", "conditions"]);

const fn rule(method: &'static str, path: &'static str, scope: Scope) -> Rule {
    Rule {
        method,
        path,
        scope,
        upstream: None,
        fields: Fields::Any,
    }
}

const fn with(fields: Fields, r: Rule) -> Rule {
    Rule { fields, ..r }
}

/// The REST allow-list.
pub const TABLE: &[Rule] = &[
    rule("GET", "/sessions", Scope::ProjectQuery),
    with(
        SESSION_CREATE,
        rule("POST", "/sessions", Scope::ProjectQuery),
    ),
    rule("GET", "/sessions/{session}", Scope::SessionInProject),
    with(
        SESSION_PATCH,
        rule("PATCH", "/sessions/{session}", Scope::SessionInProject),
    ),
    rule("POST", "/sessions/{session}/start", Scope::SessionInProject),
    with(
        SESSION_STATUS,
        rule("PATCH", "/sessions/{session}/status", Scope::OwnSession),
    ),
    rule(
        "GET",
        "/sessions/{session}/messages",
        Scope::SessionInProject,
    ),
    rule(
        "POST",
        "/sessions/{session}/messages",
        Scope::SessionInProject,
    ),
    rule("GET", "/projects", Scope::ProjectList),
    rule("GET", "/projects/{project}", Scope::Project),
    rule("PATCH", "/projects/{project}", Scope::Project),
    rule("GET", "/projects/{project}/agents", Scope::Project),
    rule("POST", "/projects/{project}/agents", Scope::Project),
    rule(
        "GET",
        "/projects/{project}/agents/{agent}",
        Scope::AgentInProject,
    ),
    rule(
        "PATCH",
        "/projects/{project}/agents/{agent}",
        Scope::AgentInProject,
    ),
    rule(
        "GET",
        "/credentials/{credential}",
        Scope::DeliveredCredential,
    ),
    rule(
        "GET",
        "/credentials/{credential}/token",
        Scope::DeliveredCredential,
    ),
    Rule {
        method: "GET",
        path: "/projects/{project}/credentials/{credential}",
        scope: Scope::DeliveredCredential,
        upstream: Some("/credentials/{credential}"),
        fields: Fields::Any,
    },
    Rule {
        method: "GET",
        path: "/projects/{project}/credentials/{credential}/token",
        scope: Scope::DeliveredCredential,
        upstream: Some("/credentials/{credential}/token"),
        fields: Fields::Any,
    },
];

/// The gRPC allow-list: `ambient.v1.SessionService` methods a session may
/// call, each on its own session only. The rest are refused.
pub const GRPC: &[&str] = &[
    "GetSession",
    "UpdateSessionStatus",
    "PushSessionMessage",
    "WatchSessionMessages",
    "WatchSessions",
];

/// The values a rule's placeholders matched.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params<'a> {
    pub project: Option<&'a str>,
    pub session: Option<&'a str>,
    pub agent: Option<&'a str>,
    pub credential: Option<&'a str>,
}

impl Params<'_> {
    /// The upstream path of `rule` with these values.
    pub fn upstream_path(&self, rule: &Rule) -> String {
        let template = rule.upstream.unwrap_or(rule.path);
        let mut out = String::with_capacity(template.len() + 32);
        for seg in template.split('/').filter(|s| !s.is_empty()) {
            out.push('/');
            out.push_str(match seg {
                "{project}" => self.project.unwrap_or_default(),
                "{session}" => self.session.unwrap_or_default(),
                "{agent}" => self.agent.unwrap_or_default(),
                "{credential}" => self.credential.unwrap_or_default(),
                literal => literal,
            });
        }
        out
    }
}

/// A value a placeholder may take: the wire's safe-value alphabet
/// (`^[a-zA-Z0-9_.@:-]+$`), and not a dot segment.
fn safe(seg: &str) -> bool {
    !seg.is_empty()
        && seg != "."
        && seg != ".."
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b':' | b'-'))
}

/// The rule allowing `method path` (path under [`API_PREFIX`], no query),
/// with its placeholder values.
pub fn find<'a>(method: &str, path: &'a str) -> Option<(&'static Rule, Params<'a>)> {
    let path = path.strip_suffix('/').unwrap_or(path);
    'rules: for rule in TABLE {
        if rule.method != method {
            continue;
        }
        let mut want = rule.path.split('/').filter(|s| !s.is_empty());
        let mut got = path.split('/').skip(1);
        let mut params = Params::default();
        loop {
            match (want.next(), got.next()) {
                (None, None) => return Some((rule, params)),
                (Some(w), Some(g)) if w.starts_with('{') => {
                    if !safe(g) {
                        continue 'rules;
                    }
                    match w {
                        "{project}" => params.project = Some(g),
                        "{session}" => params.session = Some(g),
                        "{agent}" => params.agent = Some(g),
                        _ => params.credential = Some(g),
                    }
                }
                (Some(w), Some(g)) if w == g => {}
                _ => continue 'rules,
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_with_their_values() {
        let (rule, p) = find("GET", "/sessions/abc/messages").unwrap_or_else(|| panic!("no rule"));
        assert_eq!(rule.scope, Scope::SessionInProject);
        assert_eq!(p.session, Some("abc"));
        let (rule, p) =
            find("GET", "/projects/p1/credentials/c9/token").unwrap_or_else(|| panic!("no rule"));
        assert_eq!(rule.scope, Scope::DeliveredCredential);
        assert_eq!(p.upstream_path(rule), "/credentials/c9/token");
        assert_eq!(p.project, Some("p1"));
        let (rule, _) = find("GET", "/sessions/").unwrap_or_else(|| panic!("no rule"));
        assert_eq!(rule.path, "/sessions");
    }

    #[test]
    fn anything_else_is_not_allowed() {
        for (m, p) in [
            ("DELETE", "/projects/p1"),
            ("DELETE", "/sessions/s1"),
            ("POST", "/sessions/s/stop"),
            ("GET", "/role_bindings"),
            ("GET", "/credentials"),
            ("PATCH", "/credentials/c"),
            ("GET", "/sessions/../credentials"),
            ("GET", "/sessions/a%2Fb"),
            ("GET", "/sessions/a/messages/extra"),
            ("GET", "/projects/p/agentic-sessions/s/credentials/github"),
            ("GET", ""),
        ] {
            assert!(find(m, p).is_none(), "{m} {p} must not be allowed");
        }
    }
}
