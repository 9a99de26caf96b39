//! `batpak-bench service`: durable appends per second through a running
//! host's control socket and HTTP API (1 client and 16 concurrent), beside
//! in-process appends and SQLite, in one run on one disk.
//!
//! Every append is one event acknowledged only once durable (the promise
//! `batpak-host append` gives). The service runs in this process over real
//! sockets (a Unix socket and loopback TCP), so the figures are the
//! protocol's and the durability path's, not process start-up.

use crate::common::{fmt_rate, payload, Deadline, THREADS};
use anyhow::{Context, Result};
use batpak_host_lib::{Console, Host, HostConfig, NoObserver, ServiceOptions};
use batpak_service::{Client, NewEvent};
use batpak_store::{AppendOptions, Coordinate, Proposal, Store};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One system's measurement: (clients, duration) -> appends per second.
type Measure<'a> = dyn Fn(usize, Duration) -> Result<f64> + 'a;

/// A host with no reactors (the library's, as `batpak-host run` starts
/// it), serving `data` over its socket and, with `listen`, HTTP.
pub(crate) fn host_without_reactors(
    data: &Path,
    listen: Option<std::net::SocketAddr>,
) -> Result<Host> {
    let mut config = HostConfig::new(data, Vec::new());
    config.service = ServiceOptions {
        listen,
        token_file: None,
    };
    config.console = Console::new(|_| {});
    Ok(Host::start(config, Box::new(NoObserver), &|| false)?)
}

