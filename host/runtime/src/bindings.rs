//! The WIT bindings (`batpak:reactor@0.1.0`, world `reactor-plugin`), the
//! per-instance store data, the `host` imports, and the conversions between
//! WIT records and the host's types.
//!
//! Sandbox: WASI is linked because toolchains import it even when a plugin
//! does no I/O, but nothing is granted — no preopened directories,
//! environment, arguments, network or stdin; clocks are frozen at zero;
//! stdout and stderr are captured into the host log (bounded).

use super::log::{log, LogLevel};
use super::reactor::{Descriptor, HostServices, Reaction, ReactionCause, ReactionVerdict};
use batpak_store::{Coordinate, Event, EventId};
use batpak_store::{ReactorCanal, Region};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Generated bindings.
#[allow(missing_docs, clippy::all)]
pub(crate) mod wit {
    wasmtime::component::bindgen!({
        world: "reactor-plugin",
        path: "../../wit",
    });
}

use wit::batpak::reactor::types as w;

/// The WIT package this host offers.
pub const WIT_PACKAGE: &str = "batpak:reactor@0.1.0";
/// The world a plugin must target.
pub const WIT_WORLD: &str = "batpak:reactor/reactor-plugin@0.1.0";
/// The interface a plugin must export.
pub const EXPORT_INTERFACE: &str = "batpak:reactor/reactor@0.1.0";
/// The interface the host offers as imports.
pub const HOST_INTERFACE: &str = "batpak:reactor/host@0.1.0";
/// The shared types interface.
pub const TYPES_INTERFACE: &str = "batpak:reactor/types@0.1.0";

/// Most `read-entity` results per call.
pub const READ_ENTITY_CAP: u32 = 1024;
/// Most log lines a plugin may write per call before the rest are dropped.
const LOG_LINES_PER_CALL: u32 = 1000;
/// Most captured stdout/stderr bytes kept per call.
const CAPTURE_LIMIT: usize = 64 << 10;

/// What the host side of an instance knows.
pub(crate) struct HostSide {
    pub(crate) name: String,
    pub(crate) log_level: LogLevel,
    pub(crate) services: Option<HostServices>,
    /// Ids of the events of the batch being handled (for `check`).
    pub(crate) sources: Vec<EventId>,
    pub(crate) in_react: bool,
    pub(crate) last_verdicts: Vec<w::ProposalVerdict>,
    log_budget: u32,
    dropped_logs: u32,
    pub(crate) output: Capture,
}

/// The data of one wasmtime `Store`: one per plugin instance.
pub(crate) struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) host: HostSide,
}

impl PluginState {
    pub(crate) fn new(
        name: &str,
        log_level: LogLevel,
        memory_bytes: usize,
        services: Option<HostServices>,
    ) -> Self {
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
        PluginState {
            wasi: b.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            host: HostSide {
                name: name.to_string(),
                log_level,
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

    /// Prepares for one guest call.
    pub(crate) fn begin_call(&mut self) {
        self.host.log_budget = LOG_LINES_PER_CALL;
        self.host.dropped_logs = 0;
    }

    /// Flushes what the guest printed during the call into the host log and
    /// returns the last lines it wrote to stderr (a panic message, usually).
    pub(crate) fn end_call(&mut self) -> Option<String> {
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
                LogLevel::Warn,
                &format!("{} stderr", h.name),
                line,
            );
            // Rust's panic hint is noise in a park cause.
            if !line.starts_with("note: run with `RUST_BACKTRACE") {
                said.push(line.trim());
            }
        }
        // The last two lines hold a Rust panic's location and message.
        let tail = said[said.len().saturating_sub(2)..].join(" ");
        (!tail.is_empty()).then(|| tail.chars().take(1000).collect())
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

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
    wit::ReactorPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)?;
    Ok(())
}

/// A WASI timer that has always already fired.
struct Elapsed;

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for Elapsed {
    async fn ready(&mut self) {}
}

fn elapsed_timer(
    table: &mut ResourceTable,
) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
    let timer = table.push(Elapsed)?;
    wasmtime_wasi::p2::subscribe(table, timer)
}

impl w::Host for PluginState {}

impl wit::batpak::reactor::host::Host for PluginState {
    fn log(&mut self, level: w::Level, message: String) {
        let h = &mut self.host;
        if h.log_budget == 0 {
            h.dropped_logs += 1;
            return;
        }
        h.log_budget -= 1;
        log(h.log_level, level_from_wit(level), &h.name, &message);
    }

