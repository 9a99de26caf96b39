//! The two-reactor follow latency over HTTP: a side's `batpak-host run
//! --listen` with the demo's three reactors; one client follows
//! `shipment.requested` (`GET /v1/events/follow`), another POSTs one order
//! at a time at a steady rate, each acknowledged once durable; the latency
//! of an order is from just before its POST is written to the arrival of its
//! shipment (inventory, then shipping: two reactors deep) on the follow
//! stream.

use crate::throughput_side::{Env, Side};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Orders sent (and awaited) before the measured stream: the plugins are
/// loaded and warm by then.
const WARMUP: u64 = 20;
/// Longest wait for the host to serve, and for the last shipments.
const SETTLE: Duration = Duration::from_secs(60);

/// The measured latencies.
pub struct Latency {
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// Stops the host child when dropped (SIGTERM, then SIGKILL after 10 s).
struct HostChild(Child);

impl Drop for HostChild {
    fn drop(&mut self) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One keep-alive HTTP connection that POSTs orders.
struct Poster {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    token: String,
}

impl Poster {
    fn connect(addr: &str, token: &str) -> Result<Poster> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Poster {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            token: token.to_string(),
        })
    }

    /// POSTs order `i`, returns once its receipt (durable) is read.
    fn order(&mut self, i: u64) -> Result<()> {
        let json = format!(
            r#"{{"entity":"order:{i}","scope":"shop","kind":"order.placed","payload":{{"sku":"widget","qty":1}}}}"#
        );
        let req = format!(
            "POST /v1/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            self.token,
            json.len()
        );
        self.writer.write_all(req.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        if !line.contains(" 200 ") {
            bail!("POST /v1/events answered {}", line.trim());
        }
        let mut len = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse()?;
            }
        }
        let mut b = vec![0u8; len];
        self.reader.read_exact(&mut b)?;
        Ok(())
    }
}

/// Arrival time of each order's shipment, by order number.
type Arrivals = Arc<Mutex<HashMap<u64, Instant>>>;

/// Follows `shipment.requested` on `addr`, recording arrivals until the
/// connection ends.
fn follower(addr: &str, token: &str, arrivals: Arrivals) -> Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(
        format!(
            "GET /v1/events/follow?kind=shipment.requested HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let reader = BufReader::new(s);
    // Chunk-size lines and headers are skipped: every event line is a JSON
    // object (the server writes whole lines per chunk).
    for line in reader.lines() {
        let line = line?;
        let now = Instant::now();
        if !line.starts_with('{') {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).context("a follow line")?;
        if let Some(n) = v["entity"]
            .as_str()
            .and_then(|e| e.strip_prefix("order:"))
            .and_then(|n| n.parse().ok())
        {
            arrivals.lock().expect("not poisoned").insert(n, now);
        }
    }
    Ok(())
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + SETTLE;
    while !ok() {
        if Instant::now() >= deadline {
            bail!("{what} did not happen within {} s", SETTLE.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Measures `side`'s follow latency over `secs` seconds at `rate` orders/s.
///
/// # Errors
/// The host does not start or serve, a POST fails, or a shipment does not
/// arrive within a minute.
pub fn measure(env: &Env, side: &Side, secs: u64, rate: u64) -> Result<Latency> {
    let data = env
        .root
        .join(format!("follow-{}", side.name.replace(' ', "-")));
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let inputs = env.inputs;
    let child = side
        .host_cmd()
        .arg("--data")
        .arg(&data)
        .args(["run", "--quiet", "--listen", &addr, "--plugin-config"])
        .arg(&inputs.shop_config)
        .arg(&inputs.inventory)
        .arg(&inputs.low_stock)
        .arg(&inputs.shipping)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting batpak-host run --listen")?;
    let _host = HostChild(child);
    let token_file = data.join("run/http.token");
    wait_for("the HTTP token file", || token_file.is_file())?;
    wait_for("the HTTP listener", || TcpStream::connect(&addr).is_ok())?;
    let token = std::fs::read_to_string(&token_file)?.trim().to_string();

    let arrivals: Arrivals = Arc::default();
    {
        let (addr, token, arrivals) = (addr.clone(), token.clone(), arrivals.clone());
        std::thread::spawn(move || follower(&addr, &token, arrivals));
    }
    let mut poster = Poster::connect(&addr, &token)?;
    for i in 0..WARMUP {
        poster.order(i)?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = |n: u64| arrivals.lock().expect("not poisoned").len() as u64 >= n;
    wait_for("the warm-up shipments", || got(WARMUP))?;

    let total = secs * rate;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut sent = Vec::with_capacity(total as usize);
    for k in 0..total {
        let due = start + gap * k as u32;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let i = WARMUP + k;
        sent.push((i, Instant::now()));
        poster.order(i)?;
    }
    wait_for("every shipment of the stream", || got(WARMUP + total))?;
    let arrived = arrivals.lock().expect("not poisoned").clone();
    let mut ms: Vec<f64> = sent
        .iter()
        .filter_map(|(i, t)| Some(arrived.get(i)?.duration_since(*t).as_secs_f64() * 1e3))
        .collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    Ok(Latency {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}
