//! Shared helpers for the runtime end-to-end tests: the real binary, the
//! example plugins built from source (once per test binary), temp stores.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `batpak-host` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_batpak-host")
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("host/cli sits two levels below the workspace root")
        .to_path_buf()
}

/// The five example plugins, built from source for wasm32-wasip2 the first
/// time this is called (cargo's own lock serialises concurrent test
/// binaries). Returns the directory holding the `.wasm` files.
pub fn plugins_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // A fresh machine may lack the target (rustup makes this a no-op
        // when it is installed).
        let added = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .output()
            .expect("running rustup to add the wasm32-wasip2 target");
        assert!(
            added.status.success(),
            "rustup target add wasm32-wasip2 failed"
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(workspace())
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                "inventory",
                "-p",
                "low-stock",
                "-p",
                "shipping",
                "-p",
                "hostile",
                "-p",
                "passthrough",
            ])
            .output()
            .expect("running cargo to build the plugins");
        assert!(
            out.status.success(),
            "building the example plugins failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The binary lives in <target>/release/, the plugins in
        // <target>/wasm32-wasip2/release/.
        let target = Path::new(bin())
            .parent()
            .and_then(Path::parent)
            .expect("binary sits in <target>/release")
            .to_path_buf();
        let dir = target.join("wasm32-wasip2").join("release");
        assert!(
            dir.join("inventory.wasm").is_file(),
            "no inventory.wasm in {}",
            dir.display()
        );
        dir
    })
}

