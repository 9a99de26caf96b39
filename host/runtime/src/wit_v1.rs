//! The generated bindings of the frozen `batpak:reactor@0.1.0` contract
//! (`wit/0.1.0/reactor.wit`, world `reactor-plugin`): the host keeps running
//! components built against it.

#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "reactor-plugin",
    path: "../../wit/0.1.0",
});
