//! `status`, `pause`, `resume` and `reset`: operate the reactors of a
//! running host (reset also works on a store no host holds) and print what
//! they did.

use batpak_host_lib::{connect_running, ReactorState, ResetOutcome, ResetTo};
use clap::Args;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `batpak-host status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// One JSON array of reactor states instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn status(data: &Path, a: StatusArgs) -> anyhow::Result<ExitCode> {
    let list = connect_running(data, "status")?.status()?;
    if a.json {
        println!("{}", serde_json::to_string(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<9} {:<12} {:<8} {:>10} {:>8} {:>6}",
        "REACTOR", "VERSION", "DIGEST", "STATE", "POSITION", "LAG", "PARKED"
    );
    for r in &list {
        println!(
            "{:<16} {:<9} {:<12} {:<8} {:>10} {:>8} {:>6}",
            r.instance
                .map_or_else(|| r.name.clone(), |i| i.label(&r.name)),
            r.version,
            &r.digest[..r.digest.len().min(12)],
            r.state.as_str(),
            r.position,
            if r.lag_capped {
                format!("{}+", r.lag)
            } else {
                r.lag.to_string()
            },
            r.parked
        );
        for line in status_details(r) {
            println!("  {line}");
        }
        if let Some(e) = &r.error {
            println!("  error: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The lines under a reactor's row in `status`: its last swap (and its
/// rollback), the file it runs from when a `swap` replaced the watched one,
/// and work in progress.
fn status_details(r: &ReactorState) -> Vec<String> {
    let short = |v: &Value| {
        v.as_str()
            .map_or("?".to_string(), |d| d[..d.len().min(12)].to_string())
    };
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let mut out = Vec::new();
    if let Some(s) = &r.last_swap {
        out.push(format!(
            "swapped at position {} from {} ({}) to {} ({}) (record {})",
            s["position"],
            text(&s["old_version"]),
            short(&s["old_digest"]),
            text(&s["new_version"]),
            short(&s["new_digest"]),
            text(&s["record"]),
        ));
        let rb = &s["rolled_back"];
        if rb.is_object() {
            out.push(format!(
                "ROLLED BACK at position {} after {} batch(es): {} failed ({}); {} ({}) runs again",
                rb["position"],
                rb["batches"],
                text(&rb["failed_version"]),
                text(&rb["reason"]),
                text(&rb["restored_version"]),
                short(&rb["restored_digest"]),
            ));
        }
    }
    if let (Some(w), Some(f)) = (&r.watched, &r.file) {
        if w != f {
            out.push(format!(
                "runs {} (loaded by a swap command); watching {}: a new file there swaps again",
                f.display(),
                w.display()
            ));
        }
    }
    if let Some(p) = &r.pending {
        out.push(format!("pending: {}", text(&p["text"])));
    }
    out
}

/// Arguments of `pause` and `resume`.
#[derive(Args, Debug)]
pub struct NameArgs {
    /// Reactor name (as `status` lists it).
    pub name: String,
}

pub(crate) fn pause(data: &Path, a: NameArgs) -> anyhow::Result<ExitCode> {
    let s = connect_running(data, "pause")?.pause(&a.name)?;
    println!("{}", serde_json::to_string(&s)?);
    eprintln!(
        "paused {} at position {} (every event of its region up to it is handled; `resume` continues after it)",
        s.name, s.position
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn resume(data: &Path, a: NameArgs) -> anyhow::Result<ExitCode> {
    let s = connect_running(data, "resume")?.resume(&a.name)?;
    println!("{}", serde_json::to_string(&s)?);
    eprintln!("resumed {} from position {}", s.name, s.position);
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `batpak-host reset`.
#[derive(Args, Debug)]
pub struct ResetArgs {
    /// Reactor name.
    pub name: String,
    /// New position: `start` (re-deliver everything), `end` (skip the
    /// backlog), `current` (keep it; with --plugin, re-key for a new
    /// region), or a global sequence.
    #[arg(
        long,
        value_name = "start|end|current|SEQ",
        required_unless_present = "instances"
    )]
    pub to: Option<ResetTo>,
    /// Hand the reactor over to N parallel instances (with --plugin, no
    /// host running): every live checkpoint must be at one position (after
    /// `run --until-idle`); the new instances start there and the old
    /// ones are retired, so no event is lost or handled twice.
    #[arg(long, value_name = "N", conflicts_with = "to", requires = "plugin")]
    pub instances: Option<u32>,
    /// Key the checkpoint for this plugin's region (a new version whose
    /// `consumes` changed). Only with no host running on the store.
    #[arg(long, value_name = "PLUGIN")]
    pub plugin: Option<PathBuf>,
    /// On a cluster (--store): reset only this partition, where --to may
    /// also be a sequence of that partition (without it, start, end or
    /// current apply to every partition).
    #[arg(long, value_name = "P")]
    pub partition: Option<u32>,
    /// The compile cache (for --plugin).
    #[command(flatten)]
    pub cache: batpak_host_lib::CacheOptions,
}

pub(crate) fn reset(data: &Path, a: ResetArgs) -> anyhow::Result<ExitCode> {
    if let Some(p) = a.partition {
        return Err(batpak_host_lib::Usage(format!(
            "`reset --partition {p}` is for a cluster (--store): the embedded store has one \
             order; reset with --to start|end|current|SEQ (a global sequence)"
        ))
        .into());
    }
    if let (Some(n), Some(plugin)) = (a.instances, a.plugin.as_deref()) {
        let out = batpak_host_lib::hand_over_instances(data, &a.name, n, plugin, &a.cache)?;
        println!("{}", serde_json::to_string(&out)?);
        eprintln!(
            "handed {} over to {} instance(s) at position {} (started {}; retired {})",
            out.reactor,
            out.to,
            out.position,
            out.started.join(", "),
            if out.retired.is_empty() {
                "none".to_string()
            } else {
                out.retired.join(", ")
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let to = a.to.expect("clap requires --to without --instances");
    let out = batpak_host_lib::reset_checkpoint(data, &a.name, to, a.plugin.as_deref(), &a.cache)?;
    print_reset(&out)
}

fn print_reset(out: &ResetOutcome) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string(out)?);
    eprintln!(
        "reset {}: position {} -> {} (recorded as event {} at sequence {})",
        out.reactor, out.from, out.to, out.event, out.seq
    );
    Ok(ExitCode::SUCCESS)
}
