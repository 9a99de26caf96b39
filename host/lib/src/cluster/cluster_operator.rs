//! The cluster's operations behind a cluster host's HTTP API
//! ([`Operator`], see [`crate::cluster::cluster_http`]): `GET /v1/reactors`
//! is `status --store`'s list (per reactor and partition: holder,
//! standbys, version, position, lag) with `held_here`; pause and resume are
//! the cluster-wide flag of `pause`/`resume --store`, answered with every
//! partition's status after; `/metrics` has a series per reactor and
//! partition from [`HeldSlots`] (no round trip to the cluster on a scrape).

use crate::cluster::address::ClusterAddress;
use crate::cluster::cluster_pause::cluster_pause;
use crate::cluster::cluster_run_error::ClusterRunError;
use crate::cluster::cluster_status::{cluster_status, SlotStatus};
use crate::cluster::held_slots::{HeldSlots, SlotCounters};
use batpak_nats::{NatsLog, NatsOptions, PluginStore};
use batpak_runtime::StatusSnapshot;
use batpak_service::{
    InstanceState, OpError, Operator, ReactorRunState, ReactorState, ResetOutcome, ResetTo,
};
use batpak_store::EventId;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The cluster's operations as the service's [`Operator`] (see the module
/// docs).
pub struct ClusterOperator {
    address: ClusterAddress,
    partitions: u32,
    replicas: u32,
    held: Arc<HeldSlots>,
    log: Arc<NatsLog>,
}

impl ClusterOperator {
    /// Operates the cluster at `address` (its log `log`) for a host whose
    /// slots are `held`.
    pub fn new(address: ClusterAddress, log: Arc<NatsLog>, held: Arc<HeldSlots>) -> Self {
        let layout = log.layout();
        ClusterOperator {
            address,
            partitions: layout.partitions,
            replicas: layout.replicas,
            held,
            log,
        }
    }

    fn failed(e: ClusterRunError) -> OpError {
        match e {
            ClusterRunError::Usage(m) => OpError::Refused(m),
            e => OpError::Failed(format!("{:#}", anyhow::Error::from(e))),
        }
    }

    /// The slots' status, each with whether this host holds it.
    fn slots(&self) -> Result<Vec<(SlotStatus, bool)>, OpError> {
        Ok(self.mark(cluster_status(&self.address).map_err(Self::failed)?))
    }

    /// Each slot of `list` with whether this host holds its lease (as the
    /// cluster says, so it agrees with `host`).
    fn mark(&self, list: Vec<SlotStatus>) -> Vec<(SlotStatus, bool)> {
        let id = self.held.host_id();
        list.into_iter()
            .map(|s| {
                let here = s.host.as_deref() == Some(id.as_str());
                (s, here)
            })
            .collect()
    }

    fn state(&self, s: &SlotStatus, here: bool) -> ReactorState {
        let counters = here
            .then(|| {
                self.held.with_slots(|held| {
                    held.get(&(s.reactor.clone(), s.partition))
                        .and_then(|c| c.held.as_ref())
                        .map(|st| st.snapshot(0))
                })
            })
            .flatten();
        ReactorState {
            name: s.reactor.clone(),
            version: s.version.clone().unwrap_or_default(),
            digest: s.digest.clone().unwrap_or_default(),
            state: if s.host.is_some() {
                ReactorRunState::Running
            } else {
                ReactorRunState::Stopped
            },
            position: s.position,
            lag: s.lag,
            lag_capped: false,
            events_in: counters.as_ref().map_or(0, |c| c.events_in),
            reactions_out: counters.as_ref().map_or(0, |c| c.reactions_out),
            parked: counters.as_ref().map_or(0, |c| c.parked),
            error: None,
            last_swap: None,
            file: None,
            watched: None,
            pending: None,
            // A cluster's partitions are a reactor's instances by key: the
            // same hash picks both.
            instance: Some(InstanceState {
                index: s.partition,
                count: self.partitions,
            }),
        }
    }

    /// The status list as `GET /v1/reactors` answers it.
    fn list(slots: Vec<(SlotStatus, bool)>) -> Value {
        Value::Array(
            slots
                .into_iter()
                .map(|(s, here)| {
                    let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
                    v["held_here"] = Value::Bool(here);
                    v
                })
                .collect(),
        )
    }

    /// Pauses or resumes `name` cluster-wide; its slots' status after.
    fn set_paused(&self, name: &str, paused: bool) -> Result<Value, OpError> {
        let store = PluginStore::open(
            self.address.servers(),
            &NatsOptions::default(),
            self.replicas,
        )
        .map_err(|e| OpError::Failed(e.to_string()))?;
        if store
            .current(name)
            .map_err(|e| OpError::Failed(e.to_string()))?
            .is_none()
        {
            return Err(OpError::NoSuchReactor(name.to_string()));
        }
        let after = cluster_pause(&self.address, name, paused).map_err(Self::failed)?;
        Ok(Self::list(self.mark(after)))
    }
}

impl Operator for ClusterOperator {
    fn status(&self) -> Vec<ReactorState> {
        self.try_status().unwrap_or_default()
    }

    fn try_status(&self) -> Result<Vec<ReactorState>, OpError> {
        Ok(self
            .slots()?
            .iter()
            .map(|(s, here)| self.state(s, *here))
            .collect())
    }

    fn pause(&self, name: &str) -> Result<ReactorState, OpError> {
        self.set_paused(name, true)?;
        self.first_partition(name)
    }

    fn resume(&self, name: &str) -> Result<ReactorState, OpError> {
        self.set_paused(name, false)?;
        self.first_partition(name)
    }

    fn reset(&self, _name: &str, _to: ResetTo) -> Result<ResetOutcome, OpError> {
        Err(OpError::Unsupported(
            "reset through a cluster host's HTTP API",
        ))
    }

    fn parked(&self, _plugin: Option<&str>) -> Result<Vec<Value>, OpError> {
        Err(OpError::Unsupported("parked on a cluster"))
    }

    fn parked_replay(
        &self,
        _plugin: Option<&str>,
        _event: Option<EventId>,
    ) -> Result<Vec<Value>, OpError> {
        Err(OpError::Unsupported("parked replay on a cluster"))
    }

    fn status_reply(&self) -> Result<Value, OpError> {
        Ok(Self::list(self.slots()?))
    }

    fn pause_reply(&self, name: &str) -> Result<Value, OpError> {
        self.set_paused(name, true)
    }

    fn resume_reply(&self, name: &str) -> Result<Value, OpError> {
        self.set_paused(name, false)
    }

    fn write_metrics(&self, out: &mut String) {
        slot_metrics(&self.held, &self.log, self.partitions, out);
    }
}

impl ClusterOperator {
    /// `name`'s state in partition 0 (the typed `pause`/`resume` answer;
    /// the HTTP API replies with every partition).
    fn first_partition(&self, name: &str) -> Result<ReactorState, OpError> {
        self.try_status()?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| OpError::NoSuchReactor(name.to_string()))
    }
}

