//! The wasm [`Plugin`]: a component loaded with [`Plugin::load`] — file
//! checked, compiled, linked, `describe()` checked and `init(config)` run —
//! that then drives `react` inside a sandboxed store with one memory budget
//! and a per-call time limit. Implements [`Reactor`].

use super::batch_builder::BatchBuilder;
use super::bindings::{Bindings, Pre};
use super::cache::CompileSource;
use super::code_tier::CodeTier;
use super::convert::{descriptor_from_wit, reaction_from_wit, verdicts_to_wit};
use super::descriptor::Descriptor;
use super::failure::{FailureKind, ReactFailure};
use super::flat_batch::FlatBatch;
use super::flat_proposals;
use super::guest_text::clip_guest_error;
use super::load_error::LoadError;
use super::load_steps::LoadSteps;
use super::log::{log, LogLevel};
use super::plugin_state::PluginState;
use super::prepare::{
    call, instantiate, link, new_store, prepare, PluginSettings, Prepared, Tiering,
};
use super::reaction::{Reaction, ReactionVerdict};
use super::reactor::Reactor;
use super::runtime::Runtime;
use super::services::HostServices;
use super::wit::types as w;
use super::wit::WitVersion;
use super::world::WorldInfo;
use batpak_store::{EventId, EventView};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The immutable part of a loaded plugin, shared by all its instances.
struct Loaded {
    runtime: Runtime,
    path: PathBuf,
    descriptor: Descriptor,
    prepared: Prepared,
    settings: PluginSettings,
    /// The optimised code, linked, once the background compile of a
    /// plugin that started on baseline code has finished (`None` inside
    /// when it failed: the plugin stays on baseline code). Shared by every
    /// instance of the plugin.
    optimised: OnceLock<Option<Pre>>,
}

/// The linked code an instance is made from, and its tier.
#[derive(Clone)]
struct Code {
    pre: Pre,
    tier: CodeTier,
}

/// A live instance: its own store (memory budget, limits, host state).
struct Live {
    store: wasmtime::Store<PluginState>,
    bindings: Bindings,
}

