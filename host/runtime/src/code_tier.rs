//! [`CodeTier`]: which compiler produced the machine code a plugin runs on.
//!
//! A large component compiled cold is first served by code from Winch,
//! wasmtime's single-pass baseline compiler (about a second for 12–18 MB),
//! while Cranelift compiles the optimised code on a background thread; the
//! plugin moves to that code at a batch boundary. Small components and
//! cache hits run optimised code from the start.

/// The compiler tier of a plugin's current code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CodeTier {
    /// Winch's baseline code: compiled fast, runs slower; never cached. The
    /// optimised compile is under way (or failed, see the log).
    Baseline,
    /// Cranelift's optimised code (compiled now or loaded from the compile
    /// cache).
    Optimised,
}

impl CodeTier {
    /// Lowercase name, as logged and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeTier::Baseline => "baseline",
            CodeTier::Optimised => "optimised",
        }
    }
}
