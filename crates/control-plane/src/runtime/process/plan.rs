//! A session's Pod read as local processes: which command each container
//! becomes, and its environment exactly as the pod would get it
//! (`secretKeyRef` values from the session's Secret, downward-API fields),
//! with cluster facts swapped for local ones: every pod port for a free
//! loopback port (in `host:port` values, bind addresses and `*_PORT`
//! values), every path under a volume mount for that volume's local
//! directory (so `/workspace` is the session's work directory). ConfigMap
//! and Secret volumes are directories of the session too, holding what the
//! runtime is given for them ([`ProcessSettings::pod_service_ca_file`],
//! [`ProcessSettings::vertex_key_file`]); without it a variable naming a
//! file in one (the optional OpenShift service CA) is left out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ambient_protocol::env;
use ambient_protocol::provider::Provider;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Secret, VolumeMount};

use super::settings::{Command, ProcessSettings};
use crate::names;
use crate::objects::SessionObjects;

/// What a container is, locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Runner,
    Mcp,
    Credential(Provider),
}

/// One container, ready to start.
#[derive(Debug, Clone)]
pub struct Planned {
    pub name: String,
    pub role: Role,
    pub argv: Vec<String>,
    /// The complete environment (nothing else is inherited but PATH and
    /// LANG; HOME is the container's own directory in the pod).
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// Pod port → local port.
    pub ports: BTreeMap<u16, u16>,
    /// Local directories to create first.
    pub dirs: Vec<PathBuf>,
    /// Files to copy in first: (where, from). The local content of the
    /// pod's ConfigMap and Secret volumes.
    pub files: Vec<(PathBuf, PathBuf)>,
}

/// Why a pod cannot run as processes (permanent: the session fails).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the process runtime cannot run container {0:?}")]
    UnknownContainer(String),
    #[error("container {container}: env {name} needs {what}, which the session's objects lack")]
    MissingValue {
        container: String,
        name: String,
        what: String,
    },
    #[error("the pod has no spec")]
    NoSpec,
    #[error("no free loopback port: {0}")]
    Port(String),
}

/// A free loopback port (bound and released: a later bind may race, and
/// the container then fails to listen, as it would on a busy node port).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Plans every container of `objects`' Pod; `volume_dir` maps a volume
/// name to its local directory.
pub fn plan(
    settings: &ProcessSettings,
    objects: &SessionObjects,
    volume_dir: impl Fn(&str) -> PathBuf,
    mut port: impl FnMut() -> std::io::Result<u16>,
) -> Result<Vec<Planned>, PlanError> {
    let spec = objects.pod.spec.as_ref().ok_or(PlanError::NoSpec)?;
    let mut ports = BTreeMap::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            if let Ok(pod_port) = u16::try_from(p.container_port) {
                let local = port().map_err(|e| PlanError::Port(e.to_string()))?;
                ports.insert(pod_port, local);
            }
        }
    }
    // A ConfigMap or Secret volume the runtime has no content for: a
    // variable naming a file in one is left out, as an absent optional
    // source is.
    let absent: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.config_map.is_some() || v.secret.is_some())
        .filter(|v| volume_source(settings, &v.name).is_none())
        .map(|v| v.name.as_str())
        .collect();
    let volume_dir = |name: &str| (volume_dir(name), absent.contains(&name));
    spec.containers
        .iter()
        .map(|c| plan_container(settings, objects, c, &ports, &volume_dir))
        .collect()
}

/// The local file standing for the content of the ConfigMap or Secret
/// volume `name`, when the runtime was given one.
fn volume_source<'s>(settings: &'s ProcessSettings, name: &str) -> Option<&'s Path> {
    match name {
        names::SERVICE_CA_VOLUME => settings.pod_service_ca_file.as_deref(),
        names::VERTEX_VOLUME => settings.vertex_key_file.as_deref(),
        _ => None,
    }
}

/// The file of volume `m` a source is copied to: the service CA's subPath
/// file; for the Vertex key, the file the container's
/// GOOGLE_APPLICATION_CREDENTIALS names in it (else the reference's name).
fn volume_file(c: &Container, m: &VolumeMount, local: &Path) -> PathBuf {
    if m.name != names::VERTEX_VOLUME {
        return local.to_path_buf();
    }
    let named = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == env::GOOGLE_APPLICATION_CREDENTIALS)
        .and_then(|e| e.value.as_deref())
        .and_then(|v| v.strip_prefix(m.mount_path.as_str()))
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or("ambient-code-key.json");
    local.join(named)
}