/// One per-slot series: name, help, Prometheus type, how to read it from
/// (counters, the held runner's snapshot, the partition's known head).
type SlotMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&SlotCounters, Option<&StatusSnapshot>, u64) -> Option<u64>,
);

/// The `/metrics` series per reactor and partition of this host: every
/// reactor it runs × every partition, whether held here or not; the
/// runner's counters only while held.
fn slot_metrics(held: &HeldSlots, log: &NatsLog, partitions: u32, out: &mut String) {
    let series: [SlotMetric; 9] = [
        ("batpak_cluster_slot_held", "1 when this host holds the (reactor, partition) slot and runs it.", "gauge", |_, s, _| Some(u64::from(s.is_some()))),
        ("batpak_cluster_slot_position", "The held slot's position: last sequence of the partition it handled.", "gauge", |_, s, _| s.map(|s| s.position)),
        ("batpak_cluster_slot_lag", "The held slot's partition head as this host knows it, minus its position.", "gauge", |_, s, head| s.map(|s| head.saturating_sub(s.position))),
        ("batpak_cluster_slot_events_in_total", "Events delivered to the held slot's runner since this host took it.", "counter", |_, s, _| s.map(|s| s.events_in)),
        ("batpak_cluster_slot_reactions_out_total", "Reactions the held slot's runner committed since this host took it.", "counter", |_, s, _| s.map(|s| s.reactions_out)),
        ("batpak_cluster_slot_parked_total", "Events the held slot's runner parked since this host took it.", "counter", |_, s, _| s.map(|s| s.parked)),
        ("batpak_cluster_slot_commits_total", "Checkpointed commits this host stored for the slot since it started.", "counter", |c, _, _| Some(c.commits.load(Ordering::Relaxed))),
        ("batpak_cluster_slot_acquired_total", "Times this host acquired the slot since it started.", "counter", |c, _, _| Some(c.acquired)),
        ("batpak_cluster_slot_fenced_total", "This host's runners of the slot whose commit was refused whole after another host took it over.", "counter", |c, _, _| Some(c.fenced)),
    ];
    let reactors = held.reactors();
    held.with_slots(|slots| {
        let none = Default::default();
        let rows: Vec<(&str, u32, &SlotCounters, Option<StatusSnapshot>, u64)> = reactors
            .iter()
            .flat_map(|r| (0..partitions).map(move |p| (r.as_str(), p)))
            .map(|(r, p)| {
                let c = slots.get(&(r.to_string(), p)).unwrap_or(&none);
                let snap = c.held.as_ref().map(|s| s.snapshot(0));
                (r, p, c, snap, log.last_known(p))
            })
            .collect();
        for (name, help, kind, f) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (r, p, c, snap, head) in &rows {
                if let Some(v) = f(c, snap.as_ref(), *head) {
                    let _ = writeln!(out, "{name}{{reactor=\"{r}\",partition=\"{p}\"}} {v}");
                }
            }
        }
    });
}
