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

#[cfg(test)]
mod tests {
    use super::*;
    use batpak_guest::testing;

    #[test]
    fn echoes_every_event() {
        let mut r = Passthrough::init("{}").unwrap();
        let a = testing::append("e:1", "bench", "bench.in", "x");
        let b = testing::append("e:2", "bench", "bench.in", "yy");
        let out = testing::react(&mut r, &testing::batch(&[a, b])).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            (
                out[1].source,
                out[1].coordinate.entity.as_str(),
                &out[1].payload[..]
            ),
            (1, "e:2", &b"yy"[..])
        );
        assert!(out
            .iter()
            .all(|p| p.kind == "bench.out" && p.coordinate.scope == "bench"));
    }
}
