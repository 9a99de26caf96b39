//! `batpak-host parked`: list the events reactors failed on, or ask the next
//! `run` to replay them.

use crate::host::views::{line, ParkedLine, ReplayRequestedLine};
use crate::usage::Usage;
use anyhow::Context;
use batpak_runtime::ParkedSet;
use batpak_store::{EventId, LogReader, Store, StoreError};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `batpak-host parked`.
#[derive(Args, Debug)]
pub struct ParkedArgs {
    /// What to do (default: list unresolved parked events as JSON lines).
    #[command(subcommand)]
    pub action: Option<ParkedAction>,
    /// Only this reactor's parked events.
    #[arg(long, value_name = "REACTOR")]
    pub plugin: Option<String>,
}

/// Subcommands of `batpak-host parked`.
#[derive(Subcommand, Debug)]
pub enum ParkedAction {
    /// Ask the next `run` of the reactor to re-deliver its parked events
    /// (before anything else). Prints one JSON line per request.
    Replay {
        /// Only this reactor's parked events.
        #[arg(long, value_name = "REACTOR")]
        plugin: Option<String>,
        /// Only the parked event with this id (32 hex digits).
        #[arg(long, value_name = "ID")]
        event: Option<String>,
    },
}

/// `parked` reads an existing store; it never creates one.
fn no_store_is_an_error(data: &Path) -> anyhow::Result<()> {
    if !data.join("segments").is_dir() {
        anyhow::bail!(
            "no store in {} (no segments directory); pass the --data directory `run` used",
            data.display()
        );
    }
    Ok(())
}

pub fn check_plugin_name(flag: &str, name: &Option<String>) -> Result<(), String> {
    match name {
        Some(n) => batpak_runtime::validate_reactor_name(n).map_err(|e| format!("{flag}: {e}")),
        None => Ok(()),
    }
}

pub fn parked(data: &Path, a: ParkedArgs) -> anyhow::Result<ExitCode> {
    match a.action {
        None => list(data, a.plugin),
        Some(ParkedAction::Replay { plugin, event }) => replay(data, plugin.or(a.plugin), event),
    }
}

fn list(data: &Path, plugin: Option<String>) -> anyhow::Result<ExitCode> {
    if let Err(m) = check_plugin_name("--plugin", &plugin) {
        return Err(Usage(m).into());
    }
    no_store_is_an_error(data)?;
    let list = match Store::open(data) {
        Ok(store) => {
            let l = batpak_runtime::parked_events(&store, plugin.as_deref())?;
            store.close()?;
            l
        }
        // A running `run` owns the store: read the segments without the
        // lock instead.
        Err(StoreError::Locked { .. }) => {
            let mut reader = LogReader::open(data)?;
            let mut set = ParkedSet::new(plugin.as_deref());
            loop {
                let events = reader.poll(64 << 20)?;
                if events.is_empty() {
                    break;
                }
                events.iter().for_each(|e| set.add(e));
            }
            set.into_vec()
        }
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("opening the store in {}", data.display()))
            )
        }
    };
    let mut out = std::io::stdout().lock();
    for p in &list {
        writeln!(out, "{}", line(&ParkedLine::from(p)))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn replay(data: &Path, plugin: Option<String>, event: Option<String>) -> anyhow::Result<ExitCode> {
    if let Err(m) = check_plugin_name("--plugin", &plugin) {
        return Err(Usage(m).into());
    }
    let event =
        match event.as_deref().map(str::parse::<EventId>) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                return Err(Usage(
                    "--event: expected an event id of 32 hex digits (the \"event\" field of `parked`)"
                        .into(),
                )
                .into())
            }
        };
    no_store_is_an_error(data)?;
    let store =
        Store::open(data).with_context(|| format!("opening the store in {}", data.display()))?;
    let made = batpak_runtime::request_replay(&store, plugin.as_deref(), event)?;
    {
        let mut out = std::io::stdout().lock();
        for (id, p) in &made {
            writeln!(out, "{}", line(&ReplayRequestedLine::new(*id, p)))?;
        }
    }
    store.close()?;
    Ok(report_replay(
        made.len(),
        event.is_some(),
        "the next `batpak-host run` of the reactor re-delivers them first",
    ))
}

/// Says what a replay request did; fails when one named event matched no
/// unresolved parked event.
pub fn report_replay(made: usize, one_event: bool, when: &str) -> ExitCode {
    if made == 0 {
        eprintln!("no unresolved parked event without a pending replay matches");
        if one_event {
            return ExitCode::FAILURE;
        }
    } else {
        eprintln!("{made} replay request(s) recorded; {when}");
    }
    ExitCode::SUCCESS
}
