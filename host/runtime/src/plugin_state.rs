//! The data of one wasmtime `Store` — one per plugin instance: the WASI
//! context (nothing granted), the memory budget, the reseedable random
//! stream, and what the host side knows about the call in progress.
//!
//! Sandbox: WASI is linked because toolchains import it even when a plugin
//! does no I/O, but nothing is granted — no preopened directories,
//! environment, arguments, network or stdin; clocks are frozen at zero;
//! random is deterministic unless granted; stdout and stderr are captured
//! into the host log (bounded).

use super::guest_output::{Capture, GuestOutput, Stream};
use super::limiter::MemoryBudget;
use super::log::{log, LogLevel};
use super::random::{RandomSource, SeededRandom};
use super::sandbox_clock::FrozenClock;
use super::services::HostServices;
use super::wit::types as w;
use batpak_store::EventId;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Most log lines a plugin may write per call before the rest are dropped.
const LOG_LINES_PER_CALL: u32 = 1000;
/// Most stderr lines of a failed call kept as the guest's own error text.
const GUEST_ERROR_LINES: usize = 24;
/// Most characters of a failed call's guest error text.
const GUEST_ERROR_CHARS: usize = 4000;

/// What the host side of an instance knows.
pub(crate) struct HostSide {
    pub(crate) name: String,
    pub(crate) log_level: LogLevel,
    pub(crate) services: Option<HostServices>,
    /// Ids of the events of the batch being handled (for `check`).
    pub(crate) sources: Vec<EventId>,
    pub(crate) in_react: bool,
    pub(crate) last_verdicts: Vec<w::ProposalVerdict>,
    pub(crate) log_budget: u32,
    pub(crate) dropped_logs: u32,
    pub(crate) output: Capture,
}

/// How to build the data of one instance.
pub(crate) struct StateSettings<'a> {
    pub(crate) name: &'a str,
    pub(crate) log_level: LogLevel,
    pub(crate) memory_bytes: usize,
    pub(crate) max_memories: usize,
    pub(crate) max_tables: usize,
    pub(crate) random: RandomSource,
}

/// The data of one wasmtime `Store`: one per plugin instance.
pub(crate) struct PluginState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) budget: MemoryBudget,
    random: Option<SeededRandom>,
    pub(crate) host: HostSide,
}

impl PluginState {
    pub(crate) fn new(s: StateSettings<'_>, services: Option<HostServices>) -> Self {
        let output = Capture::default();
        let mut b = WasiCtxBuilder::new();
        b.stdout(GuestOutput {
            capture: output.clone(),
            stream: Stream::Stdout,
        })
        .stderr(GuestOutput {
            capture: output.clone(),
            stream: Stream::Stderr,
        })
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
        let random = match s.random {
            RandomSource::Real => None,
            RandomSource::Deterministic => {
                let r = SeededRandom::new(s.name);
                b.secure_random(r.clone())
                    .insecure_random(r.clone())
                    .insecure_random_seed(SeededRandom::insecure_seed(s.name));
                Some(r)
            }
        };
        PluginState {
            wasi: b.build(),
            table: ResourceTable::new(),
            budget: MemoryBudget::new(s.memory_bytes, s.max_memories, s.max_tables),
            random,
            host: HostSide {
                name: s.name.to_string(),
                log_level: s.log_level,
                services,
                sources: Vec::new(),
                in_react: false,
                last_verdicts: Vec::new(),
                log_budget: LOG_LINES_PER_CALL,
                dropped_logs: 0,
                output,
            },
        }
    }

    /// Prepares for one guest call; `first` is the call's first source
    /// event (`None` for `describe` and `init`), which seeds its randomness.
    pub(crate) fn begin_call(&mut self, first: Option<EventId>) {
        self.host.log_budget = LOG_LINES_PER_CALL;
        self.host.dropped_logs = 0;
        let _ = self.budget.take_refusal();
        if let Some(r) = &self.random {
            r.reseed(&self.host.name, first);
        }
    }

    /// Flushes what the guest printed during the call into the host log and
    /// returns the tail of what it wrote to stderr: a Rust panic's location
    /// and message, or a Python or JavaScript exception with its last
    /// frames (bounded to a few dozen lines). When the call `failed`, its
    /// stderr is logged at debug level only: the failure carries it, and a
    /// retried call would otherwise print the same exception every time.
    pub(crate) fn end_call(&mut self, failed: bool) -> Option<String> {
        let h = &mut self.host;
        if h.dropped_logs > 0 {
            log(
                h.log_level,
                LogLevel::Warn,
                &h.name,
                &format!(
                    "dropped {} log line(s) over the limit of {LOG_LINES_PER_CALL} per call",
                    h.dropped_logs
                ),
            );
        }
        let (out, err) = h.output.drain();
        for line in String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            log(
                h.log_level,
                LogLevel::Info,
                &format!("{} stdout", h.name),
                line,
            );
        }
        let err = String::from_utf8_lossy(&err).into_owned();
        let mut said: Vec<&str> = Vec::new();
        for line in err.lines().filter(|l| !l.trim().is_empty()) {
            log(
                h.log_level,
                if failed {
                    LogLevel::Debug
                } else {
                    LogLevel::Warn
                },
                &format!("{} stderr", h.name),
                line,
            );
            // Rust's panic hint is noise in a park cause.
            if !line.starts_with("note: run with `RUST_BACKTRACE") {
                said.push(line.trim_end());
            }
        }
        guest_error_text(&said)
    }
}

/// The last lines a guest wrote to stderr, joined with newlines and bounded
/// (the end is kept: an exception's message comes last).
fn guest_error_text(lines: &[&str]) -> Option<String> {
    let tail = lines[lines.len().saturating_sub(GUEST_ERROR_LINES)..].join("\n");
    if tail.trim().is_empty() {
        return None;
    }
    let n = tail.chars().count();
    Some(if n > GUEST_ERROR_CHARS {
        let kept: String = tail.chars().skip(n - GUEST_ERROR_CHARS).collect();
        format!("…{kept}")
    } else {
        tail
    })
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_error_text_keeps_the_end_and_is_bounded() {
        assert_eq!(guest_error_text(&[]), None);
        let lines: Vec<String> = (0..100).map(|i| format!("frame {i}")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let t = guest_error_text(&refs).unwrap();
        assert!(t.ends_with("frame 99"));
        assert!(t.starts_with(&format!("frame {}", 100 - GUEST_ERROR_LINES)));
        let long = "x".repeat(10_000);
        let t = guest_error_text(&[long.as_str()]).unwrap();
        assert_eq!(t.chars().count(), GUEST_ERROR_CHARS + 1);
    }
}
