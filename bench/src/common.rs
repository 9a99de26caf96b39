//! What every system's workloads share: parameters, the payload, results.

use std::time::{Duration, Instant};

/// Size of every event payload, in bytes.
pub const PAYLOAD_LEN: usize = 100;
/// Events per durable batch in workload (b).
pub const BATCH: usize = 256;
/// Writer threads in workload (c).
pub const THREADS: usize = 16;
/// Distinct entities the single-writer workloads cycle through.
pub const ENTITIES: usize = 100;
/// Events per batch when filling the store for the reopen and replay
/// workloads (not timed).
pub const FILL_BATCH: usize = 4096;

/// The workload sizes of one run.
#[derive(Clone, Debug)]
pub struct Params {
    /// Events in (a) and (b), and the most in (c).
    pub events: u64,
    /// Events in the store that (d) reopens and (e) replays.
    pub reopen_events: u64,
    /// Longest a single timed loop may run; a system that is slower stops
    /// early and its rate is computed over what it did.
    pub cap: Duration,
}

/// The 100-byte payload used for the host store and SQLite.
pub fn payload() -> Vec<u8> {
    let mut p = Vec::with_capacity(PAYLOAD_LEN);
    let text = br#"{"sku":"widget-0042","qty":3,"note":"benchmark payload, one hundred bytes long"#;
    p.extend_from_slice(text);
    p.resize(PAYLOAD_LEN - 1, b'.');
    p.push(b'}');
    p
}

/// One measured cell of the table.
#[derive(Clone, Debug)]
pub enum Cell {
    /// A throughput: `count` events in `secs`; `capped` when the time cap
    /// stopped the loop before it reached its target count.
    Rate {
        /// Events completed.
        count: u64,
        /// Wall time, seconds.
        secs: f64,
        /// True when the time cap ended the loop.
        capped: bool,
    },
    /// A latency in milliseconds (reopen).
    Millis(f64),
    /// The workload cannot be expressed with this system; the reason.
    Na(String),
    /// The run failed; the error.
    Failed(String),
    /// Not run (filtered out with `--systems`).
    Skipped,
}

impl Cell {
    /// A rate cell.
    pub fn rate(count: u64, elapsed: Duration, capped: bool) -> Cell {
        Cell::Rate {
            count,
            secs: elapsed.as_secs_f64(),
            capped,
        }
    }

    /// Adds another part of the same workload (a later round) to this one.
    pub fn merge(self, other: Cell) -> Cell {
        match (self, other) {
            (f @ Cell::Failed(_), _) | (_, f @ Cell::Failed(_)) => f,
            (n @ Cell::Na(_), _) | (_, n @ Cell::Na(_)) => n,
            (
                Cell::Rate {
                    count: a,
                    secs: x,
                    capped: c1,
                },
                Cell::Rate {
                    count: b,
                    secs: y,
                    capped: c2,
                },
            ) => Cell::Rate {
                count: a + b,
                secs: x + y,
                capped: c1 || c2,
            },
            (Cell::Skipped, o) => o,
            (s, _) => s,
        }
    }

    /// Events per second, when this is a rate.
    pub fn per_sec(&self) -> Option<f64> {
        match self {
            Cell::Rate { count, secs, .. } if *secs > 0.0 => Some(*count as f64 / secs),
            _ => None,
        }
    }

    /// Milliseconds, when this is a latency.
    pub fn millis(&self) -> Option<f64> {
        match self {
            Cell::Millis(ms) => Some(*ms),
            _ => None,
        }
    }

    /// Short text for the table.
    pub fn short(&self) -> String {
        match self {
            Cell::Rate { capped, .. } => {
                format!(
                    "{}{}",
                    fmt_rate(self.per_sec().unwrap_or(0.0)),
                    if *capped { "*" } else { "" }
                )
            }
            Cell::Millis(ms) => fmt_ms(*ms),
            Cell::Na(_) => "n/a".into(),
            Cell::Failed(_) => "FAILED".into(),
            Cell::Skipped => "-".into(),
        }
    }

    /// Longer text for the notes below the table (counts, reasons, errors).
    pub fn detail(&self) -> Option<String> {
        match self {
            Cell::Rate {
                count,
                secs,
                capped,
            } => Some(format!(
                "{} events in {:.2} s{}",
                fmt_int(*count),
                secs,
                if *capped {
                    " (stopped by the time cap)"
                } else {
                    ""
                }
            )),
            Cell::Millis(_) | Cell::Skipped => None,
            Cell::Na(r) => Some(format!("n/a: {r}")),
            Cell::Failed(e) => Some(format!("FAILED: {e}")),
        }
    }
}

/// Turns a workload's result into a cell, keeping errors as cells so one
/// failing system does not hide the others.
pub fn cell_of(r: anyhow::Result<Cell>) -> Cell {
    r.unwrap_or_else(|e| Cell::Failed(format!("{e:#}")))
}

/// `12.3K ev/s`-style text.
pub fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2}M ev/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1}K ev/s", per_s / 1e3)
    } else {
        format!("{per_s:.0} ev/s")
    }
}

/// Milliseconds with sensible precision.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// A count as a row label shows it: `1M`, `250K`, or the number itself.
/// (The `store` table keeps its own lowercase `100k`: older builds' tables
/// are read by those labels.)
pub fn short_n(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}K", n / 1000)
    } else {
        n.to_string()
    }
}

/// `1,234,567`.
pub fn fmt_int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A wall-clock limit for one timed loop.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Instant);

impl Deadline {
    /// `cap` from now.
    pub fn after(cap: Duration) -> Deadline {
        Deadline(Instant::now() + cap)
    }

    /// True once the limit has passed.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }
}

/// Runs `step(from, to)` over `0..events` in chunks of `chunk`, checking the
/// time cap between chunks; returns how many events were done and whether
/// the cap cut the loop short. One loop shape for every system's workload.
pub fn capped_loop(
    events: u64,
    chunk: u64,
    cap: Duration,
    mut step: impl FnMut(u64, u64) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, bool)> {
    let deadline = Deadline::after(cap);
    let mut n = 0;
    while n < events {
        if deadline.passed() {
            return Ok((n, true));
        }
        let end = (n + chunk).min(events);
        step(n, end)?;
        n = end;
    }
    Ok((n, false))
}

/// Progress on stderr, so the table on stdout stays clean.
pub fn progress(msg: impl AsRef<str>) {
    eprintln!("  .. {}", msg.as_ref());
}
