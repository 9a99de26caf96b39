//! Reading a whole partition of the cluster in order, in batches of
//! [`MAX_READ`]: what `events`, `trace` and `verify` on a cluster build on.

use batpak_nats::{LogError, NatsLog, MAX_READ};
use batpak_store::Event;

/// Calls `f(event)` for every event of partition `p` with a sequence
/// greater than `after`, in partition order, until the end of what is
/// stored now or `f` says `false`; returns the last sequence looked at.
/// A record the codec refuses (bad envelope, hash mismatch) goes to
/// `damaged` and the scan goes on after it, so one bad record never hides
/// the rest.
///
/// # Errors
/// The partition could not be read (unavailable, not initialised).
pub fn scan_partition(
    log: &NatsLog,
    p: u32,
    after: u64,
    mut f: impl FnMut(&Event) -> bool,
    damaged: &mut dyn FnMut(LogError),
) -> Result<u64, LogError> {
    let mut at = after;
    loop {
        let batch = match log.read(p, at, MAX_READ) {
            Ok(b) => b,
            Err(LogError::Damaged {
                partition,
                sequence,
                reason,
            }) if sequence > at => {
                // Everything before it in this batch was fine: read those
                // again one at a time (only when damage was found).
                let mut cur = at;
                while cur + 1 < sequence {
                    let b = log.read(p, cur, 1)?;
                    match b.events.first() {
                        Some(e) if e.header.sequence < sequence => {
                            if !f(e) {
                                return Ok(e.header.sequence);
                            }
                            cur = e.header.sequence;
                        }
                        _ => break,
                    }
                }
                damaged(LogError::Damaged {
                    partition,
                    sequence,
                    reason,
                });
                at = sequence;
                continue;
            }
            Err(e) => return Err(e),
        };
        if batch.scanned == at {
            return Ok(at);
        }
        for e in &batch.events {
            if !f(e) {
                return Ok(e.header.sequence);
            }
        }
        at = batch.scanned;
    }
}
