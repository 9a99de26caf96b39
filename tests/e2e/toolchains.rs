//! The toolchains that build the non-Rust example reactors, provisioned by
//! the tests themselves: user-level installs from the package registries,
//! pinned to exact versions, into `<target>/toolchains/`, once per target
//! directory. No root and no system package: a machine with Rust, Python 3
//! (with its `venv` module; `python3`, or the interpreter `BATPAK_PYTHON`
//! names) and Node (npm) runs every language test.
//!
//! The cache:
//! - `python/`: a venv with `componentize-py` (the Python examples) and
//!   `ziglang` (zig bundles clang and wasi-libc: the C compiler);
//! - `npm/`: `npm install --prefix` of `componentize-qjs` (JavaScript on
//!   QuickJS) and `@bytecodealliance/componentize-js` (on SpiderMonkey);
//! - `zig-cache/`: zig's cache, where the first `zig cc` builds wasi-libc
//!   (done here, so provisioning pays for it, not the first C test);
//! - `bin/`: `componentize-py`, `componentize-qjs`, `componentize-js` and
//!   `zig` wrappers, put
//!   first on PATH for every build a test runs;
//! - `.lock`: held while provisioning, so test binaries started together
//!   install once; `provision.log`: how long each part took.
//!
//! Each part has a stamp naming what it holds, written last: a part whose
//! stamp is missing or names other versions (an interrupted install, a new
//! pin) is installed again from scratch. A part that cannot be fetched
//! fails every test that needs it with the command that failed and the
//! registry it could not reach; nothing is skipped.

use crate::common::bin;
use crate::provision_step::run;
pub use crate::provision_step::{lock, Failure};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The Python packages, from PyPI, into one venv.
pub const PYTHON_PACKAGES: [&str; 2] = ["componentize-py==0.25.1", "ziglang==0.15.2"];
/// The JavaScript packages, from npm's registry.
/// componentize-js is called directly, not through `jco componentize`: jco
/// 1.35.0 fails with "failed to get path metadata" under preview2-shim 0.26.1.
pub const NPM_PACKAGES: [&str; 2] = [
    "@bytecodealliance/componentize-js@0.23.0",
    "componentize-qjs@0.4.5",
];

/// The provisioned tools: a directory of wrappers to put first on PATH.
pub struct Toolchains {
    bin: PathBuf,
}

impl Toolchains {
    /// The directory holding `componentize-py`, `componentize-qjs`, `zig`.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `PATH` with the provisioned tools first.
    pub fn path(&self) -> OsString {
        let mut dirs = vec![self.bin.clone()];
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(dirs).expect("PATH entries without ':'")
    }
}

/// `<target>`: where cargo put the binary under test.
pub fn target_dir() -> PathBuf {
    Path::new(bin())
        .parent()
        .and_then(Path::parent)
        .expect("binary sits in <target>/release")
        .to_path_buf()
}

