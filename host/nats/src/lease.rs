//! Leases: one active instance per *slot* across hosts. A slot is
//! something only one host may run at a time — `reactor/<name>/<partition>`
//! (a reactor's runner over one partition); later `relay/<partition>`.
//!
//! Everything lives in the KV bucket [`LEASES_BUCKET`]:
//! - `lease/<slot>` holds the slot's holder (`{"holder": "host-id",
//!   "ttl_ms": …}`, or `{"holder": null}` once released). Acquire, renew
//!   and release are compare-and-set on the key's revision, so two hosts
//!   can never both believe they took the same revision.
//! - `host/<id>` is a host's heartbeat (what it runs, its TTL), put every
//!   renew interval and deleted when it leaves.
//!
//! **Expiry without trusting clocks across hosts**: a lease (or heartbeat)
//! is expired when its revision has not changed for its holder's TTL, as
//! measured by the observer's own monotonic clock from the moment this
//! observer first saw that revision. A host that just started therefore
//! waits up to one TTL before it takes over a dead host's slots; no host
//! ever reads another's wall clock.
//!
//! **Spreading**: [`preferred`] is rendezvous hashing of the slot over the
//! live hosts that run the slot's reactor, so every host computes the same
//! owner from the same view, a host joining takes about 1/N of the slots,
//! and a host leaving hands only its own on.
//!
//! A lease is advisory: what makes a stale holder harmless is the fenced
//! commit (the new holder seals the slot's checkpoint before it starts, so
//! a paused-then-resumed old holder's commit is refused whole).

use crate::error::LogError;
use crate::log::{Connection, NatsOptions};
use crate::partition::fnv1a64;
use async_nats::jetstream::{self, kv, stream::StorageType};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The KV bucket holding leases and host heartbeats.
pub const LEASES_BUCKET: &str = "batpak_leases";

/// A slot's lease as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseValue {
    holder: Option<String>,
    #[serde(default)]
    ttl_ms: u64,
    /// What the holder runs in the slot (for `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    running: Option<Running>,
}

/// What a holder says it runs in a slot: shown by `status`, renewed with
/// the lease (a swap changes it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// The reactor's version.
    pub version: String,
    /// The component's digest.
    pub digest: String,
}

/// A host's heartbeat as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostBeat {
    /// The host's id.
    pub host: String,
    /// The reactors it runs (it stands by for each of their slots).
    pub reactors: Vec<String>,
    /// Its lease TTL in milliseconds: its heartbeat is stale after that.
    pub ttl_ms: u64,
}

/// A slot's lease as one observer sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseView {
    /// Nobody holds it (never taken, or released).
    Free {
        /// The key's revision (0: no key yet): what an acquire is fenced on.
        revision: u64,
    },
    /// A host holds it.
    Held {
        /// The holder.
        holder: String,
        /// The key's revision.
        revision: u64,
        /// True when the revision has not changed for the holder's TTL on
        /// this observer's clock: the holder stopped renewing.
        expired: bool,
        /// What the holder said it runs, if it did.
        running: Option<Running>,
    },
}

impl LeaseView {
    /// The revision an acquire must be fenced on.
    pub fn revision(&self) -> u64 {
        match self {
            LeaseView::Free { revision } | LeaseView::Held { revision, .. } => *revision,
        }
    }

    /// The holder, if any (expired or not).
    pub fn holder(&self) -> Option<&str> {
        match self {
            LeaseView::Held { holder, .. } => Some(holder),
            LeaseView::Free { .. } => None,
        }
    }

    /// True when a host may take it: free, or its holder stopped renewing.
    pub fn takeable(&self) -> bool {
        matches!(
            self,
            LeaseView::Free { .. } | LeaseView::Held { expired: true, .. }
        )
    }
}

/// The bucket as one observer sees it at one moment.
#[derive(Clone, Debug, Default)]
pub struct LeaseSnapshot {
    /// The hosts whose heartbeat is fresh on this observer's clock (this
    /// host included once it has beaten), by id.
    pub hosts: Vec<HostBeat>,
    /// Every slot ever taken, by slot name.
    pub leases: HashMap<String, LeaseView>,
}

