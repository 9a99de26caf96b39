//! Plugin loading and the wasm [`Reactor`]: reads a component file, refuses
//! anything that is not a component of the `reactor-plugin` world with a
//! message naming the file, checks `describe()`, runs `init(config)`, and
//! then drives `react` inside a sandboxed store with a memory limit and a
//! per-call time limit.

use super::bindings::{
    descriptor_from_wit, reaction_from_wit, verdicts_to_wit, wit, BatchBuilder, PluginState,
    EXPORT_INTERFACE, HOST_INTERFACE, TYPES_INTERFACE, WIT_PACKAGE, WIT_WORLD,
};
use super::cache::CompileSource;
use super::engine::Runtime;
use super::log::LogLevel;
use super::reactor::{
    Descriptor, FailureKind, HostServices, ReactFailure, Reaction, ReactionVerdict, Reactor,
};
use batpak_store::{Event, EventId};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Component;

/// Default wall-time limit of one guest call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5000);
/// Default memory limit of one plugin instance.
pub const DEFAULT_MEMORY_BYTES: usize = 256 << 20;

/// Per-plugin settings chosen by the operator.
#[derive(Clone, Debug)]
pub struct PluginSettings {
    /// JSON text handed to `init` (`{}` when not configured).
    pub config: String,
    /// Wall-time limit of one call (`describe`, `init`, `react`).
    pub timeout: Duration,
    /// Memory limit of one instance, in bytes.
    pub memory_bytes: usize,
    /// Lowest level of the plugin's log lines that are printed.
    pub log_level: LogLevel,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            config: "{}".to_string(),
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            log_level: LogLevel::Info,
        }
    }
}

/// What a component imports and exports, and which WIT package it targets.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorldInfo {
    /// Import names (interfaces), in the component's order.
    pub imports: Vec<String>,
    /// Export names.
    pub exports: Vec<String>,
    /// `batpak:reactor@<version>` as found in its exports, if any.
    pub targets: Option<String>,
}

impl WorldInfo {
    fn of(component: &Component, engine: &wasmtime::Engine) -> WorldInfo {
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let targets = exports
            .iter()
            .chain(imports.iter())
            .find_map(|n| n.strip_prefix("batpak:reactor/"))
            .and_then(|rest| rest.split_once('@'))
            .map(|(_, v)| format!("batpak:reactor@{v}"));
        WorldInfo {
            imports,
            exports,
            targets,
        }
    }

    /// Explains why this component cannot be a reactor for this host, if it
    /// cannot.
    fn mismatch(&self) -> Option<String> {
        if let Some(t) = &self.targets {
            if t != WIT_PACKAGE {
                return Some(format!(
                    "it targets {t}, but this host offers {WIT_PACKAGE} (world reactor-plugin); rebuild it against {WIT_PACKAGE}"
                ));
            }
        }
        if !self.exports.iter().any(|e| e == EXPORT_INTERFACE) {
            return Some(format!(
                "it exports [{}] but a reactor must export {EXPORT_INTERFACE} (world {WIT_WORLD})",
                self.exports.join(", ")
            ));
        }
        let foreign: Vec<&str> = self
            .imports
            .iter()
            .map(String::as_str)
            .filter(|i| !i.starts_with("wasi:") && *i != HOST_INTERFACE && *i != TYPES_INTERFACE)
            .collect();
        if !foreign.is_empty() {
            return Some(format!(
                "it imports [{}], which this host does not offer; the host offers {HOST_INTERFACE} and WASI 0.2 with nothing granted",
                foreign.join(", ")
            ));
        }
        None
    }
}

/// The immutable part of a loaded plugin, shared by all its instances.
struct Loaded {
    runtime: Runtime,
    path: PathBuf,
    digest: String,
    descriptor: Descriptor,
    world: WorldInfo,
    pre: wit::ReactorPluginPre<PluginState>,
    settings: PluginSettings,
    compile_source: CompileSource,
    compile_time: Duration,
}

/// A live instance: its own store (memory, limits, host state).
struct Live {
    store: wasmtime::Store<PluginState>,
    bindings: wit::ReactorPlugin,
}

