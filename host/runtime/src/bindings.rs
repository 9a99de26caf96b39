//! One loaded component's bindings, whichever contract version it targets:
//! [`Pre`] (linked, ready to instantiate) and [`Bindings`] (an instance's
//! exports), with `describe` and `init` per version. `react` differs in
//! shape between versions and is dispatched by the plugin itself.

use super::guest_text::clip_guest_error;
use super::plugin_state::PluginState;
use super::wit::types as w;
use super::wit::WitVersion;
use super::{wit_v1, wit_v2};
use wasmtime::component::InstancePre;

/// A component linked against the version it targets.
pub(crate) enum Pre {
    V1(wit_v1::ReactorPluginPre<PluginState>),
    V2(wit_v2::ReactorPluginPre<PluginState>),
}

/// The exports of one instance.
pub(crate) enum Bindings {
    V1(wit_v1::ReactorPlugin),
    V2(wit_v2::ReactorPlugin),
}

impl Clone for Pre {
    fn clone(&self) -> Pre {
        match self {
            Pre::V1(p) => Pre::V1(p.clone()),
            Pre::V2(p) => Pre::V2(p.clone()),
        }
    }
}

impl Pre {
    /// Checks the exports of `pre` against `version`'s world.
    pub(crate) fn new(version: WitVersion, pre: InstancePre<PluginState>) -> wasmtime::Result<Pre> {
        Ok(match version {
            WitVersion::V0_1_0 => Pre::V1(wit_v1::ReactorPluginPre::new(pre)?),
            WitVersion::V0_2_0 => Pre::V2(wit_v2::ReactorPluginPre::new(pre)?),
        })
    }

    /// A new instance in `store`.
    pub(crate) fn instantiate(
        &self,
        store: &mut wasmtime::Store<PluginState>,
    ) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Pre::V1(p) => Bindings::V1(p.instantiate(store)?),
            Pre::V2(p) => Bindings::V2(p.instantiate(store)?),
        })
    }
}

impl Bindings {
    /// Calls `describe`.
    pub(crate) fn describe(
        &self,
        store: &mut wasmtime::Store<PluginState>,
    ) -> wasmtime::Result<w::Descriptor> {
        match self {
            Bindings::V1(b) => b.batpak_reactor_reactor().call_describe(store),
            Bindings::V2(b) => b.batpak_reactor_reactor().call_describe(store),
        }
    }

    /// Calls `init(config)`; its error message comes back cut to
    /// [`MAX_GUEST_ERROR_BYTES`](crate::MAX_GUEST_ERROR_BYTES).
    pub(crate) fn init(
        &self,
        store: &mut wasmtime::Store<PluginState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        let r = match self {
            Bindings::V1(b) => b.batpak_reactor_reactor().call_init(store, config),
            Bindings::V2(b) => b.batpak_reactor_reactor().call_init(store, config),
        };
        Ok(r?.map_err(clip_guest_error))
    }
}