impl LeaseSnapshot {
    /// The live hosts that run `reactor` (its holder and standbys), by id.
    pub fn hosts_running(&self, reactor: &str) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| h.reactors.iter().any(|r| r == reactor))
            .map(|h| h.host.clone())
            .collect()
    }

    /// The slot's lease (free at revision 0 when never taken).
    pub fn lease(&self, slot: &str) -> LeaseView {
        self.leases
            .get(slot)
            .cloned()
            .unwrap_or(LeaseView::Free { revision: 0 })
    }
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Another host changed the key first (took, renewed or released it):
    /// this host does not hold the lease (any more).
    #[error("lease {slot}: another host changed it first (revision {revision} is not current)")]
    Lost {
        /// The slot.
        slot: String,
        /// The revision this host expected.
        revision: u64,
    },
    /// The cluster did not answer (or refused for another reason); nothing
    /// is known to have changed. Retry on the next tick.
    #[error("lease bucket {LEASES_BUCKET}: {0}")]
    Unavailable(String),
    /// Connecting failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The KV key of a slot's lease.
fn lease_key(slot: &str) -> String {
    format!("lease/{slot}")
}

/// The KV key of a host's heartbeat.
fn host_key(host: &str) -> String {
    format!("host/{host}")
}

/// A slot name: `reactor/<name>/<partition>`.
pub fn reactor_slot(reactor: &str, partition: u32) -> String {
    format!("reactor/{reactor}/{partition}")
}

/// The slot of the relay into partition `target`: `relay/<target>` (one
/// relay per target partition forwards every other partition's outbox
/// messages addressed to it).
pub fn relay_slot(target: u32) -> String {
    format!("relay/{target}")
}

/// A host id usable in a KV key: letters, digits, `-` and `_` kept, every
/// other character `_`.
pub fn host_id(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The preferred host of `slot` among `hosts`: the one with the highest
/// rendezvous hash of (slot, host). Every host computes the same answer
/// from the same set.
pub fn preferred<'a>(slot: &str, hosts: &'a [String]) -> Option<&'a String> {
    hosts.iter().max_by_key(|h| {
        let mut key = Vec::with_capacity(slot.len() + h.len() + 1);
        key.extend_from_slice(slot.as_bytes());
        key.push(0);
        key.extend_from_slice(h.as_bytes());
        // fnv1a64 of similar keys differs mostly in low bits: mix once more.
        let mut x = fnv1a64(&key);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        (x, h.as_str())
    })
}

/// This host's handle on the leases bucket (its own connection, so lease
/// traffic never waits behind the log's).
pub struct Leases {
    conn: Connection,
    kv: kv::Store,
    host: String,
    ttl: Duration,
    /// Key → (revision, when this observer first saw it).
    seen: Mutex<HashMap<String, (u64, Instant)>>,
}

impl Leases {
    /// Connects as host `host` (see [`host_id`]) with lease TTL `ttl`, and
    /// creates the bucket when it is missing (replicas as the layout's).
    ///
    /// # Errors
    /// Connecting failed, or the bucket could not be opened or created.
    pub fn open(
        servers: &[String],
        options: &NatsOptions,
        host: &str,
        ttl: Duration,
        replicas: u32,
    ) -> Result<Leases, LeaseError> {
        let conn = Connection::open(servers, options)?;
        let js = conn.js.clone();
        let kv = conn
            .run(options.timeout * 4, async move {
                ensure_bucket(&js, replicas as usize).await
            })?
            .ok_or_else(|| LeaseError::Unavailable("opening the bucket: no answer".into()))?
            .map_err(LeaseError::Unavailable)?;
        Ok(Leases {
            conn,
            kv,
            host: host.to_string(),
            ttl,
            seen: Mutex::default(),
        })
    }

