//! `batpak-host wit`: the WIT contract versions this host offers, printed
//! from the texts compiled into the binary, so a plugin author can get the
//! contract from the host itself (`batpak-host wit > reactor.wit`).

use crate::usage::usage;
use batpak_runtime::{WitVersion, CURRENT_VERSION, OFFERED_VERSIONS};
use clap::Args;
use std::process::ExitCode;

/// Arguments of `batpak-host wit`.
#[derive(Args, Debug)]
pub struct WitArgs {
    /// List the offered versions (one per line, the current one marked)
    /// instead of printing a WIT text.
    #[arg(long)]
    pub list: bool,
    /// Which version to print: `0.2.0`, `@0.2.0` or `batpak:reactor@0.2.0`
    /// (default: the current one).
    pub version: Option<String>,
}

/// Prints the list of offered versions or one version's WIT text.
pub(crate) fn wit(a: WitArgs) -> anyhow::Result<ExitCode> {
    if a.list {
        if a.version.is_some() {
            return usage("--list takes no VERSION");
        }
        for v in OFFERED_VERSIONS {
            println!(
                "{}{}",
                v.package(),
                if v.is_current() { " (current)" } else { "" }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let version = match a.version.as_deref() {
        None => CURRENT_VERSION,
        Some(text) => match WitVersion::parse(text) {
            Some(v) => v,
            None => {
                return usage(format!(
                    "this host does not offer WIT version {text:?}; it offers {} (see `batpak-host wit --list`)",
                    OFFERED_VERSIONS.map(|v| v.semver()).join(", ")
                ))
            }
        },
    };
    print!("{}", version.wit_text());
    Ok(ExitCode::SUCCESS)
}
