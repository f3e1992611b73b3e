//! Rotation: fetch the credential again (with the exchanger's current API
//! token), map it, and tell what changed against what the child has.

use ambient_protocol::TokenExchanger;
use ambient_protocol::provider::Provider;

use crate::fetch::{CredentialSource, FetchError};
use crate::files::{self, WriteError};
use crate::mapping::{self, Delivery, MappingError, Paths};

/// Fetching and mapping one credential, at start and on every refresh.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub source: CredentialSource,
    pub exchanger: TokenExchanger,
    pub provider: Provider,
    pub paths: Paths,
}

/// A fetch that produced nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("credential fetch failed: {0}")]
    Fetch(#[from] FetchError),
    #[error("unusable credential: {0}")]
    Mapping(#[from] MappingError),
    #[error("refresh task failed: {0}")]
    Panicked(String),
}

/// What a fresh delivery changes for the running child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Some file content differs (rewritten in place).
    pub files: bool,
    /// The environment differs (the child must restart to see it).
    pub env: bool,
}

impl Rotation {
    /// Fetches and maps the credential.
    pub async fn fetch(&self) -> Result<Delivery, RefreshError> {
        let cred = self.source.fetch(&self.exchanger).await?;
        Ok(mapping::map(self.provider, &cred, &self.paths)?)
    }
}

/// What `next` changes against `current`.
pub fn diff(current: &Delivery, next: &Delivery) -> Change {
    Change {
        files: !current.changed_files(next).is_empty(),
        env: current.env_differs(next),
    }
}

/// Writes the files of `next` that differ from `current` (all of them when
/// `current` is `None`), each atomically with mode 0600; the private
/// directory is created first when a file lives in it.
pub fn write_files(
    paths: &Paths,
    current: Option<&Delivery>,
    next: &Delivery,
) -> Result<(), WriteError> {
    let empty = Delivery::default();
    let changed = current.unwrap_or(&empty).changed_files(next);
    if changed
        .iter()
        .any(|(path, _)| path.starts_with(&paths.private_dir))
    {
        files::private_dir(&paths.private_dir)?;
    }
    for (path, content) in changed {
        files::write_atomic(path, content.expose().as_bytes())?;
    }
    Ok(())
}

/// Shortest time between two refreshes asked for on demand (SIGHUP,
/// `POST /refresh`).
pub const ON_DEMAND_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

/// The on-demand refresh limit: at most one per window.
#[derive(Debug, Clone)]
pub struct OnDemand {
    window: std::time::Duration,
    last: Option<tokio::time::Instant>,
}

impl OnDemand {
    pub fn new(window: std::time::Duration) -> Self {
        Self { window, last: None }
    }

    /// Admits a refresh at `now` (and counts it), or says how long until
    /// the next one may run.
    pub fn admit(&mut self, now: tokio::time::Instant) -> Result<(), std::time::Duration> {
        if let Some(last) = self.last {
            let next = last + self.window;
            if now < next {
                return Err(next - now);
            }
        }
        self.last = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_on_demand_refresh_per_window() {
        let mut gate = OnDemand::new(Duration::from_secs(30));
        let t0 = tokio::time::Instant::now();
        assert_eq!(gate.admit(t0), Ok(()));
        assert_eq!(
            gate.admit(t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(20))
        );
        // A refused ask does not move the window.
        assert_eq!(
            gate.admit(t0 + Duration::from_secs(29)),
            Err(Duration::from_secs(1))
        );
        assert_eq!(gate.admit(t0 + Duration::from_secs(30)), Ok(()));
        assert!(gate.admit(t0 + Duration::from_secs(31)).is_err());
    }
}
