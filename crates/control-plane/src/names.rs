//! Names, labels and ports of the Kubernetes objects of a session (wire.md §4).

use std::collections::BTreeMap;

use crate::config::PlatformMode;

pub const FIELD_MANAGER: &str = "ambient-control-plane";
pub const LABEL_MANAGED: &str = "ambient-code.io/managed";
pub const LABEL_MANAGED_BY: &str = "ambient-code.io/managed-by";
pub const LABEL_PROJECT_ID: &str = "ambient-code.io/project-id";
pub const LABEL_SESSION_ID: &str = "ambient-code.io/session-id";
/// Which control-plane installation manages an object: two installations in
/// one cluster never see (or delete) each other's objects.
pub const LABEL_INSTALLATION: &str = "ambient-code.io/installation";
pub const ANNOTATION_SESSION_ID: &str = "ambient-code.io/session-id";
pub const ANNOTATION_SESSION_NAME: &str = "ambient-code.io/session-name";
/// On a session's ServiceAccount: re-provisions of a vanished pod since the
/// session last started.
pub const ANNOTATION_REPROVISIONS: &str = "ambient-code.io/reprovisions";
pub const MANAGED_BY: &str = "ambient-control-plane";
pub const NETWORK_POLICY: &str = "allow-ambient-api-server";
pub const RUNNER_CONTAINER: &str = "ambient-code-runner";
pub const MCP_CONTAINER: &str = "ambient-mcp";
pub const AGUI_PORT: u16 = 8001;
pub const MCP_PORT: u16 = 8090;
pub const WORKSPACE_PATH: &str = "/workspace";
pub const SERVICE_CA_CONFIGMAP: &str = "openshift-service-ca.crt";
pub const SERVICE_CA_VOLUME: &str = "service-ca";
pub const SERVICE_CA_PATH: &str = "/etc/pki/ca-trust/extracted/pem/service-ca.crt";
/// The service CA OpenShift puts beside a pod's ServiceAccount token.
pub const SERVICE_ACCOUNT_SERVICE_CA: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt";
pub const KEYPAIR_SECRET: &str = "ambient-cp-token-keypair";
/// On a copied Secret (the Vertex key): `<namespace>/<name>` of its source.
pub const ANNOTATION_COPIED_FROM: &str = "ambient-code.io/copied-from";
/// On the image-puller RoleBindings of `RUNNER_IMAGE_NAMESPACE`.
pub const LABEL_IMAGE_PULLER: &str = "ambient-code.io/image-puller";
/// Prefix of a project's namespace in MPP mode.
pub const MPP_NAMESPACE_PREFIX: &str = "ambient-code--";
pub const TENANT_NAMESPACE_GROUP: &str = "tenant.paas.redhat.com";
pub const TENANT_NAMESPACE_VERSION: &str = "v1alpha1";
pub const TENANT_NAMESPACE_KIND: &str = "TenantNamespace";
pub const TENANT_NAMESPACE_PLURAL: &str = "tenantnamespaces";
/// The Vertex key volume of the runner, and where it is mounted.
pub const VERTEX_VOLUME: &str = "vertex";
pub const VERTEX_MOUNT_PATH: &str = "/app/vertex";
/// The session key volume (exchange v3, wire.md §3): the `K_s` file of the
/// session's Secret, mounted read-only into the containers that exchange
/// tokens (runner, ambient-mcp, credential sidecars) — a directory mount,
/// so a rewritten key (root rotation) reaches running containers.
pub const SESSION_KEY_VOLUME: &str = "session-key";
pub const SESSION_KEY_MOUNT_PATH: &str = "/var/run/ambient/session-key";
/// The key of the session's Secret holding the key file, and the file's name.
pub const SESSION_KEY_FILE: &str = "session-key.json";
/// The key file's mode in the containers: read-only for everyone in the
/// pod. The kubelet writes Secret files as root; the session's containers
/// run as a non-root user and could not read 0400 without an fsGroup. Only
/// the runner and ambient-mcp mount it (the credential sidecars, whose
/// third-party children share their user, do not).
pub const SESSION_KEY_MODE: i32 = 0o444;
/// On a session's pod: its generation, picked by the control plane when it
/// creates the pod (`K_s` is derived for it before the pod starts; session
/// tokens carry it as `gen`). A pod without it (created before) is named
/// by its UID.
pub const ANNOTATION_GENERATION: &str = "ambient-code.io/generation";
/// A project namespace's Secret for runner settings, created empty once and
/// then left to the project's users (the reference's `ensureRunnerSecrets`).
pub const RUNNER_SECRETS: &str = "ambient-runner-secrets";
/// The Role and RoleBinding giving the control plane its rights in a
/// project namespace.
pub const PROJECT_MANAGER: &str = "ambient-control-plane-project-manager";
/// Project annotation naming the project's creator (a Kubernetes user, or
/// `system:serviceaccount:<ns>:<name>`): bound `ambient-project-admin`.
pub const ANNOTATION_CREATED_BY: &str = "ambient-code.io/created-by";
/// On the creator's admin RoleBinding (the reference's label).
pub const LABEL_ROLE: &str = "ambient-code.io/role";
/// Marks the creator's admin RoleBinding of a project namespace.
pub const LABEL_CREATOR_ADMIN: &str = "ambient-code.io/creator-admin";
pub const PROJECT_SETTINGS_GROUP: &str = "vteam.ambient-code";
pub const PROJECT_SETTINGS_VERSION: &str = "v1alpha1";
pub const PROJECT_SETTINGS_KIND: &str = "ProjectSettings";
pub const PROJECT_SETTINGS_PLURAL: &str = "projectsettings";
/// The one ProjectSettings object of a project namespace (its CRD allows no other name).
pub const PROJECT_SETTINGS_NAME: &str = "projectsettings";
/// The control plane's ServiceAccount when it cannot tell its own (the
/// reference's fixed name).
pub const CONTROL_PLANE_SERVICE_ACCOUNT: &str = "ambient-control-plane";
/// Where the runner keeps its artifacts (`ARTIFACTS_DIR`, relative to the workspace).
pub const ARTIFACTS_DIR: &str = "artifacts";

