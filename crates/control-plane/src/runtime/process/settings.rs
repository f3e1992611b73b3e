//! Flags of the runtime choice and of the process runtime, validated into
//! [`ProcessSettings`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ambient_protocol::provider::Provider;
use clap::{Args, ValueEnum};

use crate::objects::PodConfig;

/// Where sessions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// Pods on Kubernetes.
    Kube,
    /// Local child processes (a laptop, end-to-end tests).
    Process,
}

/// `--runtime` and the process runtime's settings.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Where sessions run: `kube` (pods) or `process` (each container a
    /// local child process; no cluster needed).
    #[arg(long = "runtime", env = "CP_RUNTIME", value_enum, default_value_t = RuntimeKind::Kube)]
    pub kind: RuntimeKind,

    /// Process runtime: directory of its state (keypair, per-session work
    /// directories, container logs and records). Default:
    /// $XDG_STATE_HOME/ambient-control-plane, else ~/.local/state/ambient-control-plane.
    /// Also read by `logs`, before or after it.
    #[arg(long, env = "CP_STATE_DIR", value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,

    /// Process runtime: the runner's command line, run by `/bin/sh -c` in the
    /// session's work directory with the runner container's environment.
    /// Default: ambient-demo-runner beside this binary.
    #[arg(long, env = "CP_RUNNER_COMMAND", value_name = "CMD")]
    pub runner_command: Option<String>,

    /// Process runtime: the ambient-mcp binary. Default: beside this binary.
    #[arg(long, env = "CP_MCP_COMMAND", value_name = "PATH")]
    pub mcp_command: Option<PathBuf>,

    /// Process runtime: the credential-entrypoint binary. Default: beside this binary.
    #[arg(long, env = "CP_CREDENTIAL_ENTRYPOINT", value_name = "PATH")]
    pub credential_entrypoint: Option<PathBuf>,

    /// Process runtime: the stdio MCP server a credential sidecar wraps, per
    /// provider (`github=github-mcp-server stdio`; repeatable, comma-separated
    /// in the variable), run by `/bin/sh -c`. Default for every provider:
    /// credential-test-mcp-server beside this binary.
    #[arg(
        long = "credential-command",
        env = "CP_CREDENTIAL_COMMANDS",
        value_name = "PROVIDER=CMD",
        value_delimiter = ','
    )]
    pub credential_commands: Vec<String>,

    /// Process runtime: how often credential sidecars re-fetch their
    /// credential (AMBIENT_CREDENTIAL_REFRESH_SECONDS); their default when unset.
    #[arg(long, env = "CP_CREDENTIAL_REFRESH_SECONDS", value_name = "SECS")]
    pub credential_refresh_seconds: Option<u64>,

    /// Process runtime: stop every session's processes when the control
    /// plane exits (by default they keep running, like pods, and the next
    /// start adopts them).
    #[arg(long, env = "CP_STOP_SESSIONS_ON_EXIT", default_value = "false", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = ambient_daemon::env_rules::is_true)]
    pub stop_sessions_on_exit: bool,

    /// Process runtime: the file that stands for the pod's OpenShift service
    /// CA (the optional ConfigMap): copied into each session, where the
    /// containers' SSL_CERT_FILE, REQUESTS_CA_BUNDLE and
    /// AMBIENT_GRPC_CA_CERT_FILE then point. Unset: those are left out.
    #[arg(long, env = "CP_POD_SERVICE_CA_FILE", value_name = "PEM")]
    pub pod_service_ca_file: Option<PathBuf>,

    /// Process runtime, USE_VERTEX: the Vertex key file that stands for the
    /// VERTEX_SECRET_NAME Secret: copied into each session where the
    /// runner's GOOGLE_APPLICATION_CREDENTIALS then points.
    #[arg(long, env = "CP_VERTEX_KEY_FILE", value_name = "JSON")]
    pub vertex_key_file: Option<PathBuf>,
}

/// How a container of the pod is started locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A program and its arguments.
    Argv(Vec<String>),
    /// A command line for `/bin/sh -c`.
    Shell(String),
}

impl Command {
    /// The argv that runs it.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Argv(a) => a.clone(),
            Command::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        }
    }
}

/// The validated process-runtime settings.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    pub state_dir: PathBuf,
    pub runner: Command,
    pub mcp: PathBuf,
    pub credential_entrypoint: PathBuf,
    pub credential_commands: BTreeMap<Provider, Command>,
    pub default_credential_command: Command,
    pub credential_refresh_seconds: Option<u64>,
    pub stop_sessions_on_exit: bool,
    /// The local content of the service-CA ConfigMap volume.
    pub pod_service_ca_file: Option<PathBuf>,
    /// The local content of the Vertex Secret volume (its one key).
    pub vertex_key_file: Option<PathBuf>,
    /// This binary (the container shim).
    pub shim: PathBuf,
}

/// A process-runtime setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("--credential-command {0:?}: expected PROVIDER=COMMAND")]
    CredentialCommand(String),
    #[error("--credential-command: unknown provider {0:?}")]
    Provider(String),
    #[error("--runner-command is empty")]
    EmptyRunner,
    #[error("cannot resolve a path: {0}")]
    Exe(String),
    #[error("no state directory: set CP_STATE_DIR (or HOME)")]
    NoStateDir,
    #[error("{0}: {1:?} is not a readable file")]
    NoFile(&'static str, PathBuf),
}

