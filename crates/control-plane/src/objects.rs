//! Builders of the typed Kubernetes objects of a session (wire.md §4, §5).
//!
//! Pure functions of a session, its project, the published public key, its
//! credentials and the [`PodConfig`]: the `KubeRuntime` applies what they
//! return and `render` prints it, so both always agree.

use std::collections::BTreeMap;

use ambient_protocol::Secret;
use ambient_protocol::env;
use ambient_protocol::provider::Provider;
use ambient_protocol::v1::{Project, Session};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, KeyToPath, LocalObjectReference, Namespace, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, Secret as KubeSecret, SecretKeySelector, SecurityContext,
    Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::config::PlatformMode;
use crate::names;

/// Images of the credential sidecars; a provider without an image gets no sidecar.
#[derive(Debug, Clone, Default)]
pub struct CredentialImages {
    pub github: Option<String>,
    pub gitlab: Option<String>,
    pub jira: Option<String>,
    pub kubeconfig: Option<String>,
    pub google: Option<String>,
}

impl CredentialImages {
    /// The sidecar image of `provider`, if configured.
    pub fn image(&self, provider: Provider) -> Option<&str> {
        match provider {
            Provider::Github => self.github.as_deref(),
            Provider::Gitlab => self.gitlab.as_deref(),
            Provider::Jira => self.jira.as_deref(),
            Provider::Kubeconfig => self.kubeconfig.as_deref(),
            Provider::Google => self.google.as_deref(),
            Provider::Vertex => None,
        }
    }
}

/// Requests and limits of one container.
#[derive(Debug, Clone)]
pub struct Resources {
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: Option<String>,
    pub memory_limit: String,
}

/// Everything of the configuration the builders need.
#[derive(Debug, Clone)]
pub struct PodConfig {
    pub platform_mode: PlatformMode,
    pub mpp_config_namespace: Option<String>,
    pub control_plane_namespace: String,
    /// Labelled on every object ([`names::LABEL_INSTALLATION`]).
    pub installation: String,
    pub runner_image: String,
    pub backend_api_url: String,
    pub sidecar_api_url: String,
    pub grpc_url: String,
    pub grpc_use_tls: bool,
    pub runner_log_level: String,
    pub token_url: Option<String>,
    pub mcp_image: Option<String>,
    pub credential_images: CredentialImages,
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
    pub image_pull_secret: Option<String>,
    pub anthropic_api_key: Option<Secret>,
    pub use_vertex: bool,
    pub vertex_region: Option<String>,
    pub vertex_project_id: Option<String>,
    pub runner_resources: Resources,
    pub sidecar_resources: Resources,
}

/// What a session's objects are built from.
#[derive(Debug, Clone, Copy)]
pub struct SessionInput<'a> {
    pub session: &'a Session,
    pub project: Option<&'a Project>,
    /// The published SPKI PEM; the token exchange (and the MCP sidecar) need it.
    pub public_key_pem: Option<&'a str>,
    /// Resolved credentials: provider → credential ID.
    pub credentials: &'a BTreeMap<Provider, String>,
}

/// Why a session cannot be turned into objects (a permanent error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("session has no project_id")]
    NoProject,
    #[error("session id is empty")]
    NoId,
    #[error("environment_variables is not a JSON object of strings: {0}")]
    BadEnvironment(String),
}

/// The objects of one session, in apply order.
#[derive(Debug, Clone)]
pub struct SessionObjects {
    pub namespace_name: String,
    /// The namespace to create (standard mode); MPP namespaces are provisioned by the platform.
    pub namespace: Option<Namespace>,
    pub network_policy: NetworkPolicy,
    pub service_account: ServiceAccount,
    /// Per-session Secret for `secretKeyRef` values (absent when there are none).
    pub secret: Option<KubeSecret>,
    pub pod: Pod,
    pub service: Service,
}

impl SessionObjects {
    /// Makes Pod, Service and Secret owned by the session's ServiceAccount
    /// (whose UID is known once it exists), so deleting it collects them.
    /// No `blockOwnerDeletion`: setting it needs `update` on
    /// `serviceaccounts/finalizers` where OwnerReferencesPermissionEnforcement
    /// is on (OpenShift), and nothing here deletes the SA in the foreground.
    pub fn set_owner(&mut self, service_account_uid: &str) {
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "ServiceAccount".into(),
            name: self
                .service_account
                .metadata
                .name
                .clone()
                .unwrap_or_default(),
            uid: service_account_uid.into(),
            block_owner_deletion: None,
            controller: Some(true),
        };
        let owners = Some(vec![owner]);
        self.pod.metadata.owner_references = owners.clone();
        self.service.metadata.owner_references = owners.clone();
        if let Some(secret) = &mut self.secret {
            secret.metadata.owner_references = owners;
        }
    }
}

