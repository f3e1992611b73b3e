//! Rotation of the session tokens' signing keys (issue 25): one step every
//! half period, by the leader only (the single process in the process
//! runtime). A step publishes a fresh *next* key when there is none, else
//! makes the next key current and retires the old current key until every
//! token it signed has expired; expired retired keys are dropped. A key is
//! thus published for half a period before it signs.
//!
//! The keys live in the keypair Secret (conditional writes: on a conflict
//! the Secret is re-read and the step redone) or, in the process runtime,
//! in the state directory. Every replica re-reads the Secret periodically
//! and signs and verifies with what it holds; a Secret that cannot be read
//! or parsed keeps the last good keys.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ambient_session_gateway::{KeyRing, SessionTokens, SigningKey};
use anyhow::Context as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};

use super::{signing_of, with_signing};
use crate::names;
use crate::runtime::process::ProcessRuntime;

/// What one rotation step did (kids are public).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A new key is published as next.
    Published { next: String },
    /// The next key signs now; the old current key is retired.
    Promoted { current: String, retired: String },
}

/// One rotation step on `ring` at `now`; `fresh` is the key published when
/// the ring has no next key (`None` then: nothing done). Returns the step
/// and how many expired retired keys were dropped.
pub fn step(
    ring: &mut KeyRing,
    now: SystemTime,
    fresh: Option<SigningKey>,
) -> Option<(Step, usize)> {
    let step = if ring.next().is_some() {
        let retired = ring.current().kid().to_owned();
        ring.promote_next(now);
        Step::Promoted {
            current: ring.current().kid().to_owned(),
            retired,
        }
    } else {
        let key = fresh?;
        let next = key.kid().to_owned();
        ring.set_next(key);
        Step::Published { next }
    };
    Some((step, ring.retire_expired(now)))
}

/// Where the signing keys are kept.
#[derive(Clone)]
pub enum KeyStore {
    /// The keypair Secret of the control plane's namespace.
    Secret(Box<Api<Secret>>),
    /// The process runtime's state directory.
    Files(ProcessRuntime),
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyStore::Secret(_) => "KeyStore::Secret",
            KeyStore::Files(_) => "KeyStore::Files",
        })
    }
}

/// The keys read, and the Secret they came from (its resourceVersion makes
/// the write back conditional).
struct Loaded {
    ring: KeyRing,
    secret: Option<Secret>,
}

enum SaveError {
    Conflict,
    Failed(anyhow::Error),
}

impl KeyStore {
    /// The keypair Secret in `namespace`.
    pub fn secret(client: kube::Client, namespace: &str) -> KeyStore {
        KeyStore::Secret(Box::new(Api::namespaced(client, namespace)))
    }

    async fn load(&self) -> anyhow::Result<Loaded> {
        match self {
            KeyStore::Secret(api) => {
                let secret = api
                    .get(names::KEYPAIR_SECRET)
                    .await
                    .with_context(|| format!("cannot read Secret {}", names::KEYPAIR_SECRET))?;
                let ring = signing_of(&secret)
                    .with_context(|| format!("Secret {}", names::KEYPAIR_SECRET))?
                    .with_context(|| {
                        format!("Secret {} holds no signing keys", names::KEYPAIR_SECRET)
                    })?;
                Ok(Loaded {
                    ring,
                    secret: Some(secret),
                })
            }
            KeyStore::Files(local) => Ok(Loaded {
                ring: local
                    .signing_keys()?
                    .context("the state directory holds no signing keys")?,
                secret: None,
            }),
        }
    }

    async fn save(&self, loaded: Loaded, ring: &KeyRing) -> Result<(), SaveError> {
        match (self, loaded.secret) {
            (KeyStore::Secret(api), Some(secret)) => {
                let updated = with_signing(secret, ring)
                    .map_err(|e| SaveError::Failed(anyhow::anyhow!("cannot encode keys: {e}")))?;
                match api
                    .replace(names::KEYPAIR_SECRET, &PostParams::default(), &updated)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Err(SaveError::Conflict),
                    Err(e) => Err(SaveError::Failed(
                        anyhow::Error::new(e)
                            .context(format!("cannot update Secret {}", names::KEYPAIR_SECRET)),
                    )),
                }
            }
            (KeyStore::Secret(_), None) => Err(SaveError::Failed(anyhow::anyhow!(
                "no Secret was read before writing it"
            ))),
            (KeyStore::Files(local), _) => local.save_signing_keys(ring).map_err(SaveError::Failed),
        }
    }
}

/// Makes `tokens` sign and verify with `ring`; `true` when that changed
/// the published keys.
fn apply(tokens: &SessionTokens, ring: KeyRing) -> bool {
    if tokens.jwks() == ring.jwks() {
        return false;
    }
    let current = ring.current().kid().to_owned();
    let next = ring.next().map(|k| k.kid().to_owned());
    tokens.update_ring(|r| *r = ring);
    tracing::info!(current, next, "session signing keys changed");
    true
}

