//! `batpak-host swap NAME FILE`: asks the running host to replace reactor
//! NAME's plugin with FILE at its next batch boundary, optionally proving the
//! new version on recent history first (`--shadow N`).

use crate::shadow::{print_differences, print_summary};
use batpak_host_lib::{shadow_replay, ClientError, ErrorCode, ShadowRange, SwapRequest};
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
    /// On a cluster (--store): store this file's entry for the reactor
    /// (`plugins.<name>`) with the new version, so every instance runs with
    /// it; without it the cluster's entry is kept. (The embedded swap
    /// reads the running host's own --plugin-config again.)
    #[arg(long, value_name = "FILE")]
    pub plugin_config: Option<PathBuf>,
    /// The compile cache (for --shadow).
    #[command(flatten)]
    pub cache: batpak_host_lib::CacheOptions,
}

pub(crate) fn swap(data: &Path, a: SwapArgs) -> anyhow::Result<ExitCode> {
    if let Some(cfg) = &a.plugin_config {
        return Err(batpak_host_lib::Usage(format!(
            "`swap --plugin-config {}` is for a cluster (--store): the embedded swap reads the \
             running host's own --plugin-config again, so edit that file and swap without \
             --plugin-config",
            cfg.display()
        ))
        .into());
    }
    let request = SwapRequest::new(data, &a.name, &a.plugin)?;
    let file = request.file().to_path_buf();
    if let Some(n) = a.shadow {
        let report = shadow_replay(
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
    match request.send() {
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
        Err(ClientError::Remote(e)) if e.code == ErrorCode::Busy => {
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
