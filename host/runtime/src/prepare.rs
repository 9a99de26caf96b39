//! The steps shared by loading a plugin and inspecting one: read and check
//! the file, compile it (or load it from the cache), check its world, link
//! it, and make a sandboxed store for an instance.

use super::bindings::{Bindings, Pre};
use super::cache::{CacheHit, CompileSource};
use super::code_tier::CodeTier;
use super::component_file::{open_component, read_opened, scan, targeted_wit};
use super::failure::ReactFailure;
use super::file_record::Known;
use super::load_error::LoadError;
use super::load_steps::LoadSteps;
use super::log::{log, LogLevel};
use super::optimisation::Optimisation;
use super::plugin_state::{PluginState, StateSettings};
use super::random::RandomSource;
use super::runtime::Runtime;
use super::services::HostServices;
use super::trap::{classify, CallLimits};
use super::wit::WitVersion;
use super::world::WorldInfo;
use batpak_store::EventId;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::Component;

/// Default wall-time limit of one guest call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5000);
/// Default memory budget of one plugin instance (all its memories and
/// tables together).
pub const DEFAULT_MEMORY_BYTES: usize = 256 << 20;
/// Most bytes wasmtime copies out of a guest's memory in one lift: the
/// result of one call (`describe`, `init`, `react`: a `@0.1.0` list of
/// proposals, a `@0.2.0` buffer, a `react-error`) or the arguments of one
/// import call (`log`, `check`, ...). Every string and list is counted each
/// time it is lifted, so records that share one range of memory count its
/// bytes each time: a lift past this fails the call before the host has
/// allocated more than this (wasmtime's "hostcall fuel"). Above the largest
/// honest output (64 MiB of payload plus names, about 70 MiB).
pub const MAX_LIFT_BYTES: usize = 128 << 20;

/// Per-plugin settings chosen by the operator.
#[derive(Clone, Debug)]
pub struct PluginSettings {
    /// JSON text handed to `init` (`{}` when not configured).
    pub config: String,
    /// Wall-time limit of one call (`describe`, `init`, `react`, and
    /// instantiation, which may run a start function).
    pub timeout: Duration,
    /// Memory budget of one instance in bytes: all its linear memories and
    /// tables together.
    pub memory_bytes: usize,
    /// Lowest level of the plugin's log lines that are printed.
    pub log_level: LogLevel,
    /// Where its `wasi:random` comes from (deterministic unless granted).
    pub random: RandomSource,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            config: "{}".to_string(),
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            log_level: LogLevel::Info,
            random: RandomSource::Deterministic,
        }
    }
}

impl PluginSettings {
    pub(crate) fn limits(&self) -> CallLimits {
        CallLimits {
            timeout: self.timeout,
            memory_bytes: self.memory_bytes,
        }
    }
}

/// A component read, checked, compiled and linked.
pub(crate) struct Prepared {
    pub(crate) digest: String,
    pub(crate) world: WorldInfo,
    /// Linked code of tier `tier`.
    pub(crate) pre: Pre,
    pub(crate) tier: CodeTier,
    /// The optimised compile under way when `tier` is baseline.
    pub(crate) optimisation: Option<Arc<Optimisation>>,
    pub(crate) version: WitVersion,
    pub(crate) compile_source: CompileSource,
    pub(crate) compile_time: Duration,
    /// Where the time went (the caller adds `describe` and `init`).
    pub(crate) steps: LoadSteps,
}

/// Whether a load may be served by baseline code first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tiering {
    /// A plugin that serves: large components missing from the cache start
    /// on baseline code (see [`CodeTier`]).
    Allowed,
    /// Optimised code only (`inspect`: nothing to serve, and its result
    /// should warm the cache).
    OptimisedOnly,
}

/// Compiled code and where it came from, before its world is checked.
struct Code {
    component: Component,
    tier: CodeTier,
    source: CompileSource,
    took: Duration,
}

/// Refuses a component with more memories or tables than the runtime
/// allows.
fn check_counts(
    rt: &Runtime,
    path: &Path,
    memories: usize,
    tables: usize,
) -> Result<(), LoadError> {
    let cfg = rt.config();
    if memories > cfg.max_memories {
        return Err(LoadError::TooManyMemories {
            path: path.to_path_buf(),
            count: memories,
            max: cfg.max_memories,
        });
    }
    if tables > cfg.max_tables {
        return Err(LoadError::TooManyTables {
            path: path.to_path_buf(),
            count: tables,
            max: cfg.max_tables,
        });
    }
    Ok(())
}

