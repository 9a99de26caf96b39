//! `inspect`: what a component says about itself, without a store.

use super::cache::CompileSource;
use super::code_tier::CodeTier;
use super::convert::descriptor_from_wit;
use super::descriptor::Descriptor;
use super::load_error::LoadError;
use super::prepare::{call, instantiate, new_store, prepare, PluginSettings, Tiering};
use super::runtime::Runtime;
use super::wit::OFFERED_VERSIONS;
use super::world::WorldInfo;
use std::path::{Path, PathBuf};

/// What `init(config)` answered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InitOutcome {
    /// True when `init` returned `ok`.
    pub ok: bool,
    /// Its error, or the classified failure, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `inspect` reports about a component, without a store.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    /// The file.
    pub file: PathBuf,
    /// blake3 hex digest of the component bytes.
    pub digest: String,
    /// The world the component targets (one of those the host offers).
    pub world: &'static str,
    /// The contract version it targets (e.g. `0.2.0`).
    pub wit_version: &'static str,
    /// Every contract package this host offers (`batpak-host wit --list`).
    pub host_offers: Vec<&'static str>,
    /// Imports, exports and the WIT package version the component targets.
    pub component: WorldInfo,
    /// What `describe()` returned (with `"invalid": reason` when it breaks a
    /// rule).
    pub descriptor: serde_json::Value,
    /// What `init(config)` answered.
    pub init: InitOutcome,
    /// Where the compiled code came from: `cached` (the compile cache) or
    /// `compiled` (just now).
    pub compiled: CompileSource,
    /// How long compiling or loading it from the cache took, in
    /// milliseconds (to the microsecond).
    pub compile_ms: f64,
}

impl Inspection {
    /// Loads `path` with nothing granted (through the compile cache when
    /// the runtime has one) and reports what it says about itself.
    ///
    /// # Errors
    /// The same refusals as [`Plugin::load`](super::Plugin::load), except an
    /// invalid descriptor and a failing `init`, which are reported in the
    /// result (see [`Inspection::is_usable`]).
    pub fn of(
        rt: &Runtime,
        path: &Path,
        settings: PluginSettings,
    ) -> Result<Inspection, LoadError> {
        let p = || path.to_path_buf();
        let prepared = prepare(rt, path, Tiering::OptimisedOnly)?;
        let mut store = new_store(rt, CodeTier::Optimised, "inspect", &settings, None);
        let bindings = instantiate(&prepared.pre, &mut store, &settings)
            .map_err(|failure| LoadError::Instantiate { path: p(), failure })?;
        let d = call(rt, &mut store, &settings, None, |s| bindings.describe(s))
            .map_err(|failure| LoadError::DescribeFailed { path: p(), failure })?;
        let descriptor = descriptor_from_wit(d);
        let mut json = descriptor_json(&descriptor);
        if let Err(e) = descriptor.validate() {
            json["invalid"] = serde_json::Value::String(e);
        }
        let init = match call(rt, &mut store, &settings, None, |s| {
            bindings.init(s, &settings.config)
        }) {
            Ok(Ok(())) => InitOutcome {
                ok: true,
                error: None,
            },
            Ok(Err(msg)) => InitOutcome {
                ok: false,
                error: Some(msg),
            },
            Err(f) => InitOutcome {
                ok: false,
                error: Some(f.to_string()),
            },
        };
        Ok(Inspection {
            file: p(),
            digest: prepared.digest,
            world: prepared.version.world(),
            wit_version: prepared.version.semver(),
            host_offers: OFFERED_VERSIONS.iter().map(|v| v.package()).collect(),
            component: prepared.world,
            descriptor: json,
            init,
            compiled: prepared.compile_source,
            compile_ms: (prepared.compile_time.as_secs_f64() * 1e6).round() / 1e3,
        })
    }

    /// The reason the descriptor is invalid, if it is.
    pub fn invalid_descriptor(&self) -> Option<&str> {
        self.descriptor.get("invalid").and_then(|v| v.as_str())
    }

    /// True when the descriptor is valid and `init` succeeded: `run` would
    /// load this plugin with the same config.
    pub fn is_usable(&self) -> bool {
        self.invalid_descriptor().is_none() && self.init.ok
    }
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
