//! Limits on what one `react` call may return, checked before anything is
//! judged or appended.

use crate::failure::{FailureKind, ReactFailure};
use crate::reaction::Reaction;

/// Most proposals one `react` call may return.
pub const MAX_PROPOSALS_PER_CALL: usize = 10_000;
/// Most payload bytes one `react` call may return in total.
pub const MAX_OUTPUT_BYTES: usize = 64 << 20;

/// Refuses output that breaks the contract as a whole.
pub(super) fn check_shape(reactions: &[Reaction], batch_len: usize) -> Result<(), ReactFailure> {
    if reactions.len() > MAX_PROPOSALS_PER_CALL {
        return Err(ReactFailure::new(
            FailureKind::Malformed,
            format!(
                "returned {} proposals; the limit is {MAX_PROPOSALS_PER_CALL} per call",
                reactions.len()
            ),
        ));
    }
    let bytes: usize = reactions.iter().map(|r| r.payload.len()).sum();
    if bytes > MAX_OUTPUT_BYTES {
        return Err(ReactFailure::new(
            FailureKind::Malformed,
            format!("returned {bytes} payload bytes; the limit is {MAX_OUTPUT_BYTES} per call"),
        ));
    }
    if let Some((i, r)) = reactions
        .iter()
        .enumerate()
        .find(|(_, r)| r.source as usize >= batch_len)
    {
        return Err(ReactFailure::new(
            FailureKind::Malformed,
            format!(
                "proposal {i} names source event {} but the batch has {batch_len} event(s) (source is a 0-based index into the batch)",
                r.source
            ),
        ));
    }
    Ok(())
}