/// Reads, checks, compiles (or loads from the cache) and links `path`.
///
/// With a compile cache, a file whose record shows it unchanged since its
/// content was hashed ([`super::file_record`]) is neither read nor hashed
/// again when its compiled code is in the cache: the record gives the
/// digest and the structure scan's counts. Otherwise (no record, a file
/// changed in any way, the entry missing or damaged) the file is read from
/// the descriptor just opened, scanned and hashed, and the record written.
pub(crate) fn prepare(rt: &Runtime, path: &Path, tiering: Tiering) -> Result<Prepared, LoadError> {
    let cfg = rt.config();
    let mut steps = LoadSteps::default();
    let p = || path.to_path_buf();
    let opened_at = SystemTime::now();
    let t = Instant::now();
    let opened = open_component(path, cfg.max_plugin_file_bytes)?;
    steps.open = t.elapsed();
    if let Some(cache) = rt.cache() {
        let t = Instant::now();
        let known = cache.known_file(path, &opened.file, &opened.meta);
        steps.file_record = t.elapsed();
        if let Some(known) = known {
            check_counts(rt, path, known.memories as usize, known.tables as usize)?;
            if let Some(hit) = rt.cached(&known.digest) {
                let code = from_cache(hit, &mut steps);
                return finish(rt, path, known.digest, code, steps);
            }
        }
    }
    steps.file_read = true;
    let t = Instant::now();
    let bytes = read_opened(&opened, path, cfg.max_plugin_file_bytes)?;
    steps.read = t.elapsed();
    let t = Instant::now();
    let structure = scan(&bytes);
    steps.scan = t.elapsed();
    if let Some(feature) = structure.async_feature {
        return Err(LoadError::NeedsAsync { path: p(), feature });
    }
    check_counts(rt, path, structure.memories, structure.tables)?;
    let t = Instant::now();
    let digest = blake3::hash(&bytes).to_hex().to_string();
    steps.hash = t.elapsed();
    if let Some(cache) = rt.cache() {
        let t = Instant::now();
        let known = Known {
            digest: digest.clone(),
            len: bytes.len() as u64,
            memories: u32::try_from(structure.memories).unwrap_or(u32::MAX),
            tables: u32::try_from(structure.tables).unwrap_or(u32::MAX),
        };
        cache.remember_file(path, &opened.file, &opened.meta, opened_at, &known);
        steps.file_record += t.elapsed();
    }
    if let Some(hit) = rt.cached(&digest) {
        let code = from_cache(hit, &mut steps);
        return finish(rt, path, digest, code, steps);
    }
    if tiering == Tiering::Allowed && rt.wants_baseline(bytes.len()) {
        match rt.compile_baseline(&bytes) {
            Ok((component, took)) => {
                steps.compile = took;
                let code = Code {
                    component,
                    tier: CodeTier::Baseline,
                    source: CompileSource::Compiled,
                    took,
                };
                let mut done = finish(rt, path, digest.clone(), code, steps)?;
                log(
                    LogLevel::Info,
                    LogLevel::Info,
                    "compile",
                    &format!(
                        "{} ({:.1} MB) is not in the compile cache: serving it on baseline code (Winch, compiled in {:.2} s) while Cranelift compiles its optimised code",
                        path.display(),
                        bytes.len() as f64 / 1e6,
                        took.as_secs_f64()
                    ),
                );
                // Only a component that passed every check is worth
                // optimising.
                done.optimisation = Some(Optimisation::start(rt, path, digest, bytes));
                return Ok(done);
            }
            Err(e) => log(
                LogLevel::Warn,
                LogLevel::Warn,
                "compile",
                &format!(
                    "the baseline compiler cannot compile {}: {e}; it serves once Cranelift has compiled it",
                    path.display()
                ),
            ),
        }
    }
    let (component, source, took) = rt.compile(&digest, &bytes).map_err(|message| {
        // A component built for a contract this host does not offer may
        // not even compile here (newer features): say so, from the bytes
        // already read (the file is never read twice).
        match targeted_wit(&bytes) {
            Some(found) if WitVersion::of_package(&found).is_none() => LoadError::WrongWorld {
                path: p(),
                found,
                expected: super::wit::OFFERED_PACKAGES,
            },
            _ => LoadError::InvalidComponent { path: p(), message },
        }
    })?;
    steps.compile = took;
    let code = Code {
        component,
        tier: CodeTier::Optimised,
        source,
        took,
    };
    finish(rt, path, digest, code, steps)
}

