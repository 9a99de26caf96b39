//! `run`, `inspect` and `parked`: the reactor runtime's commands.
//! (Filled by the runtime work; see issue 3.)

use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `batpak-host run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Plugin components (`.wasm`).
    #[arg(required = true)]
    pub plugins: Vec<PathBuf>,
}

/// Arguments of `batpak-host inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Plugin component (`.wasm`).
    pub plugin: PathBuf,
}

/// Arguments of `batpak-host parked`.
#[derive(Args, Debug)]
pub struct ParkedArgs {}

pub(crate) fn run(_data: &Path, _a: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet built")
}
pub(crate) fn inspect(_data: &Path, _a: InspectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet built")
}
pub(crate) fn parked(_data: &Path, _a: ParkedArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet built")
}