/// A loaded, checked and initialised wasm reactor. Implements [`Reactor`];
/// after any failure its instance is dropped and the next call gets a fresh
/// one (instantiated from the pre-linked component, then `init` again).
pub struct Plugin {
    loaded: Arc<Loaded>,
    /// The code new instances are made from: baseline until the optimised
    /// code is ready, then optimised for good.
    code: Code,
    live: Option<Live>,
    /// Builds 0.1.0 batches (WIT records).
    builder: BatchBuilder,
    /// Encodes 0.2.0 batches (one flat buffer).
    flat: FlatBatch,
    services: Option<HostServices>,
    /// Verdicts kept while there is no live instance to hold them.
    verdicts: Vec<w::ProposalVerdict>,
    /// Where the time of its load went.
    steps: LoadSteps,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.loaded.path)
            .field("name", &self.loaded.descriptor.name)
            .field("digest", &self.loaded.prepared.digest)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Loads, checks and initialises the plugin in `path`: a regular file
    /// no larger than the runtime's limit, a component of the
    /// `reactor-plugin` world importing only what the host offers, within
    /// the memory and table counts, whose `describe()` is valid and whose
    /// `init(settings.config)` succeeds.
    ///
    /// # Errors
    /// A [`LoadError`] naming the file and what is wrong with it.
    pub fn load(
        runtime: &Runtime,
        path: impl AsRef<Path>,
        settings: PluginSettings,
    ) -> Result<Plugin, LoadError> {
        let s = settings.clone();
        Self::load_with(runtime, path, settings, |_| Ok(s.clone()))
    }

    /// Like [`load`](Self::load), but the settings for `init` and for
    /// running are chosen by `choose` once `describe()` has named the
    /// reactor (`base` applies to `describe` itself).
    ///
    /// # Errors
    /// As [`load`](Self::load); `choose`'s error becomes
    /// [`LoadError::Settings`].
    pub fn load_with(
        runtime: &Runtime,
        path: impl AsRef<Path>,
        base: PluginSettings,
        mut choose: impl FnMut(&Descriptor) -> Result<PluginSettings, String>,
    ) -> Result<Plugin, LoadError> {
        let path = path.as_ref();
        let p = || path.to_path_buf();
        let mut prepared = prepare(runtime, path, Tiering::Allowed)?;
        let tier = prepared.tier;
        let t = Instant::now();
        let descriptor = {
            let mut store = new_store(runtime, tier, "plugin", &base, None);
            let bindings = instantiate(&prepared.pre, &mut store, &base)
                .map_err(|failure| LoadError::Instantiate { path: p(), failure })?;
            prepared.steps.instantiate = t.elapsed();
            call(runtime, &mut store, &base, None, |s| bindings.describe(s))
                .map(descriptor_from_wit)
                .map_err(|failure| LoadError::DescribeFailed { path: p(), failure })?
        };
        prepared.steps.describe = t.elapsed() - prepared.steps.instantiate;
        descriptor
            .validate()
            .map_err(|message| LoadError::InvalidDescriptor { path: p(), message })?;
        // `describe` ran with the base settings; the instance that serves
        // runs with the reactor's own limits and config.
        let settings =
            choose(&descriptor).map_err(|message| LoadError::Settings { path: p(), message })?;
        let t = Instant::now();
        let mut store = new_store(runtime, tier, &descriptor.name, &settings, None);
        let bindings = instantiate(&prepared.pre, &mut store, &settings)
            .map_err(|failure| LoadError::Instantiate { path: p(), failure })?;
        let reinstantiate = t.elapsed();
        let code = Code {
            pre: prepared.pre.clone(),
            tier,
        };
        let loaded = Arc::new(Loaded {
            runtime: runtime.clone(),
            path: p(),
            descriptor,
            prepared,
            settings,
            optimised: OnceLock::new(),
        });
        let mut live = Live { store, bindings };
        init(&loaded, &mut live).map_err(|failure| LoadError::InitFailed {
            path: p(),
            reactor: loaded.descriptor.name.clone(),
            failure,
        })?;
        let mut steps = loaded.prepared.steps;
        steps.reinstantiate = reinstantiate;
        steps.init = t.elapsed() - reinstantiate;
        Ok(Plugin {
            steps,
            loaded,
            code,
            live: Some(live),
            builder: BatchBuilder::default(),
            flat: FlatBatch::default(),
            services: None,
            verdicts: Vec::new(),
        })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.loaded.path
    }

    /// blake3 hex digest of the component bytes.
    pub fn component_digest(&self) -> &str {
        &self.loaded.prepared.digest
    }

    /// What the component imports, exports and targets.
    pub fn world(&self) -> &WorldInfo {
        &self.loaded.prepared.world
    }

    /// The version of the `batpak:reactor` contract it targets.
    pub fn wit_version(&self) -> WitVersion {
        self.loaded.prepared.version
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &PluginSettings {
        &self.loaded.settings
    }

    /// Whether the compiled code came from the cache, and how long getting
    /// it took.
    pub fn compile_info(&self) -> (CompileSource, Duration) {
        (
            self.loaded.prepared.compile_source,
            self.loaded.prepared.compile_time,
        )
    }

    /// Where the time of its load went, step by step (the load that made
    /// this plugin; a [`fresh`](Self::fresh) copy reports the same).
    pub fn load_steps(&self) -> &LoadSteps {
        &self.steps
    }

    /// The tier of the code it runs now: [`CodeTier::Baseline`] from a
    /// cold load of a large component until the batch boundary after its
    /// optimised compile finished, else [`CodeTier::Optimised`].
    pub fn code_tier(&self) -> CodeTier {
        self.code.tier
    }

    /// Waits at most `timeout` for the optimised compile of a plugin that
    /// runs on baseline code; true when it has finished (or there is none).
    /// The plugin itself moves to the new code at its next `react`.
    pub fn wait_optimised(&self, timeout: Duration) -> bool {
        match &self.loaded.prepared.optimisation {
            Some(o) if self.code.tier == CodeTier::Baseline => o.wait(timeout),
            _ => true,
        }
    }

    /// Instantiates a throwaway instance (without `init`) and reports how
    /// long that took: the cost paid after every failure.
    ///
    /// # Errors
    /// The instantiation failed.
    pub fn measure_instantiate(&self) -> Result<Duration, ReactFailure> {
        let l = &self.loaded;
        let started = Instant::now();
        let mut store = new_store(
            &l.runtime,
            self.code.tier,
            &l.descriptor.name,
            &l.settings,
            None,
        );
        instantiate(&self.code.pre, &mut store, &l.settings)?;
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
            code: self.code.clone(),
            live: None,
            builder: BatchBuilder::default(),
            flat: FlatBatch::default(),
            services: self.services.clone(),
            verdicts: Vec::new(),
            steps: self.steps,
        };
        p.ensure_live()?;
        Ok(p)
    }

    /// At a batch boundary: when the plugin runs on baseline code and its
    /// optimised code has become ready, moves to it. The baseline instance
    /// is dropped and the next call makes a fresh one from the optimised
    /// code and runs `init` on it — exactly what happens after any failure
    /// (the contract's promise: state that matters is rebuilt by `init`,
    /// `read_entity` and `get_event`, never kept only in an instance).
    fn upgrade_at_boundary(&mut self) {
        if self.code.tier != CodeTier::Baseline {
            return;
        }
        let l = &self.loaded;
        let Some(optimisation) = &l.prepared.optimisation else {
            return;
        };
        // Not finished yet: the next batch looks again.
        let Some(result) = optimisation.poll() else {
            return;
        };
        let pre = l.optimised.get_or_init(|| match result {
            Ok((component, _)) => link(
                &l.runtime,
                CodeTier::Optimised,
                &l.path,
                &component,
                l.prepared.version,
            )
            .map_err(|e| {
                log(
                    LogLevel::Warn,
                    LogLevel::Warn,
                    &l.descriptor.name,
                    &format!(
                        "cannot link its optimised code: {e}; it keeps running on baseline code"
                    ),
                )
            })
            .ok(),
            // Logged by the compile thread.
            Err(_) => None,
        });
        let Some(pre) = pre.clone() else {
            return;
        };
        self.code = Code {
            pre,
            tier: CodeTier::Optimised,
        };
        self.reset();
        log(
            self.loaded.settings.log_level,
            LogLevel::Info,
            &self.loaded.descriptor.name,
            "now running optimised code (Cranelift), switched at a batch boundary",
        );
    }

    fn ensure_live(&mut self) -> Result<&mut Live, ReactFailure> {
        if self.live.is_none() {
            let l = &self.loaded;
            let mut store = new_store(
                &l.runtime,
                self.code.tier,
                &l.descriptor.name,
                &l.settings,
                self.services.clone(),
            );
            let bindings = instantiate(&self.code.pre, &mut store, &l.settings).map_err(|f| {
                ReactFailure::new(FailureKind::Instantiate, format!("cannot instantiate: {f}"))
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

fn init(loaded: &Loaded, live: &mut Live) -> Result<(), ReactFailure> {
    let bindings = &live.bindings;
    let r = call(
        &loaded.runtime,
        &mut live.store,
        &loaded.settings,
        None,
        |s| bindings.init(s, &loaded.settings.config),
    )?;
    r.map_err(|msg| ReactFailure::new(FailureKind::Error, msg))
}

impl Reactor for Plugin {
    fn descriptor(&self) -> &Descriptor {
        &self.loaded.descriptor
    }

    fn digest(&self) -> &str {
        &self.loaded.prepared.digest
    }

    fn attach(&mut self, host: HostServices) {
        if let Some(live) = self.live.as_mut() {
            live.store.data_mut().host.services = Some(host.clone());
        }
        self.services = Some(host);
    }

    fn react(&mut self, batch: &[EventView]) -> Result<Vec<Reaction>, ReactFailure> {
        self.upgrade_at_boundary();
        self.ensure_live()?;
        let Plugin {
            live,
            builder,
            flat,
            loaded,
            ..
        } = self;
        let live = live.as_mut().expect("live instance");
        let mut sources: Vec<EventId> = std::mem::take(&mut live.store.data_mut().host.sources);
        let input = match &live.bindings {
            Bindings::V1(_) => builder.build(batch, &mut sources).map(Input::Records),
            Bindings::V2(_) => flat.encode(batch, &mut sources).map(Input::Flat),
        };
        let input = match input {
            Ok(i) => i,
            Err(m) => {
                live.store.data_mut().host.sources = sources;
                return Err(ReactFailure::new(FailureKind::OutOfMemory, m));
            }
        };
        let first = sources.first().copied();
        {
            let data = live.store.data_mut();
            data.host.sources = sources;
            data.host.in_react = true;
        }
        let bindings = &live.bindings;
        let r = call(
            &loaded.runtime,
            &mut live.store,
            &loaded.settings,
            first,
            |s| match (bindings, input) {
                (Bindings::V1(b), Input::Records(batch)) => {
                    Ok(match b.batpak_reactor_reactor().call_react(s, batch)? {
                        Ok(proposals) => Ok(Output::Records(proposals)),
                        Err(e) => Err(e),
                    })
                }
                (Bindings::V2(b), Input::Flat(buf)) => {
                    Ok(match b.batpak_reactor_reactor().call_react(s, buf)? {
                        Ok(out) => Ok(Output::Flat(out)),
                        Err(e) => Err(e),
                    })
                }
                _ => unreachable!("the input is built for the instance's version"),
            },
        );
        live.store.data_mut().host.in_react = false;
        match r {
            Ok(Ok(Output::Records(proposals))) => {
                Ok(proposals.into_iter().map(reaction_from_wit).collect())
            }
            Ok(Ok(Output::Flat(buf))) => {
                flat_proposals::decode(&buf, batch, &loaded.descriptor.emits)
            }
            // Cut before anything logs or parks it (`guest_text`).
            Ok(Err(e)) => Err(ReactFailure {
                kind: FailureKind::Error,
                message: clip_guest_error(e.message),
                detail: None,
                event: e.event,
            }),
            Err(f) => {
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

/// A batch as the instance's contract version takes it.
enum Input<'a> {
    Records(&'a w::Batch),
    Flat(&'a [u8]),
}

/// Proposals as the instance's contract version returns them.
enum Output {
    Records(Vec<w::Proposal>),
    Flat(Vec<u8>),
}
