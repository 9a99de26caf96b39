//! `batpak-build`: the two steps a non-Rust reactor needs that its own
//! toolchain does not do, as library calls of the crates `wit-bindgen-c`
//! and `wit-component` (so nobody has to `cargo install wit-bindgen-cli`
//! or `wasm-tools`, about 4.5 minutes each on two cores).
//!
//! ```text
//! batpak-build c-bindings WIT_DIR OUT_DIR
//!     C bindings for the `reactor-plugin` world: reactor_plugin.h,
//!     reactor_plugin.c and reactor_plugin_component_type.o (the WIT,
//!     embedded in the core module when linked in).
//! batpak-build component CORE.wasm OUT.wasm
//!     Wraps a core module into a component. When the module imports WASI
//!     preview 1 (libc I/O such as printf/snprintf), the preview-1 reactor
//!     adapter of wasmtime 48 is linked in, so the component imports WASI
//!     preview 2, which the host offers with no capabilities granted.
//! ```
//!
//! Not a default workspace member: selecting it in `cargo test` would unify
//! its wasm crates' features with wasmtime's and rebuild wasmtime.

use anyhow::{bail, Context, Result};
use std::path::Path;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

const WORLD: &str = "reactor-plugin";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["c-bindings", wit, out] => c_bindings(Path::new(wit), Path::new(out)),
        ["component", core, out] => component(Path::new(core), Path::new(out)),
        _ => {
            eprintln!(
                "usage:\n  batpak-build c-bindings WIT_DIR OUT_DIR\n  batpak-build component CORE.wasm OUT.wasm"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Generates the C bindings of the `reactor-plugin` world into `out`.
fn c_bindings(wit: &Path, out: &Path) -> Result<()> {
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(wit)
        .with_context(|| format!("reading the WIT in {}", wit.display()))?;
    let world = resolve
        .select_world(&[pkg], Some(WORLD))
        .with_context(|| format!("no world {WORLD:?} in {}", wit.display()))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("generating C bindings")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, bytes) in files.iter() {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// What `component` needs to know about a core module: whether it carries
/// an embedded WIT (a `component-type` custom section) and whether it
/// imports anything from WASI preview 1.
fn scan(core: &[u8]) -> Result<(bool, bool)> {
    let (mut has_wit, mut preview1) = (false, false);
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        match payload? {
            wasmparser::Payload::CustomSection(c) if c.name().starts_with("component-type") => {
                has_wit = true
            }
            wasmparser::Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    preview1 |= import?.module == WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME;
                }
            }
            _ => {}
        }
    }
    Ok((has_wit, preview1))
}

/// Wraps the core module `core` (with its embedded WIT) into a component.
fn component(core: &Path, out: &Path) -> Result<()> {
    let bytes = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    if !bytes.starts_with(b"\0asm\x01\0\0\0") {
        bail!(
            "{} is not a core wasm module (already a component, or not wasm)",
            core.display()
        );
    }
    let (has_wit, preview1) =
        scan(&bytes).with_context(|| format!("{} is not valid wasm", core.display()))?;
    if !has_wit {
        bail!(
            "{}: no WIT embedded (no component-type section); link the generated \
             reactor_plugin_component_type.o into the module",
            core.display()
        );
    }
    let mut encoder = wit_component::ComponentEncoder::default();
    encoder
        .module(&bytes)
        .with_context(|| format!("reading {}", core.display()))?
        .validate(true);
    if preview1 {
        encoder.adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?;
    }
    let component = encoder
        .encode()
        .with_context(|| format!("making a component of {}", core.display()))?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
