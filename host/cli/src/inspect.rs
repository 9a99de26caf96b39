//! `batpak-host inspect`: what a plugin says about itself, without a store.

use crate::usage::usage;
use batpak_host_lib::mib_to_bytes;
use batpak_runtime::{LogLevel, PluginSettings, Runtime};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `batpak-host inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Plugin component (`.wasm`, or component text `.wat`).
    pub plugin: PathBuf,
    /// JSON text handed to `init` (to see whether a config is accepted).
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// Wall-time limit of one call into the plugin.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub timeout_ms: u64,
    /// Memory budget of the instance (all its memories and tables).
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub memory_mb: u64,
    /// The compile cache.
    #[command(flatten)]
    pub cache: batpak_host_lib::CacheOptions,
}

/// Prints the inspection as JSON; exits 1 when the descriptor is invalid or
/// `init` refuses the config (the JSON says why as well).
/// `data` is the `--data` given on the command line, if one was: it is not
/// used (there is no store to read), and a note says so.
pub(crate) fn inspect(data: Option<&Path>, a: InspectArgs) -> anyhow::Result<ExitCode> {
    if a.timeout_ms == 0 || a.memory_mb == 0 {
        return usage("--timeout-ms and --memory-mb must be at least 1");
    }
    if let Some(d) = data {
        eprintln!(
            "inspect: --data {} is not used: inspect reads no store (compiled plugins are cached in the compile cache; see --cache-dir)",
            d.display()
        );
    }
    // No store is opened (it may be in use by `run`); the compile cache is
    // the user's, shared with every other command.
    let rt = Runtime::new(a.cache.runtime_config()?)?;
    let settings = PluginSettings {
        config: a.config,
        timeout: Duration::from_millis(a.timeout_ms),
        memory_bytes: mib_to_bytes(a.memory_mb),
        log_level: LogLevel::Warn,
        ..PluginSettings::default()
    };
    let i = batpak_runtime::Inspection::of(&rt, &a.plugin, settings)?;
    // Read back as JSON: what is printed is what is judged.
    let v = serde_json::to_value(&i)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    let mut ok = true;
    if let Some(why) = v["descriptor"].get("invalid") {
        eprintln!(
            "error: plugin {}: describe() returned an invalid descriptor: {}",
            a.plugin.display(),
            why.as_str().unwrap_or_default()
        );
        ok = false;
    }
    if v["init"]["ok"] == false {
        eprintln!(
            "error: plugin {}: init() refused its config: {}",
            a.plugin.display(),
            v["init"]["error"].as_str().unwrap_or("(no reason given)")
        );
        ok = false;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