    fn get_event(&mut self, id: w::EventId) -> Option<w::StoredEvent> {
        let services = self.host.services.as_ref()?;
        match services.store.get(id_from_wit(id)) {
            Ok(found) => found.map(|e| stored_event(&e)),
            Err(e) => {
                log(
                    self.host.log_level,
                    LogLevel::Warn,
                    &self.host.name,
                    &format!("get-event failed: {e}"),
                );
                None
            }
        }
    }

    fn read_entity(&mut self, entity: String, after: u64, max: u32) -> Vec<w::StoredEvent> {
        let Some(services) = self.host.services.as_ref() else {
            return Vec::new();
        };
        let max = max.min(READ_ENTITY_CAP) as usize;
        if max == 0 {
            return Vec::new();
        }
        match services.store.entity_events(&entity, after, max) {
            Ok(events) => events.iter().map(stored_event).collect(),
            Err(e) => {
                log(
                    self.host.log_level,
                    LogLevel::Warn,
                    &self.host.name,
                    &format!("read-entity failed: {e}"),
                );
                Vec::new()
            }
        }
    }

    fn check(&mut self, proposal: w::Proposal) -> w::Verdict {
        let h = &self.host;
        let Some(services) = h.services.as_ref() else {
            return w::Verdict::Denied(w::Denial {
                gate: "host".into(),
                code: "unavailable".into(),
                message: "no store is attached to this instance (inspect mode)".into(),
            });
        };
        let source = if h.in_react {
            match h.sources.get(proposal.source as usize) {
                Some(id) => services.store.get(*id).ok().flatten(),
                None => {
                    return w::Verdict::Denied(w::Denial {
                        gate: "host".into(),
                        code: "bad-source".into(),
                        message: format!(
                            "proposal.source is {} but the batch has {} event(s)",
                            proposal.source,
                            h.sources.len()
                        ),
                    })
                }
            }
        } else {
            None
        };
        let reaction = reaction_from_wit(proposal);
        match services.check(&reaction, source.as_ref()) {
            None => w::Verdict::Allowed,
            Some(d) => w::Verdict::Denied(w::Denial {
                gate: d.gate,
                code: d.code,
                message: d.message,
            }),
        }
    }

    fn last_verdicts(&mut self) -> Vec<w::ProposalVerdict> {
        self.host.last_verdicts.clone()
    }
}

fn level_from_wit(l: w::Level) -> LogLevel {
    match l {
        w::Level::Trace => LogLevel::Trace,
        w::Level::Debug => LogLevel::Debug,
        w::Level::Info => LogLevel::Info,
        w::Level::Warn => LogLevel::Warn,
        w::Level::Error => LogLevel::Error,
    }
}

pub(crate) fn id_to_wit(id: EventId) -> w::EventId {
    w::EventId {
        hi: id.hi(),
        lo: id.lo(),
    }
}

pub(crate) fn id_from_wit(id: w::EventId) -> EventId {
    EventId::from_parts(id.hi, id.lo)
}

fn stored_event(e: &Event) -> w::StoredEvent {
    let h = &e.header;
    w::StoredEvent {
        id: id_to_wit(h.id),
        sequence: h.sequence,
        entity_sequence: h.entity_sequence,
        coordinate: w::Coordinate {
            entity: h.coordinate.entity.clone(),
            scope: h.coordinate.scope.clone(),
        },
        kind: h.kind.clone(),
        causation: h.causation.map(id_to_wit),
        correlation: id_to_wit(h.correlation),
        timestamp_us: h.timestamp_us,
        payload: e.payload.to_vec(),
    }
}

pub(crate) fn reaction_from_wit(p: w::Proposal) -> Reaction {
    Reaction {
        source: p.source,
        coordinate: Coordinate {
            entity: p.coordinate.entity,
            scope: p.coordinate.scope,
        },
        kind: p.kind,
        payload: p.payload,
        causation: match p.causation {
            w::Causation::Source => ReactionCause::Source,
            w::Causation::Event(id) => ReactionCause::Event(id_from_wit(id)),
            w::Causation::None => ReactionCause::None,
        },
    }
}

