//! The commands on a NATS JetStream cluster (`--store nats://…` or
//! `BATPAK_STORE`). A command that does not work on a cluster says so and
//! exits 2, rather than quietly using the embedded store.

use crate::Command;
use batpak_host_lib as host;
use std::process::ExitCode;

/// Runs `command` against the cluster at `at`.
pub fn dispatch(at: &host::ClusterAddress, command: Command) -> anyhow::Result<ExitCode> {
    let name = match command {
        Command::Append(_) => "append",
        Command::Events(_) => "events",
        Command::Trace(_) => "trace",
        Command::Verify => "verify",
        Command::Run(a) => return crate::cluster_run::run(at, a),
        Command::Inspect(_) => "inspect",
        Command::Parked(_) => "parked",
        Command::Demo(_) => "demo",
        Command::New(_) => "new",
        Command::Test(_) => "test",
        Command::Shadow(_) => "shadow",
        Command::Swap(a) => return crate::cluster_swap_cmd::swap(at, a),
        Command::Status(a) => return crate::cluster_status_cmd::status(at, a),
        Command::Pause(a) => return crate::cluster_pause_cmd::pause(at, a, true),
        Command::Resume(a) => return crate::cluster_pause_cmd::pause(at, a, false),
        Command::Reset(_) => "reset",
        Command::Wit(_) => "wit",
    };
    Err(host::Usage(format!(
        "`{name}` does not work on a cluster (--store {at}); run it without --store (and with \
         {} unset) on an embedded store",
        host::STORE_ENV
    ))
    .into())
}
