//! `batpak-host cluster dev`: a local JetStream cluster for trying the host
//! beyond one machine on one machine. It provisions the pinned
//! `nats-server` (user-level, [`batpak_provision::nats_server`], the same
//! code the cluster tests use), writes every node's config — its own store
//! directory, `jetstream { sync_interval: always }` (without it
//! acknowledged writes can be lost in a crash, and `cluster init` refuses
//! the node), `cluster.routes` to the others, a monitoring port — starts
//! the nodes, waits until the cluster answers, prints the `--store` and
//! `--monitor` values, and stops the nodes on Ctrl-C or SIGTERM. The nodes
//! die with this process even when it is killed (`PR_SET_PDEATHSIG`), so
//! none is left behind.

use crate::usage::Usage;
use batpak_nats::server_check::monitor_json;
use batpak_provision::nats_server::{provision, NATS_SERVER_PACKAGE};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the nodes get to elect a JetStream meta leader.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

/// Arguments of `batpak-host cluster dev`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ClusterDevArgs {
    /// Nodes to start (1 to 5; 3 survives the loss of one).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 3))]
    pub nodes: u16,
    /// Directory for the nodes' configs, stores and logs (created when
    /// missing; a second start on it keeps the stores).
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIR"))]
    pub dir: PathBuf,
    /// First client port: node i listens on PORT+i for clients, PORT+100+i
    /// for its routes and PORT+200+i for monitoring, all on 127.0.0.1.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "PORT", default_value_t = 4222)
    )]
    pub port: u16,
    /// Where nats-server is provisioned (a venv in `DIR/nats`). Default:
    /// `<target>/toolchains` next to a cargo-built binary, else
    /// `~/.cache/batpak/toolchains`.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIR"))]
    pub toolchains: Option<PathBuf>,
}

/// One node's ports.
struct NodePorts {
    name: String,
    client: u16,
    route: u16,
    http: u16,
}

/// The toolchains directory: `<target>/toolchains` when this binary sits
/// in `<target>/<profile>/` (a cargo build, as the tests use), else the
/// user's cache.
pub fn default_toolchains() -> PathBuf {
    let exe = std::env::current_exe().ok();
    let target = exe
        .as_deref()
        .and_then(Path::parent)
        .filter(|d| {
            d.file_name()
                .is_some_and(|n| n == "release" || n == "debug")
        })
        .and_then(Path::parent)
        .filter(|t| t.join("CACHEDIR.TAG").exists());
    match target {
        Some(t) => t.join("toolchains"),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir);
            cache.join("batpak/toolchains")
        }
    }
}

/// The config of node `i` of `nodes`.
fn config(dir: &Path, nodes: &[NodePorts], i: usize) -> String {
    let n = &nodes[i];
    let mut conf = format!(
        "# written by `batpak-host cluster dev`\nserver_name: {}\nlisten: 127.0.0.1:{}\n\
         http: 127.0.0.1:{}\n\
         # sync_interval: always — every acknowledged write is fsynced (required by the host)\n\
         jetstream {{ store_dir: \"{}\", sync_interval: always }}\n",
        n.name,
        n.client,
        n.http,
        dir.join(&n.name).display()
    );
    if nodes.len() > 1 {
        let routes: Vec<String> = nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| format!("nats-route://127.0.0.1:{}", o.route))
            .collect();
        conf += &format!(
            "cluster {{ name: batpak-dev, listen: 127.0.0.1:{}, routes: [{}] }}\n",
            n.route,
            routes.join(", ")
        );
    }
    conf
}

