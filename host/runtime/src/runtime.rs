//! The [`Runtime`]: one wasmtime `Engine` with epoch interruption and its
//! ticker thread, one `Linker` (WASI with nothing granted, plus the `host`
//! imports), and the compile cache. Plugins are loaded through it with
//! [`Plugin::load`](super::Plugin::load).

use super::cache::{CacheLimits, CompileCache, CompileSource};
use super::linker::add_to_linker;
use super::plugin_state::PluginState;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

/// Default most linear memories one plugin instance may define.
pub const DEFAULT_MAX_MEMORIES: usize = 4;
/// Default most tables one plugin instance may define. Toolchains add a few
/// (the indirect-call table, wit-component's shim and fixup tables).
pub const DEFAULT_MAX_TABLES: usize = 16;
/// Default largest plugin file read (component binary or text).
pub const DEFAULT_MAX_PLUGIN_FILE_BYTES: u64 = 256 << 20;

/// How to build a [`Runtime`].
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Directory of the compile cache; `None` compiles every time. The CLI
    /// uses the user's cache directory ([`default_cache_dir`]). A directory
    /// that cannot be used safely (see [`prepare_cache_dir`]) is skipped
    /// with a warning: the cache can only cost time, never a load.
    ///
    /// [`default_cache_dir`]: super::default_cache_dir
    /// [`prepare_cache_dir`]: super::prepare_cache_dir
    pub cache_dir: Option<PathBuf>,
    /// Size cap of the compile cache (least recently used entries go first).
    pub cache_limits: CacheLimits,
    /// How often the epoch advances. Call time limits are counted in these
    /// ticks, so this is their resolution.
    pub epoch_tick: Duration,
    /// Most linear memories a component may define in all its core modules;
    /// more is refused at load time.
    pub max_memories: usize,
    /// Most tables a component may define in all its core modules; more is
    /// refused at load time.
    pub max_tables: usize,
    /// Largest plugin file read; a larger one is refused before reading.
    pub max_plugin_file_bytes: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            cache_limits: CacheLimits::default(),
            epoch_tick: Duration::from_millis(10),
            max_memories: DEFAULT_MAX_MEMORIES,
            max_tables: DEFAULT_MAX_TABLES,
            max_plugin_file_bytes: DEFAULT_MAX_PLUGIN_FILE_BYTES,
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

/// Why a [`Runtime`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the engine configuration on this machine.
    #[error("cannot configure the wasm engine on this machine: {0}")]
    Engine(String),
    /// The epoch ticker thread could not be started.
    #[error("cannot start the epoch ticker thread: {0}")]
    Thread(#[source] std::io::Error),
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<PluginState>,
    pub(crate) cache: Option<CompileCache>,
    pub(crate) epoch_tick: Duration,
    pub(crate) config: RuntimeConfig,
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
    /// The engine cannot be configured on this machine, or the ticker thread
    /// cannot start.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let engine_err = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let mut c = Config::new();
        c.wasm_component_model(true);
        // Wall-time limits per call: cheaper than fuel and independent of
        // what the guest executes.
        c.epoch_interruption(true);
        // Determinism: the same version over the same events proposes the
        // same events, on any CPU (NaN bit patterns otherwise differ).
        c.cranelift_nan_canonicalization(true);
        let engine = Engine::new(&c).map_err(engine_err)?;
        let mut linker = Linker::new(&engine);
        add_to_linker(&mut linker).map_err(engine_err)?;
        let cache = config.cache_dir.as_ref().and_then(|d| {
            CompileCache::new(d, &engine, config.cache_limits)
                .map_err(|e| {
                    super::log::log(
                        super::log::LogLevel::Warn,
                        super::log::LogLevel::Warn,
                        "cache",
                        &format!("not using the compile cache: {e}; compiling every plugin afresh"),
                    )
                })
                .ok()
        });
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
            })
            .map_err(RuntimeError::Thread)?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                epoch_tick: tick,
                config,
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

    /// The configuration it was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Compiles a component (or loads it from the cache). `digest` must be
    /// the blake3 hex digest of `bytes`.
    ///
    /// # Errors
    /// The bytes are not a valid component (wasmtime's message).
    pub(crate) fn compile(
        &self,
        digest: &str,
        bytes: &[u8],
    ) -> Result<(Component, CompileSource, Duration), String> {
        match &self.inner.cache {
            Some(cache) => cache
                .load_or_compile(&self.inner.engine, digest, bytes)
                .map_err(|e| format!("{e:#}")),
            None => {
                let started = std::time::Instant::now();
                let c = Component::new(&self.inner.engine, bytes).map_err(|e| format!("{e:#}"))?;
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
}
