//! The build state machine (SPEC §2–4).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    /// Stored and queued for the poller; nothing has happened yet.
    Accepted,
    /// Picked up by the poller: sources are being cached and the build triggered.
    Pending,
    /// Waiting in Jenkins' queue.
    Queued,
    /// Running in Jenkins.
    Building,
    Succeeded,
    Failed,
    Stopped,
    TimedOut,
}

/// Why a build is being ended from our side; decides what an `ABORTED` result means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopIntent {
    Stop,
    Timeout,
}

impl BuildState {
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Stopped | Self::TimedOut)
    }

    /// Whether `next` may follow `self`. States only move forward; a terminal state is final.
    pub const fn can_move_to(self, next: Self) -> bool {
        use BuildState::*;
        match (self, next) {
            (Accepted, Pending) => true,
            (Accepted | Pending, Queued) => true,
            (Accepted | Pending | Queued, Building) => true,
            (from, to) => !from.is_terminal() && to.is_terminal(),
        }
    }

    /// `true` exactly while Jenkins is running the build.
    pub const fn building(self) -> bool {
        matches!(self, Self::Building)
    }

    /// The v2 status: `pending | queued | timedout | failed | succeeded` (a stopped build is `failed`).
    pub const fn v2_status(self) -> &'static str {
        match self {
            Self::Accepted | Self::Pending | Self::Building => "pending",
            Self::Queued => "queued",
            Self::Succeeded => "succeeded",
            Self::Failed | Self::Stopped => "failed",
            Self::TimedOut => "timedout",
        }
    }

    /// The legacy status endpoint: `pending | failed | stopped | succeeded`.
    pub const fn legacy_status(self) -> &'static str {
        match self {
            Self::Accepted | Self::Pending | Self::Queued | Self::Building => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed | Self::TimedOut => "failed",
            Self::Stopped => "stopped",
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Building => "building",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::TimedOut => "timed_out",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

pub const ALL: [BuildState; 8] = [
    BuildState::Accepted,
    BuildState::Pending,
    BuildState::Queued,
    BuildState::Building,
    BuildState::Succeeded,
    BuildState::Failed,
    BuildState::Stopped,
    BuildState::TimedOut,
];

#[cfg(test)]
mod tests {
    use super::BuildState::*;
    use super::*;

    #[test]
    fn terminal_states_are_final() {
        for from in ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in ALL {
                assert!(!from.can_move_to(to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn states_only_move_forward() {
        assert!(Accepted.can_move_to(Pending));
        assert!(Pending.can_move_to(Queued));
        assert!(Queued.can_move_to(Building));
        assert!(Building.can_move_to(Succeeded));
        assert!(Accepted.can_move_to(Stopped), "a build stopped before Jenkins ends at once");
        assert!(!Building.can_move_to(Queued));
        assert!(!Queued.can_move_to(Pending));
        assert!(!Pending.can_move_to(Accepted));
    }

    #[test]
    fn statuses_per_api() {
        assert_eq!((Queued.v2_status(), Queued.legacy_status()), ("queued", "pending"));
        assert_eq!((Stopped.v2_status(), Stopped.legacy_status()), ("failed", "stopped"));
        assert_eq!((TimedOut.v2_status(), TimedOut.legacy_status()), ("timedout", "failed"));
        assert!(Building.building() && !Queued.building() && !Succeeded.building());
    }

    #[test]
    fn names_round_trip() {
        for state in ALL {
            assert_eq!(BuildState::parse(state.as_str()), Some(state));
        }
    }
}