/// `safe` = session ID lowercased, cut to 40 characters.
pub fn safe(session_id: &str) -> String {
    session_id.to_lowercase().chars().take(40).collect()
}

pub fn pod_name(session_id: &str) -> String {
    format!("session-{}-runner", safe(session_id))
}

pub fn service_account_name(session_id: &str) -> String {
    format!("session-{}-sa", safe(session_id))
}

pub fn service_name(session_id: &str) -> String {
    format!("session-{}", safe(session_id))
}

/// The per-session Secret holding values containers get by `secretKeyRef`.
pub fn secret_name(session_id: &str) -> String {
    format!("session-{}-secrets", safe(session_id))
}

/// The path of the session key file inside a container.
pub fn session_key_path() -> String {
    format!("{SESSION_KEY_MOUNT_PATH}/{SESSION_KEY_FILE}")
}

/// A fresh pod generation: 32 random hex digits (fits a v3 `gen`,
/// `[A-Za-z0-9._:-]{1,128}`, and a label value).
pub fn new_generation() -> String {
    use std::fmt::Write as _;
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Never seen; the clock still tells this pod from the previous one.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = nanos.to_be_bytes();
    }
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The generation of `pod`: [`ANNOTATION_GENERATION`], else its UID.
pub fn pod_generation(pod: &k8s_openapi::api::core::v1::Pod) -> String {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_GENERATION))
        .filter(|g| is_generation(g))
        .cloned()
        .or_else(|| pod.metadata.uid.clone())
        .unwrap_or_default()
}

/// A v3 generation: 1–128 of `A-Z a-z 0-9 . _ : -`.
pub fn is_generation(g: &str) -> bool {
    (1..=128).contains(&g.len())
        && g.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The namespace of a project's sessions.
pub fn namespace(mode: PlatformMode, project_id: &str) -> String {
    match mode {
        PlatformMode::Standard => project_id.to_lowercase(),
        PlatformMode::Mpp => format!("{MPP_NAMESPACE_PREFIX}{}", project_id.to_lowercase()),
    }
}

/// The MPP `TenantNamespace` of a project: `lower(project_id)`.
pub fn tenant_namespace_name(project_id: &str) -> String {
    project_id.to_lowercase()
}

/// The image-puller RoleBinding of session namespace `ns`.
pub fn image_puller_name(ns: &str) -> String {
    format!("ambient-image-puller-{ns}")
}

/// Labels of a project namespace of installation `installation`.
pub fn namespace_labels(project_id: &str, installation: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.into(), "true".into()),
        (LABEL_PROJECT_ID.into(), project_id.into()),
        (LABEL_MANAGED_BY.into(), MANAGED_BY.into()),
        (LABEL_INSTALLATION.into(), installation.into()),
    ])
}

/// Labels of every object of a session.
pub fn session_labels(
    session_id: &str,
    project_id: &str,
    installation: &str,
) -> BTreeMap<String, String> {
    let mut labels = namespace_labels(project_id, installation);
    labels.insert(LABEL_SESSION_ID.into(), session_id.into());
    labels
}

/// Label selector of a session's objects (of this installation).
pub fn session_selector(session_id: &str, installation: &str) -> String {
    format!(
        "{LABEL_SESSION_ID}={session_id},{}",
        managed_selector(installation)
    )
}

/// Label selector of everything this installation manages.
pub fn managed_selector(installation: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_INSTALLATION}={installation}")
}

