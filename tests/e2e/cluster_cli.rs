//! The command line on a real NATS JetStream cluster: `cluster dev` starts
//! nodes from the provisioned nats-server (the same provisioning the
//! cluster tests use, into `<target>/toolchains/nats`), `cluster init`
//! creates the layout, and `append`, `events`, `trace` and `verify` run
//! with `--store` / `BATPAK_STORE` against it. One cluster test at a time
//! (2 cores: elections on a starved machine time out for the wrong reason).

use crate::common::{
    bin, json_lines, spawn_cluster_host, stderr, tempdir, wait_exit, KeptLines, Lines,
};
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn serial() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A base port P with P+i, P+100+i and P+200+i (i < n) free on loopback.
fn free_base(n: u16) -> u16 {
    // Below the kernel's ephemeral range (32768 up on Linux), which the
    // clients' own connections draw from: a long cluster run leaves
    // thousands of them there, so bases taken from it can all be busy.
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new();
    for i in 0..200u64 {
        let p = 10_000 + (random.hash_one(i) % 20_000) as u16;
        let held: Vec<_> = (0..n)
            .flat_map(|i| [p + i, p + 100 + i, p + 200 + i])
            .map(|q| TcpListener::bind(("127.0.0.1", q)))
            .collect();
        if held.iter().all(Result::is_ok) {
            return p;
        }
    }
    panic!("no free base port found");
}

/// A running `batpak-host cluster dev`; SIGTERM and a bounded wait on drop.
struct Dev {
    child: Child,
    info: Value,
    _dir: tempfile::TempDir,
}

