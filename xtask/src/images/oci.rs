//! OCI images: content-addressed blobs, image config, manifest, the image
//! layout directory (`oci-layout`, `index.json`, `blobs/sha256/…`), and one
//! tar archive that both `podman load` and `docker load` accept (the layout
//! plus Docker's `manifest.json`). Every JSON document is serialised from
//! sorted maps, so equal inputs give equal digests.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::layer::Tree;

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content-addressed blob.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: digest(&bytes),
            bytes,
        }
    }

    fn json(media_type: &str, value: &Value) -> Result<Self> {
        Ok(Self::new(media_type, serde_json::to_vec(value)?))
    }

    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }

    /// The digest's hex part (the file name under `blobs/sha256/`).
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What goes into the image config besides the layers.
#[derive(Debug, Default)]
pub struct Spec {
    pub entrypoint: Vec<String>,
    /// `Some` replaces the base image's `Cmd`.
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub ports: Vec<u16>,
    /// `None` keeps the base image's user.
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339; the source's commit time, so it is reproducible.
    pub created: String,
}

/// An image: manifest, config and layers (base layers first).
#[derive(Debug)]
pub struct Image {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl Image {
    /// Assembles an image whose last layer is `tree`, on top of `base` if given
    /// (whose config is kept, with our entrypoint put in front of its own).
    pub fn assemble(spec: &Spec, tree: &Tree, base: Option<&Image>) -> Result<Self> {
        let tar = tree.to_tar()?;
        let diff_id = digest(&tar);
        let layer = Blob::new(LAYER_GZIP, gzip(&tar)?);
        let (mut config, mut layers) = match base {
            Some(b) => (serde_json::from_slice(&b.config.bytes)?, b.layers.clone()),
            None => (json!({"architecture": arch(), "os": "linux"}), Vec::new()),
        };
        let inner = &mut config["config"];
        if !inner.is_object() {
            *inner = json!({});
        }
        let mut entrypoint = spec.entrypoint.clone();
        if let Some(base_entry) = inner["Entrypoint"].as_array() {
            entrypoint.extend(
                base_entry
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from)),
            );
        }
        inner["Entrypoint"] = json!(entrypoint);
        if let Some(cmd) = &spec.cmd {
            inner["Cmd"] = json!(cmd);
        }
        let mut env: Vec<String> = inner["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        for var in &spec.env {
            let name = var.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(name));
            env.push(var.clone());
        }
        inner["Env"] = json!(env);
        if let Some(user) = &spec.user {
            inner["User"] = json!(user);
        }
        for port in &spec.ports {
            inner["ExposedPorts"][format!("{port}/tcp")] = json!({});
        }
        for (k, v) in &spec.labels {
            inner["Labels"][k] = json!(v);
        }
        config["created"] = json!(spec.created);
        match config["rootfs"]["diff_ids"].as_array_mut() {
            Some(ids) => ids.push(json!(diff_id)),
            None => config["rootfs"] = json!({"type": "layers", "diff_ids": [diff_id]}),
        }
        let step = json!({"created": spec.created, "created_by": "cargo xtask build-images"});
        match config["history"].as_array_mut() {
            Some(h) => h.push(step),
            None => config["history"] = json!([step]),
        }
        layers.push(layer);
        let config = Blob::json(CONFIG, &config)?;
        let manifest = Blob::json(
            MANIFEST,
            &json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": config.descriptor(),
                "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
            }),
        )?;
        Ok(Self {
            manifest,
            config,
            layers,
        })
    }

    fn blobs(&self) -> impl Iterator<Item = &Blob> {
        [&self.manifest, &self.config]
            .into_iter()
            .chain(&self.layers)
    }

    fn index(&self, reference: &str) -> Result<Vec<u8>> {
        let mut desc = self.manifest.descriptor();
        desc["annotations"] = json!({ REF_NAME: reference });
        Ok(serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc]}),
        )?)
    }

    /// Writes the OCI image layout into `dir` (replacing what was there).
    pub fn write_layout(&self, dir: &Path, reference: &str) -> Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)?;
        for blob in self.blobs() {
            std::fs::write(blobs.join(blob.hex()), &blob.bytes)?;
        }
        std::fs::write(dir.join("oci-layout"), LAYOUT_VERSION)?;
        std::fs::write(dir.join("index.json"), self.index(reference)?)?;
        Ok(())
    }

    /// Writes the layout as one tar, with Docker's `manifest.json` beside it.
    pub fn write_archive(&self, path: &Path, repo_tag: &str) -> Result<()> {
        let mut tree = Tree::default();
        tree.file("/oci-layout", 0o644, LAYOUT_VERSION.as_bytes().to_vec())?;
        // podman loads it as an OCI archive and names the image after the
        // full reference here; docker reads `manifest.json`.
        tree.file("/index.json", 0o644, self.index(repo_tag)?)?;
        let docker = json!([{
            "Config": format!("blobs/sha256/{}", self.config.hex()),
            "RepoTags": [repo_tag],
            "Layers": self.layers.iter().map(|l| format!("blobs/sha256/{}", l.hex())).collect::<Vec<_>>(),
        }]);
        tree.file("/manifest.json", 0o644, serde_json::to_vec(&docker)?)?;
        for blob in self.blobs() {
            tree.file(
                &format!("/blobs/sha256/{}", blob.hex()),
                0o644,
                blob.bytes.clone(),
            )?;
        }
        std::fs::write(path, tree.to_tar()?).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads the image an OCI layout's index names (for a multi-platform
    /// index, the one for this machine's platform), verifying every digest.
    pub fn read_layout(dir: &Path) -> Result<Self> {
        let index: Value = serde_json::from_slice(&read_file(&dir.join("index.json"))?)
            .with_context(|| format!("{}/index.json is not JSON", dir.display()))?;
        let mut desc = first_manifest(&index)
            .with_context(|| format!("{}/index.json names no manifest", dir.display()))?;
        loop {
            let blob = read_blob(dir, &desc)?;
            let doc: Value = serde_json::from_slice(&blob.bytes)?;
            if doc["manifests"].is_array() {
                desc = pick_platform(&doc)?;
                continue;
            }
            let config = read_blob(dir, &doc["config"])?;
            let config_doc: Value = serde_json::from_slice(&config.bytes)
                .with_context(|| format!("config {} is not JSON", config.digest))?;
            let layers = doc["layers"]
                .as_array()
                .context("manifest has no layers list")?
                .iter()
                .map(|l| read_blob(dir, l))
                .collect::<Result<Vec<_>>>()?;
            let diff_ids = config_doc["rootfs"]["diff_ids"]
                .as_array()
                .map_or(0, Vec::len);
            if diff_ids != layers.len() {
                bail!(
                    "config lists {diff_ids} diff_ids for {} layers",
                    layers.len()
                );
            }
            return Ok(Self {
                manifest: blob,
                config,
                layers,
            });
        }
    }
}

