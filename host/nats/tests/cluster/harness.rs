//! A JetStream cluster on loopback for the tests: 1 or 3 `nats-server`
//! processes (the provisioned binary), each with its own config, store
//! directory and free ports, `jetstream { sync_interval: always }` unless a
//! test asks for a node without it. A node can be killed (-9), stopped
//! (SIGSTOP), continued and restarted on the same ports and store. Every
//! wait has a deadline. Dropping the cluster kills every node.

use crate::provision::nats_server;
use batpak_nats::server_check::monitor_json;
use serde_json::Value;
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One test with a cluster at a time: the machine has 2 cores, and
/// elections on a starved machine would time out for the wrong reason.
pub fn serial() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

/// One node.
pub struct Node {
    /// `server_name`: `n1`, `n2`, …
    pub name: String,
    /// Client port.
    pub port: u16,
    /// Monitoring port.
    pub http: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A cluster of nodes on 127.0.0.1.
pub struct Cluster {
    /// The nodes, `n1` first.
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so no port is handed out twice.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl Cluster {
    /// `n` nodes, every one with `sync_interval: always`, ready (JetStream
    /// meta leader elected) within 60 s.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, |_| true)
    }

    /// `n` nodes; node `i` (0-based) fsyncs every write when `sync(i)`.
    pub fn start_with(n: usize, sync: impl Fn(usize) -> bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(3 * n);
        let mut nodes = Vec::new();
        for i in 0..n {
            let (port, route, http) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            let sync_line = if sync(i) {
                ", sync_interval: always"
            } else {
                ""
            };
            let mut conf = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\n\
                 jetstream {{ store_dir: \"{}\"{sync_line} }}\n",
                store.display()
            );
            if n > 1 {
                let routes: Vec<String> = (0..n)
                    .filter(|j| *j != i)
                    .map(|j| format!("nats-route://127.0.0.1:{}", ports[3 * j + 1]))
                    .collect();
                conf += &format!(
                    "cluster {{ name: c1, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                    routes.join(", ")
                );
            }
            let conf_path = dir.path().join(format!("{name}.conf"));
            fs::write(&conf_path, conf).unwrap();
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                port,
                http,
                conf: conf_path,
                child: None,
            });
        }
        let mut cluster = Cluster { nodes, _dir: dir };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_ready(Duration::from_secs(60));
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(nats_server())
            .arg("-c")
            .arg(&node.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", nats_server().display()));
        node.child = Some(child);
    }

    /// `nats://127.0.0.1:PORT` of every node.
    pub fn servers(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }

    /// `http://127.0.0.1:PORT` (monitoring) of every node.
    pub fn monitors(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.http))
            .collect()
    }

    fn json(&self, i: usize, path: &str) -> Option<Value> {
        monitor_json(
            &format!("http://127.0.0.1:{}", self.nodes[i].http),
            path,
            Duration::from_secs(2),
        )
        .ok()
    }

    /// Waits until every running node answers and a JetStream meta leader
    /// is known to all of them; panics with the nodes' logs after `limit`.
    pub fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let ready = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].child.is_some())
                .all(|i| {
                    self.json(i, "/jsz").is_some_and(|j| {
                        self.nodes.len() == 1
                            || j["meta_cluster"]["leader"]
                                .as_str()
                                .is_some_and(|l| !l.is_empty())
                    })
                });
            if ready {
                return;
            }
            if Instant::now() >= deadline {
                panic!("cluster not ready within {limit:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The name of the node leading `stream`, as the first answering node
    /// reports it (`None` while there is none).
    pub fn stream_leader(&self, stream: &str) -> Option<String> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                continue;
            }
            let Some(j) = self.json(i, "/jsz?accounts=true&streams=true") else {
                continue;
            };
            for acc in j["account_details"].as_array().into_iter().flatten() {
                for s in acc["stream_detail"].as_array().into_iter().flatten() {
                    if s["name"] == stream {
                        if let Some(l) = s["cluster"]["leader"].as_str() {
                            if !l.is_empty() {
                                return Some(l.to_string());
                            }
                        }
                    }
                }
            }
        }
        None
    }

    /// Waits (up to `limit`) for `stream` to have a leader; returns its
    /// index.
    pub fn wait_stream_leader(&self, stream: &str, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(name) = self.stream_leader(stream) {
                return self.index(&name);
            }
            assert!(
                Instant::now() < deadline,
                "no leader for {stream} within {limit:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the node named `name`.
    pub fn index(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// `kill -9` of node `i`, reaped.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].child.as_ref().expect("node running").id();
        let ok = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// SIGSTOP of node `i`: it stays connected but answers nothing.
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// SIGCONT of node `i`.
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    /// Starts node `i` again on its ports and store (after `kill`).
    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {i} still runs");
        self.spawn(i);
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = fs::read_to_string(&n.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out += &format!("--- {} (last lines)\n", n.name);
            out += &lines[lines.len().saturating_sub(15)..].join("\n");
            out += "\n";
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_some() {
                // A stopped process dies of SIGKILL too.
                self.kill(i);
            }
        }
    }
}
