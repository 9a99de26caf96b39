//! Randomness in the sandbox. By default a plugin's `wasi:random` is a
//! deterministic stream, reseeded before every call from the reactor's name
//! and the call's first source event, so the same version over the same
//! events proposes the same events (what shadow replay and lineage
//! comparisons rely on). An operator may grant real randomness per plugin.
//!
//! The stream is blake3 in extendable-output mode keyed by the seed: already
//! a dependency, fast, and every seed gives an independent stream.

use batpak_store::EventId;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// Where a plugin's `wasi:random` comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RandomSource {
    /// A deterministic stream per (reactor, first source event of the call).
    #[default]
    Deterministic,
    /// The operating system's random numbers: granted by the operator;
    /// replays and shadow runs of such a plugin may differ.
    Real,
}

/// The shared, reseedable stream behind one instance's `wasi:random`.
#[derive(Clone)]
pub(crate) struct SeededRandom(Arc<Mutex<blake3::OutputReader>>);

impl SeededRandom {
    pub(crate) fn new(reactor: &str) -> Self {
        SeededRandom(Arc::new(Mutex::new(stream(reactor, None))))
    }

    /// Restarts the stream for a call whose first source event is `first`
    /// (`None` for `describe` and `init`).
    pub(crate) fn reseed(&self, reactor: &str, first: Option<EventId>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = stream(reactor, first);
    }

    /// The fixed `insecure-seed` answer for `reactor`.
    pub(crate) fn insecure_seed(reactor: &str) -> u128 {
        let h = blake3::hash(format!("batpak insecure-seed\0{reactor}").as_bytes());
        u128::from_le_bytes(h.as_bytes()[..16].try_into().expect("16 bytes"))
    }
}

fn stream(reactor: &str, first: Option<EventId>) -> blake3::OutputReader {
    let mut h = blake3::Hasher::new_derive_key("batpak-host wasi:random 2026");
    h.update(reactor.as_bytes());
    h.update(&[0]);
    match first {
        Some(id) => h.update(&id.0.to_le_bytes()),
        None => h.update(b"describe/init"),
    };
    h.finalize_xof()
}

impl rand_core::TryRng for SeededRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).fill(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn the_stream_depends_only_on_reactor_and_event() {
        let mut a = SeededRandom::new("r");
        let mut b = SeededRandom::new("r");
        a.reseed("r", Some(EventId(7)));
        b.reseed("r", Some(EventId(7)));
        assert_eq!(a.next_u64(), b.next_u64());
        b.reseed("r", Some(EventId(8)));
        let x = a.next_u64();
        assert_ne!(x, b.next_u64());
        a.reseed("r", Some(EventId(7)));
        let _ = a.next_u64();
        assert_eq!(a.next_u64(), x);
    }
}