/// Builds every object of a session. `owner_uid` is the UID of the session's
/// ServiceAccount once it exists: Pod, Service and Secret then carry an
/// ownerReference to it so deleting the ServiceAccount collects them.
pub fn build(
    cfg: &PodConfig,
    input: SessionInput<'_>,
    owner_uid: Option<&str>,
) -> Result<SessionObjects, BuildError> {
    let session = input.session;
    let id = session
        .metadata
        .as_ref()
        .map(|m| m.id.as_str())
        .unwrap_or_default();
    if id.is_empty() {
        return Err(BuildError::NoId);
    }
    let project_id = session
        .project_id
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or(BuildError::NoProject)?;
    let ns = names::namespace(cfg.platform_mode, project_id);
    let labels = names::session_labels(id, project_id, &cfg.installation);
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(ns.clone()),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };

    let namespace = (cfg.platform_mode == PlatformMode::Standard)
        .then(|| namespace_object(&ns, project_id, &cfg.installation));
    let network_policy = network_policy(&ns, project_id, cfg);
    let service_account = ServiceAccount {
        metadata: meta(names::service_account_name(id)),
        ..ServiceAccount::default()
    };
    let secret = cfg.anthropic_api_key.as_ref().map(|key| KubeSecret {
        metadata: meta(names::secret_name(id)),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            env::ANTHROPIC_API_KEY.to_owned(),
            key.expose().to_owned(),
        )])),
        ..KubeSecret::default()
    });
    let mut pod_meta = meta(names::pod_name(id));
    pod_meta.annotations = Some(BTreeMap::from([
        (names::ANNOTATION_SESSION_ID.to_owned(), id.to_owned()),
        (
            names::ANNOTATION_SESSION_NAME.to_owned(),
            session.name.clone(),
        ),
    ]));
    let pod = Pod {
        metadata: pod_meta,
        spec: Some(pod_spec(cfg, input, id, &ns)?),
        status: None,
    };
    let service = Service {
        metadata: meta(names::service_name(id)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(BTreeMap::from([(
                names::LABEL_SESSION_ID.to_owned(),
                id.to_owned(),
            )])),
            ports: Some(vec![ServicePort {
                name: Some("agui".into()),
                port: i32::from(names::AGUI_PORT),
                target_port: Some(IntOrString::Int(i32::from(names::AGUI_PORT))),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    let mut objects = SessionObjects {
        namespace_name: ns,
        namespace,
        network_policy,
        service_account,
        secret,
        pod,
        service,
    };
    if let Some(uid) = owner_uid {
        objects.set_owner(uid);
    }
    Ok(objects)
}

/// The namespace of a project (standard mode).
pub fn namespace_object(name: &str, project_id: &str, installation: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(names::namespace_labels(project_id, installation)),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// `allow-ambient-api-server`: ingress TCP 8001 from the control plane's namespace.
pub fn network_policy(ns: &str, project_id: &str, cfg: &PodConfig) -> NetworkPolicy {
    let control_plane_namespace = cfg.control_plane_namespace.as_str();
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(names::NETWORK_POLICY.into()),
            namespace: Some(ns.into()),
            labels: Some(names::namespace_labels(project_id, &cfg.installation)),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    names::LABEL_MANAGED.to_owned(),
                    "true".to_owned(),
                )])),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_owned(),
                            control_plane_namespace.to_owned(),
                        )])),
                        ..LabelSelector::default()
                    }),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    protocol: Some("TCP".into()),
                    port: Some(IntOrString::Int(i32::from(names::AGUI_PORT))),
                    ..NetworkPolicyPort::default()
                }]),
            }]),
            ..NetworkPolicySpec::default()
        }),
    }
}

