//! `parked`, once for a local store and a running host: list the events
//! reactors failed on, or ask for them to be replayed, over
//! [`StoreAccess`].

use crate::store_commands::access::{LocalStore, StoreAccess};
use crate::store_commands::args::{ParkedAction, ParkedArgs};
use crate::usage::Usage;
use batpak_service::Client;
use batpak_store::{EventId, StoreError};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// `--plugin`'s value must be a reactor name.
fn check_plugin_name(flag: &str, name: &Option<String>) -> Result<(), Usage> {
    match name {
        Some(n) => {
            batpak_runtime::validate_reactor_name(n).map_err(|e| Usage(format!("{flag}: {e}")))
        }
        None => Ok(()),
    }
}

/// `parked` on the store in `data` (through the host running on it when
/// there is one), one JSON line each on `out`; it never creates a store.
///
/// # Errors
/// A bad name or id ([`Usage`]), no store, a store or connection failure.
pub fn parked(data: &Path, a: ParkedArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (plugin, event) = match a.action {
        None => (a.plugin, None),
        Some(ParkedAction::Replay { plugin, event }) => (plugin.or(a.plugin), Some(event)),
    };
    check_plugin_name("--plugin", &plugin)?;
    let replay = event.is_some();
    let event =
        match event.flatten().as_deref().map(str::parse::<EventId>) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => return Err(Usage(
                "--event: expected an event id of 32 hex digits (the \"event\" field of `parked`)"
                    .into(),
            )
            .into()),
        };
    let mut access: Box<dyn StoreAccess> = match Client::connect(data)? {
        Some(c) => Box::new(c),
        None => {
            if !data.join("segments").is_dir() {
                anyhow::bail!(
                    "no store in {} (no segments directory); pass the --data directory `run` used",
                    data.display()
                );
            }
            match LocalStore::open(data) {
                Ok(s) => Box::new(s),
                // A `run` serving no socket owns the store: a listing reads
                // its segments without the lock instead.
                Err(e)
                    if !replay
                        && matches!(
                            e.downcast_ref::<StoreError>(),
                            Some(StoreError::Locked { .. })
                        ) =>
                {
                    Box::new(LocalStore::read_only(data))
                }
                Err(e) => return Err(e.context(format!("opening the store in {}", data.display()))),
            }
        }
    };
    let when = match access.served_by() {
        Some(_) => "the running host re-delivers them now",
        None => "the next `batpak-host run` of the reactor re-delivers them first",
    };
    let lines = if replay {
        access.parked_replay(plugin.as_deref(), event)
    } else {
        access.parked(plugin.as_deref())
    };
    let lines = match lines {
        Ok(l) => l,
        Err(e) => {
            let _ = access.close();
            return Err(e);
        }
    };
    for l in &lines {
        writeln!(out, "{l}")?;
    }
    access.close()?;
    if !replay {
        return Ok(ExitCode::SUCCESS);
    }
    Ok(report_replay(lines.len(), event.is_some(), when))
}

/// Says what a replay request did; fails when one named event matched no
/// unresolved parked event.
fn report_replay(made: usize, one_event: bool, when: &str) -> ExitCode {
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
