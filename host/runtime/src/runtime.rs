//! The [`Runtime`]: the wasmtime `Engine` (Cranelift) with epoch
//! interruption and its ticker thread, one `Linker` (WASI with nothing
//! granted, plus the `host` imports), and the compile cache; and, made on
//! first use, a second engine and linker that compile with Winch, for the
//! baseline code a large component serves on while Cranelift compiles it
//! ([`CodeTier`]). The ticker advances both engines' epochs, so call time
//! limits hold on either tier. Plugins are loaded through it with
//! [`Plugin::load`](super::Plugin::load).

use super::cache::{CacheHit, CacheLimits, CompileCache, CompileSource};
use super::code_tier::CodeTier;
use super::linker::add_to_linker;
use super::plugin_state::PluginState;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Strategy};

/// Default most linear memories one plugin instance may define.
pub const DEFAULT_MAX_MEMORIES: usize = 4;
/// Default most tables one plugin instance may define. Toolchains add a few
/// (the indirect-call table, wit-component's shim and fixup tables).
pub const DEFAULT_MAX_TABLES: usize = 16;
/// Default largest plugin file read (component binary or text).
pub const DEFAULT_MAX_PLUGIN_FILE_BYTES: u64 = 256 << 20;
/// Default size from which a component missing from the compile cache is
/// first served by baseline code ([`RuntimeConfig::baseline_from_bytes`]).
/// Below it Cranelift compiles in well under a second on an idle machine
/// (tens of ms for the Rust, C and WAT examples of 8–110 KB), so optimised
/// code is worth the wait; the 1.7 MB QuickJS component took 1.8–3.1 s
/// under load there, past the 2 s a cold first reaction may take, and
/// starts on Winch.
pub const DEFAULT_BASELINE_FROM_BYTES: u64 = 1 << 20;

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
    /// A component at least this large that is not in the compile cache is
    /// compiled first with Winch, wasmtime's baseline compiler, so it serves
    /// at once, while Cranelift compiles the optimised code (cached as
    /// usual) on a background thread; the plugin moves to that code at a
    /// batch boundary (see [`CodeTier`]). `None` always waits for
    /// Cranelift.
    pub baseline_from_bytes: Option<u64>,
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
            baseline_from_bytes: Some(DEFAULT_BASELINE_FROM_BYTES),
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
    /// The baseline (Winch) engine and its linker, made on first use;
    /// `None` inside when wasmtime refuses it on this machine. Shared with
    /// the epoch ticker, which advances its epoch too.
    baseline: Arc<OnceLock<Option<Baseline>>>,
    /// Background work (optimising compiles) to finish before the runtime
    /// goes away, so a compile the process already paid for reaches the
    /// cache.
    background: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

/// The engine that compiles with Winch, and a linker for it: a component
/// compiled by one engine only instantiates in that engine's stores.
pub(crate) struct Baseline {
    engine: Engine,
    linker: Linker<PluginState>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        let pending = std::mem::take(&mut *self.background.lock());
        for h in pending {
            if !h.is_finished() {
                super::log::log(
                    super::log::LogLevel::Info,
                    super::log::LogLevel::Info,
                    "compile",
                    "waiting for an optimising compile to finish so the compile cache keeps its result",
                );
            }
            let _ = h.join();
        }
    }
}

