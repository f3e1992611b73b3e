//! Session phases (wire.md §1).

use std::fmt;

/// The phase of a session. An empty phase on the wire is [`Phase::Pending`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Pending,
    Creating,
    Running,
    Stopping,
    Stopped,
    Completed,
    Failed,
}

/// A phase string that is none of the seven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown phase {0:?} (expected one of Pending, Creating, Running, Stopping, Stopped, Completed, Failed)"
)]
pub struct UnknownPhase(pub String);

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::Creating,
        Phase::Running,
        Phase::Stopping,
        Phase::Stopped,
        Phase::Completed,
        Phase::Failed,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Creating => "Creating",
            Phase::Running => "Running",
            Phase::Stopping => "Stopping",
            Phase::Stopped => "Stopped",
            Phase::Completed => "Completed",
            Phase::Failed => "Failed",
        }
    }

    /// Parses one of the seven strings exactly (case-sensitive).
    pub fn parse(s: &str) -> Result<Phase, UnknownPhase> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPhase(s.to_owned()))
    }

    /// The phase of a session as stored: absent or empty means `Pending`.
    pub fn of_session(phase: Option<&str>) -> Result<Phase, UnknownPhase> {
        match phase {
            None | Some("") => Ok(Phase::Pending),
            Some(s) => Phase::parse(s),
        }
    }

    /// `Stopped`, `Completed` and `Failed` are terminal.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Stopped | Phase::Completed | Phase::Failed)
    }

    /// A live session may hold a token: empty, `Pending`, `Creating`, `Running`.
    pub fn is_live(self) -> bool {
        matches!(self, Phase::Pending | Phase::Creating | Phase::Running)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Phase {
    type Err = UnknownPhase;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_classifies() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Ok(p));
            assert!(!(p.is_live() && p.is_terminal()));
        }
        assert_eq!(Phase::of_session(None), Ok(Phase::Pending));
        assert_eq!(Phase::of_session(Some("")), Ok(Phase::Pending));
        assert!(Phase::parse("running").is_err());
        assert!(Phase::parse("Unknown").is_err());
        assert!(Phase::Stopped.is_terminal() && Phase::Completed.is_terminal());
        assert!(!Phase::Stopping.is_live() && !Phase::Stopping.is_terminal());
    }
}
