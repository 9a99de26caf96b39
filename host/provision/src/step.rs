//! One step of user-level provisioning (the language toolchains in
//! `tests/e2e/toolchains.rs`, nats-server in [`crate::nats_server`]): a
//! command that must succeed, what to say when it does not, and the lock
//! that lets one process install at a time. One copy, used by the tests and
//! the CLI, so they cannot drift.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long a provisioner waits for another holding the lock: a cold
/// install (zig building wasi-libc, SpiderMonkey's npm package) takes
/// minutes on 2 busy cores.
pub const LOCK_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// One part that could not be provisioned.
#[derive(Debug)]
pub struct Failure {
    /// What was being installed (packages and versions).
    pub what: String,
    /// Where it comes from (`PyPI`, `npm's registry`, or a local step).
    pub from: String,
    /// The command that failed, as a shell would spell it.
    pub command: String,
    /// The end of its output, or why it could not start.
    pub output: String,
    /// What the user can do about it.
    pub hint: String,
}

/// Runs `cmd` with `env` added; a failure names `what`, `from`, the
/// command as the user would type it (the test-only `env` left out), the
/// last 12 lines of its output and `hint`.
pub fn run(
    cmd: &mut Command,
    env: &[(&str, &str)],
    what: &str,
    from: &str,
    hint: &str,
) -> Result<Output, Failure> {
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let fail = |output: String| Failure {
        what: what.into(),
        from: from.into(),
        command: shown.clone(),
        output,
        hint: hint.into(),
    };
    let out = cmd
        .output()
        .map_err(|e| fail(format!("could not start it: {e}")))?;
    if out.status.success() {
        return Ok(out);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(12)..].join("\n");
    Err(fail(format!("{}\n{tail}", out.status)))
}

/// An exclusive lock on `path`, waited for up to [`LOCK_DEADLINE`];
/// released when the file is dropped (or the process dies).
pub fn lock(path: &Path) -> File {
    let file = File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    let deadline = Instant::now() + LOCK_DEADLINE;
    loop {
        match file.try_lock() {
            Ok(()) => return file,
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(fs::TryLockError::WouldBlock) => panic!(
                "another test process has been provisioning for {} minutes (it holds {})",
                LOCK_DEADLINE.as_secs() / 60,
                path.display()
            ),
            Err(fs::TryLockError::Error(e)) => panic!("locking {}: {e}", path.display()),
        }
    }
}