/// The engine configuration shared by both tiers.
fn engine_config(tier: CodeTier) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    // Wall-time limits per call: cheaper than fuel and independent of
    // what the guest executes.
    c.epoch_interruption(true);
    // Determinism: the same version over the same events proposes the
    // same events, on any CPU (NaN bit patterns otherwise differ). Winch
    // reads the same setting.
    c.cranelift_nan_canonicalization(true);
    if tier == CodeTier::Baseline {
        c.strategy(Strategy::Winch);
        // Winch leaves the trampolines to Cranelift: one per function that
        // escapes (table entries, exports), thousands in CPython, about
        // half of a baseline load. Unoptimised, they compile faster; they
        // run once per call into the guest, so their speed hardly counts.
        c.cranelift_opt_level(wasmtime::OptLevel::None);
    }
    c
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
        let engine = Engine::new(&engine_config(CodeTier::Optimised)).map_err(engine_err)?;
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
        let baseline: Arc<OnceLock<Option<Baseline>>> = Arc::new(OnceLock::new());
        let ticked = baseline.clone();
        std::thread::Builder::new()
            .name("batpak-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => break,
                }
                if let Some(Some(b)) = ticked.get() {
                    b.engine.increment_epoch();
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
                baseline,
                background: parking_lot::Mutex::new(Vec::new()),
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

    /// The engine that compiles (and runs) code of `tier`. The baseline
    /// engine must have been made ([`baseline`](Self::baseline)).
    pub(crate) fn engine_for(&self, tier: CodeTier) -> &Engine {
        match (tier, self.inner.baseline.get()) {
            (CodeTier::Baseline, Some(Some(b))) => &b.engine,
            _ => &self.inner.engine,
        }
    }

    /// The linker of the engine of `tier`.
    pub(crate) fn linker_for(&self, tier: CodeTier) -> &Linker<PluginState> {
        match (tier, self.inner.baseline.get()) {
            (CodeTier::Baseline, Some(Some(b))) => &b.linker,
            _ => &self.inner.linker,
        }
    }

    /// Whether a component of `len` bytes that is not in the cache should
    /// be served by baseline code first.
    pub(crate) fn wants_baseline(&self, len: usize) -> bool {
        self.inner
            .config
            .baseline_from_bytes
            .is_some_and(|min| len as u64 >= min)
    }

    /// The baseline engine, made on first use; `None` (with a warning, once)
    /// when wasmtime refuses it on this machine.
    fn baseline(&self) -> Option<&Baseline> {
        self.inner
            .baseline
            .get_or_init(|| {
                let made = Engine::new(&engine_config(CodeTier::Baseline)).and_then(|engine| {
                    let mut linker = Linker::new(&engine);
                    add_to_linker(&mut linker)?;
                    Ok(Baseline { engine, linker })
                });
                made.map_err(|e| {
                    super::log::log(
                        super::log::LogLevel::Warn,
                        super::log::LogLevel::Warn,
                        "compile",
                        &format!("the baseline compiler (Winch) is not available on this machine: {e:#}; large plugins wait for their optimised compile"),
                    )
                })
                .ok()
            })
            .as_ref()
    }

    /// The optimised code of component `digest` from the compile cache, if
    /// it is there (and passes its checks), and how long loading it took.
    pub(crate) fn cached(&self, digest: &str) -> Option<CacheHit> {
        self.inner.cache.as_ref()?.hit(&self.inner.engine, digest)
    }

    /// Compiles a component with the baseline compiler (never cached).
    ///
    /// # Errors
    /// Winch is not available, or refused the component (wasmtime's
    /// message: a feature it does not implement).
    pub(crate) fn compile_baseline(&self, bytes: &[u8]) -> Result<(Component, Duration), String> {
        let b = self
            .baseline()
            .ok_or_else(|| "the baseline compiler is not available".to_string())?;
        let started = Instant::now();
        let c = Component::new(&b.engine, bytes).map_err(|e| format!("{e:#}"))?;
        Ok((c, started.elapsed()))
    }

    /// Runs `work` on a named thread the runtime waits for before it goes
    /// away.
    pub(crate) fn spawn_background(
        &self,
        name: &str,
        work: Box<dyn FnOnce() + Send>,
    ) -> std::io::Result<()> {
        let h = std::thread::Builder::new().name(name.into()).spawn(work)?;
        let mut pending = self.inner.background.lock();
        pending.retain(|h| !h.is_finished());
        pending.push(h);
        Ok(())
    }

    /// Ticks of the epoch clock for a call time limit (at least one more
    /// than the limit needs, because the first tick may come at once).
    pub(crate) fn deadline_ticks(&self, timeout: Duration) -> u64 {
        let tick = self.inner.epoch_tick.as_micros().max(1);
        (timeout.as_micros().div_ceil(tick) as u64).max(1) + 1
    }
}
