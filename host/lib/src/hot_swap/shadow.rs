//! Shadow replay: a candidate version of a reactor replayed over the events
//! the running version already handled, in a scratch store, with a report
//! per source event of what would differ. Nothing is appended to the real
//! log; works while `run` owns the store (`shadow`, `swap --shadow`).

use crate::plugins::compile_cache::CacheOptions;
use anyhow::Context;
use batpak_runtime::{LogLevel, Plugin, PluginSettings, Runtime, ShadowRange, ShadowReport};
use std::path::Path;

/// Replays `plugin` over what reactor `name` handled in the store in
/// `data` (see [`batpak_runtime::shadow`]), compiling it through `cache`.
pub fn replay(
    data: &Path,
    cache: &CacheOptions,
    name: &str,
    plugin: &Path,
    config: &str,
    grant_emits: Option<&[String]>,
    range: &ShadowRange,
) -> anyhow::Result<ShadowReport> {
    if !data.join("segments").is_dir() {
        anyhow::bail!(
            "no store in {} (no segments directory); pass the --data directory `run` used",
            data.display()
        );
    }
    let rt = Runtime::new(cache.runtime_config()?)?;
    let candidate = Plugin::load(
        &rt,
        plugin,
        PluginSettings {
            config: config.to_string(),
            log_level: LogLevel::Warn,
            ..PluginSettings::default()
        },
    )?;
    let scratch = std::env::temp_dir().join(format!("batpak-shadow-{name}-{}", std::process::id()));
    batpak_runtime::shadow(
        Box::new(candidate),
        data,
        &scratch,
        name,
        grant_emits,
        range,
    )
    .with_context(|| format!("shadow run of {}", plugin.display()))
}
