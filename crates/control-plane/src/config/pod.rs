//! What the object builders need from the configuration ([`PodConfig`]):
//! images, resources (checked as Kubernetes quantities at startup, not
//! refused per pod), credential sidecars, Vertex and MPP settings.
//!
//! [`PodConfig`]: crate::objects::PodConfig

use ambient_protocol::env;

use super::{Config, ConfigError, PlatformMode};

impl Config {
    /// What the object builders need (no auth required: used by `render`).
    pub fn pod_config(&self) -> Result<crate::objects::PodConfig, ConfigError> {
        use crate::objects::{CredentialImages, PodConfig, VertexConfig};
        let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.is_empty());
        if self.platform_mode == PlatformMode::Mpp && nonempty(&self.mpp_config_namespace).is_none()
        {
            return Err(ConfigError::MppNamespace);
        }
        if self.runner_image.is_empty() {
            return Err(ConfigError::Empty {
                name: env::RUNNER_IMAGE,
            });
        }
        if let Some(url) = self.token_url.as_deref().filter(|u| !u.is_empty()) {
            ambient_protocol::url_policy::token_url(url).map_err(|e| ConfigError::Invalid {
                name: env::CP_TOKEN_URL,
                reason: e.to_string(),
            })?;
        }
        if let Some(id) = self.installation_id.as_deref().filter(|i| !i.is_empty())
            && !crate::names::is_label_value(id)
        {
            return Err(ConfigError::Invalid {
                name: env::CP_INSTALLATION_ID,
                reason:
                    "not a label value (at most 63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends)"
                        .into(),
            });
        }
        let vertex = self.use_vertex.then(|| VertexConfig {
            project_id: nonempty(&self.vertex_project_id),
            region: nonempty(&self.vertex_region).unwrap_or_else(|| "global".into()),
            credentials_path: self.vertex_credentials_path.clone(),
            secret_name: self.vertex_secret_name.clone(),
            secret_namespace: self.vertex_secret_namespace.clone(),
        });
        if let Some(v) = &vertex {
            let bad = |name, value: &str| ConfigError::Invalid {
                name,
                reason: format!("{value:?} is not a Kubernetes name"),
            };
            if !crate::names::is_dns_subdomain(&v.secret_name) {
                return Err(bad("VERTEX_SECRET_NAME", &v.secret_name));
            }
            if !crate::names::is_dns_label(&v.secret_namespace) {
                return Err(bad("VERTEX_SECRET_NAMESPACE", &v.secret_namespace));
            }
        }
        let api_url = self.api_server_url.clone();
        Ok(PodConfig {
            platform_mode: self.platform_mode,
            mpp_config_namespace: nonempty(&self.mpp_config_namespace),
            control_plane_namespace: self.runtime_namespace(),
            installation: self
                .installation_id
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| self.runtime_namespace()),
            runner_image: self.runner_image.clone(),
            runner_image_namespace: nonempty(&self.runner_image_namespace),
            backend_api_url: nonempty(&self.backend_api_url).unwrap_or_else(|| api_url.clone()),
            sidecar_api_url: nonempty(&self.mcp_api_server_url).unwrap_or(api_url),
            grpc_url: self.grpc_server_addr.clone(),
            grpc_use_tls: self.grpc_use_tls,
            runner_log_level: self.runner_log_level.clone(),
            token_url: nonempty(&self.token_url),
            mcp_image: nonempty(&self.mcp_image),
            credential_images: CredentialImages {
                github: nonempty(&self.github_mcp_image),
                gitlab: nonempty(&self.gitlab_mcp_image),
                jira: nonempty(&self.jira_mcp_image),
                kubeconfig: nonempty(&self.k8s_mcp_image),
                google: nonempty(&self.google_mcp_image),
            },
            http_proxy: nonempty(&self.http_proxy),
            https_proxy: nonempty(&self.https_proxy),
            no_proxy: nonempty(&self.no_proxy),
            image_pull_secret: nonempty(&self.image_pull_secret),
            anthropic_api_key: self.anthropic_api_key.clone().filter(|k| !k.is_empty()),
            vertex,
            runner_resources: self.runner_resources()?,
            mcp_resources: self.sidecar_resources(crate::objects::Resources::mcp())?,
            credential_resources: self.sidecar_resources(crate::objects::Resources::credential())?,
            session_keys: true,
        })
    }

    fn runner_resources(&self) -> Result<crate::objects::Resources, ConfigError> {
        Ok(crate::objects::Resources {
            cpu_request: quantity("RUNNER_CPU_REQUEST", &self.runner_cpu_request)?,
            memory_request: quantity("RUNNER_MEMORY_REQUEST", &self.runner_memory_request)?,
            cpu_limit: quantity("RUNNER_CPU_LIMIT", &self.runner_cpu_limit)?,
            memory_limit: quantity("RUNNER_MEMORY_LIMIT", &self.runner_memory_limit)?,
        })
    }

    /// `defaults` with the `SIDECAR_*` overrides applied.
    fn sidecar_resources(
        &self,
        defaults: crate::objects::Resources,
    ) -> Result<crate::objects::Resources, ConfigError> {
        let pick = |name, set: &Option<String>, default: String| match set {
            Some(v) => quantity(name, v),
            None => Ok(default),
        };
        Ok(crate::objects::Resources {
            cpu_request: pick(
                "SIDECAR_CPU_REQUEST",
                &self.sidecar_cpu_request,
                defaults.cpu_request,
            )?,
            memory_request: pick(
                "SIDECAR_MEMORY_REQUEST",
                &self.sidecar_memory_request,
                defaults.memory_request,
            )?,
            cpu_limit: pick(
                "SIDECAR_CPU_LIMIT",
                &self.sidecar_cpu_limit,
                defaults.cpu_limit,
            )?,
            memory_limit: pick(
                "SIDECAR_MEMORY_LIMIT",
                &self.sidecar_memory_limit,
                defaults.memory_limit,
            )?,
        })
    }
}

/// `raw` when it is a Kubernetes quantity (or empty: not set), else one
/// clear error at startup instead of a refused pod per session.
pub fn quantity(name: &'static str, raw: &str) -> Result<String, ConfigError> {
    let raw = raw.trim();
    if raw.is_empty() || is_quantity(raw) {
        Ok(raw.to_owned())
    } else {
        Err(ConfigError::Quantity {
            name,
            value: raw.to_owned(),
        })
    }
}

/// The quantity grammar of Kubernetes (`k8s.io/apimachinery` resource),
/// without a sign: a decimal number, then a binary-SI suffix (`Ki`..`Ei`),
/// a decimal-SI suffix (`m`, `k`, `M`, `G`, `T`, `P`, `E`) or an exponent
/// (`e3`, `E-2`).
pub fn is_quantity(s: &str) -> bool {
    let digits_end = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let int = digits_end(s);
    let (number, rest) = match s[int..].strip_prefix('.') {
        Some(after) => {
            let frac = digits_end(after);
            (int + frac > 0, &after[frac..])
        }
        None => (int > 0, &s[int..]),
    };
    if !number {
        return false;
    }
    match rest {
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => true,
        _ => match rest.strip_prefix(['e', 'E']) {
            Some(exp) => {
                let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
            }
            None => false,
        },
    }
}