fn role_of(c: &Container) -> Option<Role> {
    if c.name == names::RUNNER_CONTAINER {
        return Some(Role::Runner);
    }
    if c.name == names::MCP_CONTAINER {
        return Some(Role::Mcp);
    }
    let provider = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == env::CREDENTIAL_PROVIDER)?
        .value
        .as_deref()?;
    Provider::parse(provider).ok().map(Role::Credential)
}

fn plan_container(
    settings: &ProcessSettings,
    objects: &SessionObjects,
    c: &Container,
    ports: &BTreeMap<u16, u16>,
    volume_dir: &impl Fn(&str) -> (PathBuf, bool),
) -> Result<Planned, PlanError> {
    let role = role_of(c).ok_or_else(|| PlanError::UnknownContainer(c.name.clone()))?;
    let mut files = Vec::new();
    // Mount path → local path (subPath mounts name a file inside the
    // volume), and whether the volume has no local content.
    let mut mounts: Vec<Mount> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let (mut local, absent) = volume_dir(&m.name);
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                local = local.join(sub);
            }
            if let Some(source) = volume_source(settings, &m.name) {
                files.push((volume_file(c, m, &local), source.to_path_buf()));
            }
            Mount {
                path: m.mount_path.clone(),
                local,
                absent,
            }
        })
        .collect();
    // Longest mount path first, so nested mounts win.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.path.len()));
    let mut vars = BTreeMap::new();
    for e in c.env.iter().flatten() {
        if let Some(value) = value_of(objects, &c.name, e)?
            && let Some(value) = local_paths(&local_ports(&e.name, &value, ports), &mounts)
        {
            vars.insert(e.name.clone(), value);
        }
    }
    let mut dirs: Vec<PathBuf> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| volume_dir(&m.name).0)
        .collect();
    // Its own HOME, as a container has (unless the pod names one): a
    // runner writing `~/.gitconfig` must not change this machine's user.
    if !vars.contains_key("HOME") {
        let home = volume_dir(&format!(".home-{}", c.name)).0;
        vars.insert("HOME".into(), home.display().to_string());
        dirs.push(home);
    }
    let mount_dir = |path: &str| {
        mounts
            .iter()
            .find(|m| m.path == path)
            .map(|m| m.local.clone())
    };
    let tmp = mount_dir("/tmp");
    if let Some(tmp) = &tmp {
        vars.insert("TMPDIR".into(), tmp.display().to_string());
    }
    let own_port = |default: u16| {
        c.ports
            .iter()
            .flatten()
            .find_map(|p| u16::try_from(p.container_port).ok())
            .and_then(|p| ports.get(&p).copied())
            .unwrap_or(default)
    };
    let argv = match role {
        Role::Runner => settings.runner.argv(),
        Role::Mcp => vec![settings.mcp.display().to_string()],
        Role::Credential(provider) => {
            // The entrypoint's /tmp defaults, inside the sidecar's own /tmp.
            if let Some(tmp) = &tmp {
                for (name, file) in [
                    ("CREDENTIAL_KUBECONFIG_PATH", ".ambient_kubeconfig"),
                    ("CREDENTIAL_MPP_CONFIG_PATH", "mcp-mpp-config.toml"),
                ] {
                    vars.entry(name.into())
                        .or_insert_with(|| tmp.join(file).display().to_string());
                }
            }
            if let Some(secs) = settings.credential_refresh_seconds {
                vars.insert(
                    "AMBIENT_CREDENTIAL_REFRESH_SECONDS".into(),
                    secs.to_string(),
                );
            }
            let mut argv = vec![
                settings.credential_entrypoint.display().to_string(),
                "--serve-mcp".into(),
                format!("127.0.0.1:{}", own_port(0)),
            ];
            argv.extend(match settings.credential_command(provider) {
                Command::Argv(a) => a.clone(),
                shell => shell.argv(),
            });
            argv
        }
    };
    for inherited in ["PATH", "LANG"] {
        if let Some(v) = std::env::var_os(inherited).and_then(|v| v.into_string().ok()) {
            vars.entry(inherited.into()).or_insert(v);
        }
    }
    let cwd = match role {
        Role::Runner => mount_dir(names::WORKSPACE_PATH),
        _ => tmp,
    }
    .or_else(|| dirs.first().cloned())
    .unwrap_or_else(|| volume_dir(".").0);
    let own_ports = c
        .ports
        .iter()
        .flatten()
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .filter_map(|p| ports.get(&p).map(|l| (p, *l)))
        .collect();
    Ok(Planned {
        name: c.name.clone(),
        role,
        argv,
        env: vars,
        cwd,
        ports: own_ports,
        dirs,
        files,
    })
}

