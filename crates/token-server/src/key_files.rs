//! Key files of the standalone binary (not part of the library): the
//! exchange's RSA-4096 decryption keys and the RSA-2048 session-token
//! signing keys, read from PEM files and created on request.

use std::io::Write as _;
use std::path::Path;

use ambient_protocol::Secret;
use ambient_protocol::exchange::v3::RootKey;
use ambient_protocol::keys::PrivateKey;
use ambient_session_gateway::token::{KeyRing, SigningKey};
use anyhow::{Context, Result, bail};

/// Reads an exchange key (`--key-file`).
pub fn load_exchange_key(path: &Path) -> Result<PrivateKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading --key-file {}", path.display()))?;
    PrivateKey::from_pem(&pem).with_context(|| format!("--key-file {}", path.display()))
}

/// The signing key ring of `--signing-key-file`s: the first signs, a second
/// is published in the JWKS without signing (the key being rotated in, or
/// the one just rotated out). More are refused.
pub fn load_signing_ring(paths: &[impl AsRef<Path>]) -> Result<KeyRing> {
    let load = |path: &Path| -> Result<SigningKey> {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading --signing-key-file {}", path.display()))?;
        SigningKey::from_pem(&pem).with_context(|| format!("--signing-key-file {}", path.display()))
    };
    match paths {
        [] => bail!(
            "--signing-key-file is required for session tokens (add --generate-signing-key to create it)"
        ),
        [current] => Ok(KeyRing::new(load(current.as_ref())?)),
        [current, published] => {
            Ok(KeyRing::new(load(current.as_ref())?).with_next(load(published.as_ref())?))
        }
        _ => bail!("at most two --signing-key-file: the one that signs, then one only published"),
    }
}

/// Reads an exchange v3 root key (`--session-root-key-file`: base64).
pub fn load_session_root_key(path: &Path) -> Result<RootKey> {
    let text = Secret::from_file(path)
        .with_context(|| format!("reading --session-root-key-file {}", path.display()))?;
    RootKey::from_base64(text.expose()).with_context(|| {
        format!(
            "--session-root-key-file {}: not the base64 of 32 bytes",
            path.display()
        )
    })
}

/// Creates `path` (mode 0600) with a fresh v3 root key if it does not exist.
pub fn generate_session_root_key(path: &Path) -> Result<()> {
    generate_if_absent(path, "exchange v3 root key", || {
        let key = RootKey::generate().context("generating a root key")?;
        Ok(format!("{}\n", key.to_base64().expose()))
    })
}

/// An installation ID the v3 derivation accepts (the rule of a `kid`).
pub fn is_installation_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// True when a key file can be read by group or others.
pub fn too_open(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

/// Creates `path` (mode 0600) with a fresh exchange key if it does not exist.
pub fn generate_exchange_key(path: &Path) -> Result<()> {
    generate_if_absent(path, "RSA-4096 key", || {
        let key = PrivateKey::generate().context("generating an RSA-4096 key")?;
        Ok(key.to_pkcs1_pem()?)
    })
}

/// Creates `path` (mode 0600) with a fresh signing key if it does not exist.
pub fn generate_signing_key(path: &Path) -> Result<()> {
    generate_if_absent(path, "RSA-2048 session-token signing key", || {
        let key = SigningKey::generate().context("generating an RSA-2048 signing key")?;
        Ok(key.to_pem()?)
    })
}

fn generate_if_absent(
    path: &Path,
    what: &str,
    make: impl FnOnce() -> Result<String>,
) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let pem = make()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(pem.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("generated a new {what} in {}", path.display());
            Ok(())
        }
        // Someone else created it meanwhile: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}
