//! Builders of the typed Kubernetes objects of a session (wire.md §4, §5).
//!
//! Pure functions of a session, its project, the published public key, its
//! credentials, what its initial prompt is made of and the [`PodConfig`]:
//! the `KubeRuntime` applies what they return, `render` prints it and the
//! process runtime runs it, so all of them always agree.

mod env;
mod platform;
mod pod;
pub mod project;

use std::collections::BTreeMap;

use ambient_protocol::Secret;
use ambient_protocol::provider::Provider;
use ambient_protocol::v1::{Project, Session};
use k8s_openapi::api::core::v1::{
    Namespace, Pod, Secret as KubeSecret, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;

use crate::config::PlatformMode;
use crate::names;

pub use env::{environment_problem, go_float, initial_prompt, user_environment};
pub use platform::{
    image_puller, tenant_namespace, tenant_namespace_for, tenant_namespace_resource, vertex_secret,
};
pub use pod::{
    credential_sidecars, delivered_credentials, mcp_enabled, pull_policy, security_context,
    sidecars_enabled,
};
pub use project::{ProjectObjects, ServiceAccountRef, build_project};

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

/// Requests and limits of one container (Kubernetes quantities; empty: unset).
#[derive(Debug, Clone)]
pub struct Resources {
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
}

impl Resources {
    /// Requests and limits as given.
    pub fn new(
        cpu_request: &str,
        memory_request: &str,
        cpu_limit: &str,
        memory_limit: &str,
    ) -> Self {
        Self {
            cpu_request: cpu_request.into(),
            memory_request: memory_request.into(),
            cpu_limit: cpu_limit.into(),
            memory_limit: memory_limit.into(),
        }
    }

    /// The reference's runner resources.
    pub fn runner() -> Self {
        Self::new("500m", "1Gi", "2000m", "4Gi")
    }

    /// The reference's MCP sidecar resources.
    pub fn mcp() -> Self {
        Self::new("100m", "128Mi", "500m", "256Mi")
    }

    /// The reference's credential sidecar resources.
    pub fn credential() -> Self {
        Self::new("100m", "256Mi", "500m", "512Mi")
    }
}

/// Vertex AI (`USE_VERTEX`): the key Secret copied into each session
/// namespace and mounted in the runner, and the runner's Vertex settings.
#[derive(Debug, Clone)]
pub struct VertexConfig {
    pub project_id: Option<String>,
    pub region: String,
    /// `GOOGLE_APPLICATION_CREDENTIALS` in the runner (under `/app/vertex`).
    pub credentials_path: String,
    pub secret_name: String,
    pub secret_namespace: String,
}

/// Everything of the configuration the builders need.
#[derive(Debug, Clone)]
pub struct PodConfig {
    pub platform_mode: PlatformMode,
    /// Where MPP TenantNamespaces go (and what credential sidecars are told).
    pub mpp_config_namespace: Option<String>,
    pub control_plane_namespace: String,
    /// Labelled on every object ([`names::LABEL_INSTALLATION`]).
    pub installation: String,
    pub runner_image: String,
    /// OpenShift image namespace the session namespaces may pull from.
    pub runner_image_namespace: Option<String>,
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
    /// Vertex AI, when on.
    pub vertex: Option<VertexConfig>,
    pub runner_resources: Resources,
    pub mcp_resources: Resources,
    pub credential_resources: Resources,
    /// Exchange v3: the containers that exchange tokens get the session key
    /// file (the session's Secret, [`names::SESSION_KEY_VOLUME`]). Its
    /// content is the runtime's to write (it picks the pod's generation).
    pub session_keys: bool,
}

/// What a session's initial prompt is made of besides its own prompt
/// (wire.md §5 `INITIAL_PROMPT`), read from the API when it is provisioned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromptSources {
    pub project_prompt: Option<String>,
    pub agent_prompt: Option<String>,
    /// Bodies of the agent's unread inbox messages, oldest first.
    pub inbox: Vec<String>,
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
    /// The rest of the initial prompt.
    pub prompt: &'a PromptSources,
    /// The highest message seq of a session started again
    /// (`RESUME_AFTER_SEQ`), when known.
    pub last_seq: Option<i64>,
}

/// Why a session cannot be turned into objects (a permanent error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("session has no project_id")]
    NoProject,
    #[error("session id is empty")]
    NoId,
}

