//! The API token: from the control plane's token exchange (refreshed in the
//! background, hot-swapped for every later call) or the static
//! `AMBIENT_TOKEN` (wire.md §5).

use ambient_protocol::Secret;
use ambient_protocol::exchanger::{ExchangeError, TokenExchanger};

/// Hands out the current API token.
#[derive(Debug, Clone)]
pub enum Credentials {
    Exchange(TokenExchanger),
    Static(Secret),
}

impl Credentials {
    /// A usable token (the exchanger fetches one if the last was rejected
    /// or has expired).
    pub async fn token(&self) -> Result<Secret, ExchangeError> {
        match self {
            Credentials::Exchange(x) => x.token().await,
            Credentials::Static(t) => Ok(t.clone()),
        }
    }

    /// The API answered 401 to `token`: true when a retry may help (a new
    /// token will be fetched); a static token cannot change.
    pub fn rejected(&self) -> bool {
        match self {
            Credentials::Exchange(x) => {
                x.invalidate();
                true
            }
            Credentials::Static(_) => false,
        }
    }
}