pub(crate) fn descriptor_from_wit(d: w::Descriptor) -> Descriptor {
    Descriptor {
        name: d.name,
        version: d.version,
        region: Region {
            kinds: d.region.kinds,
            entity_prefix: d.region.entity_prefix,
            scope: d.region.scope,
        },
        canal: match d.canal {
            w::CanalKind::CursorGuaranteed => ReactorCanal::CursorGuaranteed,
            w::CanalKind::LossySubscription => ReactorCanal::LossySubscription,
        },
        emits: d.emits,
        max_batch: d.max_batch,
    }
}

pub(crate) fn verdicts_to_wit(v: Vec<ReactionVerdict>) -> Vec<w::ProposalVerdict> {
    v.into_iter()
        .map(|v| w::ProposalVerdict {
            proposal: v.reaction,
            verdict: match v.denial {
                None => w::Verdict::Allowed,
                Some(d) => w::Verdict::Denied(w::Denial {
                    gate: d.gate,
                    code: d.code,
                    message: d.message,
                }),
            },
            appended: v.appended.map(id_to_wit),
        })
        .collect()
}

/// FxHash: a fast non-cryptographic hash for interning short names. The keys
/// come from the host's own log, so hash flooding is not a concern here.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

type Interner<'a> = HashMap<&'a str, u32, BuildHasherDefault<FxHasher>>;

/// Batches up to this size intern by a linear scan: cheaper than building
/// a hash map for a handful of names.
const LINEAR_INTERN_MAX: usize = 8;

/// Index of `s` in `strings`, adding it when new. Reuses the `String`
/// buffers left in `strings` by the previous batch. `index` is `None` for
/// small batches (linear scan).
fn intern<'a>(
    s: &'a str,
    index: &mut Option<Interner<'a>>,
    strings: &mut Vec<String>,
    used: &mut usize,
) -> u32 {
    match index {
        Some(map) => {
            if let Some(&i) = map.get(s) {
                return i;
            }
        }
        None => {
            if let Some(i) = strings[..*used].iter().position(|x| x == s) {
                return i as u32;
            }
        }
    }
    let i = *used as u32;
    if *used < strings.len() {
        strings[*used].clear();
        strings[*used].push_str(s);
    } else {
        strings.push(s.to_string());
    }
    *used += 1;
    if let Some(map) = index {
        map.insert(s, i);
    }
    i
}

/// Builds the WIT `batch` for a slice of events, reusing its buffers from
/// one call to the next: names are interned once per batch and payloads are
/// concatenated into one byte list, so the canonical-ABI copy makes one
/// guest allocation per distinct name plus three per batch.
#[derive(Default)]
pub(crate) struct BatchBuilder {
    batch: Option<w::Batch>,
    spare_events: Vec<w::Event>,
}

impl BatchBuilder {
    /// Fills the batch for `events` and records their ids in `sources`.
    ///
    /// # Errors
    /// The payloads do not fit the 32-bit offsets of the WIT record.
    pub(crate) fn build(
        &mut self,
        events: &[Event],
        sources: &mut Vec<EventId>,
    ) -> Result<&w::Batch, String> {
        let mut b = self.batch.take().unwrap_or_else(|| w::Batch {
            strings: Vec::new(),
            payloads: Vec::new(),
            events: w::CanalBatch::Empty,
        });
        let mut list = match std::mem::replace(&mut b.events, w::CanalBatch::Empty) {
            w::CanalBatch::Many(v) => v,
            _ => std::mem::take(&mut self.spare_events),
        };
        list.clear();
        b.payloads.clear();
        sources.clear();
        let mut used = 0usize;
        let mut index: Option<Interner<'_>> = (events.len() > LINEAR_INTERN_MAX).then(|| {
            HashMap::with_capacity_and_hasher(events.len() + 8, BuildHasherDefault::default())
        });
        let total: usize = events.iter().map(|e| e.payload.len()).sum();
        if total > u32::MAX as usize {
            self.batch = Some(b);
            self.spare_events = list;
            return Err(format!(
                "the batch's payloads total {total} bytes, more than fit a 32-bit offset"
            ));
        }
        b.payloads.reserve(total);
        // Scope and kind usually repeat from one event to the next: compare
        // with the previous event's before hashing.
        let mut last_scope: (&str, u32) = ("", u32::MAX);
        let mut last_kind: (&str, u32) = ("", u32::MAX);
        for e in events {
            let h = &e.header;
            let entity = intern(&h.coordinate.entity, &mut index, &mut b.strings, &mut used);
            let scope = if last_scope.1 != u32::MAX && last_scope.0 == h.coordinate.scope {
                last_scope.1
            } else {
                let i = intern(&h.coordinate.scope, &mut index, &mut b.strings, &mut used);
                last_scope = (&h.coordinate.scope, i);
                i
            };
            let kind = if last_kind.1 != u32::MAX && last_kind.0 == h.kind {
                last_kind.1
            } else {
                let i = intern(&h.kind, &mut index, &mut b.strings, &mut used);
                last_kind = (&h.kind, i);
                i
            };
            let offset = b.payloads.len() as u32;
            b.payloads.extend_from_slice(&e.payload);
            list.push(w::Event {
                id: id_to_wit(h.id),
                sequence: h.sequence,
                entity_sequence: h.entity_sequence,
                entity,
                scope,
                kind,
                causation: h.causation.map(id_to_wit),
                correlation: id_to_wit(h.correlation),
                timestamp_us: h.timestamp_us,
                payload_offset: offset,
                payload_len: e.payload.len() as u32,
            });
            sources.push(h.id);
        }
        b.strings.truncate(used);
        b.events = match list.len() {
            0 => {
                self.spare_events = list;
                w::CanalBatch::Empty
            }
            1 => {
                let one = list[0];
                list.clear();
                self.spare_events = list;
                w::CanalBatch::One(one)
            }
            _ => w::CanalBatch::Many(list),
        };
        Ok(self.batch.insert(b))
    }
}

