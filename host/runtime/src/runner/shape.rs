//! Limits on what one `react` call may return, checked before anything is
//! judged or appended.

use crate::failure::{FailureKind, ReactFailure};
use crate::reaction::Reaction;
use batpak_store::{MAX_KIND_LEN, MAX_NAME_LEN};

/// Most proposals one `react` call may return.
pub const MAX_PROPOSALS_PER_CALL: usize = 10_000;
/// Most payload bytes one `react` call may return in total.
pub const MAX_OUTPUT_BYTES: usize = 64 << 20;
/// Most bytes of names the host keeps for one proposal of a wasm plugin:
/// its entity and scope, each at most the store's [`MAX_NAME_LEN`] and
/// checked before it is copied (a longer one makes the output malformed),
/// and its kind, one of the declared `emits` (at most [`MAX_KIND_LEN`]).
pub const MAX_PROPOSAL_NAME_BYTES: usize = 2 * MAX_NAME_LEN + MAX_KIND_LEN;
/// The per-call output budget of a wasm plugin: the most bytes of payload
/// and names the host allocates for what one `react` call returns, before
/// the gates see it — [`MAX_OUTPUT_BYTES`] of payload plus
/// [`MAX_PROPOSAL_NAME_BYTES`] for each of at most
/// [`MAX_PROPOSALS_PER_CALL`] proposals (73,508,864 bytes, about 70 MiB).
/// Every part is checked before it is allocated; however the records share
/// bytes of the buffer, nothing is copied beyond it. (The output buffer
/// itself is copied once from the instance's memory, so it is bounded by
/// the memory limit; the gates and the append hold a few more copies of
/// what is kept.)
pub const MAX_OUTPUT_HOST_BYTES: usize =
    MAX_OUTPUT_BYTES + MAX_PROPOSALS_PER_CALL * MAX_PROPOSAL_NAME_BYTES;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_output_budget_is_what_the_limits_add_up_to() {
        // README and wit/reactor.wit state it as "about 70 MiB".
        assert_eq!(MAX_OUTPUT_HOST_BYTES, 73_508_864);
    }
}
