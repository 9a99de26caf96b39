//! Machine facts and the disk's own fsync rate.

use anyhow::{Context, Result};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a directory lives: its mount point, device and filesystem type.
#[derive(Clone, Debug)]
pub struct Mount {
    /// Mount point.
    pub point: PathBuf,
    /// Device (or pseudo-device) name.
    pub device: String,
    /// Filesystem type, e.g. `ext4`, `tmpfs`.
    pub fstype: String,
}

impl Mount {
    /// True for filesystems that live in memory: fsync there costs nothing
    /// and the numbers say nothing about durability.
    pub fn in_memory(&self) -> bool {
        matches!(self.fstype.as_str(), "tmpfs" | "ramfs" | "devtmpfs")
    }
}

/// The mount holding `path` (longest mount point that prefixes it), from
/// `/proc/self/mounts`. `None` where that file does not exist.
pub fn mount_of(path: &Path) -> Option<Mount> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let mut best: Option<Mount> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(dev), Some(point), Some(fstype)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        // /proc/mounts escapes spaces as \040.
        let point = PathBuf::from(point.replace("\\040", " "));
        if path.starts_with(&point)
            && best
                .as_ref()
                .is_none_or(|b| point.as_os_str().len() >= b.point.as_os_str().len())
        {
            best = Some(Mount {
                point,
                device: dev.to_string(),
                fstype: fstype.to_string(),
            });
        }
    }
    best
}

/// One line per fact: cores, CPU, memory, kernel, compiler, build profile.
pub fn facts() -> Vec<(String, String)> {
    let mut v = Vec::new();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    v.push(("cores".into(), cores.to_string()));
    if let Ok(cpu) = std::fs::read_to_string("/proc/cpuinfo") {
        if let Some(model) = cpu
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
        {
            v.push(("cpu".into(), model.trim().to_string()));
        }
    }
    if let Ok(mem) = std::fs::read_to_string("/proc/meminfo") {
        if let Some(kb) = mem
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
        {
            v.push((
                "memory".into(),
                format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0)),
            ));
        }
    }
    if let Ok(k) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        v.push(("kernel".into(), k.trim().to_string()));
    }
    v.push(("rustc".into(), env!("BENCH_RUSTC_VERSION").to_string()));
    v.push(("build".into(), build()));
    v
}

/// The profile this benchmark was built with, and a warning when it is not
/// `dist`: `release` compiles incrementally (faster rebuilds, slower code),
/// so its figures are not the ones to publish.
pub fn build() -> String {
    let profile = env!("BENCH_PROFILE");
    let checks = if cfg!(debug_assertions) {
        ", debug assertions on"
    } else {
        ""
    };
    let mut s = format!(
        "profile {profile}, opt-level {}{checks}",
        env!("BENCH_OPT_LEVEL")
    );
    if profile != "dist" {
        s += " (not `dist`: figures to publish come from `cargo run --profile dist -p batpak-bench -- ...`, without incremental compilation)";
    }
    s
}

/// The disk's fsync rate for a single writer: append 100 bytes, then
/// `fdatasync`, over and over for about `for_how_long`.
#[derive(Clone, Copy, Debug)]
pub struct FsyncRate {
    /// fsyncs completed.
    pub count: u64,
    /// Wall time they took.
    pub elapsed: Duration,
}

impl FsyncRate {
    /// fsyncs per second.
    pub fn per_sec(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Mean time of one write + fdatasync, in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1000.0 / self.count.max(1) as f64
    }
}

/// Measures [`FsyncRate`] with a scratch file in `dir`.
///
/// # Errors
/// The scratch file cannot be created or written.
pub fn fsync_rate(dir: &Path, for_how_long: Duration) -> Result<FsyncRate> {
    let path = dir.join("fsync-probe");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    // Make the file itself durable first so the loop measures data syncs.
    f.sync_all()?;
    let buf = [0x5au8; 100];
    let start = Instant::now();
    let mut count = 0u64;
    while count < 10 || start.elapsed() < for_how_long {
        f.write_all(&buf)?;
        f.sync_data()?;
        count += 1;
    }
    let elapsed = start.elapsed();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(FsyncRate { count, elapsed })
}