/// One example plugin by file stem (`inventory`, `low_stock`, `shipping`,
/// `hostile`, `passthrough`).
pub fn plugin(stem: &str) -> PathBuf {
    plugins_dir().join(format!("{stem}.wasm"))
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    // Owner-only: the store refuses a data directory others can access
    // (tempfile's default is 0777 & !umask).
    tempfile::Builder::new()
        .prefix("batpak-rt-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("tempdir")
}

/// Runs `batpak-host --data <data> <args>` to completion.
pub fn host(data: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running batpak-host")
}

/// Like [`host`], panicking with both streams when the exit code is not 0.
pub fn host_ok(data: &Path, args: &[&str]) -> Output {
    let out = host(data, args);
    assert!(
        out.status.success(),
        "batpak-host {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Appends events given as JSON values {"entity","scope","kind","payload"}.
pub fn append(data: &Path, events: &[Value]) -> Vec<Value> {
    let mut child = Command::new(bin())
        .arg("--data")
        .arg(data)
        .args(["append", "--jsonl", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning append");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for e in events {
            writeln!(stdin, "{e}").expect("writing to append");
        }
    }
    let out = child.wait_with_output().expect("append");
    assert!(
        out.status.success(),
        "append failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout)
}

/// An `order.placed` event for order `n`.
pub fn order(n: u64, sku: &str, qty: u64) -> Value {
    serde_json::json!({
        "entity": format!("order:{n}"),
        "scope": "shop",
        "kind": "order.placed",
        "payload": {"sku": sku, "qty": qty},
    })
}

/// Parses JSON lines.
pub fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Every event (system ones included), oldest first.
pub fn all_events(data: &Path) -> Vec<Value> {
    json_lines(&host_ok(data, &["events", "--system"]).stdout)
}

/// Events of one kind.
pub fn events_of(data: &Path, kind: &str) -> Vec<Value> {
    all_events(data)
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("writing a test file");
    p
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A reactor written by hand in component text: consumes `bench.in`,
/// declares `bench.out`, and returns no proposals. Proves the WIT is usable
/// without any SDK (and without WASI).
pub const NULL_REACTOR_WAT: &str = include_str!("../../plugins/null-wat/reactor.wat");

/// The lines of a child's output, read on their own thread so every wait
/// on them has a time limit.
pub struct Lines {
    rx: Receiver<String>,
    /// Every line received so far.
    pub seen: Vec<String>,
}

impl Lines {
    /// Starts reading `from` (a child's stderr or stdout).
    pub fn new(from: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits at most `limit` for a line satisfying `pred` and returns it;
    /// panics naming `what` and showing every line seen otherwise.
    pub fn wait_for(&mut self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no line {what} within {limit:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the output ended without a line {what}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Collects the remaining lines until the stream ends (at most
    /// `limit`), and returns everything seen as one text.
    pub fn finish(&mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "the output did not end within {limit:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
        self.seen.join("\n")
    }
}

/// A child's output kept line by line, read on its own thread: unlike
/// [`Lines`], every line stays for later looks (a host's slots, its whole
/// log on a failure), and every wait on it has a deadline.
pub struct KeptLines {
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl KeptLines {
    /// Starts reading `from` (a child's stderr or stdout).
    pub fn new(from: impl std::io::Read + Send + 'static) -> KeptLines {
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let into = lines.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                into.lock().unwrap().push(line);
            }
        });
        KeptLines {
            lines,
            reader: Some(reader),
        }
    }

    /// The lines read so far (the reader waits while this is held).
    pub fn lock(&self) -> MutexGuard<'_, Vec<String>> {
        self.lines.lock().unwrap()
    }

    /// Every line read so far, as one text.
    pub fn text(&self) -> String {
        self.lock().join("\n")
    }

    /// Waits at most `limit` for a line after the first `from` lines that
    /// `pred` maps to `Some`, and returns that; panics naming `who` and
    /// `what` and showing every line otherwise.
    pub fn wait_map<T>(
        &self,
        who: &str,
        from: usize,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = self.lock().iter().skip(from).find_map(|l| pred(l)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{who}: no line {what} within {limit:?}; saw:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the reader to reach the end of the output (call once the
    /// child has exited, so it is bounded).
    pub fn join(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The lease TTL of the cluster hosts the tests start: failovers cost
/// about this much.
pub const CLUSTER_HOST_TTL_MS: &str = "1500";

/// `batpak-host [--data DATA] --store STORE run FILES… --lease-ttl-ms
/// [CLUSTER_HOST_TTL_MS] --host-id ID --quiet EXTRA…`: a host on a
/// cluster, stdin and stdout closed, its stderr kept.
pub fn spawn_cluster_host(
    data: Option<&Path>,
    store: &str,
    files: &[PathBuf],
    id: &str,
    extra: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>,
) -> (Child, KeptLines) {
    let mut cmd = Command::new(bin());
    if let Some(d) = data {
        cmd.arg("--data").arg(d);
    }
    let mut child = cmd
        .args(["--store", store, "run"])
        .args(files)
        .args([
            "--lease-ttl-ms",
            CLUSTER_HOST_TTL_MS,
            "--host-id",
            id,
            "--quiet",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting batpak-host run --store");
    let lines = KeptLines::new(child.stderr.take().unwrap());
    (child, lines)
}

/// Waits at most `limit` for `child` to exit; kills it and panics otherwise.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("polling the child") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("batpak-host did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(st.success(), "kill -TERM failed");
}

/// Runs `batpak-host --data <data> <args>`, feeding `stdin` when given, and
/// returns its output whatever the exit code.
pub fn run(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(bin());
    c.arg("--data").arg(data).args(args);
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawning batpak-host");
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(s.as_bytes())
            .expect("writing stdin");
    }
    child.wait_with_output().expect("waiting for batpak-host")
}

/// Appends one event per payload (entity `a`, scope `s`, kind `k`), each
/// with its own `append` command, so each is its own frame.
pub fn append_payloads(data: &Path, payloads: impl IntoIterator<Item = String>) {
    for p in payloads {
        host_ok(
            data,
            &[
                "append",
                "--entity",
                "a",
                "--scope",
                "s",
                "--kind",
                "k",
                "--payload-text",
                &p,
            ],
        );
    }
}

/// The passthrough component with a custom section `section` holding `k`
/// appended: same behaviour, a new digest per (`section`, `k`) — a "new
/// version" without another build.
pub fn passthrough_variant(section: &str, k: u32) -> Vec<u8> {
    let mut bytes = std::fs::read(plugin("passthrough")).expect("passthrough.wasm");
    let mut sec = vec![section.len() as u8];
    sec.extend_from_slice(section.as_bytes());
    sec.extend_from_slice(&k.to_le_bytes());
    bytes.push(0); // custom section id
    let mut n = sec.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            bytes.push(b);
            break;
        }
        bytes.push(b | 0x80);
    }
    bytes.extend_from_slice(&sec);
    bytes
}
