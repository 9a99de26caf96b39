//! What the gates decided about a proposal: the answer to `check` and to
//! `last-verdicts`.

use crate::{wit, EventId};

/// A gate's answer about one proposal: `Allowed` or `Denied(Denial)`.
pub use crate::wit::Verdict;

/// Why a gate refused a proposal: the gate's name, a stable machine-readable
/// code (e.g. `kind-not-granted`) and a human-readable message.
pub use crate::wit::Denial;

impl Verdict {
    /// Whether the gates admit the proposal.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed)
    }

    /// The denial, when a gate refused.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Verdict::Allowed => None,
            Verdict::Denied(denial) => Some(denial),
        }
    }
}

impl std::fmt::Display for Denial {
    /// `gate/code: message`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}: {}", self.gate, self.code, self.message)
    }
}

/// The verdict on one proposal of this reactor's previous `react` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalVerdict {
    /// Index of the proposal in the output of that call.
    pub proposal: u32,
    /// What the gates decided.
    pub verdict: Verdict,
    /// Id of the appended event, when allowed.
    pub appended: Option<EventId>,
}

impl From<wit::ProposalVerdict> for ProposalVerdict {
    fn from(v: wit::ProposalVerdict) -> Self {
        ProposalVerdict {
            proposal: v.proposal,
            verdict: v.verdict,
            appended: v.appended.map(EventId::from),
        }
    }
}
