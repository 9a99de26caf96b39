//! The one way a command reports bad usage: a message on stderr and exit
//! code 2, as clap does for the arguments it checks itself.

use std::process::ExitCode;

/// Exit code for bad usage (matches clap's).
pub(crate) fn usage(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {msg}");
    Ok(ExitCode::from(2))
}
