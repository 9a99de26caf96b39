//! Time in the sandbox: clocks frozen at zero and timers that have always
//! already fired (see [`super::linker`] for why).

use std::time::Duration;
use wasmtime::component::ResourceTable;

/// Clocks frozen at zero: plugins get no time source, which keeps them
/// deterministic (time comes from event timestamps).
pub(crate) struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A WASI timer that has always already fired.
struct Elapsed;

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for Elapsed {
    async fn ready(&mut self) {}
}

pub(crate) fn elapsed_timer(
    table: &mut ResourceTable,
) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
    let timer = table.push(Elapsed)?;
    wasmtime_wasi::p2::subscribe(table, timer)
}