/// The value an env var gets in the pod; `None` for an optional source
/// that is absent.
fn value_of(
    objects: &SessionObjects,
    container: &str,
    e: &EnvVar,
) -> Result<Option<String>, PlanError> {
    let Some(from) = &e.value_from else {
        return Ok(Some(e.value.clone().unwrap_or_default()));
    };
    let missing = |what: String| PlanError::MissingValue {
        container: container.into(),
        name: e.name.clone(),
        what,
    };
    if let Some(r) = &from.secret_key_ref {
        let found = objects
            .secret
            .as_ref()
            .filter(|s| s.metadata.name.as_deref() == Some(r.name.as_str()))
            .and_then(|s| secret_value(s, &r.key));
        return match (found, r.optional) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(true)) => Ok(None),
            (None, _) => Err(missing(format!("key {} of Secret {}", r.key, r.name))),
        };
    }
    if let Some(f) = &from.field_ref {
        return field(&objects.pod, &objects.namespace_name, &f.field_path)
            .map(Some)
            .ok_or_else(|| missing(format!("field {}", f.field_path)));
    }
    Err(missing(
        "a source the process runtime does not provide".into(),
    ))
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone());
    }
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The downward-API fields a local process can answer.
fn field(pod: &Pod, namespace: &str, path: &str) -> Option<String> {
    match path {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => Some(namespace.to_owned()),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone(),
        "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
        _ => None,
    }
}

/// Replaces pod ports with local ones: in `host:port` for loopback hosts
/// (any path after it stays), in a bare `:port` bind address, and as the
/// whole value of a `*_PORT` variable.
pub fn local_ports(name: &str, value: &str, ports: &BTreeMap<u16, u16>) -> String {
    if name.ends_with("_PORT")
        && let Some(local) = value.parse::<u16>().ok().and_then(|p| ports.get(&p))
    {
        return local.to_string();
    }
    if let Some(local) = value
        .strip_prefix(':')
        .and_then(|p| p.parse::<u16>().ok())
        .and_then(|p| ports.get(&p))
    {
        return format!("127.0.0.1:{local}");
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    'scan: while !rest.is_empty() {
        for host in ["localhost:", "127.0.0.1:", "0.0.0.0:", "[::1]:"] {
            if let Some(after) = rest.strip_prefix(host) {
                let digits = after.bytes().take_while(u8::is_ascii_digit).count();
                if let Some(local) = after[..digits]
                    .parse::<u16>()
                    .ok()
                    .and_then(|p| ports.get(&p))
                {
                    out.push_str(&format!("127.0.0.1:{local}"));
                    rest = &after[digits..];
                    continue 'scan;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// A volume mount of a container, locally.
#[derive(Debug)]
struct Mount {
    path: String,
    local: PathBuf,
    /// A ConfigMap or Secret volume: nothing is there locally.
    absent: bool,
}

/// Replaces a value that is a path under a mount (or the mount itself)
/// with the local path; `None` when that path is in a volume with no
/// local content.
fn local_paths(value: &str, mounts: &[Mount]) -> Option<String> {
    for m in mounts {
        let local = if value == m.path {
            m.local.clone()
        } else if let Some(rest) = value
            .strip_prefix(m.path.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            Path::new(&m.local).join(rest)
        } else {
            continue;
        };
        return (!m.absent || local.exists()).then(|| local.display().to_string());
    }
    Some(value.to_owned())
}

#[cfg(test)]
mod tests;
