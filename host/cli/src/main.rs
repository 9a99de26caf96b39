//! `batpak-host`, the command line: parses arguments, calls the library, prints JSON lines
//! on stdout and human messages on stderr, and exits with honest codes
//! (0 success, 1 failure, 2 bad usage).

mod demo;
mod inspect;
mod loader;
mod log_filter;
mod new;
mod operate;
mod output;
mod parked;
mod plugin_config;
mod remote;
mod run;
mod signals;
mod status_display;
mod store_cmds;
mod supervisor;
mod test_cmd;
mod trace;

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
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Append events; prints one JSON receipt per event once it is durable.
    Append(store_cmds::AppendArgs),
    /// Print events as JSON lines, oldest first.
    Events(store_cmds::EventsArgs),
    /// Draw an event's causes and every reaction it led to, as a tree
    /// (text, DOT, SVG or JSON).
    Trace(trace::TraceArgs),
    /// Check every frame, hash, chain link and index entry; exit 1 with a
    /// report when anything is wrong.
    Verify,
    /// Run reactor plugins (wasm components) against the store.
    Run(run::RunArgs),
    /// Print what a plugin says about itself and the WIT world it targets.
    Inspect(inspect::InspectArgs),
    /// List parked events (events a reactor failed on), or replay them.
    Parked(parked::ParkedArgs),
    /// Build the example plugins, append sample orders, run the reactors and
    /// show what they produced.
    Demo(demo::DemoArgs),
    /// Create a reactor project (Rust, C, Python or JavaScript) from the
    /// repository's templates.
    New(new::NewArgs),
    /// Run one plugin on fixture events in a scratch store and check its
    /// reactions (and that they do not depend on batching).
    Test(test_cmd::TestArgs),
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Append(a) => store_cmds::append(&cli.data, a),
        Command::Events(a) => store_cmds::events(&cli.data, a),
        Command::Trace(a) => trace::trace(&cli.data, a),
        Command::Verify => store_cmds::verify(&cli.data),
        Command::Run(a) => run::run(&cli.data, a),
        Command::Inspect(a) => inspect::inspect(&cli.data, a),
        Command::Parked(a) => parked::parked(&cli.data, a),
        Command::Demo(a) => demo::demo(&cli.data, a),
        Command::New(a) => new::new(a),
        Command::Test(a) => test_cmd::test(&cli.data, a),
        Command::Status(a) => operate::status(&cli.data, a),
        Command::Pause(a) => operate::pause(&cli.data, a),
        Command::Resume(a) => operate::resume(&cli.data, a),
        Command::Reset(a) => operate::reset(&cli.data, a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
