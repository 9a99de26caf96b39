//! Turning a plugin file into a checked, configured [`Plugin`]: the settings
//! for `describe` come from flags and defaults, those for `init` and for
//! running from the reactor's entry in `--plugin-config` once `describe`
//! has named it.

use crate::plugins::plugin_config::{Flags, PluginConfigFile, Resolved};
use batpak_runtime::{CodeTier, CompileSource, LogLevel, Plugin, PluginSettings, Reactor, Runtime};
use std::path::{Path, PathBuf};

/// A plugin loaded and initialised, with what applies to its reactor.
pub struct Loaded {
    pub plugin: Plugin,
    pub path: PathBuf,
    pub settings: Resolved,
}

impl Loaded {
    /// The reactor's name (from `describe`).
    pub fn name(&self) -> &str {
        &self.plugin.descriptor().name
    }
}

/// Loads plugins with the operator's configuration; kept by the supervisor
/// to start or swap reactors later (and cloned into the `--watch` thread).
#[derive(Clone)]
pub struct Loader {
    runtime: Runtime,
    config: PluginConfigFile,
    /// Where `config` came from, so a swap can re-read it.
    config_path: Option<PathBuf>,
    flags: Flags,
}

impl Loader {
    pub fn new(runtime: Runtime, config: PluginConfigFile, flags: Flags) -> Loader {
        Loader {
            runtime,
            config,
            config_path: None,
            flags,
        }
    }

    /// Remembers the file `config` was read from, so
    /// [`load_fresh`](Self::load_fresh) re-reads it.
    pub fn with_config_path(mut self, path: Option<PathBuf>) -> Loader {
        self.config_path = path;
        self
    }

    /// Like [`load`](Self::load), with `--plugin-config` read again first, so
    /// the operator's current grants and limits for the plugin apply (hot
    /// swap). The re-read config is kept for later loads.
    ///
    /// # Errors
    /// The config file no longer parses (the message names it), or the
    /// plugin does not load.
    pub fn load_fresh(&mut self, path: &Path) -> anyhow::Result<Loaded> {
        if let Some(p) = &self.config_path {
            self.config = PluginConfigFile::read(p).map_err(|m| anyhow::anyhow!(m))?;
        }
        self.load(path)
    }

    /// The parsed `--plugin-config`.
    pub fn config(&self) -> &PluginConfigFile {
        &self.config
    }

    /// Loads, checks and initialises the plugin in `path`.
    ///
    /// # Errors
    /// A message naming the file and what is wrong with it (from the
    /// runtime), including an `init` that refuses its config.
    pub fn load(&self, path: &Path) -> anyhow::Result<Loaded> {
        self.log(LogLevel::Debug, &format!("loading {}", path.display()));
        let base = self.config.resolve(&self.flags, "");
        let mut resolved = None;
        let plugin = Plugin::load_with(&self.runtime, path, settings(&base, "{}".into()), |d| {
            let r = self.config.resolve(&self.flags, &d.name);
            let s = settings(&r, r.config.clone());
            resolved = Some(r);
            Ok(s)
        })?;
        let settings =
            resolved.expect("the runtime asks for settings once describe() named the reactor");
        let name = plugin.descriptor().name.clone();
        for k in settings.grant_emits.iter().flatten() {
            if !plugin.descriptor().emits.contains(k) {
                self.log(
                    LogLevel::Warn,
                    &format!("plugins.{name}.grant_emits lists {k:?}, which reactor {name} does not declare in emits; ignored"),
                );
            }
        }
        let (source, took) = plugin.compile_info();
        self.log(
            LogLevel::Info,
            &format!(
                "loaded {} {} from {} ({}, {} in {:.1} ms{})",
                name,
                plugin.descriptor().version,
                path.display(),
                &plugin.component_digest()[..12],
                match (source, plugin.code_tier()) {
                    // An unchanged file is found by its record in the cache
                    // (its stamps → its digest) and not read again.
                    (CompileSource::Cached, _) => "compile cache",
                    (CompileSource::Compiled, CodeTier::Optimised) => "compiled",
                    (CompileSource::Compiled, CodeTier::Baseline) =>
                        "compiled with the baseline compiler; optimised code follows",
                },
                took.as_secs_f64() * 1e3,
                // An unchanged file is found by its record in the cache (its
                // stamps → its digest) and not read again.
                if plugin.load_steps().file_read {
                    ""
                } else {
                    "; file unchanged since its last load: not read again"
                }
            ),
        );
        Ok(Loaded {
            plugin,
            path: path.to_path_buf(),
            settings,
        })
    }

    /// A line of the `run` command's own.
    pub fn log(&self, level: LogLevel, msg: &str) {
        batpak_runtime::log(self.flags.log_level, level, "run", msg);
    }
}

fn settings(r: &Resolved, config: String) -> PluginSettings {
    PluginSettings {
        config,
        timeout: r.timeout,
        memory_bytes: r.memory_bytes,
        log_level: r.log_level,
        ..PluginSettings::default()
    }
}
