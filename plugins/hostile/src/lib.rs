//! `hostile`: misbehaves on command, so end-to-end tests can check that the
//! host contains it.
//!
//! Consumes `hostile.cmd` with JSON `{"do": "..."}` and handles the events of
//! a batch in order; the first bad one makes the whole `react` call
//! misbehave (the host must bisect to find it):
//!
//! | `do`         | behaviour                                                   |
//! |--------------|-------------------------------------------------------------|
//! | `ok`         | emit `hostile.ok` on the same entity and scope              |
//! | `sleep`      | sleep for a day, then act as `ok` (sleeps must return at once) |
//! | `loop`       | spin forever (the host's time/fuel limit must stop it)      |
//! | `oom`        | allocate and touch 1 MiB blocks until memory runs out       |
//! | `trap`       | panic (a wasm trap)                                         |
//! | `error`      | return a `react-error` naming this event's index            |
//! | `huge`       | propose one `hostile.ok` with a 64 MiB payload              |
//! | `forbidden`  | propose `hostile.forbidden`, a kind not in `emits`          |
//! | `reserved`   | propose `batpak.fake`, a kind reserved for the host         |
//! | `bad-source` | propose `hostile.ok` with a `source` index outside the batch |
//! | `random`     | emit `hostile.ok` whose payload is `{"r": N}`, N drawn from WASI randomness |
//! | `raise`      | write a six-line traceback to stderr, then trap (the way a Python or JS guest dies) |
//! | `error-huge` | return a `react-error` naming this event whose message is 8 MiB |
//! | `log-huge`   | log one 32 MiB line, then act as `ok`                       |
//! | `log-200m`   | log one 200 MiB line (past the host's 128 MiB lift budget)  |
//! | `log-many`   | log 200,000 lines of 1 KiB, then act as `ok`                |
//! | `read-big`   | read entity `big` with `read-entity` (one page of up to 1024, then all of it) and emit `hostile.ok` with `{"page": N, "all": M}` |
//!
//! Anything else (or an unreadable payload) is a `react-error` for that event.
//! Config `{"fail_init": true}` makes `init` fail; `{"fail_init_bytes": N}`
//! makes it fail with an N-byte message.

use batpak_guest::{Batch, Descriptor, EventRef, Output, Proposal, ReactError, Reactor};
use serde::Deserialize;
use std::hint::black_box;

const OK: &str = "hostile.ok";

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    fail_init: bool,
    /// When not 0, `init` fails with a message this many bytes long.
    #[serde(default)]
    fail_init_bytes: usize,
}

#[derive(Deserialize)]
struct Cmd {
    #[serde(rename = "do")]
    action: String,
}

struct Hostile;

fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        // black_box hides the value from the optimizer, so the loop stays.
        n = black_box(n.wrapping_add(1));
    }
}

fn exhaust_memory() -> ! {
    const BLOCK: usize = 1 << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; BLOCK];
        for i in (0..BLOCK).step_by(4096) {
            block[i] = 1;
        }
        hoard.push(black_box(block));
        black_box(&hoard);
    }
}