/// Why the control plane must never run sessions in (or adopt, bind
/// groups in, copy keys into, or delete) namespace `ns`: its own namespace,
/// the MPP config namespace (`mpp_config`), the cluster's (`default`,
/// `kube-*`) or the platform's (`openshift*`). `None` when it may.
pub fn reserved_namespace(ns: &str, own: &str, mpp_config: Option<&str>) -> Option<&'static str> {
    if ns == own {
        Some("the control plane's own namespace")
    } else if mpp_config == Some(ns) {
        Some("the platform's MPP_CONFIG_NAMESPACE")
    } else if ns == "default" || ns.starts_with("kube-") {
        Some("reserved by Kubernetes")
    } else if ns.starts_with("openshift") {
        Some("reserved by OpenShift")
    } else {
        None
    }
}

/// True for a valid Kubernetes label value (non-empty here).
pub fn is_label_value(v: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    !v.is_empty()
        && v.len() <= 63
        && v.chars().all(ok_char)
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// True for a DNS-1123 label (a namespace name): 1–63 of `a-z 0-9 -`,
/// alphanumeric at both ends.
pub fn is_dns_label(v: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    !v.is_empty()
        && v.len() <= 63
        && v.chars().all(ok_char)
        && !v.starts_with('-')
        && !v.ends_with('-')
}

/// True for a DNS-1123 subdomain (most object names): dot-separated
/// labels, at most 253 characters.
pub fn is_dns_subdomain(v: &str) -> bool {
    v.len() <= 253 && v.split('.').all(is_dns_label)
}

/// A DNS-1123 label made of `raw` (lowercase alphanumerics and '-', ≤ 63).
pub fn dns_label(raw: &str) -> String {
    let mut out: String = raw
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.truncate(63);
    out.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_wire() {
        let id = "2ABCdefGHIjklMNOpqrSTUvwxYZ0123456789abcdefXYZ";
        assert_eq!(safe(id).len(), 40);
        assert_eq!(safe(id), "2abcdefghijklmnopqrstuvwxyz0123456789abc");
        assert_eq!(pod_name("AbC"), "session-abc-runner");
        assert_eq!(service_account_name("AbC"), "session-abc-sa");
        assert_eq!(service_name("AbC"), "session-abc");
        assert_eq!(namespace(PlatformMode::Standard, "MyProj"), "myproj");
        assert_eq!(
            namespace(PlatformMode::Mpp, "MyProj"),
            "ambient-code--myproj"
        );
        let labels = session_labels("s1", "p1", "inst");
        assert_eq!(
            labels.get(LABEL_INSTALLATION).map(String::as_str),
            Some("inst")
        );
        assert_eq!(labels.get(LABEL_MANAGED).map(String::as_str), Some("true"));
        assert_eq!(
            labels.get(LABEL_MANAGED_BY).map(String::as_str),
            Some("ambient-control-plane")
        );
        assert_eq!(labels.get(LABEL_SESSION_ID).map(String::as_str), Some("s1"));
        assert_eq!(labels.get(LABEL_PROJECT_ID).map(String::as_str), Some("p1"));
        assert_eq!(dns_label("Team A/Admins_"), "team-a-admins");
    }

    #[test]
    fn reserved_namespaces_are_refused() {
        for ns in [
            "ambient-code",
            "default",
            "kube-system",
            "kube-public",
            "openshift",
            "openshift-config",
        ] {
            assert!(
                reserved_namespace(ns, "ambient-code", None).is_some(),
                "{ns}"
            );
        }
        let mpp = Some("ambient-code--config");
        assert_eq!(
            reserved_namespace("ambient-code--config", "ambient-code", mpp),
            Some("the platform's MPP_CONFIG_NAMESPACE")
        );
        for ns in ["team-x", "kubernetes-fans", "my-openshift", "defaults"] {
            assert_eq!(reserved_namespace(ns, "ambient-code", mpp), None, "{ns}");
        }
    }

    #[test]
    fn generations_are_fresh_v3_names_and_label_values_and_the_uid_is_the_fallback() {
        let (a, b) = (new_generation(), new_generation());
        assert_ne!(a, b);
        assert!(is_generation(&a) && is_label_value(&a), "{a}");
        let mut pod = k8s_openapi::api::core::v1::Pod::default();
        pod.metadata.uid = Some("uid-1".into());
        assert_eq!(pod_generation(&pod), "uid-1");
        pod.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_GENERATION.to_owned(),
            a.clone(),
        )]));
        assert_eq!(pod_generation(&pod), a);
        // A value no v3 header could carry is not a generation.
        pod.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_GENERATION.to_owned(),
            "a b".to_owned(),
        )]));
        assert_eq!(pod_generation(&pod), "uid-1");
    }
}
