//! [`WorldInfo`]: what a component imports and exports and which WIT
//! package it targets, and the check that it can be a reactor for this host
//! (names only: these are the component's declared interface names).

use super::load_error::{LoadError, EXPECTED_PACKAGE};
use super::wit::{EXPORT_INTERFACE, HOST_INTERFACE, TYPES_INTERFACE};
use std::path::Path;
use wasmtime::component::Component;

/// WASI 0.2 packages the host links (with nothing granted).
const OFFERED_WASI: [&str; 6] = [
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

/// What a component imports and exports, and which WIT package it targets.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorldInfo {
    /// Import names (interfaces), in the component's order.
    pub imports: Vec<String>,
    /// Export names.
    pub exports: Vec<String>,
    /// `batpak:reactor@<version>` as found in its exports, if any.
    pub targets: Option<String>,
}

impl WorldInfo {
    pub(crate) fn of(component: &Component, engine: &wasmtime::Engine) -> WorldInfo {
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let targets = exports
            .iter()
            .chain(imports.iter())
            .find_map(|n| n.strip_prefix("batpak:reactor/"))
            .and_then(|rest| rest.split_once('@'))
            .map(|(_, v)| format!("batpak:reactor@{v}"));
        WorldInfo {
            imports,
            exports,
            targets,
        }
    }

    /// Why this component cannot be a reactor for this host, if it cannot.
    pub(crate) fn mismatch(&self, path: &Path) -> Option<LoadError> {
        let path = path.to_path_buf();
        if let Some(t) = &self.targets {
            if t != EXPECTED_PACKAGE {
                return Some(LoadError::WrongWorld {
                    path,
                    found: t.clone(),
                    expected: EXPECTED_PACKAGE,
                });
            }
        }
        if !self.exports.iter().any(|e| e == EXPORT_INTERFACE) {
            return Some(LoadError::MissingExport {
                path,
                exports: self.exports.clone(),
            });
        }
        let missing = self.imports.iter().find(|i| !offered(i))?;
        let hint = if missing.starts_with("wasi:http/") {
            ". Plugins get no network; with componentize-js build with `-d http fetch-event`, otherwise remove the HTTP dependency".to_string()
        } else if missing.starts_with("wasi:") {
            ". The host links WASI 0.2 (cli, clocks, filesystem, io, random, sockets); build against WASI 0.2".to_string()
        } else {
            String::new()
        };
        Some(LoadError::ImportNotOffered {
            path,
            name: missing.clone(),
            hint,
        })
    }
}

/// Whether the host's linker defines the import `name`.
fn offered(name: &str) -> bool {
    if name == HOST_INTERFACE || name == TYPES_INTERFACE {
        return true;
    }
    OFFERED_WASI.iter().any(|p| name.starts_with(p))
        && name
            .rsplit_once('@')
            .is_some_and(|(_, v)| v.starts_with("0.2."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_checked_by_package_and_version() {
        assert!(offered("wasi:io/streams@0.2.3"));
        assert!(offered(HOST_INTERFACE));
        assert!(!offered("wasi:http/outgoing-handler@0.2.0"));
        assert!(!offered("wasi:io/streams@0.3.0"));
        assert!(!offered("acme:db/query@1.0.0"));
    }
}
