//! The linker every plugin is instantiated against: WASI 0.2 with nothing
//! granted (timers shadowed, see below) and the `host` imports of every
//! offered contract version.

use super::plugin_state::PluginState;
use super::sandbox_clock::elapsed_timer;
use super::{wit_v1, wit_v2};
use wasmtime::component::{HasSelf, Linker};

/// Adds WASI (nothing granted) and the `host` imports to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    // Plugins get no clock, so they get no sleep either: WASI's timers block
    // the thread in real time inside the host, where the epoch deadline
    // cannot interrupt them, so a guest `sleep` would stall its reactor
    // forever. Every timer is reported as already elapsed instead; a guest
    // that waits for the (frozen) clock to move loops, and the call's time
    // limit stops it like any other loop.
    linker.allow_shadowing(true);
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    clock.func_wrap(
        "subscribe-duration",
        |mut cx: wasmtime::StoreContextMut<'_, PluginState>, (_,): (u64,)| {
            Ok((elapsed_timer(&mut cx.data_mut().table)?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut cx: wasmtime::StoreContextMut<'_, PluginState>, (_,): (u64,)| {
            Ok((elapsed_timer(&mut cx.data_mut().table)?,))
        },
    )?;
    linker.allow_shadowing(false);
    // Every offered contract version, side by side: their interface names
    // differ by version, and both are served by the same `PluginState`.
    wit_v1::ReactorPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)?;
    wit_v2::ReactorPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)?;
    Ok(())
}
