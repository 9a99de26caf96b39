//! `demo`: builds the example plugins, appends sample orders, runs the
//! reactors until idle and prints what they produced.

use clap::Args;
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `batpak-host demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {}

pub(crate) fn demo(_data: &Path, _a: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet built")
}
