//! `ambient-control-plane render`: every object the KubeRuntime would apply
//! for one session (or, given only a project, for that project), as a
//! multi-document YAML stream. No cluster and no API
//! server needed: the debugging view operators use, and what tests assert on.
//!
//! Input files hold the REST JSON shapes of wire.md §2. Secret values are
//! never printed: a Secret's data shows as `<redacted>`. Pod, Service and
//! Secret are owned by the session's ServiceAccount, whose UID only the
//! cluster knows: it shows as [`PLACEHOLDER_UID`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ambient_protocol::provider::Provider;
use ambient_protocol::v1::{ObjectReference, Project, ProjectSettings, Session};
use serde_json::Value;

use crate::objects::{
    self, PodConfig, ProjectObjects, PromptSources, ServiceAccountRef, SessionInput, SessionObjects,
};

/// The ServiceAccount UID in rendered ownerReferences.
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Arguments of `render`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// Session as REST JSON (`GET /sessions/{id}`). Without it, the
    /// objects of the project of --project-file are rendered instead.
    #[arg(long, required_unless_present = "project_file")]
    pub session_file: Option<PathBuf>,
    /// Project as REST JSON (`GET /projects/{id}`).
    #[arg(long)]
    pub project_file: Option<PathBuf>,
    /// The project's settings as REST JSON (`GET /project_settings/{id}`):
    /// its ProjectSettings object (with --project-file alone).
    #[arg(long)]
    pub settings_file: Option<PathBuf>,
    /// The published public key (SPKI PEM).
    #[arg(long)]
    pub public_key_file: Option<PathBuf>,
    /// Credentials: a JSON object provider → credential ID, as resolved
    /// from the API's role bindings (none when absent).
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
    /// The session's agent as REST JSON: its prompt joins the initial prompt.
    #[arg(long)]
    pub agent_file: Option<PathBuf>,
}

/// A render failure: which file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
    #[error(transparent)]
    Build(#[from] objects::BuildError),
    #[error("cannot encode YAML: {0}")]
    Yaml(String),
}

