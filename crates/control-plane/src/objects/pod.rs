//! The session pod (wire.md §4): the runner, the MCP sidecar and one
//! credential sidecar per delivered credential, their ports, volumes,
//! resources and security contexts.

use std::collections::BTreeMap;

use ambient_protocol::provider::Provider;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    KeyToPath, LocalObjectReference, PodSecurityContext, PodSpec, ResourceRequirements,
    SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::env::{credential_env, mcp_env, runner_env};
use super::{BuildError, PodConfig, Resources, SessionInput};
use crate::names;

/// Size limit of each credential sidecar's private `/tmp`.
const SIDECAR_TMP_LIMIT: &str = "10Mi";

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

/// `Always`, except `IfNotPresent` for `localhost/` images (built locally).
pub fn pull_policy(image: &str) -> &'static str {
    if image.starts_with("localhost/") {
        "IfNotPresent"
    } else {
        "Always"
    }
}

fn resources(r: &Resources) -> ResourceRequirements {
    let pair = |cpu: &str, memory: &str| {
        let mut m = BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ]);
        m.retain(|_, q| !q.0.is_empty());
        m
    };
    ResourceRequirements {
        requests: Some(pair(&r.cpu_request, &r.memory_request)),
        limits: Some(pair(&r.cpu_limit, &r.memory_limit)),
        ..ResourceRequirements::default()
    }
}

/// True when the MCP sidecar is on: image, token URL and public key all set.
pub fn mcp_enabled(cfg: &PodConfig, public_key_pem: Option<&str>) -> bool {
    cfg.mcp_image.is_some() && sidecars_enabled(cfg, public_key_pem)
}

/// True when sidecars can exchange tokens: token URL and public key set.
/// Credential sidecars need it; without it credentials reach the runner as
/// `CREDENTIAL_IDS`.
pub fn sidecars_enabled(cfg: &PodConfig, public_key_pem: Option<&str>) -> bool {
    cfg.token_url.is_some() && public_key_pem.is_some_and(|k| !k.is_empty())
}

/// True when the pod gets a session key file (exchange v3): on, and its
/// containers exchange tokens at all.
pub fn session_key_enabled(cfg: &PodConfig, public_key_pem: Option<&str>) -> bool {
    cfg.session_keys && sidecars_enabled(cfg, public_key_pem)
}

/// Gives the runner and ambient-mcp the session key file: the session
/// Secret's key file alone, read-only (mode [`names::SESSION_KEY_MODE`]), as
/// a directory mount (a subPath mount would never see a rewritten key), its
/// path in `AMBIENT_SESSION_KEY_FILE`. Not the credential sidecars: their
/// child, a third-party MCP server running as the same user, could read a
/// file at a known path and exchange tokens for the whole session; they keep
/// the v2 exchange, whose variables their child never sees.
fn add_session_key(id: &str, containers: &mut [Container], volumes: &mut Vec<Volume>) {
    volumes.push(Volume {
        name: names::SESSION_KEY_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names::secret_name(id)),
            items: Some(vec![KeyToPath {
                key: names::SESSION_KEY_FILE.into(),
                path: names::SESSION_KEY_FILE.into(),
                mode: Some(names::SESSION_KEY_MODE),
            }]),
            default_mode: Some(names::SESSION_KEY_MODE),
            optional: Some(false),
        }),
        ..Volume::default()
    });
    for c in containers
        .iter_mut()
        .filter(|c| c.name == names::RUNNER_CONTAINER || c.name == names::MCP_CONTAINER)
    {
        c.volume_mounts.get_or_insert_default().push(VolumeMount {
            read_only: Some(true),
            ..mount(names::SESSION_KEY_VOLUME, names::SESSION_KEY_MOUNT_PATH)
        });
        c.env.get_or_insert_default().push(EnvVar {
            name: ambient_protocol::env::AMBIENT_SESSION_KEY_FILE.into(),
            value: Some(names::session_key_path()),
            value_from: None,
        });
    }
}

/// Credential sidecars to run: provider, container name, port, image. None
/// unless [`sidecars_enabled`].
pub fn credential_sidecars<'a>(
    cfg: &'a PodConfig,
    public_key_pem: Option<&str>,
    credentials: &BTreeMap<Provider, String>,
) -> Vec<(Provider, &'static str, u16, &'a str)> {
    if !sidecars_enabled(cfg, public_key_pem) {
        return Vec::new();
    }
    credentials
        .keys()
        .filter_map(|p| {
            let (name, port) = p.sidecar()?;
            let image = cfg.credential_images.image(*p)?;
            Some((*p, name, port, image))
        })
        .collect()
}

/// The third-party server a credential sidecar runs, as the container's
/// `args` (the image's `CMD`, after its entrypoint and bridge), where the
/// image's own is wrong: the google image's `python -m workspace_mcp` does
/// not exist in the workspace-mcp it pins (1.17.1), whose entry point is
/// the `workspace-mcp` script. The others keep the image's command: the
/// reference jira and github images' work as they are, and the reference
/// k8s image names its server in the entrypoint, so no `args` could
/// change its form (its `--port` listener serves no `/sse` from
/// kubernetes-mcp-server 0.0.67 on; an image of ours bridges its stdio
/// mode with `--serve-mcp`, README).
pub fn server_args(provider: Provider) -> Option<Vec<String>> {
    match provider {
        Provider::Google => Some(
            ["workspace-mcp", "--permissions", "gmail:send", "drive:full"]
                .map(String::from)
                .to_vec(),
        ),
        _ => None,
    }
}

