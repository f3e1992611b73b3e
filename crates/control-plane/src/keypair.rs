//! Keypair bootstrap (wire.md §3): the token-exchange key lives in the Secret
//! `ambient-cp-token-keypair` of the control plane's namespace. Created if
//! absent; on an AlreadyExists race the winner is re-read and used, so every
//! replica ends up with the same key.

use std::collections::BTreeMap;

use ambient_protocol::keys::{KeyError, PrivateKey};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::names;

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
}

/// Loads the keypair, creating it when absent (race-safe).
pub async fn bootstrap(client: Client, namespace: &str) -> Result<PrivateKey, KeypairError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let kube_err = |source| KeypairError::Kube {
        namespace: namespace.into(),
        name: names::KEYPAIR_SECRET,
        source,
    };
    for _ in 0..3 {
        if let Some(secret) = api.get_opt(names::KEYPAIR_SECRET).await.map_err(kube_err)? {
            return parse(&secret).map_err(|source| KeypairError::BadKey {
                namespace: namespace.into(),
                name: names::KEYPAIR_SECRET,
                source,
            });
        }
        let key = tokio::task::spawn_blocking(PrivateKey::generate)
            .await
            .map_err(|e| KeypairError::Generate(e.to_string()))?
            .map_err(|e| KeypairError::Generate(e.to_string()))?;
        let secret =
            secret_for(&key, namespace).map_err(|e| KeypairError::Generate(e.to_string()))?;
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(
                    namespace,
                    secret = names::KEYPAIR_SECRET,
                    "created the token-exchange keypair"
                );
                return Ok(key);
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