/// A loaded, checked and initialised wasm reactor. Implements [`Reactor`];
/// after any failure its instance is dropped and the next call gets a fresh
/// one (instantiated from the pre-linked component, then `init` again).
pub struct Plugin {
    loaded: Arc<Loaded>,
    live: Option<Live>,
    builder: BatchBuilder,
    services: Option<HostServices>,
    /// Verdicts kept while there is no live instance to hold them.
    verdicts: Vec<wit::batpak::reactor::types::ProposalVerdict>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.loaded.path)
            .field("name", &self.loaded.descriptor.name)
            .field("digest", &self.loaded.digest)
            .finish_non_exhaustive()
    }
}

/// Reads `path` as a component: a binary, or component text (`.wat`).
fn read_component(path: &Path) -> anyhow::Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("plugin {}: no such file", path.display()),
        _ => anyhow::anyhow!("plugin {}: cannot read it: {e}", path.display()),
    })?;
    let bytes = if raw.starts_with(b"\0asm") {
        raw
    } else {
        match std::str::from_utf8(&raw) {
            Ok(text) if text.trim_start().starts_with('(') || text.trim_start().starts_with(";;") => {
                wat::parse_str(text).map_err(|e| {
                    anyhow::anyhow!(
                        "plugin {}: not a WebAssembly component: the text does not parse as WebAssembly text: {e}",
                        path.display()
                    )
                })?
            }
            _ => anyhow::bail!(
                "plugin {}: not a WebAssembly file (a component binary starts with the bytes \\0asm; build one with `cargo build --target wasm32-wasip2`)",
                path.display()
            ),
        }
    };
    if bytes.len() < 8 {
        anyhow::bail!(
            "plugin {}: truncated WebAssembly file ({} bytes)",
            path.display(),
            bytes.len()
        );
    }
    match &bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(bytes),
        [0x01, 0x00, 0x00, 0x00] => anyhow::bail!(
            "plugin {}: this is a core wasm module, not a component; build with --target wasm32-wasip2 or wrap it with `wasm-tools component new`",
            path.display()
        ),
        v => anyhow::bail!(
            "plugin {}: unsupported WebAssembly version/layer bytes {v:02x?}; expected a component (0d 00 01 00)",
            path.display()
        ),
    }
}

/// Compiles (or loads from cache) and checks the world. Shared by `load` and
/// `inspect`.
pub(crate) fn prepare(
    rt: &Runtime,
    path: &Path,
) -> anyhow::Result<(Component, String, WorldInfo, CompileSource, Duration)> {
    let bytes = read_component(path)?;
    let digest = blake3::hash(&bytes).to_hex().to_string();
    let (component, source, took) = rt
        .compile(&digest, &bytes)
        .map_err(|e| anyhow::anyhow!("plugin {}: invalid component: {e:#}", path.display()))?;
    let world = WorldInfo::of(&component, rt.engine());
    if let Some(why) = world.mismatch() {
        anyhow::bail!("plugin {}: not a batpak reactor: {why}", path.display());
    }
    Ok((component, digest, world, source, took))
}

/// Settings chosen once the plugin has said who it is (config is keyed by
/// reactor name).
pub(crate) type ChooseSettings<'a> =
    &'a mut dyn FnMut(&Descriptor) -> anyhow::Result<PluginSettings>;

pub(crate) fn load(
    rt: &Runtime,
    path: &Path,
    base: PluginSettings,
    choose: ChooseSettings<'_>,
) -> anyhow::Result<Plugin> {
    let settings = base;
    let (component, digest, world, compile_source, compile_time) = prepare(rt, path)?;
    let pre = link(rt, path, &component)?;
    let mut store = new_store(rt, "plugin", &settings, None);
    let bindings = pre
        .instantiate(&mut store)
        .map_err(|e| anyhow::anyhow!("plugin {}: cannot instantiate it: {e:#}", path.display()))?;
    let ticks = rt.deadline_ticks(settings.timeout);
    store.set_epoch_deadline(ticks);
    store.data_mut().begin_call();
    let described = bindings.batpak_reactor_reactor().call_describe(&mut store);
    let said = store.data_mut().end_call();
    let descriptor = described.map(descriptor_from_wit).map_err(|e| {
        let f = classify(e, said, &settings);
        anyhow::anyhow!("plugin {}: describe() failed: {f}", path.display())
    })?;
    descriptor.validate().map_err(|e| {
        anyhow::anyhow!(
            "plugin {}: describe() returned an invalid descriptor: {e}",
            path.display()
        )
    })?;
    // `describe` ran with the base settings; the instance that serves runs
    // with the reactor's own limits and config.
    let _ = bindings;
    drop(store);
    let settings =
        choose(&descriptor).map_err(|e| anyhow::anyhow!("plugin {}: {e:#}", path.display()))?;
    let mut store = new_store(rt, &descriptor.name, &settings, None);
    let bindings = pre
        .instantiate(&mut store)
        .map_err(|e| anyhow::anyhow!("plugin {}: cannot instantiate it: {e:#}", path.display()))?;
    let loaded = Arc::new(Loaded {
        runtime: rt.clone(),
        path: path.to_path_buf(),
        digest,
        descriptor,
        world,
        pre,
        settings,
        compile_source,
        compile_time,
    });
    let mut live = Live { store, bindings };
    init(&loaded, &mut live).map_err(|f| match f.kind {
        FailureKind::Error => anyhow::anyhow!(
            "plugin {}: reactor {} refused to start: init returned an error: {}",
            path.display(),
            loaded.descriptor.name,
            f.message
        ),
        _ => anyhow::anyhow!("plugin {}: init() failed: {f}", path.display()),
    })?;
    Ok(Plugin {
        loaded,
        live: Some(live),
        builder: BatchBuilder::default(),
        services: None,
        verdicts: Vec::new(),
    })
}

