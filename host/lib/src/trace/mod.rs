//! `trace`: an event's causal tree, built from the store or a running host,
//! drawn as text, DOT, SVG or JSON.

pub mod build;
