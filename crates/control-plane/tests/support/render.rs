//! `ambient-control-plane render` over the real binary, and what it prints
//! read back as Kubernetes objects.

use std::path::Path;
use std::process::{Command, Output};

use serde::Deserialize as _;
use serde_json::Value;

/// Writes `content` to `dir/name`; its path.
pub fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

/// A fresh token-exchange public key in `dir/k.pem`; its path.
pub fn public_key_file(dir: &Path) -> String {
    let key = ambient_protocol::keys::PrivateKey::generate().unwrap_or_else(|e| panic!("{e}"));
    write(dir, "k.pem", &key.public_key().to_pem())
}

/// Runs `render ARGS` with only `envs` in its environment.
pub fn render(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ambient-control-plane"))
        .env_clear()
        .arg("render")
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The documents of a multi-document YAML stream.
pub fn yaml_docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// The `kind` of each document, in order.
pub fn kinds(docs: &[Value]) -> Vec<&str> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap_or(""))
        .collect()
}