/// The running nodes; dropping them stops them (SIGTERM, then SIGKILL
/// after 5 s), reaped.
struct Nodes(Vec<(String, Child)>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, c) in &self.0 {
            // SAFETY: signalling our own child by its pid.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, c) in &mut self.0 {
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() >= deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The last lines of every node's log, for an error.
fn logs(dir: &Path, nodes: &[NodePorts]) -> String {
    let mut out = String::new();
    for n in nodes {
        let text = std::fs::read_to_string(dir.join(format!("{}.log", n.name))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out += &format!(
            "--- {} ({})\n",
            n.name,
            dir.join(format!("{}.log", n.name)).display()
        );
        out += &lines[lines.len().saturating_sub(10)..].join("\n");
        out += "\n";
    }
    out
}

/// A local cluster of `nats-server` nodes started by this process (what
/// `cluster dev` runs, and what the benchmark starts): every node's config
/// written as the module docs say, the nodes started and the cluster
/// answering. Dropping it stops the nodes (SIGTERM, SIGKILL after 5 s).
pub struct LocalCluster {
    nodes: Nodes,
    ports: Vec<NodePorts>,
    dir: PathBuf,
}

impl LocalCluster {
    /// Starts `n` nodes of `bin` with configs, stores and logs in `dir`, on
    /// `port`+i (clients), `port`+100+i (routes), `port`+200+i (monitoring),
    /// and waits until every node answers and (clustered) knows a
    /// JetStream meta leader, at most [`READY_DEADLINE`]; `cancelled` is
    /// asked while waiting (`Ok(None)` when it says so).
    ///
    /// # Errors
    /// A node did not start or exited, or the cluster was not ready in
    /// time (with the nodes' logs).
    pub fn start(
        bin: &Path,
        dir: &Path,
        n: u16,
        port: u16,
        cancelled: &dyn Fn() -> bool,
    ) -> anyhow::Result<Option<LocalCluster>> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let ports: Vec<NodePorts> = (0..n)
            .map(|i| NodePorts {
                name: format!("n{}", i + 1),
                client: port + i,
                route: port + 100 + i,
                http: port + 200 + i,
            })
            .collect();
        let mut running = Nodes(Vec::new());
        for i in 0..ports.len() {
            let node = &ports[i];
            let conf = dir.join(format!("{}.conf", node.name));
            std::fs::write(&conf, config(&dir, &ports, i))?;
            let log = std::fs::File::options()
                .create(true)
                .append(true)
                .open(dir.join(format!("{}.log", node.name)))?;
            let mut cmd = Command::new(bin);
            cmd.arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            // SAFETY: prctl only sets this child's parent-death signal; it
            // allocates nothing and is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = cmd
                .spawn()
                .map_err(|e| anyhow::anyhow!("starting {}: {e}", bin.display()))?;
            running.0.push((node.name.clone(), child));
        }
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let ready = ports.iter().all(|node| {
                monitor_json(
                    &format!("http://127.0.0.1:{}", node.http),
                    "/jsz",
                    Duration::from_secs(2),
                )
                .is_ok_and(|j| {
                    n == 1
                        || j["meta_cluster"]["leader"]
                            .as_str()
                            .is_some_and(|l| !l.is_empty())
                })
            });
            if ready {
                return Ok(Some(LocalCluster {
                    nodes: running,
                    ports,
                    dir,
                }));
            }
            if let Some(name) = exited(&mut running) {
                anyhow::bail!(
                    "node {name} exited while starting (a port in use? see --port)\n{}",
                    logs(&dir, &ports)
                );
            }
            if cancelled() {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "the cluster did not answer within {READY_DEADLINE:?} (no JetStream meta leader)\n{}",
                    logs(&dir, &ports)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The `--store` value: every node's `nats://127.0.0.1:PORT`.
    pub fn store(&self) -> String {
        self.ports
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `--monitor` value: every node's `http://127.0.0.1:PORT`.
    pub fn monitor(&self) -> String {
        self.ports
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.http))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The nodes' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.0.iter().map(|(_, c)| c.id()).collect()
    }

    /// The name of a node that has exited, if any.
    pub fn exited(&mut self) -> Option<String> {
        exited(&mut self.nodes)
    }

    /// The last lines of every node's log, for an error message.
    pub fn logs(&self) -> String {
        logs(&self.dir, &self.ports)
    }
}

/// Runs `cluster dev` until Ctrl-C or SIGTERM (or a node exits); prints
/// one JSON line with `store` and `monitor` once the cluster answers.
///
/// # Errors
/// Bad arguments ([`Usage`]), provisioning failed (naming the package, the
/// registry and the fix), a node did not start or the cluster was not
/// ready within [`READY_DEADLINE`] (with the nodes' logs).
pub fn cluster_dev(args: &ClusterDevArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if !(1..=5).contains(&args.nodes) {
        return Err(Usage(format!(
            "--nodes {} is out of range: use 1 to 5 (3 survives the loss of one node)",
            args.nodes
        ))
        .into());
    }
    let n = args.nodes;
    if u32::from(args.port) + 200 + u32::from(n) > 65535 {
        return Err(Usage(format!(
            "--port {}: the nodes use PORT to PORT+{}; pick a lower --port",
            args.port,
            200 + n - 1
        ))
        .into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))?;
    }
    let toolchains = args.toolchains.clone().unwrap_or_else(default_toolchains);
    eprintln!(
        "cluster dev: nats-server ({NATS_SERVER_PACKAGE}) from {}",
        toolchains.join("nats").display()
    );
    let bin = provision(&toolchains, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(mut cluster) = LocalCluster::start(&bin, &args.dir, n, args.port, &|| {
        stop.load(Ordering::SeqCst)
    })?
    else {
        eprintln!("cluster dev: stopped by a signal before the cluster was ready");
        return Ok(ExitCode::SUCCESS);
    };
    let (store, monitor) = (cluster.store(), cluster.monitor());
    let line = serde_json::json!({
        "store": store,
        "monitor": monitor,
        "nodes": n,
        "dir": cluster.dir.display().to_string(),
        "pids": cluster.pids(),
    });
    writeln!(out, "{line}")?;
    out.flush()?;
    eprintln!(
        "cluster dev: {n} node(s) ready (configs, stores and logs in {}). In another shell:\n  \
         export BATPAK_STORE={store}\n  \
         batpak-host cluster init --partitions 4 --replicas {} --monitor {monitor}\n\
         Ctrl-C stops the nodes.",
        cluster.dir.display(),
        n.min(3)
    );
    while !stop.load(Ordering::SeqCst) {
        if let Some(name) = cluster.exited() {
            let logs = cluster.logs();
            drop(cluster);
            anyhow::bail!("node {name} exited; stopped the others\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let dir = cluster.dir.clone();
    drop(cluster);
    eprintln!(
        "cluster dev: stopped the nodes (their stores stay in {})",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The name of a node that has exited, if any.
fn exited(nodes: &mut Nodes) -> Option<String> {
    nodes
        .0
        .iter_mut()
        .find_map(|(name, c)| c.try_wait().ok().flatten().map(|_| name.clone()))
}
