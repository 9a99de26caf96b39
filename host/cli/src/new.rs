//! `batpak-host new`: a ready-to-build reactor project from the templates
//! kept in the repository (`plugins/templates/`). The sample reactor of each
//! language is the pass-through example that CI builds and runs
//! (`plugins/passthrough*`), renamed, so a template cannot rot unnoticed.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Languages `new` can scaffold.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// Rust with the batpak-guest SDK.
    Rust,
    /// C for wasm32-wasi: zig cc (PyPI ziglang, no root), or the compiler in WASI_CC.
    C,
    /// Python with componentize-py.
    Python,
    /// JavaScript on the batpak-reactor SDK, with componentize-js
    /// (SpiderMonkey) or componentize-qjs (QuickJS): see `--engine`.
    Js,
}

/// The JavaScript engine a `--lang js` project builds with.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// SpiderMonkey, through @bytecodealliance/componentize-js (about 12 MB).
    Spidermonkey,
    /// QuickJS, through componentize-qjs (about 1.6 MB, faster to load).
    Quickjs,
}

/// Arguments of `batpak-host new`.
#[derive(Args, Debug)]
pub struct NewArgs {
    /// Language of the new reactor.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Reactor name: 1 to 64 characters of a-z, 0-9, `-`, `_` (it keys the
    /// reactor's checkpoint).
    pub name: String,
    /// Directory to create [default: ./NAME].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Rust only: the batpak-guest dependency, as a path to the SDK
    /// directory or a git URL of the batpak-host repository [default: the
    /// SDK of the repository this binary was built from, when it exists].
    #[arg(long, value_name = "PATH|URL")]
    pub sdk: Option<String>,
    /// JavaScript only: the engine `build.sh` builds with by default
    /// [default: spidermonkey] (`./build.sh --quickjs` picks the other).
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
}

const WIT: &str = include_str!("../../../wit/reactor.wit");
const README: &str = include_str!("../../../plugins/templates/common/README.md");
const EVENTS: &str = include_str!("../../../plugins/templates/common/fixtures/events.jsonl");
const EXPECTED: &str = include_str!("../../../plugins/templates/common/fixtures/expected.jsonl");

/// The files of one language: (path in the project, text, executable).
fn files(lang: Lang) -> Vec<(&'static str, &'static str, bool)> {
    match lang {
        Lang::Rust => vec![
            (
                "Cargo.toml",
                include_str!("../../../plugins/templates/rust/Cargo.toml"),
                false,
            ),
            (
                "build.sh",
                include_str!("../../../plugins/templates/rust/build.sh"),
                true,
            ),
            (
                "src/lib.rs",
                include_str!("../../../plugins/passthrough/src/lib.rs"),
                false,
            ),
        ],
        Lang::C => vec![
            (
                "build.sh",
                include_str!("../../../plugins/templates/c/build.sh"),
                true,
            ),
            (
                "reactor.c",
                include_str!("../../../plugins/passthrough-c/reactor.c"),
                false,
            ),
            // The C SDK, one header beside the reactor.
            (
                "batpak.h",
                include_str!("../../../guest-sdk/c/batpak.h"),
                false,
            ),
        ],
        Lang::Python => vec![
            (
                "build.sh",
                include_str!("../../../plugins/templates/python/build.sh"),
                true,
            ),
            (
                "app.py",
                include_str!("../../../plugins/passthrough-py/app.py"),
                false,
            ),
            // The Python SDK, vendored beside app.py (componentize-py finds
            // it there; `pip install` of guest-sdk/python works too).
            (
                "batpak_guest/__init__.py",
                include_str!("../../../guest-sdk/python/batpak_guest/__init__.py"),
                false,
            ),
            (
                "batpak_guest/batch.py",
                include_str!("../../../guest-sdk/python/batpak_guest/batch.py"),
                false,
            ),
            (
                "batpak_guest/component.py",
                include_str!("../../../guest-sdk/python/batpak_guest/component.py"),
                false,
            ),
            (
                "batpak_guest/declaration.py",
                include_str!("../../../guest-sdk/python/batpak_guest/declaration.py"),
                false,
            ),
            (
                "batpak_guest/error.py",
                include_str!("../../../guest-sdk/python/batpak_guest/error.py"),
                false,
            ),
            (
                "batpak_guest/layout.py",
                include_str!("../../../guest-sdk/python/batpak_guest/layout.py"),
                false,
            ),
            (
                "batpak_guest/output.py",
                include_str!("../../../guest-sdk/python/batpak_guest/output.py"),
                false,
            ),
        ],
        Lang::Js => vec![
            (
                "build.sh",
                include_str!("../../../plugins/templates/js/build.sh"),
                true,
            ),
            (
                "reactor.js",
                include_str!("../../../plugins/passthrough-js/reactor.js"),
                false,
            ),
            // The SDK beside the reactor: both engines bundle relative imports.
            (
                "batpak/index.js",
                include_str!("../../../guest-sdk/js/index.js"),
                false,
            ),
            (
                "batpak/core.js",
                include_str!("../../../guest-sdk/js/core.js"),
                false,
            ),
            (
                "batpak/layout.js",
                include_str!("../../../guest-sdk/js/layout.js"),
                false,
            ),
            (
                "batpak/index.d.ts",
                include_str!("../../../guest-sdk/js/index.d.ts"),
                false,
            ),
            (
                "batpak/package.json",
                include_str!("../../../guest-sdk/js/package.json"),
                false,
            ),
        ],
    }
}

