//! The store commands — `append`, `events`, `verify`, `parked` (and the
//! reads of `trace`) — each written once, over [`StoreAccess`]: served by
//! the host running on the data directory when there is one (its control
//! socket), else by the store itself, so the two cannot drift.

pub mod access;
pub mod append;
pub mod args;
pub mod events;
pub mod jsonl_input;
pub mod parked;
pub mod verify;

pub use access::{Checker, LocalStore, PartRefused, StoreAccess};
pub use append::append;
pub use args::{AppendArgs, EventFormat, EventsArgs, ParkedAction, ParkedArgs};
pub use events::events;
pub use parked::parked;
pub use verify::verify;

use batpak_service::Client;
use batpak_store::Store;
use std::path::Path;

/// The store in `data` for a command that writes or reads through its
/// indexes: the host running on it when there is one, else the store
/// itself, opened (and created when missing) by this process.
///
/// # Errors
/// The host's socket cannot be used, or the store does not open.
pub fn open(data: &Path) -> anyhow::Result<Box<dyn StoreAccess>> {
    Ok(match Client::connect(data)? {
        Some(c) => Box::new(c),
        None => Box::new(LocalStore::open(data)?),
    })
}

/// What opening the store had to cut, in words (one line each): a torn
/// tail, a bulk append that never committed.
pub fn recovery_notes(store: &Store) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some((segment, offset, bytes)) = store.recovery().truncated_tail {
        notes.push(format!(
            "batpak: recovered the store: cut a torn write of {bytes} byte(s) at segment {segment:08} offset {offset} (never acknowledged as durable); recorded as a {} event",
            batpak_store::RECOVERED_KIND
        ));
    }
    if let Some((segment, offset, events)) = store.recovery().dropped_transaction {
        notes.push(format!(
            "batpak: recovered the store: dropped a bulk append of {events} event(s) at segment {segment:08} offset {offset} that never committed (its writer stopped); none of it counts; recorded as a {} event",
            batpak_store::RECOVERED_KIND
        ));
    }
    notes
}