/// Captured guest stdout/stderr, bounded.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<(Vec<u8>, Vec<u8>)>>);

impl Capture {
    fn push(&self, stream: Stream, bytes: &[u8]) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let buf = match stream {
            Stream::Stdout => &mut g.0,
            Stream::Stderr => &mut g.1,
        };
        let room = CAPTURE_LIMIT.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn drain(&self) -> (Vec<u8>, Vec<u8>) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut g.0), std::mem::take(&mut g.1))
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// A guest's stdout or stderr: always writable, never blocks, keeps at most
/// [`CAPTURE_LIMIT`] bytes per call and silently drops the rest, so a guest
/// cannot trap or stall the host by printing.
#[derive(Clone)]
struct GuestOutput {
    capture: Capture,
    stream: Stream,
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.capture.push(self.stream, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(CAPTURE_LIMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.capture.push(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Clocks frozen at zero: plugins get no time source, which keeps them
/// deterministic (time comes from event timestamps).
struct FrozenClock;

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

#[cfg(test)]
mod tests {
    use super::*;
    use batpak_store::EventHeader;

    fn ev(seq: u64, entity: &str, kind: &str, payload: &[u8]) -> Event {
        let header = EventHeader {
            id: EventId(seq as u128),
            sequence: seq,
            entity_sequence: 1,
            coordinate: Coordinate::new(entity, "shop").unwrap(),
            kind: kind.into(),
            causation: None,
            correlation: EventId(seq as u128),
            timestamp_us: 1,
            prev: None,
            idempotency_key: None,
            meta: vec![],
        };
        Event {
            hash: header.hash(payload),
            header: Arc::new(header),
            payload: payload.into(),
        }
    }

    #[test]
    fn batch_builder_interns_and_reuses() {
        let mut b = BatchBuilder::default();
        let mut ids = Vec::new();
        let evs = vec![ev(1, "order:1", "k", b"ab"), ev(2, "order:2", "k", b"cde")];
        let batch = b.build(&evs, &mut ids).unwrap();
        assert_eq!(batch.strings, vec!["order:1", "shop", "k", "order:2"]);
        assert_eq!(batch.payloads, b"abcde");
        match &batch.events {
            w::CanalBatch::Many(v) => {
                assert_eq!(v.len(), 2);
                assert_eq!((v[1].entity, v[1].scope, v[1].kind), (3, 1, 2));
                assert_eq!((v[1].payload_offset, v[1].payload_len), (2, 3));
            }
            _ => panic!("expected many"),
        }
        let one = vec![ev(3, "x", "y", b"z")];
        let batch = b.build(&one, &mut ids).unwrap();
        assert_eq!(batch.strings, vec!["x", "shop", "y"]);
        assert!(matches!(batch.events, w::CanalBatch::One(e) if e.sequence == 3));
        assert_eq!(ids, vec![EventId(3)]);
        let batch = b.build(&evs, &mut ids).unwrap();
        assert!(matches!(&batch.events, w::CanalBatch::Many(v) if v.len() == 2));
    }
}
