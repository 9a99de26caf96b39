//! A child process measured from outside: wall time, peak RSS (the kernel's
//! `ru_maxrss` from `wait4`) and CPU time per thread (sampled from
//! `/proc/<pid>/task/*/stat` while it runs). Works for any binary, this
//! build's or a previous release's, without its cooperation.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the threads' CPU counters are sampled. A thread's CPU after its
/// last sample (at most this long) is not counted per thread; the total
/// from `wait4` is exact.
const SAMPLE: Duration = Duration::from_millis(50);

/// What one measured run of a child cost.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Wall time from spawn to exit.
    pub wall: Duration,
    /// Peak resident set of the child (`ru_maxrss`), bytes.
    pub max_rss: u64,
    /// User + system CPU of the child, seconds (exact, from `wait4`).
    pub cpu_secs: f64,
    /// CPU seconds per thread name (threads of one name summed), from the
    /// last sample of each thread.
    pub threads: BTreeMap<String, f64>,
    /// The child's stdout (empty unless kept).
    pub stdout: String,
    /// The child's stderr.
    pub stderr: String,
}

impl Measured {
    /// This run's CPU less `base`'s (the same command doing no work), in
    /// total and per thread name; wall time and RSS are kept.
    pub fn minus(mut self, base: &Measured) -> Measured {
        self.cpu_secs = (self.cpu_secs - base.cpu_secs).max(0.0);
        for (name, secs) in &base.threads {
            if let Some(v) = self.threads.get_mut(name) {
                *v = (*v - secs).max(0.0);
            }
        }
        self
    }
}

/// Runs `cmd` to completion and measures it; stdout is captured with
/// `keep_stdout` (else discarded: `append` prints a receipt per event),
/// stderr always (its tail is in the error when the child fails).
///
/// # Errors
/// The child cannot be started or exits unsuccessfully.
pub fn run(mut cmd: Command, keep_stdout: bool) -> Result<Measured> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdout(if keep_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let start = Instant::now();
    let pid = child.id() as libc::pid_t;
    let stdout = child.stdout.take();
    let mut stderr = child.stderr.take().context("child stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut o) = stdout {
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // tid -> (name, cpu seconds at its last sample)
            let mut seen: BTreeMap<String, (String, f64)> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                sample_threads(pid, &mut seen);
                std::thread::sleep(SAMPLE);
            }
            let mut by_name = BTreeMap::new();
            for (name, secs) in seen.into_values() {
                *by_name.entry(name).or_insert(0.0) += secs;
            }
            by_name
        })
    };
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        // SAFETY: `pid` is our own child, not yet reaped (std's Child is
        // used for its pipes only, never waited on); `status` and `ru` are
        // valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        // A signal delivered to this process interrupts the wait: wait again.
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let threads = sampler.join().unwrap_or_default();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if r != pid {
        bail!("waiting for {what}: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let tail: String = {
            let lines: Vec<&str> = stderr.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        bail!("{what} failed (wait status {status}):\n{tail}");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measured {
        wall,
        max_rss: ru.ru_maxrss as u64 * 1024,
        cpu_secs: tv(ru.ru_utime) + tv(ru.ru_stime),
        threads,
        stdout,
        stderr,
    })
}

/// Reads utime + stime of every thread of `pid` into `seen`.
fn sample_threads(pid: libc::pid_t, seen: &mut BTreeMap<String, (String, f64)>) {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // The name is in parentheses and may hold spaces: read after the
        // last ')'; utime and stime are fields 14 and 15 of the line.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |i: usize| rest.get(i).and_then(|v| v.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (field(11), field(12)) {
            seen.insert(
                e.file_name().to_string_lossy().to_string(),
                (name, (u + s) / tick),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_child_and_reports_its_failure() {
        let mut ok = Command::new("sh");
        ok.args(["-c", "echo hello; echo note >&2"]);
        let m = run(ok, true).expect("sh runs");
        assert_eq!(m.stdout, "hello\n");
        assert_eq!(m.stderr, "note\n");
        assert!(m.max_rss > 0, "ru_maxrss of the child");
        let mut bad = Command::new("sh");
        bad.args(["-c", "echo why >&2; exit 3"]);
        let e = run(bad, false).expect_err("exit 3 is a failure");
        assert!(format!("{e:#}").contains("why"), "{e:#}");
    }
}
