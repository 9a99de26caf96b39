//! `batpak-host shadow NAME NEW.wasm`: replays a candidate version over the
//! events the running version already handled (the library's
//! [`shadow_replay`]) and prints what would differ.

use batpak_host_lib::CacheOptions;
use batpak_host_lib::{shadow_replay, ShadowRange, ShadowReport};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Differences printed in full (the rest are counted; `--json` has all).
const SHOWN: usize = 10;

/// Arguments of `batpak-host shadow`.
#[derive(Args, Debug)]
pub struct ShadowArgs {
    /// The reactor whose handled events are replayed.
    pub name: String,
    /// The candidate version (`.wasm` or `.wat`).
    pub plugin: PathBuf,
    /// Only source events at or after this sequence.
    #[arg(long, value_name = "SEQ", conflicts_with = "last")]
    pub from: Option<u64>,
    /// Only the last N handled source events.
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
    /// Print the whole report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// JSON text handed to the candidate's `init`.
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// Kinds the operator grants (default: every kind it declares).
    #[arg(long, value_name = "KIND", value_delimiter = ',')]
    pub grant_emits: Option<Vec<String>>,
    /// The compile cache.
    #[command(flatten)]
    pub cache: CacheOptions,
}

pub(crate) fn shadow(data: &Path, a: ShadowArgs) -> anyhow::Result<ExitCode> {
    if let Err(m) = batpak_runtime::validate_reactor_name(&a.name) {
        eprintln!("error: {m}");
        return Ok(ExitCode::from(2));
    }
    let report = shadow_replay(
        data,
        &a.cache,
        &a.name,
        &a.plugin,
        &a.config,
        a.grant_emits.as_deref(),
        &ShadowRange {
            from: a.from,
            last: a.last,
        },
    )?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_differences(&report)?;
    }
    print_summary(&report);
    Ok(if report.is_identical() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The first differences in full, one JSON line each.
pub(crate) fn print_differences(report: &ShadowReport) -> anyhow::Result<()> {
    for d in report.diffs.iter().take(SHOWN) {
        println!("{}", serde_json::to_string(d)?);
    }
    if report.diffs.len() > SHOWN {
        println!(
            "... and {} more difference(s) (--json lists all)",
            report.diffs.len() - SHOWN
        );
    }
    Ok(())
}

/// One line of counts on stderr.
pub(crate) fn print_summary(report: &ShadowReport) {
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "shadow {} ({}): {} event(s) replayed in {:.2} s ({:.0} ev/s): {} identical, {} changed, {} added, {} missing, {} verdict(s) differ, {} failed",
        report.reactor,
        &report.candidate_digest[..report.candidate_digest.len().min(12)],
        report.events,
        secs,
        report.events as f64 / secs,
        report.identical,
        report.changed,
        report.added,
        report.missing,
        report.verdicts,
        report.failed
    );
    if report.other_version > 0 {
        eprintln!(
            "shadow {}: {} handled event(s) in the window were handled by an earlier version than the running one ({}) and were not compared",
            report.reactor,
            report.other_version,
            report
                .running_digest
                .as_deref()
                .map(|d| &d[..d.len().min(12)])
                .unwrap_or("?")
        );
    }
}