/// Checks the world of compiled code and links it.
/// The code of a compile-cache hit (only optimised code is cached), its
/// check and deserialisation times noted in `steps`.
fn from_cache(hit: CacheHit, steps: &mut LoadSteps) -> Code {
    steps.cache_check = hit.check;
    steps.deserialize = hit.deserialize;
    Code {
        component: hit.component,
        tier: CodeTier::Optimised,
        source: CompileSource::Cached,
        took: hit.check + hit.deserialize,
    }
}

fn finish(
    rt: &Runtime,
    path: &Path,
    digest: String,
    code: Code,
    mut steps: LoadSteps,
) -> Result<Prepared, LoadError> {
    let t = Instant::now();
    let world = WorldInfo::of(&code.component, rt.engine_for(code.tier));
    let version = world.check(path)?;
    let pre = link(rt, code.tier, path, &code.component, version)?;
    steps.link = t.elapsed();
    Ok(Prepared {
        digest,
        world,
        pre,
        tier: code.tier,
        optimisation: None,
        version,
        compile_source: code.source,
        compile_time: code.took,
        steps,
    })
}

/// Links a compiled component against the host's imports and checks its
/// exports against the world of `version`.
pub(crate) fn link(
    rt: &Runtime,
    tier: CodeTier,
    path: &Path,
    component: &Component,
    version: WitVersion,
) -> Result<Pre, LoadError> {
    let pre = rt
        .linker_for(tier)
        .instantiate_pre(component)
        .map_err(|e| LoadError::Link {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
    Pre::new(version, pre).map_err(|e| LoadError::Exports {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    })
}

/// A sandboxed store for one instance of a plugin named `name`, running
/// code of `tier`.
pub(crate) fn new_store(
    rt: &Runtime,
    tier: CodeTier,
    name: &str,
    settings: &PluginSettings,
    services: Option<HostServices>,
) -> wasmtime::Store<PluginState> {
    let cfg = rt.config();
    let state = PluginState::new(
        StateSettings {
            name,
            log_level: settings.log_level,
            memory_bytes: settings.memory_bytes,
            max_memories: cfg.max_memories,
            max_tables: cfg.max_tables,
            random: settings.random,
        },
        services,
    );
    let mut store = wasmtime::Store::new(rt.engine_for(tier), state);
    store.limiter(|s| &mut s.budget);
    // Set, not left to wasmtime's default (the same figure today), so the
    // documented bound holds whatever a wasmtime upgrade changes.
    store.set_hostcall_fuel(MAX_LIFT_BYTES);
    // Instantiation may run guest code (start functions) too.
    store.set_epoch_deadline(rt.deadline_ticks(settings.timeout));
    store
}

/// Instantiates `pre` in `store`, classifying a failure (a start function
/// that traps, loops or grows past the budget).
pub(crate) fn instantiate(
    pre: &Pre,
    store: &mut wasmtime::Store<PluginState>,
    settings: &PluginSettings,
) -> Result<Bindings, ReactFailure> {
    store.data_mut().begin_call(None);
    let r = pre.instantiate(&mut *store);
    let said = store.data_mut().end_call(r.is_err());
    r.map_err(|e| {
        let refused = store.data_mut().budget.take_refusal();
        classify(e, said, refused, &settings.limits())
    })
}

/// Runs one guest call under the time limit, with output capture and
/// classification of a failure. `first` seeds the call's randomness.
pub(crate) fn call<T>(
    rt: &Runtime,
    store: &mut wasmtime::Store<PluginState>,
    settings: &PluginSettings,
    first: Option<EventId>,
    f: impl FnOnce(&mut wasmtime::Store<PluginState>) -> wasmtime::Result<T>,
) -> Result<T, ReactFailure> {
    store.set_epoch_deadline(rt.deadline_ticks(settings.timeout));
    store.data_mut().begin_call(first);
    let r = f(store);
    let said = store.data_mut().end_call(r.is_err());
    r.map_err(|e| {
        let refused = store.data_mut().budget.take_refusal();
        classify(e, said, refused, &settings.limits())
    })
}