/// Links a compiled component against the host's imports and checks its
/// exports, naming the file and what the host offers in every error.
fn link(
    rt: &Runtime,
    path: &Path,
    component: &wasmtime::component::Component,
) -> anyhow::Result<wit::ReactorPluginPre<PluginState>> {
    let pre = rt.inner.linker.instantiate_pre(component).map_err(|e| {
        // Name the usual culprit: componentize-js imports wasi:http unless
        // told not to, and the host grants no network at all.
        let world = WorldInfo::of(component, rt.engine());
        let hint = match world.imports.iter().find(|i| i.starts_with("wasi:http/")) {
            Some(i) => format!(
                " It imports {i}, but plugins get no network; with componentize-js build with `-d http fetch-event`, otherwise remove the HTTP dependency."
            ),
            None => String::new(),
        };
        anyhow::anyhow!(
            "plugin {}: its imports do not match what this host offers ({HOST_INTERFACE} and WASI 0.2 with nothing granted): {e:#}.{hint}",
            path.display()
        )
    })?;
    wit::ReactorPluginPre::new(pre).map_err(|e| {
        anyhow::anyhow!(
            "plugin {}: its exports do not match {EXPORT_INTERFACE}: {e:#}",
            path.display()
        )
    })
}

fn new_store(
    rt: &Runtime,
    name: &str,
    settings: &PluginSettings,
    services: Option<HostServices>,
) -> wasmtime::Store<PluginState> {
    let state = PluginState::new(name, settings.log_level, settings.memory_bytes, services);
    let mut store = wasmtime::Store::new(rt.engine(), state);
    store.limiter(|s| &mut s.limits);
    // Instantiation may run guest code (start functions) too.
    store.set_epoch_deadline(rt.deadline_ticks(settings.timeout));
    store
}

fn init(loaded: &Loaded, live: &mut Live) -> Result<(), ReactFailure> {
    let ticks = loaded.runtime.deadline_ticks(loaded.settings.timeout);
    live.store.set_epoch_deadline(ticks);
    live.store.data_mut().begin_call();
    let r = live
        .bindings
        .batpak_reactor_reactor()
        .call_init(&mut live.store, &loaded.settings.config);
    let said = live.store.data_mut().end_call();
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(msg)) => Err(ReactFailure::new(FailureKind::Error, msg)),
        Err(e) => Err(classify(e, said, &loaded.settings)),
    }
}

/// Turns a wasmtime error from a guest call into a failure with a cause a
/// human can act on.
fn classify(
    err: wasmtime::Error,
    stderr: Option<String>,
    settings: &PluginSettings,
) -> ReactFailure {
    let trap = err.downcast_ref::<wasmtime::Trap>().copied();
    let chain: Vec<String> = err.chain().map(|e| e.to_string()).collect();
    let said = stderr
        .map(|s| format!(" (the plugin wrote to stderr: {s})"))
        .unwrap_or_default();
    if trap == Some(wasmtime::Trap::Interrupt) {
        return ReactFailure::new(
            FailureKind::Timeout,
            format!(
                "the call ran longer than its {} ms limit and was interrupted",
                settings.timeout.as_millis()
            ),
        );
    }
    if chain.iter().any(|c| c.contains("growing memory"))
        || trap == Some(wasmtime::Trap::AllocationTooLarge)
    {
        return ReactFailure::new(
            FailureKind::OutOfMemory,
            format!(
                "the plugin tried to use more than its memory limit of {} MiB{said}",
                settings.memory_bytes >> 20
            ),
        );
    }
    match trap {
        Some(t) => ReactFailure::new(FailureKind::Trap, format!("{t}{said}")),
        None => ReactFailure::new(
            FailureKind::Trap,
            format!(
                "{}{said}",
                chain
                    .first()
                    .map(String::as_str)
                    .unwrap_or("unknown failure")
            ),
        ),
    }
}

