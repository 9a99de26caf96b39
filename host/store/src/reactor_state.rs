//! Where a reactor is in its life: one type for the runtime's runner
//! status, the service's operator replies (`status`, `pause`, `resume`)
//! and the CLI's output, so no layer passes the state on as text for the
//! next to match back. It lives in the store, the one crate all three build
//! on; the store itself never reads it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a reactor is in its life. On the wire (JSON, `status --json`) and
/// in text it is the variant's name in snake case ([`as_str`](Self::as_str)).
/// A runner itself is only ever starting, running, stopped or failed; the
/// host adds paused and stopping, which are an operator's doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReactorRunState {
    /// Spawned, not pulling yet (replaying parked events, opening its
    /// canal).
    Starting,
    /// Pulling and reacting.
    Running,
    /// Paused by an operator; the checkpoint holds its position.
    Paused,
    /// Asked to pause: finishing its batch in flight.
    Stopping,
    /// Exited cleanly.
    Stopped,
    /// Exited with an error.
    Failed,
}

impl ReactorRunState {
    /// Every state, in life-cycle order.
    pub const ALL: [ReactorRunState; 6] = [
        ReactorRunState::Starting,
        ReactorRunState::Running,
        ReactorRunState::Paused,
        ReactorRunState::Stopping,
        ReactorRunState::Stopped,
        ReactorRunState::Failed,
    ];

    /// The state's name as JSON and text show it: `starting`, `running`,
    /// `paused`, `stopping`, `stopped`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReactorRunState::Starting => "starting",
            ReactorRunState::Running => "running",
            ReactorRunState::Paused => "paused",
            ReactorRunState::Stopping => "stopping",
            ReactorRunState::Stopped => "stopped",
            ReactorRunState::Failed => "failed",
        }
    }

    /// True once the reactor's runner has exited (stopped, failed or
    /// paused): it makes no more progress until started again.
    pub fn has_exited(self) -> bool {
        matches!(
            self,
            ReactorRunState::Paused | ReactorRunState::Stopped | ReactorRunState::Failed
        )
    }
}

impl fmt::Display for ReactorRunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ReactorRunState;

    /// Text and JSON name a state alike, and JSON reads back what it wrote.
    #[test]
    fn text_and_json_agree() {
        for s in ReactorRunState::ALL {
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json, s.as_str(), "{s:?}");
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(serde_json::from_value::<ReactorRunState>(json).unwrap(), s);
        }
    }
}
