//! The [`Runtime`]: one wasmtime `Engine` with epoch interruption and its
//! ticker thread, one `Linker` (WASI with nothing granted, plus the `host`
//! imports), and the compile cache. Plugins are loaded through it.

use super::bindings::{self, PluginState};
use super::cache::{CompileCache, CompileSource};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

/// How to build a [`Runtime`].
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Directory of the compile cache; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch advances. Call time limits are counted in these
    /// ticks, so this is their resolution.
    pub epoch_tick: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

impl RuntimeConfig {
    /// The default configuration with a compile cache in `dir`.
    pub fn with_cache(dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            cache_dir: Some(dir.into()),
            ..Self::default()
        }
    }
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<PluginState>,
    pub(crate) cache: Option<CompileCache>,
    pub(crate) epoch_tick: Duration,
}

/// The shared wasm machinery. Cheap to clone; the epoch ticker runs while
/// any clone (or any plugin loaded through it) is alive.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field(
                "cache",
                &self.inner.cache.as_ref().map(|c| c.dir().to_path_buf()),
            )
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Creates the engine, the linker and the epoch ticker.
    ///
    /// # Errors
    /// The engine cannot be configured on this machine.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let mut c = Config::new();
        c.wasm_component_model(true);
        // Wall-time limits per call: cheaper than fuel and independent of
        // what the guest executes.
        c.epoch_interruption(true);
        let engine = Engine::new(&c).map_err(super::wasm_error)?;
        let mut linker = Linker::new(&engine);
        bindings::add_to_linker(&mut linker).map_err(super::wasm_error)?;
        let cache = config
            .cache_dir
            .as_ref()
            .map(|d| CompileCache::new(d, &engine));
        let tick = config.epoch_tick.max(Duration::from_millis(1));
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("batpak-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => break,
                }
            })?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                epoch_tick: tick,
            }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The compile cache, if any.
    pub fn cache(&self) -> Option<&CompileCache> {
        self.inner.cache.as_ref()
    }

    /// Compiles a component (or loads it from the cache). `digest` must be
    /// the blake3 hex digest of `bytes`.
    ///
    /// # Errors
    /// The bytes are not a valid component.
    pub fn compile(
        &self,
        digest: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CompileSource, Duration)> {
        match &self.inner.cache {
            Some(cache) => cache.load_or_compile(&self.inner.engine, digest, bytes),
            None => {
                let started = std::time::Instant::now();
                let c = Component::new(&self.inner.engine, bytes)?;
                Ok((c, CompileSource::Compiled, started.elapsed()))
            }
        }
    }

    /// Ticks of the epoch clock for a call time limit (at least one more
    /// than the limit needs, because the first tick may come at once).
    pub(crate) fn deadline_ticks(&self, timeout: Duration) -> u64 {
        let tick = self.inner.epoch_tick.as_micros().max(1);
        (timeout.as_micros().div_ceil(tick) as u64).max(1) + 1
    }

    /// Loads, checks and initialises the plugin in `path`. See
    /// [`super::Plugin`].
    ///
    /// # Errors
    /// A message naming the file and what is wrong with it.
    pub fn load_plugin(
        &self,
        path: impl AsRef<Path>,
        settings: super::PluginSettings,
    ) -> anyhow::Result<super::Plugin> {
        let s = settings.clone();
        super::plugin::load(self, path.as_ref(), settings, &mut |_| Ok(s.clone()))
    }

    /// Like [`load_plugin`](Self::load_plugin), but the settings for `init`
    /// and for running are chosen by `choose` once `describe()` has named
    /// the reactor (`base` applies to `describe` itself).
    ///
    /// # Errors
    /// As [`load_plugin`](Self::load_plugin), or `choose`'s error.
    pub fn load_plugin_with(
        &self,
        path: impl AsRef<Path>,
        base: super::PluginSettings,
        mut choose: impl FnMut(&super::Descriptor) -> anyhow::Result<super::PluginSettings>,
    ) -> anyhow::Result<super::Plugin> {
        super::plugin::load(self, path.as_ref(), base, &mut choose)
    }
}
