//! `batpak-host swap NAME FILE`: asks the running host to replace reactor
//! NAME's plugin with FILE at its next batch boundary, optionally proving the
//! new version on recent history first (`--shadow N`).

use crate::shadow::{print_differences, print_summary, replay};
use batpak_runtime::ShadowRange;
use batpak_service::{Client, ClientError};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `batpak-host swap`.
#[derive(Args, Debug)]
pub struct SwapArgs {
    /// The running reactor to replace.
    pub name: String,
    /// The new version (`.wasm` or `.wat`); same reactor name, same region
    /// and canal, a WIT version this host offers.
    pub plugin: PathBuf,
    /// First replay the new version over the last N events the running
    /// version handled (nothing is appended) and refuse the swap if what it
    /// proposes differs.
    #[arg(long, value_name = "N")]
    pub shadow: Option<usize>,
    /// With --shadow: swap even when the replay found differences.
    #[arg(long, requires = "shadow")]
    pub accept_diff: bool,
    /// JSON text handed to the new version's `init` during the shadow
    /// replay (the swap itself uses the host's --plugin-config).
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// The compile cache (for --shadow).
    #[command(flatten)]
    pub cache: crate::compile_cache::CacheArgs,
}

pub(crate) fn swap(data: &Path, a: SwapArgs) -> anyhow::Result<ExitCode> {
    if let Err(m) = batpak_runtime::validate_reactor_name(&a.name) {
        eprintln!("error: {m}");
        return Ok(ExitCode::from(2));
    }
    // The host resolves the path, not this process: send it absolute.
    let file = std::fs::canonicalize(&a.plugin)
        .map_err(|e| anyhow::anyhow!("plugin {}: {e}", a.plugin.display()))?;
    let Some(mut client) = Client::connect(data)? else {
        anyhow::bail!(
            "no batpak-host is running on {} (swap replaces a plugin of a running host); start `batpak-host run --data {} PLUGINS…`, or stop nothing and just run the new file",
            data.display(),
            data.display()
        );
    };
    if let Some(n) = a.shadow {
        let report = replay(
            data,
            &a.cache,
            &a.name,
            &file,
            &a.config,
            None,
            &ShadowRange {
                from: None,
                last: Some(n),
            },
        )?;
        print_summary(&report);
        if !report.is_identical() {
            print_differences(&report)?;
            if !a.accept_diff {
                eprintln!(
                    "error: not swapped: {} of the last {} event(s) would react differently (above); review them, then swap with --accept-diff to take the new behaviour",
                    report.diffs.len(),
                    report.events
                );
                return Ok(ExitCode::FAILURE);
            }
            eprintln!("swapping anyway (--accept-diff)");
        }
    }
    match client.swap(&a.name, &file) {
        Ok(outcome) => {
            println!("{outcome}");
            eprintln!(
                "swapped reactor {} to {} at position {}",
                a.name,
                file.display(),
                outcome["position"]
            );
            Ok(ExitCode::SUCCESS)
        }
        // Not answered in time: the swap goes on in the host (compiling,
        // or waiting for a batch boundary), so it is not "not swapped".
        Err(ClientError::Remote(e)) if e.code == batpak_service::ErrorCode::Busy => {
            eprintln!("error: {}", e.message);
            Ok(ExitCode::FAILURE)
        }
        Err(ClientError::Remote(e)) => {
            eprintln!(
                "error: not swapped ({:?}): {}; the running version keeps serving",
                e.code, e.message
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
