//! The compile cache options shared by every command that loads a plugin
//! (`run`, `test`, `inspect`, `shadow`, `swap --shadow`, `reset --plugin`):
//! where the cache is, how big it may grow, or none at all.
//!
//! One cache per user, shared by all those commands and by every store, so
//! a plugin compiled once (by any of them) loads in milliseconds from then
//! on. The directory policy (owner-only, refusing another user's) is the
//! runtime's ([`batpak_runtime::prepare_cache_dir`]).

use anyhow::Context;
use batpak_runtime::{CacheLimits, LogLevel, RuntimeConfig};
use std::path::PathBuf;

/// Environment variable naming the cache directory (like `--cache-dir`).
pub const ENV_DIR: &str = "BATPAK_CACHE_DIR";
/// Environment variable with the size cap in MiB (like `--cache-max-mb`).
pub const ENV_MAX_MB: &str = "BATPAK_CACHE_MAX_MB";
/// Environment variable that turns the cache off when set to `1`, `true`
/// or `yes` (like `--no-cache`).
pub const ENV_OFF: &str = "BATPAK_NO_CACHE";
/// Default size cap in MiB.
pub const DEFAULT_MAX_MB: u64 = 1024;

/// Compile cache options (flags beat their environment variables).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct CacheOptions {
    /// Directory of the compile cache (compiled plugins, shared by every
    /// command and store of this user) [env: BATPAK_CACHE_DIR; default:
    /// $XDG_CACHE_HOME/batpak-host, else ~/.cache/batpak-host]. It must be
    /// this user's and owner-only (700).
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIR"))]
    pub cache_dir: Option<PathBuf>,
    /// Size cap of the compile cache in MiB; past it the least recently
    /// used compiled plugins are deleted [env: BATPAK_CACHE_MAX_MB;
    /// default: 1024].
    #[cfg_attr(feature = "cli", arg(long, value_name = "MIB"))]
    pub cache_max_mb: Option<u64>,
    /// Compile every plugin afresh, reading and writing no compile cache
    /// [env: BATPAK_NO_CACHE=1].
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_cache: bool,
}

impl CacheOptions {
    /// The cache directory these options select, or `None` for no cache
    /// (turned off, or no directory can be named: neither
    /// `XDG_CACHE_HOME` nor `HOME` is set; a warning says so).
    ///
    /// # Errors
    /// `BATPAK_NO_CACHE` holds something other than a yes or no.
    pub fn dir(&self) -> anyhow::Result<Option<PathBuf>> {
        if self.no_cache || env_off()? {
            return Ok(None);
        }
        if let Some(d) = &self.cache_dir {
            return Ok(Some(d.clone()));
        }
        if let Some(d) = std::env::var_os(ENV_DIR).filter(|v| !v.is_empty()) {
            return Ok(Some(PathBuf::from(d)));
        }
        let d = batpak_runtime::default_cache_dir();
        if d.is_none() {
            batpak_runtime::log(
                LogLevel::Warn,
                LogLevel::Warn,
                "cache",
                &format!("no compile cache: neither XDG_CACHE_HOME nor HOME is set; set {ENV_DIR} (or --cache-dir) to keep compiled plugins"),
            );
        }
        Ok(d)
    }

    /// The size cap these options select.
    ///
    /// # Errors
    /// `BATPAK_CACHE_MAX_MB` is not a whole number of MiB.
    pub fn limits(&self) -> anyhow::Result<CacheLimits> {
        let mb = match self.cache_max_mb {
            Some(mb) => mb,
            None => match std::env::var(ENV_MAX_MB) {
                Ok(v) if !v.trim().is_empty() => v.trim().parse().with_context(|| {
                    format!("{ENV_MAX_MB}={v:?}: expected a whole number of MiB")
                })?,
                _ => DEFAULT_MAX_MB,
            },
        };
        Ok(CacheLimits {
            max_bytes: mb.saturating_mul(1 << 20),
        })
    }

    /// The runtime configuration with this cache.
    ///
    /// # Errors
    /// An environment variable of the cache holds a value that means
    /// nothing (the message names it).
    pub fn runtime_config(&self) -> anyhow::Result<RuntimeConfig> {
        Ok(RuntimeConfig {
            cache_dir: self.dir()?,
            cache_limits: self.limits()?,
            ..RuntimeConfig::default()
        })
    }
}

fn env_off() -> anyhow::Result<bool> {
    match std::env::var(ENV_OFF) {
        Err(_) => Ok(false),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" | "no" | "off" => Ok(false),
            "1" | "true" | "yes" | "on" => Ok(true),
            _ => anyhow::bail!("{ENV_OFF}={v:?}: expected 1 (no compile cache) or 0"),
        },
    }
}