/// The example's own name in its source, replaced by the new name.
fn example_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "passthrough",
        Lang::C => "passthrough-c",
        Lang::Python => "passthrough-py",
        Lang::Js => "passthrough-js",
    }
}

fn render(text: &str, lang: Lang, name: &str, sdk: &str, engine: Engine) -> String {
    let stem = name.replace('-', "_");
    let (language, guide) = match lang {
        Lang::Rust => ("Rust", "guest-sdk/README.md"),
        Lang::C => ("C", "guest-sdk/docs/c.md"),
        Lang::Python => ("Python", "guest-sdk/docs/python.md"),
        Lang::Js => ("JavaScript", "guest-sdk/docs/javascript.md"),
    };
    text.replace(
        &format!("\"{}\"", example_name(lang)),
        &format!("\"{name}\""),
    )
    .replace("bench.in", "sample.in")
    .replace("bench.out", "sample.out")
    .replace("{{name}}", name)
    .replace("{{stem}}", &stem)
    .replace("{{language}}", language)
    .replace("{{guide}}", guide)
    .replace("{{sdk}}", sdk)
    .replace("../../guest-sdk/js/index.js", "./batpak/index.js")
    .replace(
        "{{engine}}",
        match engine {
            Engine::Spidermonkey => "spidermonkey",
            Engine::Quickjs => "quickjs",
        },
    )
}

/// The dependency line for batpak-guest.
fn sdk_line(sdk: Option<&str>) -> anyhow::Result<String> {
    let given = match sdk {
        Some(s) => s.to_string(),
        None => {
            let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-sdk");
            match here.canonicalize() {
                Ok(p) if p.join("Cargo.toml").is_file() => p.display().to_string(),
                _ => bail!(
                    "--lang rust needs --sdk: a path to batpak-host's guest-sdk directory or a git URL of the batpak-host repository"
                ),
            }
        }
    };
    let looks_remote = given.contains("://") || given.starts_with("git@");
    Ok(if looks_remote {
        format!("batpak-guest = {{ git = {given:?} }}")
    } else {
        let p = Path::new(&given);
        let p = p
            .canonicalize()
            .with_context(|| format!("--sdk {given}: no such directory"))?;
        if !p.join("Cargo.toml").is_file() || !p.join("wit/reactor.wit").is_file() {
            bail!(
                "--sdk {}: not the batpak-guest SDK (expected Cargo.toml and wit/reactor.wit there)",
                p.display()
            );
        }
        format!("batpak-guest = {{ path = {:?} }}", p.display().to_string())
    })
}

pub(crate) fn new(a: NewArgs) -> anyhow::Result<ExitCode> {
    if let Err(e) = batpak_runtime::validate_reactor_name(&a.name) {
        eprintln!("error: NAME: {e}");
        return Ok(ExitCode::from(2));
    }
    let dir = a.dir.clone().unwrap_or_else(|| PathBuf::from(&a.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        eprintln!(
            "error: {} already exists and is not empty; choose another --dir or NAME",
            dir.display()
        );
        return Ok(ExitCode::from(2));
    }
    if a.engine.is_some() && a.lang != Lang::Js {
        eprintln!("error: --engine applies to --lang js only");
        return Ok(ExitCode::from(2));
    }
    let engine = a.engine.unwrap_or(Engine::Spidermonkey);
    let sdk = if a.lang == Lang::Rust {
        sdk_line(a.sdk.as_deref())?
    } else {
        String::new()
    };
    let mut all = files(a.lang);
    all.push(("README.md", README, false));
    all.push(("fixtures/events.jsonl", EVENTS, false));
    all.push(("fixtures/expected.jsonl", EXPECTED, false));
    if a.lang != Lang::Rust {
        all.push(("wit/reactor.wit", WIT, false));
    }
    for (rel, text, exec) in all {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, render(text, a.lang, &a.name, &sdk, engine))
            .with_context(|| format!("writing {}", path.display()))?;
        #[cfg(unix)]
        if exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        #[cfg(not(unix))]
        let _ = exec;
    }
    println!("{}", dir.display());
    eprintln!(
        "created {} ({:?}); next: cd {} && ./build.sh && batpak-host test {}.wasm --input fixtures/events.jsonl --expect fixtures/expected.jsonl",
        dir.display(),
        a.lang,
        dir.display(),
        a.name.replace('-', "_")
    );
    Ok(ExitCode::SUCCESS)
}