impl Plugin {
    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.loaded.path
    }

    /// blake3 hex digest of the component bytes.
    pub fn component_digest(&self) -> &str {
        &self.loaded.digest
    }

    /// What the component imports, exports and targets.
    pub fn world(&self) -> &WorldInfo {
        &self.loaded.world
    }

    /// The settings it was loaded with.
    pub fn settings(&self) -> &PluginSettings {
        &self.loaded.settings
    }

    /// Whether the compiled code came from the cache, and how long getting
    /// it took.
    pub fn compile_info(&self) -> (CompileSource, Duration) {
        (self.loaded.compile_source, self.loaded.compile_time)
    }

    /// Instantiates a throwaway instance (without `init`) and reports how
    /// long that took: the cost paid after every failure.
    ///
    /// # Errors
    /// The instantiation failed.
    pub fn measure_instantiate(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut store = new_store(
            &self.loaded.runtime,
            &self.loaded.descriptor.name,
            &self.loaded.settings,
            None,
        );
        let _bindings = self
            .loaded
            .pre
            .instantiate(&mut store)
            .map_err(super::wasm_error)?;
        Ok(started.elapsed())
    }

    /// A fresh, independent instance of the same component (`init` run),
    /// sharing the compiled code.
    ///
    /// # Errors
    /// Instantiation or `init` failed.
    pub fn fresh(&self) -> Result<Plugin, ReactFailure> {
        let mut p = Plugin {
            loaded: self.loaded.clone(),
            live: None,
            builder: BatchBuilder::default(),
            services: self.services.clone(),
            verdicts: Vec::new(),
        };
        p.ensure_live()?;
        Ok(p)
    }

    fn ensure_live(&mut self) -> Result<&mut Live, ReactFailure> {
        if self.live.is_none() {
            let l = &self.loaded;
            let mut store = new_store(
                &l.runtime,
                &l.descriptor.name,
                &l.settings,
                self.services.clone(),
            );
            let bindings = l.pre.instantiate(&mut store).map_err(|e| {
                ReactFailure::new(
                    FailureKind::Instantiate,
                    format!("cannot instantiate: {e:#}"),
                )
            })?;
            let mut live = Live { store, bindings };
            init(l, &mut live).map_err(|f| {
                ReactFailure::new(
                    FailureKind::Instantiate,
                    format!("init of a fresh instance failed: {f}"),
                )
            })?;
            live.store.data_mut().host.last_verdicts = std::mem::take(&mut self.verdicts);
            self.live = Some(live);
        }
        Ok(self.live.as_mut().expect("live instance"))
    }
}

impl Reactor for Plugin {
    fn descriptor(&self) -> &Descriptor {
        &self.loaded.descriptor
    }

    fn digest(&self) -> &str {
        &self.loaded.digest
    }

    fn attach(&mut self, host: HostServices) {
        if let Some(live) = self.live.as_mut() {
            live.store.data_mut().host.services = Some(host.clone());
        }
        self.services = Some(host);
    }

    fn react(&mut self, batch: &[Event]) -> Result<Vec<Reaction>, ReactFailure> {
        let ticks = self
            .loaded
            .runtime
            .deadline_ticks(self.loaded.settings.timeout);
        self.ensure_live()?;
        let Plugin { live, builder, .. } = self;
        let live = live.as_mut().expect("live instance");
        let mut sources: Vec<EventId> = std::mem::take(&mut live.store.data_mut().host.sources);
        let wit_batch = match builder.build(batch, &mut sources) {
            Ok(b) => b,
            Err(m) => {
                live.store.data_mut().host.sources = sources;
                return Err(ReactFailure::new(FailureKind::OutOfMemory, m));
            }
        };
        {
            let data = live.store.data_mut();
            data.host.sources = sources;
            data.host.in_react = true;
            data.begin_call();
        }
        live.store.set_epoch_deadline(ticks);
        let r = live
            .bindings
            .batpak_reactor_reactor()
            .call_react(&mut live.store, wit_batch);
        let data = live.store.data_mut();
        data.host.in_react = false;
        let said = data.end_call();
        match r {
            Ok(Ok(proposals)) => Ok(proposals.into_iter().map(reaction_from_wit).collect()),
            Ok(Err(e)) => Err(ReactFailure {
                kind: FailureKind::Error,
                message: e.message,
                event: e.event,
            }),
            Err(e) => {
                let f = classify(e, said, &self.loaded.settings);
                self.reset();
                Err(f)
            }
        }
    }

