//! The relays a cluster host runs: one slot per target partition
//! (`relay/<q>`, see `batpak_nats::relay_slot`), leased like a reactor's
//! slots, so one [`Relay`] per partition forwards the reactions other
//! partitions' reactors committed to their outboxes for it.
//!
//! Every live host is a candidate (a relay needs no plugin); the slot goes
//! to its rendezvous-preferred host, or to any host once it was free for a
//! lease TTL. No takeover seal is needed: a relay's forwards are fenced on
//! its own checkpoints in the target partition, so a zombie relay's forward
//! is refused whole (`batpak_nats`'s crate docs, "Reactions to other
//! partitions").

use crate::cluster::free_slots::FreeSlots;
use batpak_nats::{
    preferred, relay_slot, LeaseError, LeaseSnapshot, Leases, NatsLog, Relay, RelayHandle,
    RelaySettings,
};
use std::sync::Arc;
use std::time::Instant;

/// One relay slot this host holds the lease of and runs.
struct OwnedRelay {
    slot: String,
    revision: u64,
    renewed: Instant,
    handle: Option<RelayHandle>,
}

impl OwnedRelay {
    /// Stops the relay (the forward in flight lands whole or not at all)
    /// and says how it ended.
    fn stop(&mut self) -> Result<(), String> {
        match self.handle.take() {
            Some(h) => h.stop_and_join().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(RelayHandle::is_finished)
    }
}

/// The relay slots of one host.
#[derive(Default)]
pub struct RelaySlots {
    owned: Vec<OwnedRelay>,
    /// Slots seen takeable, since when.
    free: FreeSlots,
    /// Relays started over the run.
    pub acquired: u64,
}

impl RelaySlots {
    /// One round: renews the relays this host runs (stopping those whose
    /// lease is lost, or that a preferred live host should run), then
    /// takes free relay slots. With one partition there is nothing to
    /// relay.
    pub fn tick(
        &mut self,
        log: &Arc<NatsLog>,
        leases: &Leases,
        snap: Option<&LeaseSnapshot>,
        say: &dyn Fn(&str),
    ) {
        let partitions = log.layout().partitions;
        if partitions < 2 {
            return;
        }
        let me = leases.host().to_string();
        let hosts = |snap: &LeaseSnapshot| {
            let mut h: Vec<String> = snap.hosts.iter().map(|b| b.host.clone()).collect();
            if !h.contains(&me) {
                h.push(me.clone());
            }
            h
        };
        let mut i = 0;
        while i < self.owned.len() {
            let slot = self.owned[i].slot.clone();
            if self.owned[i].finished() {
                let mut r = self.owned.remove(i);
                let why = r.stop().err().unwrap_or_else(|| "it stopped".into());
                say(&format!("released {slot} (its relay ended: {why})"));
                let _ = leases.release(&slot, r.revision);
                continue;
            }
            match leases.renew(&slot, self.owned[i].revision, None) {
                Ok(rev) => {
                    self.owned[i].revision = rev;
                    self.owned[i].renewed = Instant::now();
                }
                Err(LeaseError::Lost { .. }) => {
                    let mut r = self.owned.remove(i);
                    let _ = r.stop();
                    say(&format!("released {slot} (lost its lease to another host)"));
                    continue;
                }
                Err(e) if self.owned[i].renewed.elapsed() >= leases.ttl() => {
                    let mut r = self.owned.remove(i);
                    let _ = r.stop();
                    say(&format!(
                        "released {slot} (could not renew its lease for {:?}: {e})",
                        leases.ttl()
                    ));
                    continue;
                }
                Err(_) => {}
            }
            if let Some(snap) = snap {
                let hosts = hosts(snap);
                if let Some(pref) = preferred(&slot, &hosts).filter(|p| **p != me).cloned() {
                    let mut r = self.owned.remove(i);
                    let ended = r.stop();
                    let released = leases.release(&slot, r.revision);
                    say(&format!("released {slot} (handed to {pref})"));
                    if let Err(e) = ended {
                        say(&format!("{slot}: its relay ended with: {e}"));
                    }
                    if let Err(e) = released {
                        say(&format!("releasing {slot}: {e}"));
                    }
                    continue;
                }
            }
            i += 1;
        }
        let Some(snap) = snap else { return };
        let hosts = hosts(snap);
        for q in 0..partitions {
            let slot = relay_slot(q);
            let view = snap.lease(&slot);
            let held_here = self.owned.iter().any(|o| o.slot == slot);
            let Some(free_for) = self.free.free_for(&slot, held_here, &view) else {
                continue;
            };
            let mine = preferred(&slot, &hosts).is_some_and(|h| *h == me);
            if !mine && free_for < leases.ttl() {
                continue;
            }
            let revision = match leases.acquire(&slot, &view, None) {
                Ok(rev) => rev,
                Err(LeaseError::Lost { .. }) => continue,
                Err(e) => {
                    say(&format!("acquiring {slot}: {e}"));
                    continue;
                }
            };
            self.free.taken(&slot);
            match Relay::spawn(log.clone(), q, RelaySettings::default()) {
                Ok(handle) => {
                    self.acquired += 1;
                    say(&format!(
                        "acquired {slot} (forwarding other partitions' outbox messages into \
                         partition {q})"
                    ));
                    self.owned.push(OwnedRelay {
                        slot,
                        revision,
                        renewed: Instant::now(),
                        handle: Some(handle),
                    });
                }
                Err(e) => {
                    say(&format!("could not start {slot}: {e}; releasing it"));
                    let _ = leases.release(&slot, revision);
                }
            }
        }
    }

    /// Stops every relay and releases its lease (another host takes over
    /// at once).
    pub fn shutdown(&mut self, leases: &Leases, say: &dyn Fn(&str)) {
        for r in &self.owned {
            if let Some(h) = &r.handle {
                h.stop();
            }
        }
        for mut r in std::mem::take(&mut self.owned) {
            let ended = r.stop();
            let released = leases.release(&r.slot, r.revision);
            say(&format!("released {} (stopping)", r.slot));
            if let Err(e) = ended {
                say(&format!("{}: its relay ended with: {e}", r.slot));
            }
            if let Err(e) = released {
                say(&format!("releasing {}: {e}", r.slot));
            }
        }
    }
}