fn handle(event: &EventRef<'_>, batch: &Batch, out: &mut Output) -> Result<(), ReactError> {
    let cmd: Cmd = event
        .json()
        .map_err(|e| ReactError::at(event, format!("hostile: unreadable command: {e}")))?;
    let (entity, scope) = (event.entity(), event.scope());
    match cmd.action.as_str() {
        "ok" => {
            out.emit(event, entity, scope, OK, event.payload());
        }
        "sleep" => {
            // A day-long sleep; the host grants no clock, so it must return
            // at once rather than stall the reactor.
            std::thread::sleep(std::time::Duration::from_secs(24 * 3600));
            out.emit(event, entity, scope, OK, event.payload());
        }
        "loop" => spin_forever(),
        "oom" => exhaust_memory(),
        "trap" => panic!("hostile: trap requested"),
        "random" => {
            // std seeds its hash keys from WASI randomness; the host makes
            // it deterministic per (reactor, source event) unless granted.
            use std::hash::BuildHasher;
            let r = std::collections::hash_map::RandomState::new().hash_one(0u64);
            out.emit(
                event,
                entity,
                scope,
                OK,
                format!("{{\"r\":{r}}}").into_bytes(),
            );
        }
        "raise" => {
            // What componentize-py prints for an uncaught exception: the
            // park record must keep the message *and* its frames.
            eprintln!("Traceback (most recent call last):");
            eprintln!("  File \"app.py\", line 12, in react");
            eprintln!("    total = parse(event)");
            eprintln!("  File \"app.py\", line 7, in parse");
            eprintln!("    raise ValueError(\"hostile: bad quantity\")");
            eprintln!("ValueError: hostile: bad quantity");
            std::process::abort()
        }
        "error" => return Err(ReactError::at(event, "hostile: error requested")),
        "error-huge" => {
            let mut message = String::from("hostile: huge error ");
            message.push_str(&"e".repeat(8 << 20));
            return Err(ReactError::at(event, message));
        }
        "log-huge" => {
            batpak_guest::log::info(&"l".repeat(32 << 20));
            out.emit(event, entity, scope, OK, event.payload());
        }
        "read-big" => {
            let page = batpak_guest::host::read_entity("big", 0, 1024).len();
            let all = batpak_guest::host::entity_events("big", 0).count();
            out.emit(
                event,
                entity,
                scope,
                OK,
                format!("{{\"page\":{page},\"all\":{all}}}").into_bytes(),
            );
        }
        "log-200m" => {
            batpak_guest::log::info(&"l".repeat(200 << 20));
            out.emit(event, entity, scope, OK, event.payload());
        }
        "log-many" => {
            let line = "m".repeat(1 << 10);
            for _ in 0..200_000 {
                batpak_guest::log::info(&line);
            }
            out.emit(event, entity, scope, OK, event.payload());
        }
        "huge" => {
            out.emit(event, entity, scope, OK, vec![b'x'; 64 << 20]);
        }
        "forbidden" => {
            out.emit(event, entity, scope, "hostile.forbidden", &b"{}"[..]);
        }
        "reserved" => {
            out.emit(event, entity, scope, "batpak.fake", &b"{}"[..]);
        }
        "bad-source" => {
            let source = u32::try_from(batch.len())
                .unwrap_or(u32::MAX)
                .saturating_add(1000);
            out.push(Proposal::new(source, entity, scope, OK, &b"{}"[..]));
        }
        other => {
            return Err(ReactError::at(
                event,
                format!("hostile: unknown command {other:?}"),
            ));
        }
    }
    Ok(())
}

impl Reactor for Hostile {
    fn describe() -> Descriptor {
        Descriptor::new("hostile", env!("CARGO_PKG_VERSION"))
            .consumes(["hostile.cmd"])
            .emits([OK])
    }

    fn init(config: &str) -> Result<Self, String> {
        let config: Config = batpak_guest::parse_config(config)?;
        if config.fail_init {
            return Err("hostile: init refused by config".to_owned());
        }
        if config.fail_init_bytes > 0 {
            return Err(format!(
                "hostile: huge init error {}",
                "i".repeat(config.fail_init_bytes)
            ));
        }
        Ok(Hostile)
    }

    fn react(&mut self, batch: &Batch, out: &mut Output) -> Result<(), ReactError> {
        for event in batch.events() {
            handle(&event, batch, out)?;
        }
        Ok(())
    }
}

batpak_guest::export_reactor!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;
    use batpak_guest::testing;

    fn cmd(what: &str) -> batpak_guest::StoredEvent {
        testing::append(
            "h:1",
            "test",
            "hostile.cmd",
            format!(r#"{{"do":"{what}"}}"#),
        )
    }

    #[test]
    fn benign_commands() {
        assert_eq!(
            Hostile::init(r#"{"fail_init": true}"#).err().unwrap(),
            "hostile: init refused by config"
        );
        let mut r = Hostile::init("{}").unwrap();
        let batch = testing::batch(&[
            cmd("ok"),
            cmd("forbidden"),
            cmd("reserved"),
            cmd("bad-source"),
        ]);
        let out = testing::react(&mut r, &batch).unwrap();
        let kinds: Vec<_> = out.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, vec![OK, "hostile.forbidden", "batpak.fake", OK]);
        assert_eq!(out[3].source, 1004);
        let err = testing::react(&mut r, &testing::batch(&[cmd("ok"), cmd("error")])).unwrap_err();
        assert_eq!(err.event, Some(1));
        let err = testing::react(&mut r, &testing::batch(&[cmd("nope")])).unwrap_err();
        assert_eq!(err.event, Some(0));
    }
}
