//! Plugins as the host loads them: the loader, the operator's per-plugin
//! config file, the compile cache options.

pub mod compile_cache;
pub mod loader;
pub mod plugin_config;