/// The credentials a session's pod actually delivers: those with a
/// sidecar, or — when no sidecar runs — all of them as `CREDENTIAL_IDS`
/// (the reference's rule). The rest are resolved but not delivered.
pub fn delivered_credentials(
    cfg: &PodConfig,
    public_key_pem: Option<&str>,
    credentials: &BTreeMap<Provider, String>,
) -> BTreeMap<Provider, String> {
    let sidecars = credential_sidecars(cfg, public_key_pem, credentials);
    if sidecars.is_empty() {
        return credentials.clone();
    }
    sidecars
        .iter()
        .filter_map(|(p, ..)| Some((*p, credentials.get(p)?.clone())))
        .collect()
}

fn port(name: String, number: u16) -> Option<Vec<ContainerPort>> {
    Some(vec![ContainerPort {
        name: Some(name),
        container_port: i32::from(number),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }])
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..VolumeMount::default()
    }
}

fn service_ca_mount() -> VolumeMount {
    VolumeMount {
        name: names::SERVICE_CA_VOLUME.into(),
        mount_path: names::SERVICE_CA_PATH.into(),
        sub_path: Some("service-ca.crt".into()),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: String, size_limit: Option<&str>) -> Volume {
    Volume {
        name,
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: size_limit.map(|s| Quantity(s.into())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A sidecar: read-only root, its own `/tmp` volume `tmp`, the service CA.
fn sidecar(
    name: &str,
    image: &str,
    port_name: String,
    port_number: u16,
    env: Vec<EnvVar>,
    res: &Resources,
    tmp: &str,
) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        image_pull_policy: Some(pull_policy(image).into()),
        ports: port(port_name, port_number),
        env: Some(env),
        resources: Some(resources(res)),
        security_context: Some(security_context(true)),
        volume_mounts: Some(vec![service_ca_mount(), mount(tmp, "/tmp")]),
        ..Container::default()
    }
}

pub(super) fn pod_spec(
    cfg: &PodConfig,
    input: SessionInput<'_>,
    id: &str,
    ns: &str,
) -> Result<PodSpec, BuildError> {
    let key_pem = input.public_key_pem.filter(|k| !k.is_empty());
    let sidecars = credential_sidecars(cfg, key_pem, input.credentials);
    let mcp = mcp_enabled(cfg, key_pem);

    let mut runner_mounts = vec![
        mount("workspace", names::WORKSPACE_PATH),
        service_ca_mount(),
    ];
    let mut volumes = vec![
        empty_dir("workspace".into(), None),
        Volume {
            name: names::SERVICE_CA_VOLUME.into(),
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
    ];
    if let Some(v) = &cfg.vertex {
        volumes.push(Volume {
            name: names::VERTEX_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(v.secret_name.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        runner_mounts.push(VolumeMount {
            read_only: Some(true),
            ..mount(names::VERTEX_VOLUME, names::VERTEX_MOUNT_PATH)
        });
    }

    let mut containers = vec![Container {
        name: names::RUNNER_CONTAINER.into(),
        image: Some(cfg.runner_image.clone()),
        image_pull_policy: Some(pull_policy(&cfg.runner_image).into()),
        ports: port("agui".into(), names::AGUI_PORT),
        env: Some(runner_env(cfg, input, id, ns, &sidecars, mcp)?),
        resources: Some(resources(&cfg.runner_resources)),
        security_context: Some(security_context(false)),
        volume_mounts: Some(runner_mounts),
        ..Container::default()
    }];
    if mcp && let Some(image) = &cfg.mcp_image {
        let tmp = "mcp-tmp";
        containers.push(sidecar(
            names::MCP_CONTAINER,
            image,
            "mcp-sse".into(),
            names::MCP_PORT,
            mcp_env(cfg, id, key_pem),
            &cfg.mcp_resources,
            tmp,
        ));
        volumes.push(empty_dir(tmp.into(), Some(SIDECAR_TMP_LIMIT)));
    }
    for (provider, name, port_number, image) in sidecars {
        let tmp = format!("cred-tmp-{provider}");
        let env = credential_env(cfg, input, id, ns, provider, key_pem)?;
        let mut container = sidecar(
            name,
            image,
            format!("cred-{provider}"),
            port_number,
            env,
            &cfg.credential_resources,
            &tmp,
        );
        container.args = server_args(provider);
        containers.push(container);
        volumes.push(empty_dir(tmp, Some(SIDECAR_TMP_LIMIT)));
    }

    if session_key_enabled(cfg, key_pem) {
        add_session_key(id, &mut containers, &mut volumes);
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
        volumes: Some(volumes),
        ..PodSpec::default()
    })
}
