//! Rotation of the session tokens' signing keys (issue 25) and of the
//! exchange-v3 root keys ([`super::roots`], issue 26), together: one step every
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
//!
//! A root step mirrors a signing step: a new root is published (every
//! replica verifies with it) half a period before it derives; when it
//! does, the leader rewrites every live session's key file with it while
//! the previous root still verifies ([`super::roots::RETIRED_FOR`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ambient_session_gateway::{KeyRing, SessionTokens, SigningKey};
use anyhow::Context as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};

use super::roots::{RootRing, RootStep};
use super::{roots_of, signing_of, with_roots, with_signing};
use crate::names;
use crate::runtime::SessionRuntime;
use crate::runtime::process::ProcessRuntime;
use crate::session_keys::V3Roots;

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
    roots: RootRing,
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
                let roots = roots_of(&secret)
                    .with_context(|| format!("Secret {}", names::KEYPAIR_SECRET))?
                    .with_context(|| {
                        format!("Secret {} holds no root keys", names::KEYPAIR_SECRET)
                    })?;
                Ok(Loaded {
                    ring,
                    roots,
                    secret: Some(secret),
                })
            }
            KeyStore::Files(local) => Ok(Loaded {
                ring: local
                    .signing_keys()?
                    .context("the state directory holds no signing keys")?,
                roots: local
                    .session_roots()?
                    .context("the state directory holds no root keys")?,
                secret: None,
            }),
        }
    }

    async fn save(
        &self,
        loaded: Loaded,
        ring: &KeyRing,
        roots: &RootRing,
    ) -> Result<(), SaveError> {
        match (self, loaded.secret) {
            (KeyStore::Secret(api), Some(secret)) => {
                let updated = with_signing(secret, ring)
                    .map(|s| with_roots(s, roots))
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
            (KeyStore::Files(local), _) => local
                .save_signing_keys(ring)
                .and_then(|()| local.save_session_roots(roots))
                .map_err(SaveError::Failed),
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

/// Where the exchange-v3 roots go: the holder the token server verifies
/// with (and key files are derived from), for one installation, and the
/// runtime whose live sessions' key files are rewritten after a promotion.
#[derive(Clone)]
pub struct Roots {
    pub holder: V3Roots,
    pub installation: String,
    pub runtime: Arc<dyn SessionRuntime>,
}

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roots")
            .field("holder", &self.holder)
            .field("installation", &self.installation)
            .finish_non_exhaustive()
    }
}

impl Roots {
    /// Makes the holder verify (and derive) with `ring`.
    fn apply(&self, ring: &RootRing) {
        let Some(keys) = ring.keys(&self.installation) else {
            return;
        };
        let before = self.holder.get();
        let same = |b: &ambient_protocol::exchange::v3::RootKeys| {
            b.roots()
                .iter()
                .map(|k| k.kid())
                .eq(keys.roots().iter().map(|k| k.kid()))
        };
        if before.as_deref().is_some_and(same) {
            return;
        }
        tracing::info!(
            current = keys.current().kid(),
            roots = keys.roots().len(),
            "exchange-v3 root keys changed"
        );
        self.holder.replace(keys);
    }

    /// Rewrites every live session's key file with the current root;
    /// `false` (logged) when some could not be written.
    async fn rewrite(&self) -> bool {
        let Some(keys) = self.holder.get() else {
            return true;
        };
        match self.runtime.rewrite_session_keys(&keys).await {
            Ok(n) => {
                tracing::info!(
                    sessions = n,
                    root = keys.current().kid(),
                    "rewrote the session key files"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot rewrite every session key file; retrying");
                false
            }
        }
    }
}

/// The key-file rewrites the leader still owes (exchange v3). A promotion
/// owes two passes: the second catches a pod provisioned with the old root
/// while the first listed the pods. A new leader owes one, as it cannot
/// know whether its predecessor finished the passes of its last promotion.
/// A failed pass stays owed and is retried every reload period, well
/// within [`super::roots::RETIRED_FOR`], while the old root verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RewritesOwed(u8);

impl RewritesOwed {
    /// What a new leader owes.
    pub fn on_leading() -> Self {
        Self(1)
    }

    /// After a rotation step: a promotion owes two more passes.
    pub fn after(self, step: Option<&RootStep>) -> Self {
        match step {
            Some(RootStep::Promoted { .. }) => Self(2),
            _ => self,
        }
    }

    pub fn any(self) -> bool {
        self.0 > 0
    }

    /// After a pass that succeeded (`ok`) or not.
    pub fn passed(self, ok: bool) -> Self {
        Self(if ok { self.0.saturating_sub(1) } else { self.0 })
    }
}

/// What one rotation step did to the signing keys and to the roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub signing: Step,
    pub dropped: usize,
    pub roots: Option<RootStep>,
}

/// One rotation step, written back (re-read and redone on a conflict)
/// and applied to `tokens` and `roots` (the key files are the caller's:
/// [`RewritesOwed`]).
pub async fn rotate_once(
    store: &KeyStore,
    tokens: &SessionTokens,
    roots: Option<&Roots>,
) -> anyhow::Result<Done> {
    for _ in 0..5 {
        let loaded = store.load().await?;
        let mut ring = loaded.ring.clone();
        let mut root_ring = loaded.roots.clone();
        let fresh = match ring.next() {
            Some(_) => None,
            None => Some(
                tokio::task::spawn_blocking(SigningKey::generate)
                    .await
                    .context("key generation")?
                    .context("key generation")?,
            ),
        };
        let now = SystemTime::now();
        let (signing, dropped) = step(&mut ring, now, fresh).context("no key to publish")?;
        let fresh_root = match root_ring.next() {
            Some(_) => None,
            None => Some(
                ambient_protocol::exchange::v3::RootKey::generate()
                    .map_err(|e| anyhow::anyhow!("key generation: {e}"))?,
            ),
        };
        let root_step = root_ring.step(now, fresh_root);
        match store.save(loaded, &ring, &root_ring).await {
            Ok(()) => {
                apply(tokens, ring);
                if let Some(roots) = roots {
                    roots.apply(&root_ring);
                }
                return Ok(Done {
                    signing,
                    dropped,
                    roots: root_step,
                });
            }
            Err(SaveError::Conflict) => {
                tracing::info!("the keypair Secret changed under the rotation; re-reading it");
            }
            Err(SaveError::Failed(e)) => return Err(e),
        }
    }
    anyhow::bail!("the signing keys keep changing under the rotation")
}

/// Rotates every half `period`, forever (the leader's task), and rewrites
/// the session key files it owes ([`RewritesOwed`]) at once after a step,
/// then every `retry` until none is owed.
pub async fn rotate(
    store: KeyStore,
    period: Duration,
    retry: Duration,
    tokens: Arc<SessionTokens>,
    roots: Option<Roots>,
) {
    let half = period / 2;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry_tick = tokio::time::interval(retry);
    retry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owed = match roots {
        Some(_) => RewritesOwed::on_leading(),
        None => RewritesOwed::default(),
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(step) = rotate_logged(&store, &tokens, roots.as_ref()).await {
                    owed = owed.after(step.as_ref());
                    // The first pass at once: every replica verifies the
                    // new root already (published half a period ago).
                    retry_tick.reset_immediately();
                }
            }
            _ = retry_tick.tick(), if owed.any() => {
                if let Some(roots) = &roots {
                    owed = owed.passed(rewrite_pass(&store, roots).await);
                }
            }
        }
    }
}

