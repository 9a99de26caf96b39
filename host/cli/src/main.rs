//! `batpak-host`, the command line: parses arguments, calls the library, prints JSON lines
//! on stdout and human messages on stderr, and exits with honest codes
//! (0 success, 1 failure, 2 bad usage).

mod cluster_cmd;
mod cluster_error_text;
mod cluster_pause_cmd;
mod cluster_reset_cmd;
mod cluster_run;
mod cluster_status_cmd;
mod cluster_swap_cmd;
mod demo;
mod error_text;
mod inspect;
mod new;
mod operate;
mod run;
mod shadow;
mod signals;
mod status_display;
mod swap_cmd;
mod usage;
mod wit_cmd;

use batpak_host_lib as host;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// batpak-host: a durable causal event log whose reactors are sandboxed
/// WebAssembly components.
#[derive(Parser, Debug)]
#[command(name = "batpak-host", version, about, long_about = None)]
pub struct Cli {
    /// The store directory (created when missing). One process owns it at a
    /// time.
    #[arg(long, global = true, default_value = "./batpak-data")]
    pub data: PathBuf,
    /// The log on a NATS JetStream cluster instead of the embedded store:
    /// nats://HOST:PORT[,HOST:PORT…] (also from the BATPAK_STORE
    /// environment variable). Without it, the embedded store in --data.
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Append events; prints one JSON receipt per event once it is durable.
    Append(host::AppendArgs),
    /// Print events as JSON lines, oldest first. On a cluster (--store)
    /// order is per partition: each line names its partition and its seq
    /// there.
    Events(host::EventsArgs),
    /// Draw an event's causes and every reaction it led to, as a tree
    /// (text, DOT, SVG or JSON); given an entity, the trees of its events.
    /// On a cluster, across partitions (order is per partition).
    Trace(host::TraceArgs),
    /// Check every frame, hash, chain link and index entry; exit 1 with a
    /// report when anything is wrong. On a cluster, every partition's
    /// hashes and entity chains (order is per partition).
    Verify,
    /// Run reactor plugins (wasm components) against the store.
    Run(run::RunArgs),
    /// Print what a plugin says about itself and the WIT world it targets.
    Inspect(inspect::InspectArgs),
    /// List parked events (events a reactor failed on), or replay them.
    Parked(host::ParkedArgs),
    /// Replay a candidate version of a reactor over the events the running
    /// version handled, in a scratch store, and report what would differ
    /// (exit 1 on differences). Works while `run` runs.
    Shadow(shadow::ShadowArgs),
    /// Replace a running reactor's plugin at its next batch boundary
    /// (through the running host; `--shadow N` proves it on history first).
    Swap(swap_cmd::SwapArgs),
    /// Build the example plugins, append sample orders, run the reactors and
    /// show what they produced.
    Demo(host::DemoArgs),
    /// Create a reactor project (Rust, C, Python or JavaScript) from the
    /// repository's templates.
    New(new::NewArgs),
    /// Run one plugin on fixture events in a scratch store and check its
    /// reactions (and that they do not depend on batching).
    Test(host::TestArgs),
    /// Show each reactor of the running host: version, digest, state,
    /// position, lag (its own region's durable events not yet handled),
    /// parked count.
    Status(operate::StatusArgs),
    /// Pause a reactor of the running host at a batch boundary (its
    /// checkpoint keeps the position).
    Pause(operate::NameArgs),
    /// Resume a paused reactor from its checkpoint.
    Resume(operate::NameArgs),
    /// Move a reactor's checkpoint (recorded as a `batpak.reactor.reset`
    /// event). Through a running host the reactor must be paused.
    Reset(operate::ResetArgs),
    /// Print the WIT contract this host offers (`--list`: every version it
    /// runs side by side), for writing a plugin against it.
    Wit(wit_cmd::WitArgs),
    /// Set up and try the log on a NATS JetStream cluster: `cluster dev`
    /// starts a local one, `cluster init` prepares one for the host.
    #[command(subcommand)]
    Cluster(cluster_cmd::ClusterCommand),
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // `--data` as typed by the user, for the commands that read no store
    // and say so rather than ignore it silently.
    let data_given = data_on_command_line(&matches).then_some(cli.data.as_path());
    if !matches!(cli.command, Command::Run(_) | Command::Demo(_)) {
        die_quietly_on_closed_pipe();
    }
    // `--store` (or BATPAK_STORE) selects the cluster; every command then
    // goes to it, and none falls back to the embedded store silently.
    let store = cli.store.clone().or_else(|| {
        std::env::var(host::STORE_ENV)
            .ok()
            .filter(|v| !v.is_empty())
    });
    let result = match store {
        Some(url) => host::ClusterAddress::parse(&url)
            .map_err(anyhow::Error::from)
            .and_then(|at| cluster_cmd::dispatch(&at, cli.command)),
        None => local(&cli.data, data_given, cli.command),
    };
    match result {
        Ok(code) => code,
        // Bad usage exits 2, as clap does for what it checks itself.
        Err(e) if e.downcast_ref::<host::Usage>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {}", error_text::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// Runs a command on the embedded store in `data`.
fn local(
    data: &std::path::Path,
    data_given: Option<&std::path::Path>,
    command: Command,
) -> anyhow::Result<ExitCode> {
    match command {
        // Store commands go through the running host when there is one.
        Command::Append(a) => host::append(data, a, &mut std::io::stdout().lock()),
        Command::Events(a) => host::events(data, a, &mut std::io::stdout().lock()),
        Command::Trace(a) => host::trace(data, a, &mut std::io::stdout().lock()),
        Command::Verify => host::verify(data, &mut std::io::stdout().lock()),
        Command::Run(a) => run::run(data, a),
        Command::Inspect(a) => inspect::inspect(data_given, a),
        Command::Parked(a) => host::parked(data, a, &mut std::io::stdout().lock()),
        Command::Demo(a) => demo::demo(data, a),
        Command::New(a) => new::new(a),
        Command::Test(a) => host::test_plugin(data_given, a),
        Command::Shadow(a) => shadow::shadow(data, a),
        Command::Swap(a) => swap_cmd::swap(data, a),
        Command::Status(a) => operate::status(data, a),
        Command::Pause(a) => operate::pause(data, a),
        Command::Resume(a) => operate::resume(data, a),
        Command::Reset(a) => operate::reset(data, a),
        Command::Wit(a) => wit_cmd::wit(a),
        Command::Cluster(c) => cluster_cmd::cluster(None, c),
    }
}

/// True when `--data` was given on the command line (before or after the
/// subcommand), not taken from its default.
fn data_on_command_line(m: &clap::ArgMatches) -> bool {
    let given = |m: &clap::ArgMatches| {
        m.value_source("data") == Some(clap::parser::ValueSource::CommandLine)
    };
    given(m) || m.subcommand().is_some_and(|(_, sub)| given(sub))
}

/// One-shot commands end quietly, like other Unix tools, when the reader of
/// their output goes away (`batpak-host events | head`): Rust ignores
/// SIGPIPE, which would turn the first write to a closed pipe into a panic.
/// `run` and `demo` keep it ignored: they serve sockets, where a client that
/// disconnects must not stop the host.
fn die_quietly_on_closed_pipe() {
    // SAFETY: restoring the default disposition of one signal before any
    // thread is started has no other effect on the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