    fn verdicts(&mut self, verdicts: Vec<ReactionVerdict>) {
        let v = verdicts_to_wit(verdicts);
        match self.live.as_mut() {
            Some(live) => live.store.data_mut().host.last_verdicts = v,
            None => self.verdicts = v,
        }
    }

    fn reset(&mut self) {
        if let Some(mut live) = self.live.take() {
            self.verdicts = std::mem::take(&mut live.store.data_mut().host.last_verdicts);
        }
    }
}

/// What `inspect` reports about a component, without a store.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    /// The file.
    pub file: PathBuf,
    /// blake3 hex digest of the component bytes.
    pub digest: String,
    /// The world this host expects.
    pub world: &'static str,
    /// Imports, exports and the WIT package version the component targets.
    pub component: WorldInfo,
    /// What `describe()` returned.
    pub descriptor: serde_json::Value,
    /// What `init(config)` answered: `{"ok": true}` or `{"ok": false,
    /// "error": ...}`.
    pub init: serde_json::Value,
}

/// Loads `path` with nothing granted and reports what it says about itself.
///
/// # Errors
/// The same refusals as loading for `run`, except a failing `init`, which is
/// reported in the result instead.
pub fn inspect(rt: &Runtime, path: &Path, settings: PluginSettings) -> anyhow::Result<Inspection> {
    let (component, digest, world, _, _) = prepare(rt, path)?;
    let pre = link(rt, path, &component)?;
    let mut store = new_store(rt, "inspect", &settings, None);
    let bindings = pre
        .instantiate(&mut store)
        .map_err(|e| anyhow::anyhow!("plugin {}: cannot instantiate it: {e:#}", path.display()))?;
    store.set_epoch_deadline(rt.deadline_ticks(settings.timeout));
    store.data_mut().begin_call();
    let d = bindings.batpak_reactor_reactor().call_describe(&mut store);
    let said = store.data_mut().end_call();
    let d = d.map_err(|e| {
        anyhow::anyhow!(
            "plugin {}: describe() failed: {}",
            path.display(),
            classify(e, said, &settings)
        )
    })?;
    let descriptor = descriptor_from_wit(d);
    let valid = descriptor.validate();
    let mut json = descriptor_json(&descriptor);
    if let Err(e) = &valid {
        json["invalid"] = serde_json::Value::String(e.clone());
    }
    store.set_epoch_deadline(rt.deadline_ticks(settings.timeout));
    store.data_mut().begin_call();
    let init = bindings
        .batpak_reactor_reactor()
        .call_init(&mut store, &settings.config);
    let said = store.data_mut().end_call();
    let init = match init {
        Ok(Ok(())) => serde_json::json!({ "ok": true }),
        Ok(Err(msg)) => serde_json::json!({ "ok": false, "error": msg }),
        Err(e) => {
            serde_json::json!({ "ok": false, "error": classify(e, said, &settings).to_string() })
        }
    };
    Ok(Inspection {
        file: path.to_path_buf(),
        digest,
        world: WIT_WORLD,
        component: world,
        descriptor: json,
        init,
    })
}

/// A descriptor as JSON (the shape `inspect` prints).
pub fn descriptor_json(d: &Descriptor) -> serde_json::Value {
    serde_json::json!({
        "name": d.name,
        "version": d.version,
        "region": {
            "kinds": d.region.kinds,
            "entity_prefix": d.region.entity_prefix,
            "scope": d.region.scope,
        },
        "canal": match d.canal {
            batpak_store::ReactorCanal::CursorGuaranteed => "cursor-guaranteed",
            batpak_store::ReactorCanal::LossySubscription => "lossy-subscription",
        },
        "emits": d.emits,
        "max_batch": d.max_batch,
    })
}
