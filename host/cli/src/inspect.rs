//! `batpak-host inspect`: what a plugin says about itself, without a store.

use crate::plugin_config::mib_to_bytes;
use crate::run::usage;
use batpak_runtime::{LogLevel, PluginSettings, Runtime, RuntimeConfig};
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
}

/// Prints the inspection as JSON; exits 1 when the descriptor is invalid or
/// `init` refuses the config (the JSON says why as well).
pub(crate) fn inspect(data: &Path, a: InspectArgs) -> anyhow::Result<ExitCode> {
    if a.timeout_ms == 0 || a.memory_mb == 0 {
        return usage("--timeout-ms and --memory-mb must be at least 1");
    }
    // The store is not opened (it may be in use by `run`); the compile cache
    // is shared when the data directory exists.
    let rt = Runtime::new(if data.is_dir() {
        RuntimeConfig::with_cache(data.join("cache"))
    } else {
        RuntimeConfig::default()
    })?;
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
