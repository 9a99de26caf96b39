//! The commands on a NATS JetStream cluster (`--store nats://…` or
//! `BATPAK_STORE`), and `batpak-host cluster` (`dev`, `init`). A command
//! that does not work on a cluster says so and exits 2, rather than
//! quietly using the embedded store.

use crate::Command;
use batpak_host_lib as host;
use std::process::ExitCode;

/// `batpak-host cluster …`.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Start a local JetStream cluster for trying the host (nats-server
    /// provisioned user-level from PyPI, every node with `sync_interval:
    /// always`); prints the --store and --monitor values as one JSON line,
    /// stops the nodes on Ctrl-C/SIGTERM.
    Dev(host::ClusterDevArgs),
    /// Create what the host needs on the cluster given by --store (one
    /// stream per partition, the layout and plugins buckets), after checking
    /// every node runs nats-server 2.12+ with `sync_interval: always`.
    /// Running it again with the same K and R changes nothing.
    Init(host::ClusterInitArgs),
}

/// Runs `batpak-host cluster …`; `at` is the cluster `--store` selects.
pub fn cluster(
    at: Option<&host::ClusterAddress>,
    command: ClusterCommand,
) -> anyhow::Result<ExitCode> {
    let out = &mut std::io::stdout().lock();
    match (command, at) {
        (ClusterCommand::Dev(a), _) => host::cluster_dev(&a, out),
        (ClusterCommand::Init(a), Some(at)) => host::cluster_init(at, &a, out),
        (ClusterCommand::Init(_), None) => Err(host::Usage(format!(
            "cluster init needs the cluster: pass --store nats://HOST:PORT[,…] (or set {}); \
             `batpak-host cluster dev` starts a local one and prints it",
            host::STORE_ENV
        ))
        .into()),
    }
}

/// Runs `command` against the cluster at `at`.
pub fn dispatch(at: &host::ClusterAddress, command: Command) -> anyhow::Result<ExitCode> {
    let name = match command {
        Command::Cluster(c) => return cluster(Some(at), c),
        Command::Append(a) => return host::cluster_append(at, a, &mut std::io::stdout().lock()),
        Command::Events(a) => return host::cluster_events(at, a, &mut std::io::stdout().lock()),
        Command::Trace(a) => return host::cluster_trace(at, a, &mut std::io::stdout().lock()),
        Command::Verify => return host::cluster_verify(at, &mut std::io::stdout().lock()),
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
        Command::Reset(a) => return crate::cluster_reset_cmd::reset(at, a),
        Command::Wit(_) => "wit",
    };
    Err(host::Usage(format!(
        "`{name}` does not work on a cluster (--store {at}); run it without --store (and with \
         {} unset) on an embedded store",
        host::STORE_ENV
    ))
    .into())
}
