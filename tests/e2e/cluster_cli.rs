//! The command line on a real NATS JetStream cluster: `cluster dev` starts
//! nodes from the provisioned nats-server (the same provisioning the
//! cluster tests use, into `<target>/toolchains/nats`), `cluster init`
//! creates the layout, and `append`, `events`, `trace` and `verify` run
//! with `--store` / `BATPAK_STORE` against it. One cluster test at a time
//! (2 cores: elections on a starved machine time out for the wrong reason).

use crate::common::{bin, json_lines, stderr, tempdir, wait_exit, Lines};
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
    for _ in 0..200 {
        let p = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if p > 65000 {
            continue;
        }
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
    assert_eq!(other.status.code(), Some(1), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("keep --partitions 4 --replicas 3"),
        "{}",
        stderr(&other)
    );
    let too_many = init(&dev, "4", "5");
    assert_eq!(too_many.status.code(), Some(1));
    assert!(
        stderr(&too_many).contains("--replicas 5"),
        "{}",
        stderr(&too_many)
    );

    // Appends spread over partitions; a cause in another partition.
    let placed = ok(
        &store,
        &[
            "append",
            "--entity",
            "order:1",
            "--scope",
            "shop",
            "--kind",
            "order.placed",
            "--payload",
            r#"{"qty":2}"#,
        ],
    );
    let order = &placed[0];
    let order_id = order["id"].as_str().unwrap().to_string();
    assert!(order["partition"].as_u64().unwrap() < 4, "{order}");
    assert_eq!(order["entity_seq"], 1);
    let mut partitions = std::collections::BTreeSet::new();
    partitions.insert(order["partition"].as_u64().unwrap());
    let mut reactions = Vec::new();
    for n in 0..8 {
        let r = ok(
            &store,
            &[
                "append",
                "--entity",
                &format!("stock:{n}"),
                "--scope",
                "shop",
                "--kind",
                "stock.reserved",
                "--payload",
                "{}",
                "--causation",
                &order_id,
            ],
        );
        partitions.insert(r[0]["partition"].as_u64().unwrap());
        // The correlation is inherited from the cause, across partitions.
        reactions.push(r[0]["id"].as_str().unwrap().to_string());
    }
    assert!(
        partitions.len() >= 2,
        "all in one partition: {partitions:?}"
    );
    let key = ["--idempotency-key", "pay-1"];
    let pay = |_: ()| {
        ok(
            &store,
            &[
                "append",
                "--entity",
                "order:1",
                "--scope",
                "shop",
                "--kind",
                "order.paid",
                "--payload",
                "{}",
                key[0],
                key[1],
            ],
        )[0]
        .clone()
    };
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
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("any partition"), "{}", stderr(&bad));

    // --jsonl: checked first (a bad line appends nothing), then in order.
    let bad_file = on(
        &store,
        &["append", "--jsonl", "-"],
        Some("{\"entity\":\"j:1\",\"scope\":\"s\",\"kind\":\"k\",\"payload\":{}}\nnot json\n"),
    );
    assert_eq!(bad_file.status.code(), Some(1));
    assert!(
        stderr(&bad_file).contains("stdin:2"),
        "{}",
        stderr(&bad_file)
    );
    let jsonl = "{\"id\":\"00000000000000000000000000000abc\",\"entity\":\"j:1\",\"scope\":\"s\",\"kind\":\"k\",\"payload\":{\"n\":1}}\n\
                 {\"entity\":\"j:2\",\"scope\":\"s\",\"kind\":\"k2\",\"payload\":{},\"causation\":\"00000000000000000000000000000abc\"}\n";
    let out = on(&store, &["append", "--jsonl", "-"], Some(jsonl));
    assert!(out.status.success(), "{}", stderr(&out));
    let receipts = json_lines(&out.stdout);
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
    assert_eq!(no_part.status.code(), Some(2));
    assert!(
        stderr(&no_part).contains("--partition"),
        "{}",
        stderr(&no_part)
    );
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
    ok(
        &store,
        &[
            "append",
            "--entity",
            "late:1",
            "--scope",
            "s",
            "--kind",
            "late",
            "--payload",
            "{}",
        ],
    );
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
    assert_eq!(no_store.status.code(), Some(2));
    assert!(
        stderr(&no_store).contains("--store nats://"),
        "{}",
        stderr(&no_store)
    );
}