const LAYOUT_VERSION: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

fn first_manifest(index: &Value) -> Option<Value> {
    index["manifests"].as_array()?.first().cloned()
}

fn pick_platform(index: &Value) -> Result<Value> {
    index["manifests"]
        .as_array()
        .and_then(|ms| {
            ms.iter()
                .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch())
        })
        .cloned()
        .with_context(|| format!("the base image has no linux/{} variant", arch()))
}

/// Reads the blob `desc` names and checks its size and digest.
fn read_blob(dir: &Path, desc: &Value) -> Result<Blob> {
    let digest = desc["digest"]
        .as_str()
        .context("descriptor without digest")?;
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("unsupported digest {digest:?}"))?;
    let bytes = read_file(&dir.join("blobs/sha256").join(hex))?;
    if desc["size"].as_u64() != Some(bytes.len() as u64) {
        bail!(
            "blob {digest}: descriptor size {} but {} bytes",
            desc["size"],
            bytes.len()
        );
    }
    let blob = Blob {
        media_type: desc["mediaType"].as_str().unwrap_or_default().to_owned(),
        digest: digest.to_owned(),
        bytes,
    };
    if self::digest(&blob.bytes) != digest {
        bail!("blob {digest} does not match its digest");
    }
    Ok(blob)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The OCI name of this machine's architecture.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Gzip with a fixed header (no name, mtime 0), so it is deterministic.
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(content: &[u8]) -> Result<Tree> {
        let mut t = Tree::default();
        t.file("/usr/local/bin/d", 0o755, content.to_vec())?;
        t.dir("/tmp", 0o1777, 0)?;
        Ok(t)
    }

    fn spec() -> Spec {
        Spec {
            entrypoint: vec!["/usr/local/bin/d".into()],
            cmd: None,
            env: vec!["A=1".into()],
            ports: vec![8080],
            user: Some("65532:65532".into()),
            labels: BTreeMap::from([("org.opencontainers.image.revision".into(), "abc".into())]),
            created: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn same_inputs_same_digest_and_layout_verifies() -> Result<()> {
        let a = Image::assemble(&spec(), &tree(b"bin")?, None)?;
        let b = Image::assemble(&spec(), &tree(b"bin")?, None)?;
        assert_eq!(a.manifest.digest, b.manifest.digest);
        let c = Image::assemble(&spec(), &tree(b"bin2")?, None)?;
        assert_ne!(a.manifest.digest, c.manifest.digest);

        let dir = std::env::temp_dir().join(format!("xtask-oci-{}", std::process::id()));
        a.write_layout(&dir, "t")?;
        let back = Image::read_layout(&dir)?;
        assert_eq!(back.manifest.digest, a.manifest.digest);
        let config: Value = serde_json::from_slice(&back.config.bytes)?;
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            json!(digest(&tree(b"bin")?.to_tar()?))
        );

        // A layer changed on disk is caught.
        let layer = dir.join("blobs/sha256").join(a.layers[0].hex());
        let mut bytes = std::fs::read(&layer)?;
        bytes[20] ^= 1;
        std::fs::write(&layer, bytes)?;
        let err = Image::read_layout(&dir).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("does not match")));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn layering_on_a_base_keeps_its_layers_and_wraps_its_entrypoint() -> Result<()> {
        let base_spec = Spec {
            entrypoint: vec!["/srv/mcp-server".into()],
            env: vec!["PATH=/usr/bin".into(), "A=0".into()],
            user: Some("1001".into()),
            ..spec()
        };
        let base = Image::assemble(&base_spec, &tree(b"third-party")?, None)?;
        let ours = Spec {
            user: None,
            ports: Vec::new(),
            ..spec()
        };
        let img = Image::assemble(&ours, &tree(b"ours")?, Some(&base))?;
        assert_eq!(img.layers.len(), 2);
        assert_eq!(img.layers[0].digest, base.layers[0].digest);
        let config: Value = serde_json::from_slice(&img.config.bytes)?;
        let inner = &config["config"];
        assert_eq!(
            inner["Entrypoint"],
            json!(["/usr/local/bin/d", "/srv/mcp-server"])
        );
        assert_eq!(inner["User"], "1001");
        assert_eq!(inner["Env"], json!(["PATH=/usr/bin", "A=1"]));
        assert!(inner["Cmd"].is_null(), "the base's Cmd kept (none)");
        let with_cmd = Spec {
            cmd: Some(vec!["--stdio".into()]),
            ..ours
        };
        let img = Image::assemble(&with_cmd, &tree(b"ours")?, Some(&base))?;
        let config: Value = serde_json::from_slice(&img.config.bytes)?;
        assert_eq!(config["config"]["Cmd"], json!(["--stdio"]));
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(config["history"].as_array().map(Vec::len), Some(2));
        Ok(())
    }
}
