//! Which credentials a session gets (wire.md §2): resolved from the API's
//! role bindings, and the session's `credential:token-reader` grants.
//!
//! Injection bindings are `scope = 'credential'` bindings whose role is
//! neither `credential:owner` nor `credential:token-reader` (compared with
//! the role's ID and its name) and that name no user or session. Three
//! tiers — agent, project, global — each keep the earliest binding per
//! provider; later tiers override earlier ones (global → project → agent).

use std::collections::{BTreeMap, HashMap};

use ambient_protocol::provider::Provider;
use prost_types::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::rest::{Rest, RestError, search_value};

pub const ROLE_OWNER: &str = "credential:owner";
pub const ROLE_TOKEN_READER: &str = "credential:token-reader";
const SCOPE: &str = "credential";

/// A role binding as the REST API gives it (the fields used here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Binding {
    pub id: String,
    pub role_id: String,
    pub scope: String,
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub credential_id: Option<String>,
    pub created_at: Option<String>,
}

fn set(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

impl Binding {
    /// When it was created; `None` (unknown) sorts first, as in the reference.
    fn created(&self) -> Option<(i64, i32)> {
        let t: Timestamp = self.created_at.as_deref()?.parse().ok()?;
        Some((t.seconds, t.nanos))
    }
}

/// The tiers of a session's project (and agent) in resolution order:
/// global, project, agent. `excluded_roles` holds the IDs and names of
/// the roles that grant access rather than inject.
pub fn tiers(
    bindings: &[Binding],
    project_id: &str,
    agent_id: Option<&str>,
    excluded_roles: &[String],
) -> [Vec<Binding>; 3] {
    let injection = |b: &&Binding| {
        b.scope == SCOPE
            && set(&b.credential_id)
            && !set(&b.user_id)
            && !set(&b.session_id)
            && !excluded_roles.contains(&b.role_id)
    };
    let of = |pred: &dyn Fn(&Binding) -> bool| {
        let mut tier: Vec<Binding> = bindings
            .iter()
            .filter(injection)
            .filter(|b| pred(b))
            .cloned()
            .collect();
        tier.sort_by_key(Binding::created);
        tier
    };
    let global = of(&|b| !set(&b.project_id) && !set(&b.agent_id));
    let project = of(&|b| b.project_id.as_deref() == Some(project_id) && !set(&b.agent_id));
    let agent =
        match agent_id.filter(|a| !a.is_empty()) {
            Some(a) => of(&|b| {
                b.project_id.as_deref() == Some(project_id) && b.agent_id.as_deref() == Some(a)
            }),
            None => Vec::new(),
        };
    [global, project, agent]
}

/// Layers the tiers: in each the earliest binding per provider wins; a
/// later tier overrides an earlier one. `provider_of` maps a credential ID
/// to its provider (unknown credentials are skipped).
pub fn layer(
    tiers: &[Vec<Binding>; 3],
    provider_of: &HashMap<String, Provider>,
) -> BTreeMap<Provider, String> {
    let mut out = BTreeMap::new();
    for tier in tiers {
        let mut seen = Vec::new();
        for b in tier {
            let Some(cred) = b.credential_id.as_deref() else {
                continue;
            };
            let Some(provider) = provider_of.get(cred) else {
                continue;
            };
            if seen.contains(provider) {
                continue;
            }
            seen.push(*provider);
            out.insert(*provider, cred.to_owned());
        }
    }
    out
}

/// Resolving or granting failed; the session's reconcile is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Rest(#[from] RestError),
    #[error("unexpected {what} from the API: {reason}")]
    Decode { what: &'static str, reason: String },
    #[error("the API has no role {0:?}")]
    NoRole(&'static str),
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    v: Value,
) -> Result<T, CredentialError> {
    serde_json::from_value(v).map_err(|e| CredentialError::Decode {
        what,
        reason: e.to_string(),
    })
}

async fn bindings(rest: &Rest, search: &str) -> Result<Vec<Binding>, CredentialError> {
    rest.list_all(&["role_bindings"], search)
        .await?
        .into_iter()
        .map(|v| decode("role binding", v))
        .collect()
}

/// The IDs of the roles named `names` (those that exist).
async fn role_ids(rest: &Rest, names: &[&str]) -> Result<Vec<(String, String)>, CredentialError> {
    let quoted: Vec<String> = names
        .iter()
        .map(|n| search_value(n).map(|n| format!("'{n}'")))
        .collect::<Result<_, _>>()?;
    let search = format!("name in ({})", quoted.join(","));
    let roles = rest.list_all(&["roles"], &search).await?;
    Ok(roles
        .iter()
        .filter_map(|r| {
            let id = r.get("id")?.as_str()?.to_owned();
            let name = r.get("name")?.as_str()?.to_owned();
            Some((id, name))
        })
        .collect())
}

/// The search for the credential bindings that may inject: the server
/// leaves out those of the `excluded` roles (owner and token-reader: one
/// grant per running session and credential, so listing them made every
/// session start read a list as long as the number of sessions). A value
/// the search language cannot carry is left to [`tiers`], which excludes
/// the same roles again.
fn injection_search(excluded: &[String]) -> String {
    let quoted: Vec<String> = excluded
        .iter()
        .filter_map(|r| search_value(r).ok())
        .map(|r| format!("'{r}'"))
        .collect();
    if quoted.is_empty() {
        return format!("scope = '{SCOPE}'");
    }
    format!(
        "scope = '{SCOPE}' and not (role_id in ({}))",
        quoted.join(",")
    )
}

/// The credentials of a session of `project_id` (and `agent_id`):
/// provider → credential ID. A binding whose credential is gone (404) or
/// names an unknown provider is skipped with a warning; any other failure
/// is an error (the caller retries).
pub async fn resolve(
    rest: &Rest,
    project_id: &str,
    agent_id: Option<&str>,
) -> Result<BTreeMap<Provider, String>, CredentialError> {
    let project = search_value(project_id)?;
    let agent = agent_id
        .filter(|a| !a.is_empty())
        .map(search_value)
        .transpose()?;
    // The excluded roles' IDs, then the injection bindings (the three tiers
    // are cut from them).
    let roles = role_ids(rest, &[ROLE_OWNER, ROLE_TOKEN_READER]).await?;
    let mut excluded: Vec<String> = vec![ROLE_OWNER.into(), ROLE_TOKEN_READER.into()];
    excluded.extend(roles.into_iter().map(|(id, _)| id));
    let all = bindings(rest, &injection_search(&excluded)).await?;
    let tiers = tiers(&all, project, agent, &excluded);
    let mut wanted: Vec<String> = tiers
        .iter()
        .flatten()
        .filter_map(|b| b.credential_id.clone())
        .collect();
    wanted.sort();
    wanted.dedup();
    let found = futures::future::join_all(wanted.iter().map(|cred| provider(rest, cred))).await;
    let mut provider_of = HashMap::new();
    for (cred, found) in wanted.into_iter().zip(found) {
        if let Some(p) = found? {
            provider_of.insert(cred, p);
        }
    }
    Ok(layer(&tiers, &provider_of))
}

/// The provider of credential `cred`; `None` (with a warning) when it does
/// not exist or names an unknown provider.
async fn provider(rest: &Rest, cred: &str) -> Result<Option<Provider>, CredentialError> {
    let meta = match rest.get(&["credentials", cred]).await {
        Ok(v) => v,
        Err(e) if e.is_not_found() => {
            tracing::warn!(credential = %cred, "a credential binding names a credential that does not exist; skipping it");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let provider = meta.get("provider").and_then(Value::as_str).unwrap_or("");
    match Provider::parse(provider) {
        Ok(p) => Ok(Some(p)),
        Err(_) => {
            tracing::warn!(credential = %cred, provider, "credential of an unknown provider; skipping it");
            Ok(None)
        }
    }
}

/// Grants `identity` (the control plane's service identity) a
/// `credential:token-reader` binding for each of `credentials`, scoped to
/// session `session_id`. Idempotent: existing grants are kept.
pub async fn grant(
    rest: &Rest,
    identity: &str,
    session_id: &str,
    credentials: &BTreeMap<Provider, String>,
) -> Result<(), CredentialError> {
    if credentials.is_empty() {
        return Ok(());
    }
    let session = search_value(session_id)?;
    let existing = format!("scope = 'credential' and session_id = '{session}'");
    let (roles, existing) = tokio::join!(
        role_ids(rest, &[ROLE_TOKEN_READER]),
        bindings(rest, &existing)
    );
    let role = roles?
        .into_iter()
        .next()
        .map(|(id, _)| id)
        .ok_or(CredentialError::NoRole(ROLE_TOKEN_READER))?;
    let existing = existing?;
    for cred in credentials.values() {
        let held = existing.iter().any(|b| {
            b.credential_id.as_deref() == Some(cred.as_str())
                && b.user_id.as_deref() == Some(identity)
                && (b.role_id == role || b.role_id == ROLE_TOKEN_READER)
        });
        if held {
            continue;
        }
        let body = json!({
            "role_id": role,
            "scope": SCOPE,
            "credential_id": cred,
            "user_id": identity,
            "session_id": session_id,
        });
        rest.post(&["role_bindings"], &body).await?;
        tracing::info!(session = %session_id, credential = %cred, "granted credential:token-reader");
    }
    Ok(())
}

/// Deletes every `scope = 'credential'` binding of session `session_id`
/// (its token-reader grants); how many were deleted. Idempotent.
pub async fn revoke(rest: &Rest, session_id: &str) -> Result<usize, CredentialError> {
    let session = search_value(session_id)?;
    let search = format!("scope = 'credential' and session_id = '{session}'");
    let mut deleted = 0;
    for b in bindings(rest, &search).await? {
        if rest.delete(&["role_bindings", &b.id]).await? {
            deleted += 1;
        }
    }
    if deleted > 0 {
        tracing::info!(session = %session_id, deleted, "revoked the session's credential bindings");
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: &str, project: Option<&str>, agent: Option<&str>, cred: &str, at: &str) -> Binding {
        Binding {
            id: id.into(),
            role_id: "credential:viewer".into(),
            scope: SCOPE.into(),
            project_id: project.map(Into::into),
            agent_id: agent.map(Into::into),
            credential_id: Some(cred.into()),
            created_at: Some(at.into()),
            ..Binding::default()
        }
    }

    #[test]
    fn tiers_layer_global_project_agent_and_the_earliest_wins_within_one() {
        let bindings = vec![
            b("1", None, None, "gh-global", "2026-01-01T00:00:00Z"),
            b("2", None, None, "jira-global", "2026-01-01T00:00:00Z"),
            b("3", Some("p"), None, "gh-late", "2026-01-03T00:00:00Z"),
            b("4", Some("p"), None, "gh-early", "2026-01-02T00:00:00.5Z"),
            b(
                "5",
                Some("p"),
                Some("a"),
                "google-agent",
                "2026-01-04T00:00:00Z",
            ),
            b(
                "6",
                Some("p"),
                Some("other"),
                "gh-other-agent",
                "2026-01-01T00:00:00Z",
            ),
            b(
                "7",
                Some("q"),
                None,
                "gh-other-project",
                "2025-01-01T00:00:00Z",
            ),
        ];
        let providers: HashMap<String, Provider> = [
            ("gh-global", Provider::Github),
            ("jira-global", Provider::Jira),
            ("gh-late", Provider::Github),
            ("gh-early", Provider::Github),
            ("google-agent", Provider::Google),
            ("gh-other-agent", Provider::Github),
            ("gh-other-project", Provider::Github),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let got = layer(&tiers(&bindings, "p", Some("a"), &[]), &providers);
        assert_eq!(
            got,
            BTreeMap::from([
                (Provider::Github, "gh-early".to_owned()),
                (Provider::Jira, "jira-global".to_owned()),
                (Provider::Google, "google-agent".to_owned()),
            ])
        );
        // Without the agent, its binding does not count.
        let got = layer(&tiers(&bindings, "p", None, &[]), &providers);
        assert!(!got.contains_key(&Provider::Google));
    }

    #[test]
    fn the_injection_search_leaves_out_grant_and_owner_roles() {
        let excluded = [ROLE_OWNER, ROLE_TOKEN_READER, "2abcXYZ", "odd id'"].map(String::from);
        assert_eq!(
            injection_search(&excluded),
            "scope = 'credential' and not (role_id in ('credential:owner','credential:token-reader','2abcXYZ'))"
        );
        assert_eq!(injection_search(&[]), "scope = 'credential'");
    }

    #[test]
    fn grants_and_owner_bindings_never_inject() {
        let mut owner = b("1", None, None, "c-owner", "2026-01-01T00:00:00Z");
        owner.role_id = "role-owner-id".into();
        let mut by_name = b("2", None, None, "c-reader", "2026-01-01T00:00:00Z");
        by_name.role_id = ROLE_TOKEN_READER.into();
        // A running session's own grant (user + session set): the
        // reference's cross-project leak.
        let mut grant = b("3", None, None, "c-grant", "2026-01-01T00:00:00Z");
        grant.user_id = Some("svc".into());
        grant.session_id = Some("s1".into());
        let mut user = b("4", None, None, "c-user", "2026-01-01T00:00:00Z");
        user.user_id = Some("alice".into());
        let mut other_scope = b("5", None, None, "c-scope", "2026-01-01T00:00:00Z");
        other_scope.scope = "project".into();
        let excluded = vec![
            ROLE_OWNER.to_owned(),
            ROLE_TOKEN_READER.to_owned(),
            "role-owner-id".to_owned(),
        ];
        let t = tiers(
            &[owner, by_name, grant, user, other_scope],
            "p",
            None,
            &excluded,
        );
        assert!(t.iter().all(Vec::is_empty), "{t:?}");
    }

    #[test]
    fn unknown_creation_times_sort_first_and_unknown_credentials_are_skipped() {
        let mut unknown = b("1", Some("p"), None, "gh-unknown-time", "");
        unknown.created_at = None;
        let known = b("2", Some("p"), None, "gh-known", "2020-01-01T00:00:00Z");
        let gone = b("3", Some("p"), None, "jira-gone", "2020-01-01T00:00:00Z");
        let providers = HashMap::from([
            ("gh-unknown-time".to_owned(), Provider::Github),
            ("gh-known".to_owned(), Provider::Github),
        ]);
        let got = layer(&tiers(&[known, unknown, gone], "p", None, &[]), &providers);
        assert_eq!(
            got,
            BTreeMap::from([(Provider::Github, "gh-unknown-time".to_owned())])
        );
    }
}
