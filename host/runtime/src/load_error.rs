//! [`LoadError`]: every reason a plugin file is refused, each naming the
//! file, the problem and the fix.

use super::failure::ReactFailure;
use super::wit::{EXPORT_INTERFACE, OFFERED_PACKAGES, WIT_PACKAGE, WIT_WORLD};
use std::path::PathBuf;

/// Why a plugin could not be loaded (or inspected). Every variant names the
/// file; the message says what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file does not exist.
    #[error("plugin {}: no such file", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("plugin {}: cannot read it: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file (a FIFO, a device such as /dev/zero, a directory):
    /// refused before reading a byte.
    #[error("plugin {}: not a regular file (it is {what}); give the path of a .wasm or .wat file", path.display())]
    NotRegularFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// Larger than the configured limit: refused before reading.
    #[error("plugin {}: {size} bytes, more than the limit of {limit} bytes for a plugin file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit (`RuntimeConfig::max_plugin_file_bytes`).
        limit: u64,
    },
    /// Neither a wasm binary nor WebAssembly text.
    #[error("plugin {}: not a WebAssembly file (a component binary starts with the bytes \\0asm; build one with `cargo build --target wasm32-wasip2`)", path.display())]
    NotWasm {
        /// The file.
        path: PathBuf,
    },
    /// WebAssembly text that does not parse.
    #[error("plugin {}: not a WebAssembly component: the text does not parse as WebAssembly text: {message}", path.display())]
    BadText {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// Too short to be a wasm file.
    #[error("plugin {}: truncated WebAssembly file ({len} bytes)", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// A core module, not a component.
    #[error("plugin {}: this is a core wasm module, not a component; build with --target wasm32-wasip2 or wrap it with `wasm-tools component new`", path.display())]
    CoreModule {
        /// The file.
        path: PathBuf,
    },
    /// A wasm binary of an unknown version or layer.
    #[error("plugin {}: unsupported WebAssembly version/layer bytes {bytes:02x?}; expected a component (0d 00 01 00)", path.display())]
    UnsupportedLayer {
        /// The file.
        path: PathBuf,
        /// The four version/layer bytes.
        bytes: [u8; 4],
    },
    /// The component uses the component model's async features (QuickJS
    /// components built without `--sync` do), which this host does not run.
    #[error("plugin {}: the component uses the component model's async features ({feature}), which this host does not run; with componentize-qjs build it with `--sync`, otherwise build a synchronous component", path.display())]
    NeedsAsync {
        /// The file.
        path: PathBuf,
        /// The first async feature found.
        feature: String,
    },
    /// More linear memories than allowed.
    #[error("plugin {}: the component defines {count} linear memories; a plugin may define at most {max} (one memory budget covers them all)", path.display())]
    TooManyMemories {
        /// The file.
        path: PathBuf,
        /// How many it defines.
        count: usize,
        /// `RuntimeConfig::max_memories`.
        max: usize,
    },
    /// More tables than allowed.
    #[error("plugin {}: the component defines {count} tables; a plugin may define at most {max}", path.display())]
    TooManyTables {
        /// The file.
        path: PathBuf,
        /// How many it defines.
        count: usize,
        /// `RuntimeConfig::max_tables`.
        max: usize,
    },
    /// wasmtime refused the component.
    #[error("plugin {}: invalid component: {message}", path.display())]
    InvalidComponent {
        /// The file.
        path: PathBuf,
        /// wasmtime's message.
        message: String,
    },
    /// It targets another version of the WIT package.
    #[error("plugin {}: not a batpak reactor: it targets {found}, but this host offers {expected} (world reactor-plugin; `batpak-host wit --list`); rebuild it against one of those, preferably the current {WIT_PACKAGE}", path.display())]
    WrongWorld {
        /// The file.
        path: PathBuf,
        /// The package it targets.
        found: String,
        /// Every package this host offers, comma-separated.
        expected: &'static str,
    },
    /// It does not export the reactor interface.
    #[error("plugin {}: not a batpak reactor: it exports [{}] but a reactor must export {EXPORT_INTERFACE} (world {WIT_WORLD}), or the reactor interface of another offered version ({OFFERED_PACKAGES})", path.display(), exports.join(", "))]
    MissingExport {
        /// The file.
        path: PathBuf,
        /// What it exports.
        exports: Vec<String>,
    },
    /// It imports an interface the host does not offer.
    #[error("plugin {}: not a batpak reactor: it imports {name}, which this host does not offer; the host offers the host and types interfaces of {OFFERED_PACKAGES} and WASI 0.2 with nothing granted{hint}", path.display())]
    ImportNotOffered {
        /// The file.
        path: PathBuf,
        /// The first import not offered.
        name: String,
        /// What to do about it, if known (starts with ". ").
        hint: String,
    },
    /// Linking failed for another reason (a type mismatch in an import).
    #[error("plugin {}: its imports do not match what this host offers (the host and types interfaces of {OFFERED_PACKAGES} and WASI 0.2 with nothing granted): {message}", path.display())]
    Link {
        /// The file.
        path: PathBuf,
        /// wasmtime's message.
        message: String,
    },
    /// Its exports do not have the reactor interface's types.
    #[error("plugin {}: its exports do not match the reactor interface of the version it targets: {message}", path.display())]
    Exports {
        /// The file.
        path: PathBuf,
        /// wasmtime's message.
        message: String,
    },
    /// Instantiation failed (a start function trapped, ran too long, or
    /// grew past the memory budget).
    #[error("plugin {}: cannot instantiate it: {failure}", path.display())]
    Instantiate {
        /// The file.
        path: PathBuf,
        /// What happened, classified.
        failure: ReactFailure,
    },
    /// `describe()` trapped or ran too long.
    #[error("plugin {}: describe() failed: {failure}", path.display())]
    DescribeFailed {
        /// The file.
        path: PathBuf,
        /// What happened, classified.
        failure: ReactFailure,
    },
    /// `describe()` returned a descriptor that breaks the rules.
    #[error("plugin {}: describe() returned an invalid descriptor: {message}", path.display())]
    InvalidDescriptor {
        /// The file.
        path: PathBuf,
        /// The first broken rule.
        message: String,
    },
    /// The caller's settings for this reactor were refused.
    #[error("plugin {}: {message}", path.display())]
    Settings {
        /// The file.
        path: PathBuf,
        /// The caller's message.
        message: String,
    },
    /// `init` returned an error or failed.
    #[error("plugin {}: {}", path.display(), match failure.kind {
        super::FailureKind::Error => format!("reactor {reactor} refused to start: init returned an error: {}", failure.message),
        _ => format!("init() failed: {failure}"),
    })]
    InitFailed {
        /// The file.
        path: PathBuf,
        /// The reactor's name.
        reactor: String,
        /// What happened.
        failure: ReactFailure,
    },
}