/// One rotation step, written back (re-read and redone on a conflict)
/// and applied to `tokens`.
pub async fn rotate_once(
    store: &KeyStore,
    tokens: &SessionTokens,
) -> anyhow::Result<(Step, usize)> {
    for _ in 0..5 {
        let loaded = store.load().await?;
        let mut ring = loaded.ring.clone();
        let fresh = match ring.next() {
            Some(_) => None,
            None => Some(
                tokio::task::spawn_blocking(SigningKey::generate)
                    .await
                    .context("key generation")?
                    .context("key generation")?,
            ),
        };
        let done = step(&mut ring, SystemTime::now(), fresh).context("no key to publish")?;
        match store.save(loaded, &ring).await {
            Ok(()) => {
                apply(tokens, ring);
                return Ok(done);
            }
            Err(SaveError::Conflict) => {
                tracing::info!("the keypair Secret changed under the rotation; re-reading it");
            }
            Err(SaveError::Failed(e)) => return Err(e),
        }
    }
    anyhow::bail!("the signing keys keep changing under the rotation")
}

/// Rotates every half `period`, forever (the leader's task).
pub async fn rotate(store: KeyStore, period: Duration, tokens: Arc<SessionTokens>) {
    let half = period / 2;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match rotate_once(&store, &tokens).await {
            Ok((Step::Published { next }, dropped)) => {
                tracing::info!(next, dropped, "published the next session signing key");
            }
            Ok((Step::Promoted { current, retired }, dropped)) => {
                tracing::info!(current, retired, dropped, "rotated the session signing key");
            }
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "session signing key rotation failed; next try in half a period"
            ),
        }
    }
}

/// Re-reads the keys every `every` and applies them to `tokens`, forever
/// (every replica's task); unreadable keys keep the last good ones.
pub async fn reload(store: KeyStore, every: Duration, tokens: Arc<SessionTokens>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.load().await {
            Ok(loaded) => {
                let mut ring = loaded.ring;
                ring.retire_expired(SystemTime::now());
                apply(&tokens, ring);
            }
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "cannot read the session signing keys; keeping the last good ones"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambient_session_gateway::token::{LEEWAY, MAX_LIFETIME};

    fn key() -> SigningKey {
        SigningKey::generate().unwrap_or_else(|e| panic!("keygen: {e}"))
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn without_a_next_key_a_step_publishes_one() {
        let k0 = key();
        let k1 = key();
        let mut ring = KeyRing::new(k0.clone());
        assert_eq!(step(&mut ring, t0(), None), None, "no key to publish");
        let done = step(&mut ring, t0(), Some(k1.clone()));
        assert_eq!(
            done,
            Some((
                Step::Published {
                    next: k1.kid().to_owned()
                },
                0
            ))
        );
        assert_eq!(
            ring.current().kid(),
            k0.kid(),
            "the next key does not sign yet"
        );
        assert_eq!(ring.next().map(SigningKey::kid), Some(k1.kid()));
        assert!(ring.jwks().contains(k1.kid()), "the next key is published");
    }

    #[test]
    fn with_a_next_key_a_step_promotes_it_and_retires_the_old_until_its_tokens_expire() {
        let (k0, k1) = (key(), key());
        let mut ring = KeyRing::new(k0.clone()).with_next(k1.clone());
        let now = t0() + Duration::from_secs(3600);
        let done = step(&mut ring, now, Some(key()));
        assert_eq!(
            done,
            Some((
                Step::Promoted {
                    current: k1.kid().to_owned(),
                    retired: k0.kid().to_owned()
                },
                0
            ))
        );
        assert_eq!(ring.current().kid(), k1.kid());
        assert!(
            ring.next().is_none(),
            "the fresh key is not used on a promotion"
        );
        let retired = ring.retired();
        assert_eq!(retired.len(), 1);
        assert_eq!(retired[0].key.kid(), k0.kid());
        assert!(
            retired[0].until >= now + MAX_LIFETIME + LEEWAY,
            "retired too early"
        );
        assert!(
            retired[0].until <= now + MAX_LIFETIME + LEEWAY + Duration::from_secs(2),
            "retired too late"
        );
    }

    #[test]
    fn a_step_drops_the_retired_keys_whose_tokens_have_expired() {
        let (k0, k1, k2) = (key(), key(), key());
        let gone = key();
        let mut ring = KeyRing::new(k0.clone())
            .with_next(k1.clone())
            .with_retired(gone.verifying_key().clone(), t0())
            .with_retired(k2.verifying_key().clone(), t0() + Duration::from_secs(60));
        let done = step(&mut ring, t0() + Duration::from_secs(1), None);
        assert!(matches!(done, Some((Step::Promoted { .. }, 1))), "{done:?}");
        let kids: Vec<_> = ring
            .retired()
            .iter()
            .map(|r| r.key.kid().to_owned())
            .collect();
        assert_eq!(kids, [k2.kid(), k0.kid()]);
        assert!(
            ring.find(gone.kid()).is_none(),
            "an expired key is still published"
        );
    }

    #[test]
    fn applying_the_same_keys_changes_nothing_and_new_keys_sign_at_once() {
        let (k0, k1) = (key(), key());
        let ring = KeyRing::new(k0.clone());
        let tokens = SessionTokens::new(ring.clone(), Duration::from_secs(600))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!apply(&tokens, ring.clone()));
        let mut rotated = ring.with_next(k1.clone());
        assert!(apply(&tokens, rotated.clone()));
        assert_eq!(tokens.ring().current().kid(), k0.kid());
        rotated.promote_next(SystemTime::now());
        assert!(apply(&tokens, rotated));
        assert_eq!(tokens.ring().current().kid(), k1.kid());
        assert!(
            tokens.ring().find(k0.kid()).is_some(),
            "the old key verifies"
        );
    }
}