impl RuntimeArgs {
    /// The state directory (flag, else the XDG state directory).
    pub fn state_dir(&self) -> Result<PathBuf, SettingsError> {
        if let Some(d) = self.state_dir.clone().filter(|d| !d.as_os_str().is_empty()) {
            return Ok(d);
        }
        let xdg = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| Path::new(&h).join(".local/state"))
            })
            .ok_or(SettingsError::NoStateDir)?;
        Ok(xdg.join("ambient-control-plane"))
    }

    /// Validates the process-runtime flags; binaries default to this one's directory.
    pub fn process(&self) -> Result<ProcessSettings, SettingsError> {
        let exe = std::env::current_exe().map_err(|e| SettingsError::Exe(e.to_string()))?;
        let beside = |name: &str| exe.with_file_name(name);
        let path_arg = |p: &Path| p.display().to_string();
        let runner = match self.runner_command.as_deref() {
            Some(line) if line.trim().is_empty() => return Err(SettingsError::EmptyRunner),
            Some(line) => Command::Shell(line.to_owned()),
            None => Command::Argv(vec![path_arg(&beside("ambient-demo-runner"))]),
        };
        let mut credential_commands = BTreeMap::new();
        for raw in &self.credential_commands {
            let (provider, line) = raw
                .split_once('=')
                .filter(|(p, l)| !p.trim().is_empty() && !l.trim().is_empty())
                .ok_or_else(|| SettingsError::CredentialCommand(raw.clone()))?;
            let provider = Provider::parse(provider.trim())
                .map_err(|_| SettingsError::Provider(provider.trim().to_owned()))?;
            credential_commands.insert(provider, Command::Shell(line.to_owned()));
        }
        // Absolute: containers run in their own directories.
        let state_dir = std::path::absolute(self.state_dir()?)
            .map_err(|e| SettingsError::Exe(e.to_string()))?;
        Ok(ProcessSettings {
            state_dir,
            runner,
            mcp: self
                .mcp_command
                .clone()
                .unwrap_or_else(|| beside("ambient-mcp")),
            credential_entrypoint: self
                .credential_entrypoint
                .clone()
                .unwrap_or_else(|| beside("credential-entrypoint")),
            credential_commands,
            default_credential_command: Command::Argv(vec![path_arg(&beside(
                "credential-test-mcp-server",
            ))]),
            credential_refresh_seconds: self.credential_refresh_seconds,
            stop_sessions_on_exit: self.stop_sessions_on_exit,
            pod_service_ca_file: readable("CP_POD_SERVICE_CA_FILE", &self.pod_service_ca_file)?,
            vertex_key_file: readable("CP_VERTEX_KEY_FILE", &self.vertex_key_file)?,
            shim: exe,
        })
    }
}

/// `path` when it names a readable file (checked once, at startup).
fn readable(name: &'static str, path: &Option<PathBuf>) -> Result<Option<PathBuf>, SettingsError> {
    match path {
        Some(p)
            if std::fs::File::open(p).is_ok_and(|f| f.metadata().is_ok_and(|m| m.is_file())) =>
        {
            std::path::absolute(p)
                .map(Some)
                .map_err(|e| SettingsError::Exe(e.to_string()))
        }
        Some(p) => Err(SettingsError::NoFile(name, p.clone())),
        None => Ok(None),
    }
}

/// Marks an image as "run locally": the process runtime picks commands by
/// container, never by image.
pub const LOCAL_IMAGE: &str = "local-process";

impl ProcessSettings {
    /// The pod configuration for local processes: the MCP sidecar and a
    /// credential sidecar for every provider are on (their "images" only
    /// need to be set), and sessions reach the token server at `token_url`
    /// unless one was configured.
    pub fn adjust(&self, pod: &mut PodConfig, token_url: String) {
        let local = || Some(LOCAL_IMAGE.to_owned());
        pod.mcp_image.get_or_insert_with(|| LOCAL_IMAGE.into());
        let images = &mut pod.credential_images;
        for slot in [
            &mut images.github,
            &mut images.gitlab,
            &mut images.jira,
            &mut images.kubeconfig,
            &mut images.google,
        ] {
            if slot.is_none() {
                *slot = local();
            }
        }
        pod.token_url.get_or_insert(token_url);
    }

    /// The command a credential sidecar of `provider` wraps.
    pub fn credential_command(&self, provider: Provider) -> &Command {
        self.credential_commands
            .get(&provider)
            .unwrap_or(&self.default_credential_command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Probe {
        #[command(flatten)]
        args: RuntimeArgs,
    }

    fn parse(args: &[&str]) -> RuntimeArgs {
        let mut argv = vec!["cp"];
        argv.extend_from_slice(args);
        Probe::try_parse_from(argv)
            .map(|p| p.args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn credential_commands_are_per_provider() {
        let s = parse(&[
            "--state-dir",
            "/s",
            "--credential-command",
            "github=gh-mcp stdio --x",
        ])
        .process()
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.credential_command(Provider::Github),
            &Command::Shell("gh-mcp stdio --x".into())
        );
        assert_eq!(
            s.credential_command(Provider::Jira),
            &s.default_credential_command
        );
        for bad in ["github", "=x", "github=", "nope=x"] {
            assert!(
                parse(&["--credential-command", bad]).process().is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn runner_command_goes_through_the_shell() {
        let s = parse(&["--state-dir", "/s", "--runner-command", "python r.py"])
            .process()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.runner.argv(), ["/bin/sh", "-c", "python r.py"]);
        assert_eq!(
            parse(&["--runner-command", " "]).process().err(),
            Some(SettingsError::EmptyRunner)
        );
    }
}
