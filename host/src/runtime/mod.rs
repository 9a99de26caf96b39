//! The wasm reactor runtime (issue 3).