impl Dev {
    fn start(nodes: u16) -> Dev {
        let dir = tempdir();
        let port = free_base(nodes);
        let mut child = Command::new(bin())
            .args(["cluster", "dev", "--nodes", &nodes.to_string(), "--port"])
            .arg(port.to_string())
            .arg("--dir")
            .arg(dir.path().join("cluster"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = Lines::new(child.stdout.take().unwrap());
        let mut err = Lines::new(child.stderr.take().unwrap());
        // Provisioning may install nats-server first (minutes on a cold
        // machine), then the election.
        let line = out.wait_for("with the --store URL", Duration::from_secs(600), |l| {
            l.contains("\"store\"")
        });
        let info: Value = serde_json::from_str(&line).unwrap();
        err.wait_for("naming the init command", Duration::from_secs(5), |l| {
            l.contains("cluster init --partitions")
        });
        Dev {
            child,
            info,
            _dir: dir,
        }
    }

    fn store(&self) -> &str {
        self.info["store"].as_str().unwrap()
    }

    fn monitor(&self) -> &str {
        self.info["monitor"].as_str().unwrap()
    }

    fn pids(&self) -> Vec<u32> {
        self.info["pids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap() as u32)
            .collect()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = wait_exit(&mut self.child, Duration::from_secs(20));
    }
}

/// Whether process `pid` still runs (a zombie does not count).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn wait_gone(pids: &[u32], limit: Duration) {
    let deadline = Instant::now() + limit;
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "nats-server processes {pids:?} still run {limit:?} after batpak-host stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `batpak-host --store <store> <args>` to completion (stdin `input`).
fn on(store: &str, args: &[&str], input: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(text) = input {
        stdin.write_all(text.as_bytes()).unwrap();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn ok(store: &str, args: &[&str]) -> Vec<Value> {
    let out = on(store, args, None);
    assert!(
        out.status.success(),
        "batpak-host {args:?} failed ({:?})\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    json_lines(&out.stdout)
}

fn init(dev: &Dev, k: &str, r: &str) -> Output {
    on(
        dev.store(),
        &[
            "cluster",
            "init",
            "--partitions",
            k,
            "--replicas",
            r,
            "--monitor",
            dev.monitor(),
        ],
        None,
    )
}

/// The whole path a user takes: a 3-node `cluster dev`, `cluster init`
/// (idempotent; another K or too many replicas refused naming the fix),
/// appends to several partitions (receipts name partition and seq; an
/// idempotency key answers the first receipt), `events` with its filters
/// and `--partition`, `--follow` seeing a new append, `trace` across
/// partitions, `verify` sound; SIGTERM stops every node.
#[test]
fn cluster_dev_init_and_store_commands_on_three_nodes() {
    let _one = serial();
    let dev = Dev::start(3);
    let store = dev.store().to_string();
    let pids = dev.pids();
    assert_eq!(pids.len(), 3);

    let first = init(&dev, "4", "3");
    assert!(first.status.success(), "{}", stderr(&first));
    let made = &json_lines(&first.stdout)[0];
    assert_eq!(made["created"], true);
    assert_eq!(made["partitions"], 4);
    assert_eq!(made["streams"].as_array().unwrap().len(), 4);
    let again = init(&dev, "4", "3");
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(json_lines(&again.stdout)[0]["created"], false);
    let other = init(&dev, "2", "3");
    assert_refused(&other, 1, "keep --partitions 4 --replicas 3");
    let too_many = init(&dev, "4", "5");
    assert_refused(&too_many, 1, "--replicas 5");

    // Appends spread over partitions; a cause in another partition.
    let order = append_one(
        &store,
        "order:1",
        "shop",
        "order.placed",
        r#"{"qty":2}"#,
        &[],
    );
    let order_id = order["id"].as_str().unwrap().to_string();
    assert!(order["partition"].as_u64().unwrap() < 4, "{order}");
    assert_eq!(order["entity_seq"], 1);
    let mut partitions = std::collections::BTreeSet::new();
    partitions.insert(order["partition"].as_u64().unwrap());
    let mut reactions = Vec::new();
    for n in 0..8 {
        let r = append_one(
            &store,
            &format!("stock:{n}"),
            "shop",
            "stock.reserved",
            "{}",
            &["--causation", &order_id],
        );
        partitions.insert(r["partition"].as_u64().unwrap());
        // The correlation is inherited from the cause, across partitions.
        reactions.push(r["id"].as_str().unwrap().to_string());
    }
    assert!(
        partitions.len() >= 2,
        "all in one partition: {partitions:?}"
    );
    let key = ["--idempotency-key", "pay-1"];
    let pay = |_: ()| append_one(&store, "order:1", "shop", "order.paid", "{}", &key);
    let paid = pay(());
    let repeat = pay(());
    assert_eq!(repeat["deduplicated"], true);
    assert_eq!(repeat["id"], paid["id"]);
    assert_eq!(repeat["seq"], paid["seq"]);
    assert_eq!(paid["entity_seq"], 2);

    // A causation that is nowhere is refused, nothing appended.
    let bad = on(
        &store,
        &[
            "append",
            "--entity",
            "x:1",
            "--scope",
            "s",
            "--kind",
            "k",
            "--payload",
            "{}",
            "--causation",
            "0123456789abcdef0123456789abcdef",
        ],
        None,
    );
    assert_refused(&bad, 1, "any partition");

    // --jsonl: checked first (a bad line appends nothing), then in order.
    let bad_file = on(
        &store,
        &["append", "--jsonl", "-"],
        Some("{\"entity\":\"j:1\",\"scope\":\"s\",\"kind\":\"k\",\"payload\":{}}\nnot json\n"),
    );
    assert_refused(&bad_file, 1, "stdin:2");
    let jsonl = "{\"id\":\"00000000000000000000000000000abc\",\"entity\":\"j:1\",\"scope\":\"s\",\"kind\":\"k\",\"payload\":{\"n\":1}}\n\
                 {\"entity\":\"j:2\",\"scope\":\"s\",\"kind\":\"k2\",\"payload\":{},\"causation\":\"00000000000000000000000000000abc\"}\n";
    let receipts = append_jsonl(&store, jsonl);
    assert_eq!(receipts.len(), 2);

    // events: everything, each line with its partition; order per partition.
    let all = on(&store, &["events"], None);
    assert!(all.status.success(), "{}", stderr(&all));
    assert!(
        stderr(&all).contains("order is per partition"),
        "{}",
        stderr(&all)
    );
    let lines = json_lines(&all.stdout);
    assert_eq!(lines.len(), 1 + 8 + 1 + 2, "{lines:#?}");
    let j2 = lines.iter().find(|l| l["entity"] == "j:2").unwrap();
    assert_eq!(j2["correlation"], "00000000000000000000000000000abc");
    let mut last: std::collections::HashMap<u64, u64> = Default::default();
    for l in &lines {
        let p = l["partition"].as_u64().unwrap();
        let seq = l["seq"].as_u64().unwrap();
        assert!(
            last.get(&p).is_none_or(|s| *s < seq),
            "out of order in p{p}"
        );
        last.insert(p, seq);
    }
    // Filters as on the embedded store.
    let kind = ok(&store, &["events", "--kind", "stock.reserved"]);
    assert_eq!(kind.len(), 8);
    assert!(kind.iter().all(|l| l["correlation"] == order_id.as_str()));
    let by_cause = ok(&store, &["events", "--caused-by", &order_id]);
    assert_eq!(by_cause.len(), 8);
    let entity = ok(&store, &["events", "--entity", "order:1"]);
    assert_eq!(entity.len(), 2);
    assert_eq!(entity[1]["kind"], "order.paid");
    let p = order["partition"].as_u64().unwrap().to_string();
    let one = ok(&store, &["events", "--partition", &p]);
    assert!(one.iter().all(|l| l["partition"] == order["partition"]));
    assert!(one.iter().any(|l| l["id"] == order_id.as_str()));
    let after = ok(&store, &["events", "--partition", &p, "--after", "1"]);
    assert_eq!(after.len(), one.len() - 1);
    let no_part = on(&store, &["events", "--after", "1"], None);
    assert_refused(&no_part, 2, "--partition");
    let limited = ok(&store, &["events", "--limit", "3"]);
    assert_eq!(limited.len(), 3);

    // --follow sees an append made after it started.
    let mut follow = Command::new(bin())
        .args(["--store", &store, "events", "--follow", "--kind", "late"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut followed = Lines::new(follow.stdout.take().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    append_one(&store, "late:1", "s", "late", "{}", &[]);
    let line = followed.wait_for("with the late event", Duration::from_secs(20), |l| {
        l.contains("\"late\"")
    });
    assert!(line.contains("\"partition\""), "{line}");
    let _ = follow.kill();
    let _ = follow.wait();

    // trace: the order's reactions in other partitions.
    let trace = on(&store, &["trace", &order_id, "--format", "json"], None);
    assert!(trace.status.success(), "{}", stderr(&trace));
    assert!(
        stderr(&trace).contains("order is per partition"),
        "{}",
        stderr(&trace)
    );
    let tree: Value = serde_json::from_slice(&trace.stdout).unwrap();
    let children = tree["root"]["children"].as_array().unwrap();
    assert_eq!(children.len(), 8, "{tree}");
    let mut traced: Vec<String> = children
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    traced.sort();
    reactions.sort();
    assert_eq!(traced, reactions);
    assert!(children.iter().all(|c| c["partition"].is_u64()), "{tree}");

    // verify: every partition's chains and hashes.
    let report = ok(&store, &["verify"]);
    assert_eq!(report[0]["sound"], true, "{}", report[0]);
    assert_eq!(report[0]["events"], 13);
    assert_eq!(report[0]["partitions"].as_array().unwrap().len(), 4);
    assert_eq!(report[0]["order"], "per partition");

    // SIGTERM stops the dev cluster and every node.
    drop(dev);
    wait_gone(&pids, Duration::from_secs(10));
}

/// A `cluster dev` killed with -9 (no chance to clean up) leaves no node
/// running: they die with it.
#[test]
fn cluster_dev_nodes_die_with_a_killed_dev() {
    let _one = serial();
    let mut dev = Dev::start(1);
    let pids = dev.pids();
    assert!(pids.iter().all(|p| alive(*p)));
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    wait_gone(&pids, Duration::from_secs(10));
}

/// The provisioned nats-server (what `cluster dev` and the cluster tests
/// use).
fn nats_server() -> PathBuf {
    let target = Path::new(bin()).parent().unwrap().parent().unwrap();
    batpak_provision::nats_server::provision(&target.join("toolchains"), &[])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A node without `sync_interval: always` is refused by `cluster init`,
/// naming the setting and `cluster dev`; nothing is created.
#[test]
fn cluster_init_refuses_a_node_without_sync_always() {
    let _one = serial();
    let dir = tempdir();
    let port = free_base(1);
    let conf = dir.path().join("n1.conf");
    std::fs::write(
        &conf,
        format!(
            "server_name: lazy\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\n",
            port + 200,
            dir.path().join("n1").display()
        ),
    )
    .unwrap();
    let mut node = Command::new(nats_server())
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store = format!("nats://127.0.0.1:{port}");
    let monitor = format!("http://127.0.0.1:{}", port + 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = on(
            &store,
            &[
                "cluster",
                "init",
                "--partitions",
                "2",
                "--replicas",
                "1",
                "--monitor",
                &monitor,
            ],
            None,
        );
        // Until the node's monitoring port answers.
        if !stderr(&out).contains("cannot read the monitoring endpoint")
            || Instant::now() > deadline
        {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = node.kill();
    let _ = node.wait();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("sync_interval: always"), "{text}");
    assert!(text.contains("batpak-host cluster dev"), "{text}");
    // Without --store, `cluster init` is bad usage naming the fix.
    let no_store = Command::new(bin())
        .args([
            "cluster",
            "init",
            "--partitions",
            "1",
            "--replicas",
            "1",
            "--monitor",
            &monitor,
        ])
        .env_remove("BATPAK_STORE")
        .output()
        .unwrap();
    assert_refused(&no_store, 2, "--store nats://");
}

/// One `batpak-host run --store …` process; its stderr kept line by line
/// (read on its own thread, so every wait on it is bounded); SIGKILL on
/// drop.
struct RunHost {
    id: String,
    child: Child,
    lines: KeptLines,
    _data: tempfile::TempDir,
}

impl RunHost {
    fn start(store: &str, id: &str, plugin: &Path, config: Option<&Path>) -> RunHost {
        let data = tempdir();
        let config = config.map(|c| [std::ffi::OsStr::new("--plugin-config"), c.as_os_str()]);
        let (child, lines) = spawn_cluster_host(
            Some(data.path()),
            store,
            &[plugin.to_path_buf()],
            id,
            config.into_iter().flatten(),
        );
        RunHost {
            id: id.to_string(),
            child,
            lines,
            _data: data,
        }
    }

    fn text(&self) -> String {
        self.lines.text()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} host {}", self.id);
    }

    /// Waits at most `limit` for a line satisfying `pred`.
    fn wait_line(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let who = format!("host {}", self.id);
        self.lines
            .wait_map(&who, 0, what, limit, |l| pred(l).then(|| l.to_string()))
    }
}

impl Drop for RunHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 200 ms until it returns `Some`, at most `limit`.
fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An event line's payload as JSON (a JSON payload is printed as a value).
fn payload(line: &Value) -> Value {
    match &line["payload"] {
        Value::String(t) => serde_json::from_str(t).unwrap_or(Value::String(t.clone())),
        v => v.clone(),
    }
}

/// The first of `bench:0`, `bench:1`, … in each of `k` partitions, `n`
/// per partition.
fn entities_per_partition(prefix: &str, k: u32, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for p in 0..k {
        out.extend(
            (0..)
                .map(|i| format!("{prefix}{i}"))
                .filter(|e| batpak_store::partition_of(e, k) == p)
                .take(n),
        );
    }
    out
}

/// The cluster tests' lock, then a 3-node `cluster dev` initialised with
/// `partitions` partitions of 3 replicas, and its `--store` URL. Bind all
/// three (`let (_one, _dev, store)`): the dev cluster stops before the lock
/// is let go.
fn initialised_dev(partitions: &str) -> (MutexGuard<'static, ()>, Dev, String) {
    let one = serial();
    let dev = Dev::start(3);
    let store = dev.store().to_string();
    let made = init(&dev, partitions, "3");
    assert!(made.status.success(), "{}", stderr(&made));
    (one, dev, store)
}

/// Host `a` running `plugin` (reactor `reactor`), once it holds the
/// reactor's slot in each of `partitions` partitions.
fn host_holding_every_slot(store: &str, plugin: &Path, reactor: &str, partitions: u32) -> RunHost {
    let host = RunHost::start(store, "a", plugin, None);
    for p in 0..partitions {
        host.wait_line("acquiring a slot", Duration::from_secs(60), |l| {
            l.contains(&format!("acquired reactor/{reactor}/{p} "))
        });
    }
    host
}

/// `append --jsonl -` of `jsonl`, which must succeed; its receipts.
fn append_jsonl(store: &str, jsonl: &str) -> Vec<Value> {
    let out = on(store, &["append", "--jsonl", "-"], Some(jsonl));
    assert!(out.status.success(), "{}", stderr(&out));
    json_lines(&out.stdout)
}

/// One `bench.in` input (scope `bench`, payload `{}`) per entity, as JSONL.
fn bench_inputs(entities: &[String]) -> String {
    entities
        .iter()
        .map(|e| {
            format!("{{\"entity\":\"{e}\",\"scope\":\"bench\",\"kind\":\"bench.in\",\"payload\":{{}}}}\n")
        })
        .collect()
}

/// `append` of one event given by flags (then `extra`), which must
/// succeed; its receipt.
fn append_one(
    store: &str,
    entity: &str,
    scope: &str,
    kind: &str,
    payload: &str,
    extra: &[&str],
) -> Value {
    let mut args = vec![
        "append",
        "--entity",
        entity,
        "--scope",
        scope,
        "--kind",
        kind,
        "--payload",
        payload,
    ];
    args.extend_from_slice(extra);
    ok(store, &args)[0].clone()
}

/// `events --partition P --kind KIND`: that partition's events of a kind.
fn events_in(store: &str, p: u32, kind: &str) -> Vec<Value> {
    ok(
        store,
        &["events", "--partition", &p.to_string(), "--kind", kind],
    )
}

/// Asserts that event line `line` is on an entity starting with `prefix`.
fn assert_entity_starts(line: &Value, prefix: &str) {
    assert!(
        line["entity"].as_str().unwrap().starts_with(prefix),
        "{line}"
    );
}

/// Asserts that `out` exited with `code` and its stderr says `says`.
fn assert_refused(out: &Output, code: i32, says: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    assert!(stderr(out).contains(says), "{}", stderr(out));
}

/// What `read` returns once it holds at least `want` lines (at most 60 s),
/// read again after 2 s more when it changed meanwhile: a reaction
/// committed twice has that time to show.
fn settled(what: &str, want: usize, read: impl Fn() -> Vec<Value>) -> Vec<Value> {
    let all = wait_until(what, Duration::from_secs(60), || {
        let all = read();
        (all.len() >= want).then_some(all)
    });
    std::thread::sleep(Duration::from_secs(2));
    if read().len() != all.len() {
        read()
    } else {
        all
    }
}

/// `reset NAME --store …` on a cluster: refused while the reactor runs
/// (naming `pause`) and for a bare global sequence (naming `--partition`);
/// once paused, `--to start` moves every partition's checkpoint to 0 in one
/// fenced commit each, recorded as `batpak.reactor.reset` in that
/// partition; after `resume` every input is handled again (the checkpoints
/// come back to where they were) and, as on the embedded store, nothing is
/// duplicated: each input still has exactly one reaction, and inputs
/// appended after the reset get theirs.
#[test]
fn cluster_cli_reset_redelivers_a_paused_reactor_in_every_partition_without_duplicates() {
    let passthrough = crate::common::plugin("passthrough");
    let (_one, _dev, store) = initialised_dev("2");
    let host = host_holding_every_slot(&store, &passthrough, "passthrough", 2);
    let inputs = entities_per_partition("bench:", 2, 5);
    let receipts = append_jsonl(&store, &bench_inputs(&inputs));
    let ids: Vec<String> = receipts
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 10);
    // Each partition's last input: a checkpoint at or past it has handled
    // every input there.
    let mut last_input = [0u64; 2];
    for r in &receipts {
        let p = r["partition"].as_u64().unwrap() as usize;
        last_input[p] = last_input[p].max(r["seq"].as_u64().unwrap());
    }
    let outputs = || ok(&store, &["events", "--kind", "bench.out"]);
    wait_until("every input reacted to", Duration::from_secs(60), || {
        (outputs().len() >= 10).then_some(())
    });

    // Running: refused, naming the fix.
    let running = on(&store, &["reset", "passthrough", "--to", "start"], None);
    assert_refused(&running, 2, "batpak-host pause passthrough --store");
    ok(&store, &["pause", "passthrough"]);
    let global = on(&store, &["reset", "passthrough", "--to", "3"], None);
    assert_refused(&global, 2, "--partition P");
    let positions = |s: &str| -> Vec<u64> {
        let out = on(s, &["status", "--json"], None);
        assert!(out.status.success(), "{}", stderr(&out));
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let mut mine: Vec<&Value> = list
            .iter()
            .filter(|l| l["reactor"] == "passthrough")
            .collect();
        mine.sort_by_key(|l| l["partition"].as_u64());
        mine.iter()
            .map(|l| l["position"].as_u64().unwrap())
            .collect()
    };
    let before = positions(&store);
    assert!(
        before.iter().zip(&last_input).all(|(b, l)| b >= l),
        "{before:?} {last_input:?}"
    );

    let reset = ok(&store, &["reset", "passthrough", "--to", "start"]);
    assert_eq!(reset.len(), 2, "{reset:?}");
    for (p, r) in reset.iter().enumerate() {
        assert_eq!(r["partition"], p as u64, "{r}");
        assert_eq!(r["from"], before[p], "{r}");
        assert_eq!(r["to"], 0, "{r}");
    }
    assert_eq!(positions(&store), vec![0, 0]);
    for p in 0..2u32 {
        let records = events_in(&store, p, "batpak.reactor.reset");
        assert_eq!(records.len(), 1, "partition {p}: {records:?}");
        let rec = payload(&records[0]);
        assert_eq!(rec["partition"], p, "{rec}");
        assert_eq!(rec["from"], before[p as usize], "{rec}");
        assert_eq!(rec["requested"], "start", "{rec}");
        assert_entity_starts(&records[0], &format!("batpak.reactor:passthrough/p{p}"));
    }

    ok(&store, &["resume", "passthrough"]);
    // Handled again: each partition's checkpoint comes back past its last
    // input (it started from 0).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = positions(&store);
        if now.iter().zip(&last_input).all(|(n, l)| n >= l) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the re-delivery: positions {now:?}, last inputs {last_input:?}; host:\n{}",
            host.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let late = entities_per_partition("late:", 2, 1);
    for e in &late {
        append_one(&store, e, "bench", "bench.in", "{}", &[]);
    }
    let all = settled("the late inputs reacted to", 12, outputs);
    let mut per_cause: std::collections::HashMap<String, usize> = Default::default();
    for l in &all {
        *per_cause
            .entry(l["causation"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(all.len(), 12, "{all:#?}");
    for id in &ids {
        assert_eq!(per_cause.get(id), Some(&1), "input {id}: {per_cause:?}");
    }

    // One partition, to a sequence of it: an input's is taken, a
    // checkpoint message's is refused, as is a partition the cluster lacks.
    ok(&store, &["pause", "passthrough"]);
    let stored = ok(&store, &["events", "--partition", "0", "--system"]);
    let seqs: Vec<u64> = stored.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    let gap = (1..*seqs.iter().max().unwrap())
        .find(|s| !seqs.contains(s))
        .expect("a checkpoint message between partition 0's events");
    let reset_in = |p: &str, to: &str| {
        on(
            &store,
            &["reset", "passthrough", "--partition", p, "--to", to],
            None,
        )
    };
    assert_refused(&reset_in("0", &gap.to_string()), 2, "is not an event");
    let no_such = reset_in("2", "start");
    assert_eq!(no_such.status.code(), Some(2), "{}", stderr(&no_such));
    let first_input = receipts
        .iter()
        .filter(|r| r["partition"] == 0)
        .map(|r| r["seq"].as_u64().unwrap())
        .min()
        .unwrap();
    let out = reset_in("0", &first_input.to_string());
    assert!(out.status.success(), "{}", stderr(&out));
    let one = json_lines(&out.stdout);
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(
        (one[0]["partition"].as_u64(), one[0]["to"].as_u64()),
        (Some(0), Some(first_input))
    );
    assert_eq!(positions(&store)[0], first_input);
    ok(&store, &["resume", "passthrough"]);
    wait_until("partition 0 handled again", Duration::from_secs(60), || {
        (positions(&store)[0] >= last_input[0]).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(outputs().len(), 12, "a reaction duplicated");
    eprintln!(
        "cluster reset: positions {before:?} -> 0 -> back; 10 inputs handled again, no \
         reaction duplicated; 2 late inputs reacted to; partition 0 reset to sequence \
         {first_input} alone"
    );
}

/// The reactor's plugin-config entry lives in the cluster: host `a` starts
/// with `--plugin-config` (inventory's stock) and publishes it, host `b`
/// starts without one and runs the cluster's (its log says so); each holds
/// one partition's instance, and both instances react with the config's
/// stock. `swap NAME FILE --plugin-config NEW` (the same file: a
/// config-only swap) moves every instance to the new entry, and each
/// partition's instance writes its `batpak.plugin.swapped` record into its
/// own partition (`events --partition P`). A config file without the
/// reactor's entry, and `--plugin-config` on the embedded swap, are
/// refused naming the fix.
#[test]
fn cluster_cli_plugin_config_reaches_every_host_and_swap_records_land_per_partition() {
    let inventory = crate::common::plugin("inventory");
    let (_one, _dev, store) = initialised_dev("2");
    let dir = tempdir();
    let cfg = |name: &str, stock: u64| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                r#"{{"plugins": {{"inventory": {{"config": {{"stock": {{"zzz": {stock}}}}}}}}}}}"#
            ),
        )
        .unwrap();
        path
    };
    let (seven, nine) = (cfg("seven.json", 7), cfg("nine.json", 9));
    // Two host ids whose preferred slots differ, so each runs one instance.
    let slots = ["reactor/inventory/0", "reactor/inventory/1"];
    let candidates: Vec<String> = (0..50).map(|i| format!("h{i}")).collect();
    let (a, b) = candidates
        .iter()
        .flat_map(|a| candidates.iter().map(move |b| (a, b)))
        .find(|(a, b)| {
            let ids = [a.to_string(), b.to_string()];
            a != b
                && batpak_nats::preferred(slots[0], &ids) == Some(&ids[0])
                && batpak_nats::preferred(slots[1], &ids) == Some(&ids[1])
        })
        .expect("two ids that split two slots");
    let host_a = RunHost::start(&store, a, &inventory, Some(&seven));
    host_a.wait_line("publishing inventory", Duration::from_secs(60), |l| {
        l.contains("published reactor inventory")
    });
    let host_b = RunHost::start(&store, b, &inventory, None);
    host_b.wait_line(
        "adopting the cluster's config",
        Duration::from_secs(60),
        |l| l.contains("the cluster runs reactor inventory with its own plugin config"),
    );
    host_a.wait_line("holding partition 0", Duration::from_secs(60), |l| {
        l.contains("acquired reactor/inventory/0 ")
    });
    host_b.wait_line("holding partition 1", Duration::from_secs(60), |l| {
        l.contains("acquired reactor/inventory/1 ")
    });

    let order = |entity: &str| {
        append_one(
            &store,
            entity,
            "shop",
            "order.placed",
            r#"{"sku":"zzz","qty":100}"#,
            &[],
        )
    };
    let rejected = |want: usize| {
        wait_until("inventory's rejections", Duration::from_secs(60), || {
            let l = ok(&store, &["events", "--kind", "inventory.rejected"]);
            (l.len() >= want).then_some(l)
        })
    };
    let first = entities_per_partition("order:", 2, 1);
    for e in &first {
        order(e);
    }
    let seen = rejected(2);
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for l in &seen {
        // The configured stock (without it, "unknown sku" with 0).
        assert_eq!(payload(l)["available"], 7, "{l}");
        assert_eq!(payload(l)["reason"], "insufficient stock", "{l}");
    }
    let partitions: std::collections::BTreeSet<u64> = seen
        .iter()
        .map(|l| l["partition"].as_u64().unwrap())
        .collect();
    assert_eq!(partitions.len(), 2, "{seen:#?}");

    // A config file without the reactor's entry is refused.
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"plugins": {}}"#).unwrap();
    let swap = |config: &Path| {
        let file = inventory.to_str().unwrap();
        let config = config.to_str().unwrap();
        on(
            &store,
            &["swap", "inventory", file, "--plugin-config", config],
            None,
        )
    };
    assert_refused(&swap(&empty), 2, "has no entry for reactor inventory");
    // The embedded swap takes its host's own config.
    let local = tempdir();
    let embedded = Command::new(bin())
        .arg("--data")
        .arg(local.path())
        .args(["swap", "inventory"])
        .arg(&inventory)
        .arg("--plugin-config")
        .arg(&nine)
        .env_remove("BATPAK_STORE")
        .output()
        .unwrap();
    assert_refused(&embedded, 2, "is for a cluster");

    // A config-only swap: same file, new entry.
    let out = swap(&nine);
    assert!(out.status.success(), "{}", stderr(&out));
    let swapped = json_lines(&out.stdout);
    assert_eq!(
        swapped[0]["plugin_config"]["config"]["stock"]["zzz"], 9,
        "{}",
        swapped[0]
    );
    host_a.wait_line("swapping partition 0", Duration::from_secs(60), |l| {
        l.contains("swapped reactor/inventory/0")
    });
    host_b.wait_line("swapping partition 1", Duration::from_secs(60), |l| {
        l.contains("swapped reactor/inventory/1")
    });
    for p in 0..2u32 {
        let records = events_in(&store, p, "batpak.plugin.swapped");
        assert_eq!(records.len(), 1, "partition {p}: {records:#?}");
        assert_entity_starts(&records[0], &format!("reactor:inventory/p{p}"));
    }
    let second = entities_per_partition("order:x", 2, 1);
    for e in &second {
        order(e);
    }
    let seen = rejected(4);
    let after: Vec<&Value> = seen
        .iter()
        .filter(|l| second.iter().any(|e| l["entity"] == e.as_str()))
        .collect();
    assert_eq!(after.len(), 2, "{seen:#?}");
    for l in after {
        assert_eq!(payload(l)["available"], 9, "{l}");
    }
    eprintln!(
        "cluster plugin config: hosts {a} and {b} ran inventory with the cluster's stock 7, then \
         9 after a config-only swap; one swap record in each partition"
    );
}

/// `reset` when a host is stuck: host `a` holds both slots of
/// `passthrough` and is stopped (SIGSTOP), so `pause` sets the flag but
/// cannot see it stop (it says so after its wait). `reset --to start` waits
/// until the stuck host's leases lapse, then moves each partition's
/// checkpoint with a fenced commit. Inputs appended meanwhile, then SIGCONT:
/// the woken host's instances find the pause flag and, whatever they
/// commit, are fenced by the reset; after `resume` every input has exactly
/// one reaction and the reset records are there.
#[test]
fn cluster_cli_reset_waits_out_a_stuck_host_and_fences_it() {
    let passthrough = crate::common::plugin("passthrough");
    let (_one, _dev, store) = initialised_dev("2");
    let host = host_holding_every_slot(&store, &passthrough, "passthrough", 2);
    let append = |entities: &[String]| append_jsonl(&store, &bench_inputs(entities));
    let mut receipts = append(&entities_per_partition("bench:", 2, 2));
    let outputs = || ok(&store, &["events", "--kind", "bench.out"]);
    wait_until("every input reacted to", Duration::from_secs(60), || {
        (outputs().len() >= 4).then_some(())
    });

    host.signal("-STOP");
    let pause = on(&store, &["pause", "passthrough"], None);
    assert_refused(&pause, 2, "still run");
    let started = Instant::now();
    let reset = ok(&store, &["reset", "passthrough", "--to", "start"]);
    assert_eq!(reset.len(), 2, "{reset:?}");
    assert!(reset.iter().all(|r| r["to"] == 0), "{reset:?}");
    eprintln!(
        "reset past a stuck host's leases in {} ms",
        started.elapsed().as_millis()
    );
    receipts.extend(append(&entities_per_partition("late:", 2, 1)));
    host.signal("-CONT");
    host.wait_line("following the pause flag", Duration::from_secs(30), |l| {
        l.contains("released reactor/passthrough/")
    });
    ok(&store, &["resume", "passthrough"]);
    let all = settled("every input reacted to", receipts.len(), outputs);
    assert_eq!(all.len(), receipts.len(), "{all:#?}\n{}", host.text());
    for r in &receipts {
        let id = r["id"].as_str().unwrap();
        let n = all.iter().filter(|l| l["causation"] == id).count();
        assert_eq!(n, 1, "input {id}: {n} reactions\n{}", host.text());
    }
    let records = ok(&store, &["events", "--kind", "batpak.reactor.reset"]);
    assert_eq!(records.len(), 2, "{records:#?}");
    eprintln!(
        "stuck host: {} inputs, each reacted to once; its instances {}",
        receipts.len(),
        if host.text().contains("fenced") {
            "were fenced"
        } else {
            "committed nothing after the reset"
        }
    );
}

/// Each partition's instance writes its parking records and its gate
/// denials into its own partition: `hostile` on two partitions, each given
/// one input that fails (`error`: parked after its attempts), one that
/// proposes a kind it does not declare (`forbidden`: denied) and one that
/// succeeds. `events --partition P` shows exactly that partition's parked
/// record and denial, on its own `reactor:hostile/p<P>` stream, and every
/// good input has its one reaction.
#[test]
fn cluster_cli_parking_and_denial_records_land_in_their_own_partition() {
    let hostile = crate::common::plugin("hostile");
    let (_one, _dev, store) = initialised_dev("2");
    let _host = host_holding_every_slot(&store, &hostile, "hostile", 2);
    let entities = entities_per_partition("h:", 2, 1);
    let mut jsonl = String::new();
    for e in &entities {
        for action in ["error", "forbidden", "ok"] {
            jsonl.push_str(&format!(
                "{{\"entity\":\"{e}\",\"scope\":\"t\",\"kind\":\"hostile.cmd\",\"payload\":{{\"do\":\"{action}\"}}}}\n"
            ));
        }
    }
    let receipts = append_jsonl(&store, &jsonl);
    assert_eq!(receipts.len(), 6);
    let of = |p: u64, i: usize| -> String {
        receipts
            .iter()
            .filter(|r| r["partition"] == p)
            .nth(i)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let by_kind = |p: u32, kind: &str| events_in(&store, p, kind);
    wait_until("every input handled", Duration::from_secs(90), || {
        (0..2u32)
            .all(|p| {
                by_kind(p, "batpak.reactor.parked").len() == 1
                    && by_kind(p, "batpak.gate.denied").len() == 1
                    && by_kind(p, "hostile.ok").len() == 1
            })
            .then_some(())
    });
    for p in 0..2u32 {
        let parked = by_kind(p, "batpak.reactor.parked");
        assert_eq!(parked.len(), 1, "partition {p}: {parked:#?}");
        assert_entity_starts(&parked[0], &format!("reactor:hostile/p{p}"));
        assert_eq!(payload(&parked[0])["event"], of(u64::from(p), 0).as_str());
        let denied = by_kind(p, "batpak.gate.denied");
        assert_eq!(denied.len(), 1, "partition {p}: {denied:#?}");
        assert_entity_starts(&denied[0], &format!("reactor:hostile/p{p}"));
        let good = by_kind(p, "hostile.ok");
        assert_eq!(good[0]["causation"], of(u64::from(p), 2).as_str());
    }
}
