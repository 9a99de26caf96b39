//! The table, the targets and the notes.

use crate::common::{fmt_rate, Cell, Params, BATCH};
use crate::machine::FsyncRate;
use crate::Row;

const SYSTEMS: [&str; 3] = ["batpak-host", "batpak 0.10", "SQLite"];

/// (b)'s absolute goal: on a disk fast enough that 80 % of its fsync bound
/// exceeds this, this is the target instead.
const B_CAP: f64 = 1.5e6;

/// Verdict on one row's target.
fn target(row: &Row, fsync: f64) -> String {
    let [host, batpak, sqlite] = &row.cells;
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "MET",
        Some(false) => "MISSED",
        None => "UNKNOWN",
    };
    let ratio = |a: &Cell, b: &Cell| match (a.per_sec(), b.per_sec()) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    };
    let x = |r: Option<f64>| r.map_or("?".to_string(), |r| format!("{r:.1}x"));
    match row.key {
        "a" => {
            let rs = ratio(host, sqlite);
            let rb = ratio(host, batpak);
            format!(
                ">=2x SQLite ({}; batpak {}): {}",
                x(rs),
                x(rb),
                verdict(rs.map(|s| s >= 2.0))
            )
        }
        "a2" => {
            let r = host.per_sec();
            format!(">=500K ev/s: {}", verdict(r.map(|r| r >= 500e3)))
        }
        "b" => {
            let bound = fsync * BATCH as f64;
            let goal = (0.8 * bound).min(B_CAP);
            let frac = host.per_sec().map(|h| h / bound);
            let rb = ratio(host, batpak);
            let rs = ratio(host, sqlite);
            let ok = match (host.per_sec(), rb, rs) {
                (Some(h), Some(b), Some(s)) => Some(h >= goal && b > 1.0 && s > 1.0),
                _ => None,
            };
            format!(
                ">=min(80% of {}, 1.5M) = {} ({} of bound), > batpak ({}), > SQLite ({}): {}",
                fmt_rate(bound),
                fmt_rate(goal),
                frac.map_or("?".into(), |f| format!("{:.0}%", f * 100.0)),
                x(rb),
                x(rs),
                verdict(ok)
            )
        }
        "c" => {
            let mult = host.per_sec().map(|h| h / fsync);
            format!(
                ">=12x fsync = {} ({}): {}",
                fmt_rate(12.0 * fsync),
                x(mult),
                verdict(mult.map(|m| m >= 12.0))
            )
        }
        "d" => {
            let ms = host.millis();
            format!("<=1 s: {}", verdict(ms.map(|m| m <= 1000.0)))
        }
        "d2" => "(informational, no target)".into(),
        "e" => {
            let r = host.per_sec();
            format!(">=1M ev/s: {}", verdict(r.map(|r| r >= 1e6)))
        }
        _ => String::new(),
    }
}

/// Prints the table, the fsync bound beside it and the notes.
pub fn print(rows: &[Row], fsync0: &FsyncRate, fsync1: &FsyncRate, p: &Params) {
    let f = fsync0.per_sec();
    let header = [
        "workload",
        SYSTEMS[0],
        SYSTEMS[1],
        SYSTEMS[2],
        "disk fsync/s",
        "target (batpak-host) -> result",
    ];
    let body: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.label.clone(),
                r.cells[0].short(),
                r.cells[1].short(),
                r.cells[2].short(),
                r.fsync.map_or(String::new(), |x| format!("{x:.0}")),
                target(r, r.fsync.unwrap_or(f)),
            ]
        })
        .collect();
    let mut w = [0usize; 6];
    for (i, h) in header.iter().enumerate() {
        w[i] = h.chars().count();
    }
    for r in &body {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    // Text columns left-aligned, numbers right-aligned.
    let left = |i: usize| i == 0 || i == 5;
    let line = |cols: [&str; 6]| {
        let mut s = String::from("|");
        for (i, c) in cols.iter().enumerate() {
            let pad = " ".repeat(w[i].saturating_sub(c.chars().count()));
            if left(i) {
                s.push_str(&format!(" {c}{pad} |"));
            } else {
                s.push_str(&format!(" {pad}{c} |"));
            }
        }
        s
    };
    let mut sep = String::from("|");
    for (i, wi) in w.iter().enumerate() {
        let end = if left(i) { "-" } else { ":" };
        sep.push_str(&format!("{}{end}|", "-".repeat(wi + 1)));
    }
    println!(
        "disk fsync rate, measured first: {:.0} fsync/s ({:.2} ms each); at the end: {:.0} fsync/s ({:.2} ms){}",
        f,
        fsync0.mean_ms(),
        fsync1.per_sec(),
        fsync1.mean_ms(),
        drift(f, fsync1.per_sec())
    );
    println!(
        "Rows (a)-(c) run in rounds, the systems taking turns; \"disk fsync/s\" is that row's rate from short probes between the turns;"
    );
    println!(
        "targets (b) and (c) use it: (b) bound = fsync/s x {BATCH} events per fsync, target min(80% of it, 1.5M ev/s); (c) target = 12 x fsync/s."
    );
    println!();
    println!("{}", line(header));
    println!("{sep}");
    for r in &body {
        println!("{}", line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    println!();
    println!(
        "Rates are events/s with 100 B payloads; reopen is the wall time of the open call. `*` = the loop hit the {} s cap; its rate is over what it completed.",
        p.cap.as_secs()
    );
    println!(
        "Only ratios within one run mean anything: this disk's fsync rate swings more than tenfold hour to hour (and within seconds)."
    );
    println!();
    println!("Notes:");
    for r in rows {
        for (i, c) in r.cells.iter().enumerate() {
            // The n/a cells of host-only rows need no explanation.
            if matches!(c, Cell::Na(_)) && matches!(r.key, "a2" | "d2") {
                continue;
            }
            if let Some(d) = c.detail() {
                println!("  {} / {}: {}", r.label, SYSTEMS[i], d);
            }
        }
    }
}

fn drift(a: f64, b: f64) -> String {
    if a <= 0.0 || b <= 0.0 {
        return String::new();
    }
    let r = (a / b).max(b / a);
    if r >= 1.5 {
        format!(" — WARNING: the disk changed {r:.1}x during the run; compare rows with care")
    } else {
        String::new()
    }
}
