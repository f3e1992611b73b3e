//! Keypair bootstrap (wire.md §3): the token-exchange key and the session
//! tokens' signing keys live in the Secret `ambient-cp-token-keypair` of the
//! control plane's namespace. Created if absent; on an AlreadyExists race
//! the winner is re-read and used, so every replica ends up with the same
//! keys. A Secret written before session tokens existed gets its signing
//! keys added in place (a conditional update: a concurrent writer wins and
//! is re-read). The exchange-v3 root keys ([`roots`]) are added the same
//! way. [`rotation`] rotates the signing keys and the roots.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ambient_protocol::Secret as SecretValue;
use ambient_protocol::keys::{KeyError, PrivateKey};
use ambient_session_gateway::token::{KeyRing, SigningKey, StoreError};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::names;

pub mod roots;
pub mod rotation;

use roots::{RootRing, RootsError};

/// The keypair could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeypairError {
    #[error("cannot read or create Secret {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: &'static str,
        source: kube::Error,
    },
    #[error("Secret {namespace}/{name} has no usable private.pem: {source}")]
    BadKey {
        namespace: String,
        name: &'static str,
        source: KeyError,
    },
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("Secret {0} keeps changing under us; giving up")]
    Race(&'static str),
    #[error("Secret {namespace}/{name} holds unusable session signing keys: {source}")]
    BadSigningKeys {
        namespace: String,
        name: &'static str,
        source: StoreError,
    },
    #[error("Secret {namespace}/{name} holds unusable exchange-v3 root keys: {source}")]
    BadRoots {
        namespace: String,
        name: &'static str,
        source: RootsError,
    },
}

/// The keys of the keypair Secret.
#[derive(Debug)]
pub struct Keys {
    /// The token-exchange key (RSA-4096).
    pub exchange: PrivateKey,
    /// The session tokens' signing keys (RSA-2048).
    pub signing: KeyRing,
    /// The exchange-v3 root keys.
    pub roots: RootRing,
}

impl Keys {
    /// Fresh keys of every kind (test mode: nothing is stored).
    pub fn generate() -> Result<Keys, KeypairError> {
        Ok(Keys {
            exchange: PrivateKey::generate().map_err(|e| KeypairError::Generate(e.to_string()))?,
            signing: generate_signing()?,
            roots: generate_roots()?,
        })
    }
}

fn generate_roots() -> Result<RootRing, KeypairError> {
    RootRing::generate().map_err(|e| KeypairError::Generate(e.to_string()))
}

/// The data of `secret` as redacting values.
fn data_of(secret: &Secret) -> BTreeMap<String, SecretValue> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                SecretValue::new(String::from_utf8_lossy(&v.0).into_owned()),
            )
        })
        .collect()
}

/// The root ring stored in `secret`; `None` when it holds none yet.
pub fn roots_of(secret: &Secret) -> Result<Option<RootRing>, RootsError> {
    RootRing::from_data(&data_of(secret), SystemTime::now())
}

/// `secret`'s data with `roots` written into it (other keys kept).
pub fn with_roots(mut secret: Secret, roots: &RootRing) -> Secret {
    roots.write_into(secret.data.get_or_insert_default());
    secret
}

fn generate_signing() -> Result<KeyRing, KeypairError> {
    SigningKey::generate()
        .map(KeyRing::new)
        .map_err(|e| KeypairError::Generate(e.to_string()))
}