/// Runs `clients` threads, each calling `make()` once for its connection
/// and then `step(conn, i)` until `secs` pass; returns appends per second.
fn concurrent<C>(
    clients: usize,
    secs: Duration,
    make: impl Fn(usize) -> Result<C> + Sync,
    step: impl Fn(&mut C, usize, u64) -> Result<()> + Sync,
) -> Result<f64> {
    let done = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = Deadline::after(secs);
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..clients)
            .map(|t| {
                let (make, step, done) = (&make, &step, &done);
                s.spawn(move || -> Result<()> {
                    let mut c = make(t)?;
                    let mut i = 0;
                    while !deadline.passed() {
                        step(&mut c, t, i)?;
                        i += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

fn body_text() -> String {
    String::from_utf8(payload()).expect("the payload is text")
}

fn in_process(store: &Store, clients: usize, secs: Duration) -> Result<f64> {
    let body = payload();
    concurrent(
        clients,
        secs,
        |t| Ok(Coordinate::new(format!("inproc-{clients}-{t}"), "bench")?),
        |c, _, _| {
            store.append(
                Proposal::new(c.clone(), "bench.event", body.clone()),
                AppendOptions::durable(),
            )?;
            Ok(())
        },
    )
}

fn socket(data: &Path, clients: usize, secs: Duration) -> Result<f64> {
    let body = body_text();
    concurrent(
        clients,
        secs,
        |_| Client::connect(data)?.context("the service is not listening"),
        |c, t, _| {
            c.append(vec![NewEvent {
                entity: format!("socket-{clients}-{t}"),
                scope: "bench".into(),
                kind: "bench.event".into(),
                payload_text: Some(body.clone()),
                ..NewEvent::default()
            }])?;
            Ok(())
        },
    )
}

struct Http {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

fn http(addr: &str, token: &str, clients: usize, secs: Duration) -> Result<f64> {
    let body = body_text();
    concurrent(
        clients,
        secs,
        |_| {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            Ok(Http {
                reader: BufReader::new(s.try_clone()?),
                writer: s,
            })
        },
        |c, t, _| {
            let json = serde_json::json!({
                "entity": format!("http-{clients}-{t}"),
                "scope": "bench",
                "kind": "bench.event",
                "payload_text": body,
            })
            .to_string();
            // One write per request, as an HTTP client library would.
            let req = format!(
                "POST /v1/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                json.len()
            );
            c.writer.write_all(req.as_bytes())?;
            // Status line, headers, then Content-Length bytes (keep-alive).
            let mut line = String::new();
            c.reader.read_line(&mut line)?;
            anyhow::ensure!(line.contains(" 200 "), "HTTP append failed: {line}");
            let mut len = 0usize;
            loop {
                line.clear();
                c.reader.read_line(&mut line)?;
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse()?;
                }
            }
            let mut b = vec![0u8; len];
            c.reader.read_exact(&mut b)?;
            Ok(())
        },
    )
}

fn sqlite(dir: &Path, clients: usize, secs: Duration) -> Result<f64> {
    let path = dir.join(format!("sqlite-{clients}.db"));
    if !path.exists() {
        let conn = rusqlite::Connection::open(&path)?;
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch("CREATE TABLE events (id INTEGER PRIMARY KEY, entity TEXT NOT NULL, scope TEXT NOT NULL, kind TEXT NOT NULL, payload BLOB NOT NULL, seq INTEGER NOT NULL); CREATE INDEX events_entity_seq ON events(entity, seq);")?;
    }
    let body = payload();
    concurrent(
        clients,
        secs,
        |_| {
            let c = rusqlite::Connection::open(&path)?;
            c.pragma_update(None, "synchronous", "FULL")?;
            c.busy_timeout(Duration::from_secs(30))?;
            Ok(c)
        },
        |c, t, _| {
            // Autocommit: each insert is its own durable transaction.
            c.prepare_cached("INSERT INTO events (entity, scope, kind, payload, seq) VALUES (?1, 'bench', 'bench.event', ?2, 0)")?
                .execute(rusqlite::params![format!("sqlite-{t}"), body])?;
            Ok(())
        },
    )
}

/// Runs the service benchmark in a scratch directory under `base`.
pub fn run(base: &Path, secs: u64) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(".batpak-bench-service-")
        .tempdir_in(base)?;
    let data = tmp.path().join("store");
    let secs = Duration::from_secs(secs.max(1));
    let service = host_without_reactors(&data, Some("127.0.0.1:0".parse()?))?;
    let store = service.control().store().clone();
    let addr = service.http_addr().context("HTTP address")?.to_string();
    let token = std::fs::read_to_string(service.token_path().context("token path")?)?
        .trim()
        .to_string();
    println!("batpak-bench service — durable single-event appends, {} s per cell in 4 interleaved rounds", secs.as_secs());
    for (k, v) in crate::machine::facts() {
        println!("  {k:<8} {v}");
    }
    println!("  disk     {}", tmp.path().display());
    println!();
    // The systems take turns in short rounds so they see the same disk
    // weather (this disk's fsync rate swings severalfold within minutes).
    let systems: [(&str, &Measure); 4] = [
        ("in-process Store::append", &|n, d| in_process(&store, n, d)),
        ("control socket (append)", &|n, d| socket(&data, n, d)),
        ("HTTP POST /v1/events", &|n, d| http(&addr, &token, n, d)),
        ("SQLite autocommit (WAL, FULL)", &|n, d| {
            sqlite(tmp.path(), n, d)
        }),
    ];
    let rounds = 4u32;
    let slice = secs / rounds;
    let mut sums = [[0.0f64; 2]; 4];
    for (ci, clients) in [1usize, THREADS].into_iter().enumerate() {
        for r in 0..rounds {
            crate::common::progress(format!("{clients} client(s), round {}/{rounds}", r + 1));
            for (si, (_, f)) in systems.iter().enumerate() {
                sums[si][ci] += f(clients, slice)? / f64::from(rounds);
            }
        }
    }
    let rows: Vec<(String, f64, f64)> = systems
        .iter()
        .zip(sums)
        .map(|((l, _), [a, b])| (l.to_string(), a, b))
        .collect();
    drop(store);
    service.stop()?;

    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(10).max(8);
    println!(
        "| {:<w$} | {:>12} | {:>13} |",
        "system", "1 client", "16 clients"
    );
    println!(
        "|{}|{}|{}|",
        "-".repeat(w + 2),
        "-".repeat(14),
        "-".repeat(15)
    );
    for (l, a, b) in &rows {
        println!("| {l:<w$} | {:>12} | {:>13} |", fmt_rate(*a), fmt_rate(*b));
    }
    println!();
    let inproc16 = rows[0].2;
    for (label, remote16) in [("control socket", rows[1].2), ("HTTP", rows[2].2)] {
        let frac = remote16 / inproc16;
        println!(
            "target: {label}, 16 clients, durable >= 50% of in-process ({} vs {} = {:.0}%): {}",
            fmt_rate(remote16),
            fmt_rate(inproc16),
            frac * 100.0,
            if frac >= 0.5 { "MET" } else { "MISSED" }
        );
    }
    Ok(())
}
