//! Reads the figures `throughput` needs out of the printed tables of the
//! `store`, `reactor` and `memory` subcommands — of this build or of a
//! previous release's `batpak-bench`, whose only interface is that text.
//! Every reader returns `None` for a row the build does not print, so an
//! older build's missing row shows as "n/a" instead of failing the run.

/// The cells of every Markdown table row in `text` (lines starting with
/// `|`, separator lines left out), trimmed.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|') && !l.starts_with("|-") && !l.starts_with("|:"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The first row whose first cell starts with `prefix`.
fn row(text: &str, prefix: &str) -> Option<Vec<String>> {
    rows(text)
        .into_iter()
        .find(|r| r.first().is_some_and(|c| c.starts_with(prefix)))
}

/// The leading number of `cell` scaled by its suffix: `93.9K ev/s`,
/// `2.42M ev/s`, `254 ev/s*`, `7.6 ms`, `58.4 B/event`, `71.6 MiB`.
fn number(cell: &str) -> Option<f64> {
    let cell = cell.trim();
    let end = cell
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(cell.len());
    let n: f64 = cell[..end].parse().ok()?;
    let rest = &cell[end..];
    Some(if rest.starts_with('K') {
        n * 1e3
    } else if rest.starts_with('M') && !rest.starts_with("MiB") {
        n * 1e6
    } else if rest.trim_start().starts_with("MiB") {
        n * 1024.0 * 1024.0
    } else {
        n
    })
}

/// The number after `label` in `cell` (`VmRSS 71.6 MiB (VmHWM ...)`).
fn after(cell: &str, label: &str) -> Option<f64> {
    number(cell.split_once(label)?.1)
}

/// One store workload's two cells: batpak-host and SQLite.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreRow {
    /// batpak-host's figure (events/s, or ms for reopen).
    pub host: Option<f64>,
    /// batpak 0.10's figure.
    pub batpak: Option<f64>,
    /// SQLite's figure.
    pub sqlite: Option<f64>,
}

/// Workload `key` (`a`, `a'`, `b`, `c`, `d`, `d'`, `e`) of `batpak-bench
/// store`'s table (columns: workload, batpak-host, batpak 0.10, SQLite).
pub fn store_row(text: &str, key: &str) -> StoreRow {
    let Some(r) = row(text, &format!("({key}) ")) else {
        return StoreRow::default();
    };
    StoreRow {
        host: r.get(1).and_then(|c| number(c)),
        batpak: r.get(2).and_then(|c| number(c)),
        sqlite: r.get(3).and_then(|c| number(c)),
    }
}

/// `batpak-bench reactor --pipeline-only`: (wasm, native) events/s of the
/// "pipeline throughput" row.
pub fn reactor_pipeline(text: &str) -> (Option<f64>, Option<f64>) {
    match row(text, "pipeline throughput") {
        Some(r) => (
            r.get(1).and_then(|c| number(c)),
            r.get(2).and_then(|c| number(c)),
        ),
        None => (None, None),
    }
}

/// One store size of `batpak-bench memory`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryRows {
    /// Index bytes per event (the index's own accounting).
    pub index_per_event: Option<f64>,
    /// VmRSS with the store open after reopen, bytes.
    pub rss_open: Option<f64>,
    /// Reopen after clean close, ms.
    pub reopen_ms: Option<f64>,
    /// Cursor replay, events/s.
    pub replay: Option<f64>,
}

/// The rows of `batpak-bench memory` for the size printed as `n` (`1M`,
/// `10M`).
pub fn memory_rows(text: &str, n: &str) -> MemoryRows {
    let cell = |prefix: String| row(text, &prefix).and_then(|r| r.get(1).cloned());
    MemoryRows {
        index_per_event: cell(format!("index memory per event, {n}")).and_then(|c| number(&c)),
        rss_open: cell(format!("host store, {n} events open")).and_then(|c| after(&c, "VmRSS")),
        reopen_ms: cell(format!("reopen {n} events")).and_then(|c| number(&c)),
        replay: cell(format!("cursor replay of {n} events")).and_then(|c| number(&c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = "\
| workload                                    | batpak-host | batpak 0.10 |      SQLite | disk fsync/s | target |
|---------------------------------------------|------------:|------------:|------------:|-------------:|--------|
| (a) 4k appends, 1 at a time, durable at end | 202.6K ev/s |           - | 249.6K ev/s |         1453 | x |
| (a') same, host waiting (Wait::Visible)     |  34.8K ev/s |         n/a |         n/a |              | x |
| (c) 16 threads, each append durable         |   4.1K ev/s |           - |   254 ev/s* |          247 | x |
| (d) reopen 20k events after clean close     |      7.6 ms |           - |      0.4 ms |              | x |
| (e) cursor replay of 20k events             | 2.42M ev/s  |           - |  2.42M ev/s |              | x |
";

    #[test]
    fn reads_store_rows_and_tolerates_missing_ones() {
        let a = store_row(STORE, "a");
        assert_eq!((a.host, a.sqlite), (Some(202_600.0), Some(249_600.0)));
        let a2 = store_row(STORE, "a'");
        assert_eq!((a2.host, a2.sqlite), (Some(34_800.0), None));
        assert_eq!(a.batpak, None, "\"-\" (not run) reads as no figure");
        assert_eq!(store_row(STORE, "c").sqlite, Some(254.0));
        assert_eq!(store_row(STORE, "d").host, Some(7.6));
        assert_eq!(store_row(STORE, "e").host, Some(2_420_000.0));
        assert!(store_row(STORE, "b").host.is_none());
    }

    #[test]
    fn reads_reactor_and_memory_rows() {
        let r = "| pipeline throughput | 93.9K ev/s | 109.9K ev/s | note |";
        assert_eq!(reactor_pipeline(r), (Some(93_900.0), Some(109_900.0)));
        let m = "\
| host store, 1M events open (after reopen) | VmRSS 71.6 MiB (VmHWM 134.2 MiB) | - | x |
| index memory per event, 1M | 58.4 B/event | <= 64: MET | x |
| reopen 1M events after clean close | 460 ms | - | x |
| cursor replay of 1M events | 1.05M ev/s | - | x |
";
        let got = memory_rows(m, "1M");
        assert_eq!(got.index_per_event, Some(58.4));
        assert_eq!(got.rss_open, Some(71.6 * 1024.0 * 1024.0));
        assert_eq!(got.reopen_ms, Some(460.0));
        assert_eq!(got.replay, Some(1_050_000.0));
        assert!(memory_rows(m, "10M").index_per_event.is_none());
    }
}