/// The signing ring stored in `secret`; `None` when it holds none yet.
fn signing_of(secret: &Secret) -> Result<Option<KeyRing>, StoreError> {
    match KeyRing::from_secret_data(&data_of(secret), SystemTime::now()) {
        Ok(ring) => Ok(Some(ring)),
        Err(StoreError::NoIndex) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `secret`'s data with `ring` written into it (other keys kept).
pub fn with_signing(mut secret: Secret, ring: &KeyRing) -> Result<Secret, KeyError> {
    let data = secret.data.get_or_insert_default();
    data.retain(|k, _| !k.starts_with("session-signing"));
    for (k, v) in ring.to_secret_data()? {
        data.insert(k, ByteString(v.expose().as_bytes().to_vec()));
    }
    Ok(secret)
}

/// Loads the keys, creating them when absent (race-safe).
pub async fn bootstrap(client: Client, namespace: &str) -> Result<Keys, KeypairError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let kube_err = |source| KeypairError::Kube {
        namespace: namespace.into(),
        name: names::KEYPAIR_SECRET,
        source,
    };
    let bad_signing = |source| KeypairError::BadSigningKeys {
        namespace: namespace.into(),
        name: names::KEYPAIR_SECRET,
        source,
    };
    let bad_roots = |source| KeypairError::BadRoots {
        namespace: namespace.into(),
        name: names::KEYPAIR_SECRET,
        source,
    };
    for _ in 0..3 {
        if let Some(secret) = api.get_opt(names::KEYPAIR_SECRET).await.map_err(kube_err)? {
            let exchange = parse(&secret).map_err(|source| KeypairError::BadKey {
                namespace: namespace.into(),
                name: names::KEYPAIR_SECRET,
                source,
            })?;
            let signing = signing_of(&secret).map_err(bad_signing)?;
            let roots = roots_of(&secret).map_err(bad_roots)?;
            if let (Some(signing), Some(roots)) = (&signing, &roots) {
                return Ok(Keys {
                    exchange,
                    signing: signing.clone(),
                    roots: roots.clone(),
                });
            }
            // Written before session tokens or exchange v3: add what is
            // missing, unless another replica does first (the update is
            // conditional on the version read).
            let (added_signing, added_roots) = (signing.is_none(), roots.is_none());
            let (signing, roots) = tokio::task::spawn_blocking(move || {
                let signing = match signing {
                    Some(s) => s,
                    None => generate_signing()?,
                };
                let roots = match roots {
                    Some(r) => r,
                    None => generate_roots()?,
                };
                Ok::<_, KeypairError>((signing, roots))
            })
            .await
            .map_err(|e| KeypairError::Generate(e.to_string()))??;
            let updated = with_signing(secret, &signing)
                .map(|s| with_roots(s, &roots))
                .map_err(|e| KeypairError::Generate(e.to_string()))?;
            match api
                .replace(names::KEYPAIR_SECRET, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => {
                    tracing::info!(
                        namespace,
                        added_signing,
                        added_roots,
                        "added keys to the keypair Secret"
                    );
                    return Ok(Keys {
                        exchange,
                        signing,
                        roots,
                    });
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    tracing::info!(
                        "another replica changed the keypair Secret first; re-reading it"
                    );
                    continue;
                }
                Err(e) => return Err(kube_err(e)),
            }
        }
        let (key, signing, roots) = tokio::task::spawn_blocking(|| {
            let key = PrivateKey::generate().map_err(|e| KeypairError::Generate(e.to_string()))?;
            Ok::<_, KeypairError>((key, generate_signing()?, generate_roots()?))
        })
        .await
        .map_err(|e| KeypairError::Generate(e.to_string()))??;
        let secret = secret_for(&key, namespace)
            .and_then(|s| with_signing(s, &signing))
            .map(|s| with_roots(s, &roots))
            .map_err(|e| KeypairError::Generate(e.to_string()))?;
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(
                    namespace,
                    secret = names::KEYPAIR_SECRET,
                    "created the token-exchange keypair and the session-token signing keys"
                );
                return Ok(Keys {
                    exchange: key,
                    signing,
                    roots,
                });
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::info!("another replica created the keypair first; using theirs");
            }
            Err(e) => return Err(kube_err(e)),
        }
    }
    Err(KeypairError::Race(names::KEYPAIR_SECRET))
}

fn parse(secret: &Secret) -> Result<PrivateKey, KeyError> {
    let pem = secret
        .data
        .as_ref()
        .and_then(|d| d.get("private.pem"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .ok_or(KeyError::NoPem {
            expected: "data key private.pem",
        })?;
    PrivateKey::from_pem(&pem)
}

/// The Secret holding `key` (PKCS#1 private, SPKI public).
pub fn secret_for(key: &PrivateKey, namespace: &str) -> Result<Secret, KeyError> {
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(names::KEYPAIR_SECRET.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([
                ("app".to_owned(), "ambient-control-plane".to_owned()),
                (
                    names::LABEL_MANAGED_BY.to_owned(),
                    names::MANAGED_BY.to_owned(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (
                "private.pem".to_owned(),
                ByteString(key.to_pkcs1_pem()?.into_bytes()),
            ),
            (
                "public.pem".to_owned(),
                ByteString(key.public_key().to_pem().into_bytes()),
            ),
        ])),
        ..Secret::default()
    })
}