/// The objects of one session, in apply order.
#[derive(Debug, Clone)]
pub struct SessionObjects {
    pub namespace_name: String,
    /// The namespace to create (standard mode); MPP namespaces are provisioned by the platform.
    pub namespace: Option<Namespace>,
    /// MPP mode: the `TenantNamespace` asking the platform for the namespace
    /// (in `MPP_CONFIG_NAMESPACE`); the session waits until it is `Active`.
    pub tenant_namespace: Option<DynamicObject>,
    /// `RUNNER_IMAGE_NAMESPACE`: lets the namespace's service accounts pull the runner image.
    pub image_puller: Option<RoleBinding>,
    /// Vertex: the key Secret to copy into the namespace (its data is read
    /// from the source when applied; here only what the copy is).
    pub vertex_secret: Option<SecretCopy>,
    pub network_policy: NetworkPolicy,
    pub service_account: ServiceAccount,
    /// Per-session Secret for `secretKeyRef` values and the session key file
    /// (absent when there are none; the key file's content is added by the
    /// runtime, [`SessionObjects::uses_session_key`]).
    pub secret: Option<KubeSecret>,
    pub pod: Pod,
    pub service: Service,
}

/// A Secret copied from another namespace: `secret` is the copy without
/// its data, which is read from `from_namespace`/`from_name` when applied.
#[derive(Debug, Clone)]
pub struct SecretCopy {
    pub from_namespace: String,
    pub from_name: String,
    pub secret: KubeSecret,
}

impl SessionObjects {
    /// Whether the pod mounts the session key file (exchange v3): the
    /// runtime then derives it for the pod's generation and writes it into
    /// the session's Secret before the pod starts.
    pub fn uses_session_key(&self) -> bool {
        self.pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| v.name == names::SESSION_KEY_VOLUME)
    }

    /// The session's ID (the pod's session label).
    pub fn session_id(&self) -> &str {
        self.pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(names::LABEL_SESSION_ID))
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Names the pod `generation` ([`names::ANNOTATION_GENERATION`]) and
    /// puts `key_file` (a [`ambient_protocol::exchange::v3::SessionKeyFile`]'s
    /// JSON) into the session's Secret.
    pub fn set_session_key(&mut self, generation: &str, key_file: &Secret) {
        self.pod
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(
                names::ANNOTATION_GENERATION.to_owned(),
                generation.to_owned(),
            );
        if let Some(secret) = &mut self.secret {
            secret.data.get_or_insert_default().insert(
                names::SESSION_KEY_FILE.to_owned(),
                k8s_openapi::ByteString(key_file.expose().as_bytes().to_vec()),
            );
        }
    }

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
    let session_key = pod::session_key_enabled(cfg, input.public_key_pem);
    let secret = (cfg.anthropic_api_key.is_some() || session_key).then(|| KubeSecret {
        metadata: meta(names::secret_name(id)),
        type_: Some("Opaque".into()),
        string_data: cfg.anthropic_api_key.as_ref().map(|key| {
            BTreeMap::from([(
                ambient_protocol::env::ANTHROPIC_API_KEY.to_owned(),
                key.expose().to_owned(),
            )])
        }),
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
        spec: Some(pod::pod_spec(cfg, input, id, &ns)?),
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
        tenant_namespace: (cfg.platform_mode == PlatformMode::Mpp)
            .then(|| tenant_namespace(cfg, project_id)),
        image_puller: image_puller(cfg, &ns, project_id),
        vertex_secret: vertex_secret(cfg, &ns, project_id),
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

/// The network policy to apply over `existing` (the one in the namespace
/// now, if any): `wanted` with the `from` peers of `existing`'s first
/// ingress rule kept, ours appended when absent — as the reference does, so
/// control planes in several namespaces share one policy (an apply of
/// `wanted` alone would replace the list: `from` is atomic). Its
/// resourceVersion goes with it, so a concurrent change is a conflict,
/// retried, never lost.
pub fn merge_network_policy(
    wanted: &NetworkPolicy,
    existing: Option<&NetworkPolicy>,
) -> NetworkPolicy {
    let Some(existing) = existing else {
        return wanted.clone();
    };
    let first_from = |np: &NetworkPolicy| {
        np.spec
            .as_ref()
            .and_then(|s| s.ingress.as_ref())
            .and_then(|i| i.first())
            .and_then(|r| r.from.clone())
            .unwrap_or_default()
    };
    let mut peers = first_from(existing);
    for peer in first_from(wanted) {
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }
    let mut merged = wanted.clone();
    if let Some(rule) = merged
        .spec
        .as_mut()
        .and_then(|s| s.ingress.as_mut())
        .and_then(|i| i.first_mut())
    {
        rule.from = Some(peers);
    }
    merged.metadata.resource_version = existing.metadata.resource_version.clone();
    merged
}

#[cfg(test)]
mod tests;
