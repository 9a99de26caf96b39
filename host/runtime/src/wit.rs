//! The generated WIT bindings (`batpak:reactor@0.1.0`, world
//! `reactor-plugin`) and the names of what they define.

#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "reactor-plugin",
    path: "../../wit",
});

/// The WIT package this host offers.
pub const WIT_PACKAGE: &str = "batpak:reactor@0.1.0";
/// The world a plugin must target.
pub const WIT_WORLD: &str = "batpak:reactor/reactor-plugin@0.1.0";
/// The interface a plugin must export.
pub const EXPORT_INTERFACE: &str = "batpak:reactor/reactor@0.1.0";
/// The interface the host offers as imports.
pub const HOST_INTERFACE: &str = "batpak:reactor/host@0.1.0";
/// The shared types interface.
pub const TYPES_INTERFACE: &str = "batpak:reactor/types@0.1.0";