    /// This host's id.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The lease TTL of this host.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn run<T: Send + 'static>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, LeaseError> {
        self.conn
            .run(self.conn.timeout, fut)?
            .ok_or_else(|| LeaseError::Unavailable(format!("{what}: no answer")))
    }

    /// True when `key` at `revision` is still fresh for `ttl` on this
    /// observer's clock (see the module docs).
    fn fresh(&self, key: &str, revision: u64, ttl: Duration) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let e = seen.entry(key.to_string()).or_insert((revision, now));
        if e.0 != revision {
            *e = (revision, now);
        }
        now.duration_since(e.1) < ttl
    }

    /// Puts this host's heartbeat (the reactors it runs).
    ///
    /// # Errors
    /// [`LeaseError::Unavailable`].
    pub fn heartbeat(&self, reactors: &[String]) -> Result<(), LeaseError> {
        let beat = HostBeat {
            host: self.host.clone(),
            reactors: reactors.to_vec(),
            ttl_ms: self.ttl.as_millis() as u64,
        };
        let kv = self.kv.clone();
        let key = host_key(&self.host);
        let body = serde_json::to_vec(&beat).expect("a heartbeat serialises");
        self.run("heartbeat", async move { kv.put(key, body.into()).await })?
            .map(|_| ())
            .map_err(|e| LeaseError::Unavailable(format!("heartbeat: {e}")))
    }

    /// Removes this host's heartbeat (it leaves: its slots' preferred
    /// hosts change at once for every observer).
    pub fn leave(&self) -> Result<(), LeaseError> {
        let kv = self.kv.clone();
        let key = host_key(&self.host);
        self.run("leave", async move { kv.delete(key).await })?
            .map_err(|e| LeaseError::Unavailable(format!("leave: {e}")))
    }

    /// Every key of the bucket with its value and revision.
    fn entries(&self) -> Result<Vec<(String, Vec<u8>, u64)>, LeaseError> {
        let kv = self.kv.clone();
        self.run("listing", async move {
            let mut out = Vec::new();
            let mut keys = match kv.keys().await {
                Ok(k) => k,
                // An empty bucket has no keys to list.
                Err(e) => return Err(e.to_string()),
            };
            let mut names = Vec::new();
            while let Some(k) = keys.next().await {
                names.push(k.map_err(|e| e.to_string())?);
            }
            for k in names {
                if let Some(e) = kv.entry(k.clone()).await.map_err(|e| e.to_string())? {
                    if e.operation == kv::Operation::Put {
                        out.push((k, e.value.to_vec(), e.revision));
                    }
                }
            }
            Ok(out)
        })?
        .map_err(|e| LeaseError::Unavailable(format!("listing: {e}")))
    }

    /// The live hosts and every slot's lease, from one listing of the
    /// bucket (see [`LeaseSnapshot`]).
    ///
    /// # Errors
    /// [`LeaseError::Unavailable`].
    pub fn snapshot(&self) -> Result<LeaseSnapshot, LeaseError> {
        let mut hosts = Vec::new();
        let mut leases = HashMap::new();
        for (k, v, rev) in self.entries()? {
            if let Some(slot) = k.strip_prefix("lease/") {
                leases.insert(slot.to_string(), self.view_of(&k, &v, rev));
                continue;
            }
            if !k.starts_with("host/") {
                continue;
            }
            let Ok(beat) = serde_json::from_slice::<HostBeat>(&v) else {
                continue;
            };
            let ttl = Duration::from_millis(beat.ttl_ms.max(1));
            if beat.host == self.host || self.fresh(&k, rev, ttl) {
                hosts.push(beat);
            }
        }
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(LeaseSnapshot { hosts, leases })
    }

    fn view_of(&self, key: &str, value: &[u8], revision: u64) -> LeaseView {
        match serde_json::from_slice::<LeaseValue>(value) {
            Ok(LeaseValue {
                holder: Some(holder),
                ttl_ms,
                running,
            }) => {
                let ttl = Duration::from_millis(ttl_ms.max(1));
                let expired = holder != self.host && !self.fresh(key, revision, ttl);
                LeaseView::Held {
                    holder,
                    revision,
                    expired,
                    running,
                }
            }
            // Released, or unreadable (treated as free: the fence on the
            // slot's checkpoint keeps a taker safe).
            _ => LeaseView::Free { revision },
        }
    }

    /// One slot's lease now.
    ///
    /// # Errors
    /// [`LeaseError::Unavailable`].
    pub fn view(&self, slot: &str) -> Result<LeaseView, LeaseError> {
        let kv = self.kv.clone();
        let key = lease_key(slot);
        let k = key.clone();
        let entry = self
            .run("reading", async move { kv.entry(k).await })?
            .map_err(|e| LeaseError::Unavailable(format!("reading {slot}: {e}")))?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                self.view_of(&key, &e.value, e.revision)
            }
            Some(e) => LeaseView::Free {
                revision: e.revision,
            },
            None => LeaseView::Free { revision: 0 },
        })
    }

    fn mine(&self, running: Option<Running>) -> Vec<u8> {
        serde_json::to_vec(&LeaseValue {
            holder: Some(self.host.clone()),
            ttl_ms: self.ttl.as_millis() as u64,
            running,
        })
        .expect("a lease serialises")
    }

    /// Writes `body` on `slot`'s key if it is still at `revision` (0: no
    /// key); the new revision.
    fn swap(&self, slot: &str, revision: u64, body: Vec<u8>) -> Result<u64, LeaseError> {
        let kv = self.kv.clone();
        let key = lease_key(slot);
        let r = self.run("writing", async move {
            if revision == 0 {
                kv.create(key, body.into()).await.map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                })
            } else {
                kv.update(key, body.into(), revision).await.map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                })
            }
        })?;
        match r {
            Ok(rev) => Ok(rev),
            Err((true, _)) => Err(LeaseError::Lost {
                slot: slot.to_string(),
                revision,
            }),
            Err((false, e)) => Err(LeaseError::Unavailable(format!("{slot}: {e}"))),
        }
    }

    /// Takes `slot`, fenced on the revision `seen` was read at, saying what
    /// will run in it; the new revision (the next renew's fence).
    ///
    /// # Errors
    /// [`LeaseError::Lost`] when another host changed it since;
    /// [`LeaseError::Unavailable`].
    pub fn acquire(
        &self,
        slot: &str,
        seen: &LeaseView,
        running: Option<Running>,
    ) -> Result<u64, LeaseError> {
        self.swap(slot, seen.revision(), self.mine(running))
    }

    /// Renews `slot`, held at `revision`, saying what runs in it; the new
    /// revision.
    ///
    /// # Errors
    /// [`LeaseError::Lost`]: another host took it (this host must stop
    /// its instance); [`LeaseError::Unavailable`].
    pub fn renew(
        &self,
        slot: &str,
        revision: u64,
        running: Option<Running>,
    ) -> Result<u64, LeaseError> {
        self.swap(slot, revision, self.mine(running))
    }

    /// Releases `slot`, held at `revision`, so a standby takes it at once.
    ///
    /// # Errors
    /// [`LeaseError::Lost`], [`LeaseError::Unavailable`].
    pub fn release(&self, slot: &str, revision: u64) -> Result<(), LeaseError> {
        let body = serde_json::to_vec(&LeaseValue {
            holder: None,
            ttl_ms: 0,
            running: None,
        })
        .expect("a lease serialises");
        self.swap(slot, revision, body).map(|_| ())
    }
}