/// A rewrite pass with the roots the store holds now, not this replica's
/// last reload: a new leader's may predate its predecessor's promotion,
/// and would rewrite every key file under the root just retired.
async fn rewrite_pass(store: &KeyStore, roots: &Roots) -> bool {
    match store.load().await {
        Ok(loaded) => {
            let mut ring = loaded.roots;
            ring.retire_expired(SystemTime::now());
            roots.apply(&ring);
            roots.rewrite().await
        }
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot read the root keys before rewriting the session key files; retrying"
            );
            false
        }
    }
}

/// One rotation step, logged; the roots' step when it was written.
async fn rotate_logged(
    store: &KeyStore,
    tokens: &SessionTokens,
    roots: Option<&Roots>,
) -> Option<Option<RootStep>> {
    match rotate_once(store, tokens, roots).await {
        Ok(done) => {
            match done.signing {
                Step::Published { next } => tracing::info!(
                    next,
                    dropped = done.dropped,
                    "published the next session signing key"
                ),
                Step::Promoted { current, retired } => tracing::info!(
                    current,
                    retired,
                    dropped = done.dropped,
                    "rotated the session signing key"
                ),
            }
            match &done.roots {
                Some(RootStep::Published { next }) => {
                    tracing::info!(next, "published the next exchange-v3 root key")
                }
                Some(RootStep::Promoted { current, retired }) => {
                    tracing::info!(current, retired, "rotated the exchange-v3 root key")
                }
                None => {}
            }
            Some(done.roots)
        }
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "session signing key rotation failed; next try in half a period"
            );
            None
        }
    }
}

/// Re-reads the keys every `every` and applies them to `tokens`, forever
/// (every replica's task); unreadable keys keep the last good ones.
pub async fn reload(
    store: KeyStore,
    every: Duration,
    tokens: Arc<SessionTokens>,
    roots: Option<Roots>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.load().await {
            Ok(loaded) => {
                let now = SystemTime::now();
                let mut ring = loaded.ring;
                ring.retire_expired(now);
                apply(&tokens, ring);
                let mut root_ring = loaded.roots;
                root_ring.retire_expired(now);
                if let Some(roots) = &roots {
                    roots.apply(&root_ring);
                }
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

    #[test]
    fn a_promotion_owes_two_passes_a_failed_pass_stays_owed() {
        let promoted = RootStep::Promoted {
            current: "b".into(),
            retired: "a".into(),
        };
        let published = RootStep::Published { next: "c".into() };
        let owed = RewritesOwed::on_leading();
        assert!(owed.any());
        assert!(!owed.passed(true).any());
        assert_eq!(owed.passed(false), owed, "a failed pass is owed still");
        assert_eq!(
            owed.after(Some(&published)),
            owed,
            "publishing owes nothing"
        );
        let owed = RewritesOwed::default().after(Some(&promoted));
        assert!(owed.passed(true).any(), "the second pass");
        assert!(!owed.passed(true).passed(true).any());
        assert!(!RewritesOwed::default().after(None).any());
    }
}
