//! Takeover fencing: a host that has just acquired a slot's lease seals
//! the slot's checkpoint before its runner starts — an empty commit at the
//! current position (same cursor state, a new checkpoint sequence). Any
//! commit the previous holder still has in flight (a paused-then-resumed
//! zombie) was fenced on the old sequence and is refused whole
//! ([`LogError::Fenced`]); the new runner reads its fence after the seal.

use crate::error::LogError;
use crate::log::{Commit, NatsLog, Resolution};
use std::time::{Duration, Instant};

/// Seals `cursor`'s checkpoint in partition `partition`: a copy of the
/// current checkpoint (an empty one when there is none) fenced on the
/// current one. Returns the new checkpoint's sequence. A commit that lands
/// between the read and the seal (the old holder's last) is kept, and the
/// seal is made on top of it.
///
/// # Errors
/// The cluster did not settle the seal within `limit`: the last error
/// (the lease stays taken; the caller releases it or tries again).
pub fn seal_for_takeover(
    log: &NatsLog,
    partition: u32,
    cursor: &str,
    limit: Duration,
) -> Result<u64, LogError> {
    let deadline = Instant::now() + limit;
    loop {
        let attempt = (|| {
            let current = log.checkpoint(partition, cursor)?;
            let (payload, expected) = current.map_or((Vec::new(), 0), |c| (c.payload, c.sequence));
            let seal = Commit::new(partition, cursor, Vec::new(), payload, expected);
            match log.commit(&seal) {
                Ok(done) => Ok(Some(done.checkpoint)),
                // Another commit landed since the read: seal on top of it.
                Err(LogError::Fenced { .. }) => Ok(None),
                Err(LogError::Unknown { .. } | LogError::Unavailable { .. }) => {
                    match log.resolve_commit(&seal)? {
                        Resolution::Landed(sequence) => Ok(Some(sequence)),
                        // Resolving sealed the fence itself: the same effect.
                        Resolution::NotLanded {
                            checkpoint: Some(c),
                            sealed: true,
                        } => Ok(Some(c.sequence)),
                        Resolution::NotLanded { .. } => Ok(None),
                    }
                }
                Err(e) => Err(e),
            }
        })();
        match attempt {
            Ok(Some(sequence)) => return Ok(sequence),
            Ok(None) => {}
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
        if Instant::now() >= deadline {
            return Err(LogError::Unavailable {
                partition,
                reason: format!("sealing cursor {cursor:?} for a takeover kept racing other commits for {limit:?}"),
            });
        }
    }
}
