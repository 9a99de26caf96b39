//! `pause NAME --store …` / `resume NAME --store …`: a cluster-wide flag
//! per reactor (key `paused/<name>` in the cluster bucket) that every host
//! follows each lease tick. Pausing waits (at most [`PAUSE_WAIT`]) until
//! no host holds any of the reactor's slots — each instance stopped at a
//! batch boundary with its checkpoint at its position — and returns each
//! partition's status; resuming clears the flag, and hosts take the slots
//! again at their next tick.

use crate::cluster::address::ClusterAddress;
use crate::cluster::cluster_run_error::{
    open_log, open_plugin_store, plugins_error, ClusterRunError,
};
use crate::cluster::cluster_status::{cluster_status, SlotStatus};
use batpak_nats::NatsOptions;
use std::time::{Duration, Instant};

/// The longest `pause` waits for the hosts to stop the reactor's instances.
pub const PAUSE_WAIT: Duration = Duration::from_secs(30);

/// Sets (`paused`) or clears reactor `name`'s cluster-wide pause flag;
/// when pausing, waits until no host holds its slots. Returns the
/// reactor's status per partition.
///
/// # Errors
/// [`ClusterRunError::Usage`] when the cluster has no reactor `name`, or
/// when the hosts did not stop it within [`PAUSE_WAIT`] (the flag stays
/// set); the connection errors.
pub fn cluster_pause(
    address: &ClusterAddress,
    name: &str,
    paused: bool,
) -> Result<Vec<SlotStatus>, ClusterRunError> {
    let options = NatsOptions::default();
    let log = open_log(address, &options)?;
    let store = open_plugin_store(address, &options, &log)?;
    let plugins_error = plugins_error(address);
    if store.current(name).map_err(&plugins_error)?.is_none() {
        return Err(ClusterRunError::Usage(format!(
            "the cluster at {address} runs no reactor {name:?} (`status --store {address}` lists them)"
        )));
    }
    store.set_paused(name, paused).map_err(&plugins_error)?;
    let deadline = Instant::now() + PAUSE_WAIT;
    loop {
        let mine: Vec<SlotStatus> = cluster_status(address)?
            .into_iter()
            .filter(|s| s.reactor == name)
            .collect();
        if !paused || mine.iter().all(|s| s.host.is_none()) {
            return Ok(mine);
        }
        if Instant::now() >= deadline {
            let held: Vec<String> = mine
                .iter()
                .filter_map(|s| {
                    s.host
                        .as_ref()
                        .map(|h| format!("partition {} on {h}", s.partition))
                })
                .collect();
            return Err(ClusterRunError::Usage(format!(
                "reactor {name} is flagged paused, but after {} s these instances still run: \
                 {}; a host that is stuck or cut off stops when its lease lapses (`status --store \
                 {address}` shows it), `resume {name} --store {address}` clears the flag",
                PAUSE_WAIT.as_secs(),
                held.join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
