//! The `host` interface a plugin imports: logging, reads of the store, and a
//! dry run of the gates.

use super::convert::{id_from_wit, level_from_wit, reaction_from_wit, stored_event};
use super::log::{log, LogLevel};
use super::plugin_state::PluginState;
use super::wit::types as w;
use super::{wit_v1, wit_v2};

/// Most `read-entity` results per call.
pub const READ_ENTITY_CAP: u32 = 1024;
/// Most payload bytes one `read-entity` call returns: it stops before the
/// event that would pass this (the guest reads on with `after`), but always
/// returns at least one event, so a reader progresses over events of any
/// size. Without it, 1024 events of 16 MiB would make the host allocate
/// 16 GiB for one call.
pub const READ_ENTITY_BYTES: usize = 16 << 20;
/// Events read from the store at a time by `read-entity`: what it may read
/// past [`READ_ENTITY_BYTES`] before it notices is at most this many events.
const READ_ENTITY_PAGE: usize = 4;

impl w::Host for PluginState {}

/// The host functions, once for every contract version: each version's
/// `host` interface has the same functions over the same types.
impl PluginState {
    fn host_log(&mut self, level: w::Level, message: String) {
        let h = &mut self.host;
        if h.log_budget == 0 {
            h.dropped_logs += 1;
            return;
        }
        h.log_budget -= 1;
        log(h.log_level, level_from_wit(level), &h.name, &message);
    }

    fn host_get_event(&mut self, id: w::EventId) -> Option<w::StoredEvent> {
        let services = self.host.services.as_ref()?;
        match services.log.get(id_from_wit(id)) {
            Ok(found) => found.map(|e| stored_event(&e)),
            Err(e) => {
                log(
                    self.host.log_level,
                    LogLevel::Warn,
                    &self.host.name,
                    &format!("get-event failed: {e}"),
                );
                None
            }
        }
    }

    fn host_read_entity(&mut self, entity: String, after: u64, max: u32) -> Vec<w::StoredEvent> {
        let Some(services) = self.host.services.as_ref() else {
            return Vec::new();
        };
        let max = max.min(READ_ENTITY_CAP) as usize;
        if max == 0 {
            return Vec::new();
        }
        let (mut out, mut bytes, mut after) = (Vec::new(), 0usize, after);
        while out.len() < max {
            let want = (max - out.len()).min(READ_ENTITY_PAGE);
            let page = match services.log.entity_events(&entity, after, want) {
                Ok(page) => page,
                Err(e) => {
                    log(
                        self.host.log_level,
                        LogLevel::Warn,
                        &self.host.name,
                        &format!("read-entity failed: {e}"),
                    );
                    return Vec::new();
                }
            };
            let got = page.len();
            for e in page {
                let len = e.payload.len();
                if !out.is_empty() && bytes + len > READ_ENTITY_BYTES {
                    return out;
                }
                bytes += len;
                after = e.header.entity_sequence;
                out.push(stored_event(&e));
            }
            if got < want {
                break;
            }
        }
        out
    }

    fn host_check(&mut self, proposal: w::Proposal) -> w::Verdict {
        let h = &self.host;
        let Some(services) = h.services.as_ref() else {
            return w::Verdict::Denied(w::Denial {
                gate: "host".into(),
                code: "unavailable".into(),
                message: "no store is attached to this instance (inspect mode)".into(),
            });
        };
        let source = if h.in_react {
            match h.sources.get(proposal.source as usize) {
                Some(id) => services
                    .log
                    .get(*id)
                    .ok()
                    .flatten()
                    .map(batpak_store::EventView::from),
                None => {
                    return w::Verdict::Denied(w::Denial {
                        gate: "host".into(),
                        code: "bad-source".into(),
                        message: format!(
                            "proposal.source is {} but the batch has {} event(s)",
                            proposal.source,
                            h.sources.len()
                        ),
                    })
                }
            }
        } else {
            None
        };
        let reaction = reaction_from_wit(proposal);
        match services.check_owned(reaction, source.as_ref()) {
            None => w::Verdict::Allowed,
            Some(d) => w::Verdict::Denied(w::Denial {
                gate: d.gate,
                code: d.code,
                message: d.message,
            }),
        }
    }

    fn host_last_verdicts(&mut self) -> Vec<w::ProposalVerdict> {
        self.host.last_verdicts.clone()
    }
}

/// Forwards one version's `host` trait to the shared implementation.
macro_rules! host_for {
    ($host:path) => {
        impl $host for PluginState {
            fn log(&mut self, level: w::Level, message: String) {
                self.host_log(level, message)
            }
            fn get_event(&mut self, id: w::EventId) -> Option<w::StoredEvent> {
                self.host_get_event(id)
            }
            fn read_entity(&mut self, entity: String, after: u64, max: u32) -> Vec<w::StoredEvent> {
                self.host_read_entity(entity, after, max)
            }
            fn check(&mut self, proposal: w::Proposal) -> w::Verdict {
                self.host_check(proposal)
            }
            fn last_verdicts(&mut self) -> Vec<w::ProposalVerdict> {
                self.host_last_verdicts()
            }
        }
    };
}

host_for!(wit_v1::batpak::reactor::host::Host);
host_for!(wit_v2::batpak::reactor::host::Host);