fn read_json(path: &Path) -> Result<Value, RenderError> {
    let raw = std::fs::read_to_string(path).map_err(|e| RenderError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&raw).map_err(|e| RenderError::Invalid {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn invalid(path: &Path, reason: String) -> RenderError {
    RenderError::Invalid {
        path: path.display().to_string(),
        reason,
    }
}

/// Renders the objects of the session described by `args` (of its project
/// when no session is given).
pub fn render(cfg: &PodConfig, args: &RenderArgs) -> Result<String, RenderError> {
    let Some(session_file) = &args.session_file else {
        return render_project(cfg, args);
    };
    let session =
        session_from_json(&read_json(session_file)?).map_err(|r| invalid(session_file, r))?;
    let project = match &args.project_file {
        Some(p) => Some(project_from_json(&read_json(p)?).map_err(|r| invalid(p, r))?),
        None => None,
    };
    let key = match &args.public_key_file {
        Some(p) => {
            let pem = std::fs::read_to_string(p).map_err(|e| RenderError::Read {
                path: p.display().to_string(),
                reason: e.to_string(),
            })?;
            ambient_protocol::keys::PublicKey::from_pem(&pem)
                .map_err(|e| invalid(p, e.to_string()))?;
            Some(pem)
        }
        None => None,
    };
    let credentials = match &args.credentials_file {
        Some(p) => credentials_from_json(&read_json(p)?).map_err(|r| invalid(p, r))?,
        None => BTreeMap::new(),
    };
    let prompt_of = |path: &Option<PathBuf>| -> Result<Option<String>, RenderError> {
        let Some(p) = path else { return Ok(None) };
        Ok(string_field(&read_json(p)?, "prompt")
            .map_err(|r| invalid(p, r))?
            .filter(|s| !s.is_empty()))
    };
    let prompt = PromptSources {
        project_prompt: prompt_of(&args.project_file)?,
        agent_prompt: prompt_of(&args.agent_file)?,
        inbox: Vec::new(),
    };
    let objects = objects::build(
        cfg,
        SessionInput {
            session: &session,
            project: project.as_ref(),
            public_key_pem: key.as_deref(),
            credentials: &credentials,
            prompt: &prompt,
            last_seq: None,
        },
        Some(PLACEHOLDER_UID),
    )?;
    to_yaml(&objects)
}

/// The objects of the project of `--project-file` (with the settings of
/// `--settings-file`), the project-manager binding naming the chart's
/// ServiceAccount as the reference names it.
fn render_project(cfg: &PodConfig, args: &RenderArgs) -> Result<String, RenderError> {
    let Some(path) = &args.project_file else {
        return Err(RenderError::Read {
            path: "--project-file".into(),
            reason: "needed without --session-file".into(),
        });
    };
    let project = project_from_json(&read_json(path)?).map_err(|r| invalid(path, r))?;
    if objects::project::project_id(&project).is_empty() {
        return Err(invalid(path, "project has no id".into()));
    }
    let settings = match &args.settings_file {
        Some(p) => Some(settings_from_json(&read_json(p)?).map_err(|r| invalid(p, r))?),
        None => None,
    };
    let manager = ServiceAccountRef {
        namespace: cfg.control_plane_namespace.clone(),
        name: crate::names::CONTROL_PLANE_SERVICE_ACCOUNT.into(),
    };
    let objects = objects::build_project(cfg, &project, settings.as_ref(), &manager);
    project_to_yaml(&objects)
}

/// A project's objects as a YAML stream, in apply order, secrets redacted.
pub fn project_to_yaml(objects: &ProjectObjects) -> Result<String, RenderError> {
    let mut docs: Vec<Value> = Vec::new();
    let mut push = |v: Result<Value, serde_json::Error>| -> Result<(), RenderError> {
        docs.push(v.map_err(|e| RenderError::Yaml(e.to_string()))?);
        Ok(())
    };
    if let Some(tn) = &objects.tenant_namespace {
        push(serde_json::to_value(tn))?;
    }
    if let Some(ns) = &objects.namespace {
        push(with_type(ns))?;
    }
    let mut secret = objects.runner_secrets.clone();
    if let Some(data) = secret.string_data.as_mut() {
        data.values_mut().for_each(|v| *v = "<redacted>".into());
    }
    push(with_type(&secret))?;
    push(with_type(&objects.manager_role))?;
    push(with_type(&objects.manager_binding))?;
    if let Some(Ok(rb)) = &objects.creator_binding {
        push(with_type(rb))?;
    }
    push(serde_json::to_value(&objects.settings))?;
    yaml_stream(docs)
}

fn yaml_stream(docs: Vec<Value>) -> Result<String, RenderError> {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(
            &serde_yaml_ng::to_string(&doc).map_err(|e| RenderError::Yaml(e.to_string()))?,
        );
    }
    Ok(out)
}

/// The objects as a YAML stream, in apply order, secrets redacted.
pub fn to_yaml(objects: &SessionObjects) -> Result<String, RenderError> {
    let mut docs: Vec<Value> = Vec::new();
    let mut push = |v: Result<Value, serde_json::Error>| -> Result<(), RenderError> {
        docs.push(v.map_err(|e| RenderError::Yaml(e.to_string()))?);
        Ok(())
    };
    if let Some(tn) = &objects.tenant_namespace {
        push(serde_json::to_value(tn))?;
    }
    if let Some(ns) = &objects.namespace {
        push(with_type(ns))?;
    }
    if let Some(rb) = &objects.image_puller {
        push(with_type(rb))?;
    }
    if let Some(copy) = &objects.vertex_secret {
        // The copy's data is the source's (its `copied-from` annotation),
        // read only when applied: never known here, never shown.
        push(with_type(&copy.secret))?;
    }
    push(with_type(&objects.network_policy))?;
    push(with_type(&objects.service_account))?;
    if let Some(secret) = &objects.secret {
        let mut redacted = secret.clone();
        if let Some(data) = redacted.string_data.as_mut() {
            data.values_mut().for_each(|v| *v = "<redacted>".into());
        }
        push(with_type(&redacted))?;
    }
    push(with_type(&objects.pod))?;
    push(with_type(&objects.service))?;
    yaml_stream(docs)
}

/// JSON of a k8s-openapi object with its `apiVersion` and `kind`.
fn with_type<K: k8s_openapi::Resource + serde::Serialize>(
    obj: &K,
) -> Result<Value, serde_json::Error> {
    let mut v = serde_json::to_value(obj)?;
    if let Value::Object(map) = &mut v {
        map.insert("apiVersion".into(), K::API_VERSION.into());
        map.insert("kind".into(), K::KIND.into());
    }
    Ok(v)
}

fn string_field(v: &Value, name: &str) -> Result<Option<String>, String> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // JSON-valued fields may be given as JSON instead of a JSON string.
        Some(other @ (Value::Object(_) | Value::Array(_))) => Ok(Some(other.to_string())),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

fn int_field(v: &Value, name: &str) -> Result<Option<i32>, String> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("{name} must be a 32-bit integer")),
        Some(_) => Err(format!("{name} must be a number")),
    }
}

