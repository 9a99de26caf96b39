//! The store commands — `append`, `events`, `verify`, `parked` — on the
//! store in a data directory: through the host running on it when there is
//! one (its control socket), else on the store itself.

pub mod append;
pub mod parked;
pub mod socket_client;

pub use append::{recovery_notes, AppendArgs, EventFormat, EventsArgs};
pub use parked::{ParkedAction, ParkedArgs};

use batpak_service::Client;
use std::path::Path;
use std::process::ExitCode;

/// A client of the host running on `data`, if one runs.
fn running_host(data: &Path) -> anyhow::Result<Option<Client>> {
    Ok(Client::connect(data)?)
}

/// `append`: prints one JSON receipt per event once it is durable.
///
/// # Errors
/// Bad input ([`crate::Usage`] for a bad flag), a refused append, a store
/// or connection failure.
pub fn append(data: &Path, a: AppendArgs) -> anyhow::Result<ExitCode> {
    match running_host(data)? {
        Some(c) => socket_client::append(c, a),
        None => append::append(data, a),
    }
}

/// `events`: prints the events matching `a` as JSON lines, oldest first.
///
/// # Errors
/// A bad filter, a store or connection failure.
pub fn events(data: &Path, a: EventsArgs) -> anyhow::Result<ExitCode> {
    match running_host(data)? {
        Some(c) => socket_client::events(c, &a),
        None => append::events(data, a),
    }
}

/// `verify`: prints the report as one JSON line; exit 1 when unsound.
///
/// # Errors
/// No store, or the check could not run.
pub fn verify(data: &Path) -> anyhow::Result<ExitCode> {
    match running_host(data)? {
        Some(c) => socket_client::verify(c),
        None => append::verify(data),
    }
}

/// `parked`: lists parked events, or records replay requests.
///
/// # Errors
/// A bad name or id ([`crate::Usage`]), no store, a store or connection
/// failure.
pub fn parked(data: &Path, a: ParkedArgs) -> anyhow::Result<ExitCode> {
    match running_host(data)? {
        Some(c) => socket_client::parked(c, a),
        None => parked::parked(data, a),
    }
}
