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

/// Who reads a build's status: each has its own mapping of states to statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// A v2 status webhook (HTTP or Kafka), SPEC §2.
    V2Webhook,
    /// `GET /{app_id}/{build_id}/status` of a v2 build.
    V2Endpoint,
    /// A legacy build's `callback`, read by the app controller, SPEC §3.
    LegacyCallback,
    /// `GET /{app}-{app_uuid}/{n}/status`.
    LegacyEndpoint,
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

    /// What `audience` is told of a build in this state (SPEC §2, §3): each reader has its own
    /// vocabulary, and the legacy callback's is the narrowest.
    pub const fn status_for(self, audience: Audience) -> &'static str {
        match audience {
            Audience::V2Webhook | Audience::V2Endpoint => self.v2_status(),
            Audience::LegacyCallback => self.legacy_callback_status(),
            Audience::LegacyEndpoint => self.legacy_endpoint_status(),
        }
    }

    /// v2 webhooks and the v2 status endpoint: `pending | queued | timedout | failed |
    /// succeeded` (a stopped build is `failed`).
    const fn v2_status(self) -> &'static str {
        match self {
            Self::Accepted | Self::Pending | Self::Building => "pending",
            Self::Queued => "queued",
            Self::Succeeded => "succeeded",
            Self::Failed | Self::Stopped => "failed",
            Self::TimedOut => "timedout",
        }
    }

    /// Legacy callbacks: `pending | succeeded | failed`. The app controller writes the value
    /// into an enum column of `queued | pending | failed | succeeded | unknown` and answers
    /// `500` to anything else, so stopped and timed-out builds are `failed`.
    const fn legacy_callback_status(self) -> &'static str {
        match self {
            Self::Accepted | Self::Pending | Self::Queued | Self::Building => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed | Self::Stopped | Self::TimedOut => "failed",
        }
    }

    /// The legacy status endpoint: `pending | failed | stopped | succeeded` (it keeps `stopped`).
    const fn legacy_endpoint_status(self) -> &'static str {
        match self {
            Self::Accepted | Self::Pending | Self::Queued | Self::Building => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed | Self::TimedOut => "failed",
            Self::Stopped => "stopped",
        }
    }
}

// A state's and a stop intent's name, as stored and logged: their serde names (`timed_out`).
serde_plain::derive_display_from_serialize!(BuildState);
serde_plain::derive_fromstr_from_deserialize!(BuildState);
serde_plain::derive_display_from_serialize!(StopIntent);
serde_plain::derive_fromstr_from_deserialize!(StopIntent);

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

    /// Every state through one audience's mapping, in the order of [`ALL`].
    fn statuses(audience: Audience) -> Vec<&'static str> {
        ALL.into_iter().map(|state| state.status_for(audience)).collect()
    }

    #[test]
    fn v2_webhooks_and_the_v2_endpoint_tell_queued_and_timedout_and_a_stop_as_failed() {
        let expected = ["pending", "pending", "queued", "pending", "succeeded", "failed", "failed", "timedout"];
        assert_eq!(statuses(Audience::V2Webhook), expected);
        assert_eq!(statuses(Audience::V2Endpoint), expected);
    }

    #[test]
    fn legacy_callbacks_carry_only_what_the_controller_stores() {
        assert_eq!(
            statuses(Audience::LegacyCallback),
            ["pending", "pending", "pending", "pending", "succeeded", "failed", "failed", "failed"]
        );
        let controller = ["queued", "pending", "failed", "succeeded", "unknown"];
        assert!(statuses(Audience::LegacyCallback).iter().all(|status| controller.contains(status)));
    }

    #[test]
    fn the_legacy_endpoint_keeps_stopped() {
        assert_eq!(
            statuses(Audience::LegacyEndpoint),
            ["pending", "pending", "pending", "pending", "succeeded", "failed", "stopped", "failed"]
        );
    }

    #[test]
    fn building_is_true_only_while_jenkins_runs_the_build() {
        assert!(Building.building() && !Queued.building() && !Succeeded.building());
    }

    #[test]
    fn names_are_the_stored_ones_and_round_trip() {
        let names: Vec<String> = ALL.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["accepted", "pending", "queued", "building", "succeeded", "failed", "stopped", "timed_out"]);
        for state in ALL {
            assert_eq!(state.to_string().parse::<BuildState>().unwrap(), state);
        }
        assert_eq!([StopIntent::Stop.to_string(), StopIntent::Timeout.to_string()], ["stop", "timeout"]);
        assert_eq!("timeout".parse::<StopIntent>().unwrap(), StopIntent::Timeout);
        assert!("timedout".parse::<BuildState>().is_err() && "Stop".parse::<StopIntent>().is_err());
    }
}