fn time_field(v: &Value, name: &str) -> Result<Option<prost_types::Timestamp>, String> {
    match string_field(v, name)? {
        None => Ok(None),
        Some(s) => s
            .parse::<prost_types::Timestamp>()
            .map(Some)
            .map_err(|_| format!("{name} must be an RFC 3339 time")),
    }
}

fn metadata(v: &Value, kind: &str) -> Result<ObjectReference, String> {
    Ok(ObjectReference {
        id: string_field(v, "id")?.unwrap_or_default(),
        created_at: time_field(v, "created_at")?,
        updated_at: time_field(v, "updated_at")?,
        kind: string_field(v, "kind")?.unwrap_or_else(|| kind.into()),
        href: string_field(v, "href")?.unwrap_or_default(),
    })
}

/// A session from its REST JSON shape.
pub fn session_from_json(v: &Value) -> Result<Session, String> {
    if !v.is_object() {
        return Err("expected a JSON object".into());
    }
    let s = |n: &str| string_field(v, n);
    let session = Session {
        metadata: Some(metadata(v, "Session")?),
        name: s("name")?.unwrap_or_default(),
        repo_url: s("repo_url")?,
        prompt: s("prompt")?,
        created_by_user_id: s("created_by_user_id")?,
        assigned_user_id: s("assigned_user_id")?,
        workflow_id: s("workflow_id")?,
        repos: s("repos")?,
        timeout: int_field(v, "timeout")?,
        llm_model: s("llm_model")?,
        llm_temperature: match v.get("llm_temperature") {
            None | Some(Value::Null) => None,
            Some(t) => Some(t.as_f64().ok_or("llm_temperature must be a number")?),
        },
        llm_max_tokens: int_field(v, "llm_max_tokens")?,
        parent_session_id: s("parent_session_id")?,
        bot_account_name: s("bot_account_name")?,
        resource_overrides: s("resource_overrides")?,
        environment_variables: s("environment_variables")?,
        labels: s("labels")?,
        annotations: s("annotations")?,
        project_id: s("project_id")?,
        phase: s("phase")?,
        start_time: time_field(v, "start_time")?,
        completion_time: time_field(v, "completion_time")?,
        sdk_session_id: s("sdk_session_id")?,
        sdk_restart_count: int_field(v, "sdk_restart_count")?,
        conditions: s("conditions")?,
        reconciled_repos: s("reconciled_repos")?,
        reconciled_workflow: s("reconciled_workflow")?,
        kube_cr_name: s("kube_cr_name")?,
        kube_cr_uid: s("kube_cr_uid")?,
        kube_namespace: s("kube_namespace")?,
        agent_id: s("agent_id")?,
    };
    if session.metadata.as_ref().is_none_or(|m| m.id.is_empty()) {
        return Err("session has no id".into());
    }
    Ok(session)
}

/// A project from its REST JSON shape.
pub fn project_from_json(v: &Value) -> Result<Project, String> {
    if !v.is_object() {
        return Err("expected a JSON object".into());
    }
    let s = |n: &str| string_field(v, n);
    Ok(Project {
        metadata: Some(metadata(v, "Project")?),
        name: s("name")?.unwrap_or_default(),
        display_name: s("display_name")?,
        description: s("description")?,
        labels: s("labels")?,
        annotations: s("annotations")?,
        status: s("status")?,
    })
}

/// Project settings from their REST JSON shape.
pub fn settings_from_json(v: &Value) -> Result<ProjectSettings, String> {
    if !v.is_object() {
        return Err("expected a JSON object".into());
    }
    Ok(ProjectSettings {
        metadata: Some(metadata(v, "ProjectSettings")?),
        project_id: string_field(v, "project_id")?.unwrap_or_default(),
        group_access: string_field(v, "group_access")?,
        repositories: string_field(v, "repositories")?,
    })
}

/// Credentials file: a JSON object provider → credential ID.
pub fn credentials_from_json(v: &Value) -> Result<BTreeMap<Provider, String>, String> {
    let obj = v
        .as_object()
        .ok_or("expected a JSON object provider → credential ID")?;
    obj.iter()
        .map(|(k, id)| {
            let p = Provider::parse(k).map_err(|e| e.to_string())?;
            let id = id
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or(format!("credential ID of {k} must be a non-empty string"))?;
            Ok((p, id.to_owned()))
        })
        .collect()
}
