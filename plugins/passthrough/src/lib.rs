//! `passthrough`: the benchmark reactor.
//!
//! Consumes `bench.in` and, for every event, emits one `bench.out` on the
//! same entity and scope with the same payload bytes. Does nothing else, so
//! a benchmark measures the host and the component boundary.

use batpak_guest::{Batch, Descriptor, Output, ReactError, Reactor};

struct Passthrough;

impl Reactor for Passthrough {
    fn describe() -> Descriptor {
        Descriptor::new("passthrough", env!("CARGO_PKG_VERSION"))
            .consumes(["bench.in"])
            .emits(["bench.out"])
    }

    fn init(_config: &str) -> Result<Self, String> {
        Ok(Passthrough)
    }

    fn react(&mut self, batch: &Batch, out: &mut Output) -> Result<(), ReactError> {
        for event in batch.events() {
            out.emit(
                &event,
                event.entity(),
                event.scope(),
                "bench.out",
                event.payload(),
            );
        }
        Ok(())
    }
}

batpak_guest::export_reactor!(Passthrough);
