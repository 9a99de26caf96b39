//! The demo's job: builds the example plugins, appends sample orders and,
//! once the CLI has run the reactors until idle, prints the causal tree
//! each order produced.

use anyhow::{bail, Context};
use batpak_store::{system, AppendOptions, LogReader, Store};
use batpak_store::{Coordinate, Event, EventId, Proposal};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Arguments of `batpak-host demo`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct DemoArgs {
    /// Store directory for the demo (wiped and recreated when it holds a
    /// previous demo store).
    #[cfg_attr(feature = "cli", arg(long, default_value = "./batpak-demo"))]
    pub dir: PathBuf,
    /// Use already-built plugins from this directory (inventory.wasm,
    /// low_stock.wasm, shipping.wasm) instead of building them.
    #[cfg_attr(feature = "cli", arg(long))]
    pub plugins_dir: Option<PathBuf>,
}

/// The sample orders: (order, sku, qty). Stock is widget 10, gadget 5,
/// gizmo 2; some orders exhaust it, one is refused, one is malformed.
const ORDERS: &[(&str, &str)] = &[
    ("order:1001", r#"{"sku":"widget","qty":3}"#),
    ("order:1002", r#"{"sku":"gadget","qty":2}"#),
    ("order:1003", r#"{"sku":"widget","qty":4}"#),
    ("order:1004", r#"{"sku":"gizmo","qty":2}"#),
    ("order:1005", r#"{"sku":"gadget","qty":4}"#),
    ("order:1006", r#"{"sku":"widget","qty":3}"#),
    ("order:1007", r#"{"sku":"widget","quantity":"lots"}"#),
];

/// Operator configuration, shipped beside the plugins (the README's quick
/// start passes the same file): low-stock may alert but is not granted
/// `inventory.restock-requested`, so the capability gate denies it.
const PLUGIN_CONFIG: &str = include_str!("../../../../plugins/shop.json");

/// The demo's non-Rust reactor: hand-written component text, read by the
/// host as is, so the demo is polyglot without any toolchain beyond Rust.
/// It sits in `plugins/` beside the components the demo leaves there.
const NOTIFY_WAT: &str = include_str!("../../../../plugins/notify.wat");

const PLUGINS: &[(&str, &str)] = &[
    ("inventory", "inventory"),
    ("low-stock", "low_stock"),
    ("shipping", "shipping"),
];

fn source_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)?
        .to_path_buf();
    root.join("plugins/inventory/Cargo.toml")
        .is_file()
        .then_some(root)
}

/// Installs the `wasm32-wasip2` Rust target with rustup when it is missing
/// (plugins are built for it). Without rustup it assumes the target exists
/// and lets cargo report otherwise.
///
/// # Errors
/// `rustup target add` failed.
pub fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"))
        .unwrap_or(true);
    if !installed {
        eprintln!("installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
        let ok = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("`rustup target add wasm32-wasip2` failed; install the target and try again");
        }
    }
    Ok(())
}

fn build_plugins() -> anyhow::Result<PathBuf> {
    let Some(root) = source_root() else {
        bail!(
            "the demo builds the example plugins from the source tree, which is not at {}; \
             run it from a checkout (`cargo run --release -- demo`) or pass --plugins-dir",
            env!("CARGO_MANIFEST_DIR")
        );
    };
    ensure_wasm_target()?;
    eprintln!("demo: building the example plugins (cargo build --release --target wasm32-wasip2)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", "wasm32-wasip2"]);
    for (pkg, _) in PLUGINS {
        cmd.args(["-p", pkg]);
    }
    let status = cmd.status().context("running cargo to build the plugins")?;
    if !status.success() {
        bail!("building the example plugins failed (see cargo's output above)");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("wasm32-wasip2").join("release"))
}

fn reset_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let is_store = dir.join("segments").is_dir();
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !is_store && !empty {
            bail!(
                "{} exists and is not a batpak store; pass another --dir for the demo",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the previous demo store {}", dir.display()))?;
    }
    Ok(())
}

/// The demo's store, prepared: the orders appended, the operator config
/// and the WAT reactor written beside it, the plugins to run.
#[derive(Debug, Clone)]
pub struct DemoRun {
    /// The demo's store directory.
    pub dir: PathBuf,
    /// The operator config for `run --plugin-config`.
    pub config: PathBuf,
    /// The plugins to run, in order.
    pub plugins: Vec<PathBuf>,
    /// Where the built components were left for the README's quick start.
    pub left_in: Option<PathBuf>,
}

/// Builds the example plugins (unless `a.plugins_dir` has them), recreates
/// the demo store and appends the sample orders.
///
/// # Errors
/// A build that failed, a missing plugin, a directory that is not a demo
/// store, a store failure.
pub fn prepare_demo(a: &DemoArgs) -> anyhow::Result<DemoRun> {
    let plugins_dir = match &a.plugins_dir {
        Some(d) => d.clone(),
        None => build_plugins()?,
    };
    let wasm: Vec<PathBuf> = PLUGINS
        .iter()
        .map(|(_, f)| plugins_dir.join(format!("{f}.wasm")))
        .collect();
    for w in &wasm {
        if !w.is_file() {
            bail!(
                "plugin {} is missing; build the example plugins first",
                w.display()
            );
        }
    }
    // Leave the components beside the shipped config and WAT reactor, where
    // the README's quick start (`run --plugin-config plugins/shop.json
    // plugins/*.wasm plugins/*.wat`) finds all four.
    let mut left_in = None;
    if a.plugins_dir.is_none() {
        if let Some(root) = source_root() {
            let dir = root.join("plugins");
            for (w, (_, f)) in wasm.iter().zip(PLUGINS) {
                let to = dir.join(format!("{f}.wasm"));
                std::fs::copy(w, &to)
                    .with_context(|| format!("copying {} to {}", w.display(), to.display()))?;
            }
            left_in = Some(dir);
        }
    }
    reset_dir(&a.dir)?;

    eprintln!(
        "demo: appending {} sample orders to {}",
        ORDERS.len(),
        a.dir.display()
    );
    let store = Store::open(&a.dir)?;
    let batch = ORDERS
        .iter()
        .map(|(order, payload)| {
            Ok(Proposal::new(
                Coordinate::new(*order, "shop")?,
                "order.placed",
                payload.as_bytes().to_vec(),
            )
            .idempotency_key(format!("demo-{order}")))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    store.append_batch(batch, AppendOptions::durable())?;
    store.close()?;

    let config = a.dir.join("demo-plugins.json");
    std::fs::write(&config, PLUGIN_CONFIG)?;
    let notify = a.dir.join("notify.wat");
    std::fs::write(&notify, NOTIFY_WAT)?;
    let mut plugins = wasm;
    plugins.push(notify);
    Ok(DemoRun {
        dir: a.dir.clone(),
        config,
        plugins,
        left_in,
    })
}

/// Prints the causal tree of every order, and the counts.
///
/// # Errors
/// The log could not be read.
pub fn print_demo_trees(dir: &Path) -> anyhow::Result<()> {
    let mut reader = LogReader::open(dir)?;
    let mut all = Vec::new();
    loop {
        let b = reader.poll(64 << 20)?;
        if b.is_empty() {
            break;
        }
        all.extend(b);
    }
    let mut children: HashMap<EventId, Vec<&Event>> = HashMap::new();
    for e in &all {
        if let Some(c) = e.header.causation {
            if e.header.kind != system::CHECKPOINT_KIND {
                children.entry(c).or_default().push(e);
            }
        }
    }
    println!();
    println!("What each order caused (causal graph, from the log):");
    // One renderer for causal trees: `trace`'s.
    fn tree(e: &Event, children: &HashMap<EventId, Vec<&Event>>) -> crate::trace::build::Tree {
        crate::trace::build::Tree {
            event: crate::trace::build::TraceEvent::from_event(e),
            children: children
                .get(&e.header.id)
                .map(|v| v.as_slice())
                .unwrap_or(&[])
                .iter()
                .map(|c| tree(c, children))
                .collect(),
        }
    }
    let label = |e: &crate::trace::build::TraceEvent| {
        // Cut long payloads where the eye can see it was cut.
        let text = e.payload_text();
        let mut p: String = text.chars().take(110).collect();
        if p.len() < text.len() {
            p.push('…');
        }
        format!("{:<28} {:<14} {}", e.kind, e.entity, p)
    };
    for e in all.iter().filter(|e| e.header.kind == "order.placed") {
        for line in crate::trace::build::render_tree(&tree(e, &children), &label) {
            println!("  {line}");
        }
    }
    let count = |k: &str| all.iter().filter(|e| e.header.kind == k).count();
    println!();
    println!(
        "{} events: {} reserved, {} rejected, {} customers notified (WAT reactor), {} shipments, {} low-stock alerts, {} denied by a gate, {} parked",
        all.len(),
        count("inventory.reserved"),
        count("inventory.rejected"),
        count("customer.notified"),
        count("shipment.requested"),
        count("alert.low-stock"),
        count(system::DENIED_KIND),
        count(system::PARKED_KIND),
    );
    Ok(())
}