fn plain(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// Restricted security context (every container); sidecars also get a read-only root FS.
pub fn security_context(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(read_only_root),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

fn resources(r: &Resources) -> ResourceRequirements {
    let mut requests = BTreeMap::from([
        ("cpu".to_owned(), Quantity(r.cpu_request.clone())),
        ("memory".to_owned(), Quantity(r.memory_request.clone())),
    ]);
    requests.retain(|_, q| !q.0.is_empty());
    let mut limits = BTreeMap::from([("memory".to_owned(), Quantity(r.memory_limit.clone()))]);
    if let Some(cpu) = &r.cpu_limit {
        limits.insert("cpu".into(), Quantity(cpu.clone()));
    }
    limits.retain(|_, q| !q.0.is_empty());
    ResourceRequirements {
        requests: Some(requests),
        limits: Some(limits),
        ..ResourceRequirements::default()
    }
}

fn proxy_env(cfg: &PodConfig, out: &mut Vec<EnvVar>) {
    for (name, value) in [
        (env::HTTP_PROXY, &cfg.http_proxy),
        (env::HTTPS_PROXY, &cfg.https_proxy),
        (env::NO_PROXY, &cfg.no_proxy),
    ] {
        if let Some(v) = value {
            out.push(plain(name, v.clone()));
            out.push(plain(&name.to_lowercase(), v.clone()));
        }
    }
}

/// True when the MCP sidecar is on: image, token URL and public key all set.
pub fn mcp_enabled(cfg: &PodConfig, public_key_pem: Option<&str>) -> bool {
    cfg.mcp_image.is_some()
        && cfg.token_url.is_some()
        && public_key_pem.is_some_and(|k| !k.is_empty())
}

/// Credential sidecars to run: provider, container name, port, image.
pub fn credential_sidecars<'a>(
    cfg: &'a PodConfig,
    credentials: &BTreeMap<Provider, String>,
) -> Vec<(Provider, &'static str, u16, &'a str)> {
    credentials
        .keys()
        .filter_map(|p| {
            let (name, port) = p.sidecar()?;
            let image = cfg.credential_images.image(*p)?;
            Some((*p, name, port, image))
        })
        .collect()
}

fn pod_spec(
    cfg: &PodConfig,
    input: SessionInput<'_>,
    id: &str,
    ns: &str,
) -> Result<PodSpec, BuildError> {
    let session = input.session;
    let secret_name = names::secret_name(id);
    let key_pem = input.public_key_pem.filter(|k| !k.is_empty());
    let exchange_env = |out: &mut Vec<EnvVar>| {
        if let Some(url) = &cfg.token_url {
            out.push(plain(env::AMBIENT_CP_TOKEN_URL, url.clone()));
        }
        if let Some(pem) = key_pem {
            out.push(plain(env::AMBIENT_CP_TOKEN_PUBLIC_KEY, pem));
        }
    };

    // Runner: the user's environment first, then ours (ours wins).
    let mut runner_env: Vec<EnvVar> = user_environment(session)?
        .into_iter()
        .map(|(k, v)| plain(&k, v))
        .collect();
    let mut ours = vec![
        plain(env::SESSION_ID, id),
        plain(env::AGENTIC_SESSION_NAME, session.name.clone()),
        plain(env::AGENTIC_SESSION_NAMESPACE, ns),
        plain(
            env::PROJECT_NAME,
            input
                .project
                .map(|p| p.name.clone())
                .filter(|n| !n.is_empty())
                .or_else(|| session.project_id.clone())
                .unwrap_or_default(),
        ),
        plain(env::AGENT_ID, session.agent_id.clone().unwrap_or_default()),
        plain(env::WORKSPACE_PATH, names::WORKSPACE_PATH),
        plain(env::AGUI_PORT, names::AGUI_PORT.to_string()),
        plain(env::LOG_LEVEL, cfg.runner_log_level.clone()),
        plain(env::BACKEND_API_URL, cfg.backend_api_url.clone()),
        plain(env::AMBIENT_GRPC_URL, cfg.grpc_url.clone()),
        plain(env::AMBIENT_GRPC_ENABLED, "true"),
        plain(env::AMBIENT_GRPC_USE_TLS, cfg.grpc_use_tls.to_string()),
    ];
    exchange_env(&mut ours);
    if cfg.grpc_use_tls {
        ours.push(plain(
            env::AMBIENT_GRPC_CA_CERT_FILE,
            names::SERVICE_CA_PATH,
        ));
        ours.push(plain(env::SSL_CERT_FILE, names::SERVICE_CA_PATH));
        ours.push(plain(env::REQUESTS_CA_BUNDLE, names::SERVICE_CA_PATH));
    }
    let mcp = mcp_enabled(cfg, key_pem);
    if mcp {
        ours.push(plain(
            env::AMBIENT_MCP_URL,
            format!("http://localhost:{}", names::MCP_PORT),
        ));
    }
    let sidecars = credential_sidecars(cfg, input.credentials);
    if !sidecars.is_empty() {
        let urls: BTreeMap<&str, String> = sidecars
            .iter()
            .map(|(p, _, port, _)| (p.as_str(), format!("http://localhost:{port}/mcp")))
            .collect();
        ours.push(plain(
            env::CREDENTIAL_MCP_URLS,
            serde_json::to_string(&urls).unwrap_or_default(),
        ));
        ours.push(plain(env::CREDENTIAL_SIDECAR_MODE, "true"));
    }
    if let Some(p) = session.prompt.as_deref().filter(|p| !p.is_empty()) {
        ours.push(plain(env::INITIAL_PROMPT, p));
    }
    if let Some(m) = session.llm_model.as_deref().filter(|m| !m.is_empty()) {
        ours.push(plain(env::LLM_MODEL, m));
    }
    if let Some(t) = session.llm_temperature {
        ours.push(plain(env::LLM_TEMPERATURE, t.to_string()));
    }
    if let Some(t) = session.llm_max_tokens {
        ours.push(plain(env::LLM_MAX_TOKENS, t.to_string()));
    }
    if let Some(t) = session.timeout {
        ours.push(plain(env::TIMEOUT, t.to_string()));
    }
    if let Some(r) = session.repos.as_deref().filter(|r| !r.is_empty()) {
        ours.push(plain(env::REPOS_JSON, r));
    }
    ours.push(plain(
        env::IS_RESUME,
        session.start_time.is_some().to_string(),
    ));
    if cfg.use_vertex {
        ours.push(plain(env::USE_VERTEX, "1"));
        if let Some(r) = &cfg.vertex_region {
            ours.push(plain("CLOUD_ML_REGION", r.clone()));
        }
        if let Some(p) = &cfg.vertex_project_id {
            ours.push(plain("ANTHROPIC_VERTEX_PROJECT_ID", p.clone()));
        }
    }
    if cfg.anthropic_api_key.is_some() {
        ours.push(from_secret(
            env::ANTHROPIC_API_KEY,
            &secret_name,
            env::ANTHROPIC_API_KEY,
        ));
    }
    proxy_env(cfg, &mut ours);
    runner_env.retain(|e| !ours.iter().any(|o| o.name == e.name));
    runner_env.extend(ours);

    let service_ca_mount = VolumeMount {
        name: "service-ca".into(),
        mount_path: names::SERVICE_CA_PATH.into(),
        sub_path: Some("service-ca.crt".into()),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let tmp_mount = VolumeMount {
        name: "sidecar-tmp".into(),
        mount_path: "/tmp".into(),
        ..VolumeMount::default()
    };
    let mut containers = vec![Container {
        name: names::RUNNER_CONTAINER.into(),
        image: Some(cfg.runner_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(vec![ContainerPort {
            name: Some("agui".into()),
            container_port: i32::from(names::AGUI_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(runner_env),
        resources: Some(resources(&cfg.runner_resources)),
        security_context: Some(security_context(false)),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "workspace".into(),
                mount_path: names::WORKSPACE_PATH.into(),
                ..VolumeMount::default()
            },
            service_ca_mount.clone(),
        ]),
        ..Container::default()
    }];

    let sidecar = |name: &str, image: &str, port: u16, env: Vec<EnvVar>| Container {
        name: name.into(),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(vec![ContainerPort {
            name: Some(format!("mcp-{port}")),
            container_port: i32::from(port),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(env),
        resources: Some(resources(&cfg.sidecar_resources)),
        security_context: Some(security_context(true)),
        volume_mounts: Some(vec![tmp_mount.clone(), service_ca_mount.clone()]),
        ..Container::default()
    };
    if mcp && let Some(image) = &cfg.mcp_image {
        let mut e = vec![
            plain(env::MCP_TRANSPORT, "sse"),
            plain(env::MCP_BIND_ADDR, format!("127.0.0.1:{}", names::MCP_PORT)),
            plain(env::AMBIENT_API_URL, cfg.sidecar_api_url.clone()),
            plain(env::SESSION_ID, id),
        ];
        exchange_env(&mut e);
        proxy_env(cfg, &mut e);
        containers.push(sidecar(names::MCP_CONTAINER, image, names::MCP_PORT, e));
    }
    let user_env = user_environment(session)?;
    for (provider, name, port, image) in sidecars {
        let id_of = input
            .credentials
            .get(&provider)
            .cloned()
            .unwrap_or_default();
        let ids = BTreeMap::from([(provider.as_str(), id_of)]);
        let mut e = vec![
            plain(env::SESSION_ID, id),
            plain(env::CREDENTIAL_PROVIDER, provider.as_str()),
            plain(
                env::CREDENTIAL_IDS,
                serde_json::to_string(&ids).unwrap_or_default(),
            ),
            plain(env::AGENTIC_SESSION_NAMESPACE, ns),
            plain(env::AMBIENT_API_URL, cfg.sidecar_api_url.clone()),
            plain(env::PLATFORM_MODE, cfg.platform_mode.as_str()),
        ];
        if let Some(m) = &cfg.mpp_config_namespace {
            e.push(plain(env::MPP_CONFIG_NAMESPACE, m.clone()));
        }
        if provider == Provider::Jira
            && let Some(v) = user_env.get(env::JIRA_READ_ONLY_MODE)
        {
            e.push(plain(env::JIRA_READ_ONLY_MODE, v.clone()));
        }
        exchange_env(&mut e);
        proxy_env(cfg, &mut e);
        containers.push(sidecar(name, image, port, e));
    }

    Ok(PodSpec {
        containers,
        restart_policy: Some("Never".into()),
        termination_grace_period_seconds: Some(60),
        service_account_name: Some(names::service_account_name(id)),
        automount_service_account_token: Some(true),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        image_pull_secrets: cfg
            .image_pull_secret
            .as_ref()
            .map(|name| vec![LocalObjectReference { name: name.clone() }]),
        volumes: Some(vec![
            Volume {
                name: "workspace".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
            Volume {
                name: "sidecar-tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
            Volume {
                name: "service-ca".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names::SERVICE_CA_CONFIGMAP.into(),
                    optional: Some(true),
                    items: Some(vec![KeyToPath {
                        key: "service-ca.crt".into(),
                        path: "service-ca.crt".into(),
                        mode: None,
                    }]),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    })
}

/// The session's `environment_variables` (a JSON object of strings).
fn user_environment(session: &Session) -> Result<BTreeMap<String, String>, BuildError> {
    match session.environment_variables.as_deref().map(str::trim) {
        None | Some("") => Ok(BTreeMap::new()),
        Some(raw) => {
            let value: serde_json::Value =
                serde_json::from_str(raw).map_err(|e| BuildError::BadEnvironment(e.to_string()))?;
            let obj = value
                .as_object()
                .ok_or_else(|| BuildError::BadEnvironment("not an object".into()))?;
            obj.iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Ok((k.clone(), other.to_string())),
                })
                .collect()
        }
    }
}

/// Credentials of a session: the JSON object in the `ambient-code.io/credentials`
/// annotation of the project, overridden per provider by the session's.
/// Unknown providers and malformed annotations are skipped (logged by the caller).
pub fn resolve_credentials(
    session: &Session,
    project: Option<&Project>,
) -> BTreeMap<Provider, String> {
    let mut out = BTreeMap::new();
    let sources = [
        project.and_then(|p| p.annotations.as_deref()),
        session.annotations.as_deref(),
    ];
    for annotations in sources.into_iter().flatten() {
        let Ok(serde_json::Value::Object(map)) =
            serde_json::from_str::<serde_json::Value>(annotations)
        else {
            continue;
        };
        let Some(serde_json::Value::String(creds)) = map.get(names::ANNOTATION_CREDENTIALS) else {
            continue;
        };
        let Ok(serde_json::Value::Object(creds)) = serde_json::from_str::<serde_json::Value>(creds)
        else {
            continue;
        };
        for (provider, id) in creds {
            if let (Ok(p), serde_json::Value::String(id)) = (Provider::parse(&provider), id)
                && !id.is_empty()
            {
                out.insert(p, id);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