/// Opens the leases bucket, creating it when missing.
pub(crate) async fn ensure_bucket(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<kv::Store, String> {
    if let Ok(kv) = js.get_key_value(LEASES_BUCKET).await {
        return Ok(kv);
    }
    let mut last = String::new();
    for _ in 0..4 {
        match js
            .create_key_value(kv::Config {
                bucket: LEASES_BUCKET.into(),
                num_replicas: replicas,
                storage: StorageType::File,
                history: 1,
                ..Default::default()
            })
            .await
        {
            Ok(kv) => return Ok(kv),
            Err(e) => {
                last = e.to_string();
                if let Ok(kv) = js.get_key_value(LEASES_BUCKET).await {
                    return Ok(kv);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Err(format!("creating {LEASES_BUCKET}: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_is_stable_and_spreads() {
        let hosts: Vec<String> = (0..3).map(|i| format!("h{i}")).collect();
        let mut counts = HashMap::new();
        for p in 0..60 {
            let slot = reactor_slot("shipping", p);
            let a = preferred(&slot, &hosts).unwrap().clone();
            // Same answer whatever the order of the host list.
            let mut rev = hosts.clone();
            rev.reverse();
            assert_eq!(&a, preferred(&slot, &rev).unwrap());
            *counts.entry(a).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3, "every host preferred for some slot");
        assert!(counts.values().all(|&n| n >= 10), "{counts:?}");
        // A host leaving moves only its own slots.
        let two = &hosts[..2];
        for p in 0..60 {
            let slot = reactor_slot("shipping", p);
            let before = preferred(&slot, &hosts).unwrap();
            if before != "h2" {
                assert_eq!(before, preferred(&slot, two).unwrap());
            }
        }
    }

    #[test]
    fn host_ids_are_key_safe() {
        assert_eq!(host_id("box.example:1/2"), "box_example_1_2");
    }
}
