//! The generated bindings of the current `batpak:reactor@0.2.0` contract
//! (`wit/reactor.wit`, world `reactor-plugin`). Its shared `types` are the
//! 0.1.0 Rust types (same shapes, checked by wasmtime when linking), so the
//! host functions and conversions exist once for both versions.

#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "reactor-plugin",
    path: "../../wit",
    with: {
        "batpak:reactor/types@0.2.0": super::wit_v1::batpak::reactor::types,
    },
});