/// The toolchains in `<target>/toolchains`, provisioned on first use (once
/// per test binary; the lock makes it once per target directory). Panics
/// with what could not be fetched, the command and the registry.
pub fn toolchains() -> &'static Toolchains {
    static TOOLS: OnceLock<Toolchains> = OnceLock::new();
    TOOLS.get_or_init(|| {
        provision(&target_dir().join("toolchains"), &[]).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// Every part that could not be provisioned into `cache`.
#[derive(Debug)]
pub struct ProvisionError {
    pub cache: PathBuf,
    pub failures: Vec<Failure>,
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "could not provision the toolchains of the language tests into {} \
             (user-level installs, no root; fetched once, then reused):",
            self.cache.display()
        )?;
        for x in &self.failures {
            writeln!(f, "- {} from {}: `{}` failed", x.what, x.from, x.command)?;
            writeln!(f, "  fix: {}", x.hint)?;
            for line in x.output.lines() {
                writeln!(f, "  | {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ProvisionError {}

/// Provisions every toolchain into `cache` (see the module doc), with
/// `env` added to the environment of every install command (the tests use
/// it to point pip and npm at an unreachable registry). Parts already
/// provisioned at the pinned versions are kept; the others are installed,
/// all of them even when one fails, so the error names every missing part.
pub fn provision(cache: &Path, env: &[(&str, &str)]) -> Result<Toolchains, ProvisionError> {
    fs::create_dir_all(cache).unwrap_or_else(|e| panic!("creating {}: {e}", cache.display()));
    let _lock = lock(&cache.join(".lock"));
    let mut failures = Vec::new();
    let bin = cache.join("bin");
    fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("creating {}: {e}", bin.display()));

    match timed(cache, "python", || python(cache, env)) {
        Ok(venv) => {
            wrapper(
                &bin,
                "componentize-py",
                &venv.join("bin/componentize-py"),
                None,
            );
            if let Err(f) = timed(cache, "zig", || zig(cache, &venv, &bin)) {
                failures.push(f);
            }
        }
        Err(f) => failures.push(f),
    }
    match timed(cache, "npm", || npm(cache, env)) {
        Ok(prefix) => {
            for name in ["componentize-qjs", "componentize-js"] {
                wrapper(
                    &bin,
                    name,
                    &prefix.join("node_modules/.bin").join(name),
                    None,
                );
            }
        }
        Err(f) => failures.push(f),
    }
    if failures.is_empty() {
        Ok(Toolchains { bin })
    } else {
        Err(ProvisionError {
            cache: cache.to_path_buf(),
            failures,
        })
    }
}

/// The venv with `PYTHON_PACKAGES`, created when its stamp is not theirs.
fn python(cache: &Path, env: &[(&str, &str)]) -> Result<PathBuf, Failure> {
    let venv = cache.join("python");
    let want = PYTHON_PACKAGES.join(" ");
    if stamped(&venv, &want) {
        return Ok(venv);
    }
    let what = PYTHON_PACKAGES.join(", ");
    let _ = fs::remove_dir_all(&venv);
    let python3 = std::env::var("BATPAK_PYTHON").unwrap_or_else(|_| "python3".into());
    run(
        Command::new(&python3).arg("-m").arg("venv").arg(&venv),
        env,
        &what,
        "Python's venv module (local, nothing fetched)",
        "the tests need Python 3 with its venv module (python.org, pyenv or uv \
         builds have it; Debian and Ubuntu put it in the python3-venv package); \
         set BATPAK_PYTHON to use another interpreter",
    )?;
    let mut pip = Command::new(venv.join("bin/python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
    ])
    .args(PYTHON_PACKAGES);
    run(
        &mut pip,
        env,
        &what,
        "PyPI",
        "check that PyPI is reachable (offline? behind a proxy, set HTTPS_PROXY) \
         and run the tests again; the same command installs them by hand",
    )?;
    let version = run(
        Command::new(venv.join("bin/componentize-py")).arg("--version"),
        env,
        &what,
        "the venv just installed",
        "delete the venv and run the tests again",
    )?;
    let printed = String::from_utf8_lossy(&version.stdout);
    let pinned = PYTHON_PACKAGES[0].split("==").nth(1).unwrap();
    if !printed.contains(pinned) {
        return Err(Failure {
            what,
            from: "PyPI".into(),
            command: format!("{} --version", venv.join("bin/componentize-py").display()),
            output: printed.into_owned(),
            hint: format!(
                "expected version {pinned}; delete {} and run the tests again",
                venv.display()
            ),
        });
    }
    stamp(&venv, &want);
    Ok(venv)
}

/// The `zig` wrapper over the venv's ziglang, with wasi-libc built once
/// into `zig-cache` (about 20 s on 2 cores).
fn zig(cache: &Path, venv: &Path, bin: &Path) -> Result<(), Failure> {
    let what = PYTHON_PACKAGES[1].to_string();
    let located = run(
        Command::new(venv.join("bin/python")).args([
            "-c",
            "import os, ziglang; print(os.path.dirname(ziglang.__file__))",
        ]),
        &[],
        &what,
        "the venv just installed",
        "delete the venv and run the tests again",
    )?;
    let dir = PathBuf::from(String::from_utf8_lossy(&located.stdout).trim());
    let zig_cache = cache.join("zig-cache");
    wrapper(bin, "zig", &dir.join("zig"), Some(&zig_cache));
    if stamped(&zig_cache, &what) {
        return Ok(());
    }
    fs::create_dir_all(&zig_cache)
        .unwrap_or_else(|e| panic!("creating {}: {e}", zig_cache.display()));
    // Same target and flags as the C builds, with libc I/O, so the wasi-libc
    // they link is the one built here.
    let source = zig_cache.join("warm.c");
    fs::write(
        &source,
        "#include <stdio.h>\n\
         int warm(int x) { char b[16]; return snprintf(b, sizeof b, \"%d\", x); }\n",
    )
    .unwrap();
    run(
        Command::new(bin.join("zig"))
            .args([
                "cc",
                "--target=wasm32-wasi",
                "-mexec-model=reactor",
                "-O2",
                "-o",
            ])
            .arg(zig_cache.join("warm.wasm"))
            .arg(&source),
        &[],
        &what,
        "zig's bundled wasi-libc (built locally)",
        "delete target/toolchains and run the tests again",
    )?;
    stamp(&zig_cache, &what);
    Ok(())
}

/// `npm install --prefix` of `NPM_PACKAGES`, redone when its stamp is not
/// theirs.
fn npm(cache: &Path, env: &[(&str, &str)]) -> Result<PathBuf, Failure> {
    let prefix = cache.join("npm");
    let want = NPM_PACKAGES.join(" ");
    if stamped(&prefix, &want) {
        return Ok(prefix);
    }
    let what = NPM_PACKAGES.join(", ");
    let _ = fs::remove_dir_all(&prefix);
    fs::create_dir_all(&prefix).unwrap();
    run(
        Command::new("npm")
            .arg("install")
            .arg("--prefix")
            .arg(&prefix)
            .args(["--no-audit", "--no-fund", "--fetch-retries=1"])
            .args(NPM_PACKAGES),
        env,
        &what,
        "npm's registry",
        "the tests need Node.js with npm; check that the npm registry is reachable \
         (offline? behind a proxy, set HTTPS_PROXY) and run the tests again",
    )?;
    for spec in NPM_PACKAGES {
        let (name, version) = spec.rsplit_once('@').unwrap();
        let manifest = prefix.join("node_modules").join(name).join("package.json");
        let text = fs::read_to_string(&manifest).unwrap_or_default();
        if !text.contains(&format!("\"version\": \"{version}\"")) {
            return Err(Failure {
                what,
                from: "npm's registry".into(),
                command: format!("reading {}", manifest.display()),
                output: text.chars().take(400).collect(),
                hint: format!(
                    "expected version {version}; delete {} and run the tests again",
                    prefix.display()
                ),
            });
        }
    }
    stamp(&prefix, &want);
    Ok(prefix)
}

/// Runs one provisioning command; a failure carries its output's end.
/// Runs one part and appends its duration to `provision.log` (parts that
/// were already there take milliseconds and are not logged).
fn timed<T>(
    cache: &Path,
    part: &str,
    f: impl FnOnce() -> Result<T, Failure>,
) -> Result<T, Failure> {
    let start = Instant::now();
    let result = f();
    let secs = start.elapsed().as_secs_f64();
    if secs > 0.5 {
        let when = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let status = if result.is_ok() { "ok" } else { "failed" };
        eprintln!("toolchains: {part} provisioned in {secs:.1} s ({status})");
        if let Ok(mut log) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cache.join("provision.log"))
        {
            let _ = writeln!(log, "{when}\t{part}\t{secs:.1}\t{status}");
        }
    }
    result
}

/// True when `dir` holds a stamp naming exactly `want`.
fn stamped(dir: &Path, want: &str) -> bool {
    fs::read_to_string(dir.join(".provisioned")).is_ok_and(|s| s == want)
}

fn stamp(dir: &Path, what: &str) {
    write_atomically(&dir.join(".provisioned"), what, false);
}

/// `bin/NAME`: a script that runs `target` (and points zig's cache into
/// the toolchains directory).
fn wrapper(bin: &Path, name: &str, target: &Path, zig_cache: Option<&Path>) {
    let mut script = String::from("#!/bin/sh\n# Provisioned by tests/e2e/toolchains.rs.\n");
    if let Some(c) = zig_cache {
        script += &format!(
            "ZIG_GLOBAL_CACHE_DIR=\"${{ZIG_GLOBAL_CACHE_DIR:-{}}}\"\nexport ZIG_GLOBAL_CACHE_DIR\n",
            c.display()
        );
    }
    script += &format!("exec '{}' \"$@\"\n", target.display());
    let path = bin.join(name);
    if fs::read_to_string(&path).is_ok_and(|s| s == script) {
        return;
    }
    write_atomically(&path, &script, true);
}

/// Writes `text` to a temporary file and renames it over `path`, so a
/// process running the old file never sees half of the new one.
fn write_atomically(path: &Path, text: &str, executable: bool) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    if executable {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("renaming to {}: {e}", path.display()));
}

/// Output of one provisioned tool, which must succeed.
fn tool_output(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    assert!(out.status.success(), "{} {args:?}: {out:?}", bin.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_language_toolchains_are_provisioned_under_target_at_the_pinned_versions() {
    let tools = toolchains();
    let cache = target_dir().join("toolchains");
    assert_eq!(tools.bin(), cache.join("bin"));
    // Each wrapper runs a tool inside the cache, not one from the system.
    for name in [
        "componentize-py",
        "componentize-qjs",
        "componentize-js",
        "zig",
    ] {
        let script = fs::read_to_string(tools.bin().join(name)).unwrap();
        let runs = script.lines().last().unwrap();
        assert!(
            runs.starts_with(&format!("exec '{}", cache.display())),
            "{name} runs {runs}"
        );
    }
    let py = tool_output(&tools.bin().join("componentize-py"), &["--version"]);
    assert_eq!(py.trim(), "componentize-py 0.25.1");
    let zig = tool_output(&tools.bin().join("zig"), &["version"]);
    assert_eq!(zig.trim(), "0.15.2");
    let manifest = cache.join("npm/node_modules/componentize-qjs/package.json");
    let qjs: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(manifest).unwrap()).unwrap();
    assert_eq!(qjs["version"], "0.4.5");
    let manifest = cache.join("npm/node_modules/@bytecodealliance/componentize-js/package.json");
    let sm: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(manifest).unwrap()).unwrap();
    assert_eq!(sm["version"], "0.23.0");
    // A second call finds everything stamped and installs nothing.
    let start = Instant::now();
    provision(&cache, &[]).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "re-provisioning took {:?}",
        start.elapsed()
    );
}

#[test]
fn provisioning_without_the_registries_names_what_could_not_be_fetched() {
    let dir = crate::common::tempdir();
    let cache = dir.path().join("toolchains");
    let no_links = dir.path().join("no-wheels");
    fs::create_dir_all(&no_links).unwrap();
    let npm_cache = dir.path().join("npm-cache");
    let npm_cache = npm_cache.to_str().unwrap();
    // Nothing listens on port 9 (discard): every fetch fails at once, and
    // no cache or local wheel directory can stand in for the registry.
    let offline = [
        ("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
        ("PIP_FIND_LINKS", no_links.to_str().unwrap()),
        ("PIP_NO_CACHE_DIR", "1"),
        ("PIP_RETRIES", "0"),
        ("npm_config_registry", "http://127.0.0.1:9/"),
        ("npm_config_cache", npm_cache),
        ("npm_config_fetch_retries", "0"),
    ];
    let err = match provision(&cache, &offline) {
        Ok(_) => panic!("provisioning succeeded with the registries unreachable"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert_eq!(err.failures.len(), 2, "{text}");
    for must in [
        "componentize-py==0.25.1, ziglang==0.15.2 from PyPI",
        "-m pip install",
        "componentize-qjs@0.4.5 from npm's registry",
        "npm install --prefix",
        "offline?",
        cache.to_str().unwrap(),
    ] {
        assert!(
            text.contains(must),
            "the error should say {must:?}:\n{text}"
        );
    }
    // Nothing half-installed counts as provisioned.
    assert!(!cache.join("python/.provisioned").exists());
    assert!(!cache.join("npm/.provisioned").exists());
}

#[test]
fn a_second_provisioner_waits_for_the_lock_holder() {
    let dir = crate::common::tempdir();
    let path = dir.path().join(".lock");
    let held = lock(&path);
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let path = path.clone();
        std::thread::spawn(move || {
            let _lock = lock(&path);
            tx.send(Instant::now()).unwrap();
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rx.try_recv().is_err(),
        "the second locker got in while the first held the lock"
    );
    let released = Instant::now();
    drop(held);
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the waiter got the lock within 10 s of its release");
    assert!(got >= released);
    waiter.join().unwrap();
}
