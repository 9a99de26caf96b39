//! [`WorldInfo`]: what a component imports and exports and which WIT
//! package it targets, and the check that it can be a reactor for this host
//! (names only: these are the component's declared interface names).

use super::load_error::LoadError;
use super::wit::{WitVersion, OFFERED_PACKAGES, OFFERED_VERSIONS};
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

    /// The offered contract version this component targets, if any.
    pub fn version(&self) -> Option<WitVersion> {
        self.targets.as_deref().and_then(WitVersion::of_package)
    }

    /// The contract version this component can run as, or why it cannot be
    /// a reactor for this host.
    pub(crate) fn check(&self, path: &Path) -> Result<WitVersion, LoadError> {
        let path_buf = || path.to_path_buf();
        let version = match &self.targets {
            Some(t) => WitVersion::of_package(t).ok_or_else(|| LoadError::WrongWorld {
                path: path_buf(),
                found: t.clone(),
                expected: OFFERED_PACKAGES,
            })?,
            None => {
                return Err(LoadError::MissingExport {
                    path: path_buf(),
                    exports: self.exports.clone(),
                })
            }
        };
        if !self.exports.iter().any(|e| e == version.export_interface()) {
            return Err(LoadError::MissingExport {
                path: path_buf(),
                exports: self.exports.clone(),
            });
        }
        match self.not_offered(path) {
            Some(e) => Err(e),
            None => Ok(version),
        }
    }

    /// The first import the host does not offer, as a load error.
    fn not_offered(&self, path: &Path) -> Option<LoadError> {
        let path = path.to_path_buf();
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
    if OFFERED_VERSIONS.iter().any(|v| v.imports().contains(&name)) {
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
        assert!(offered("batpak:reactor/host@0.1.0"));
        assert!(offered("batpak:reactor/types@0.2.0"));
        assert!(!offered("batpak:reactor/host@0.3.0"));
        assert!(!offered("wasi:http/outgoing-handler@0.2.0"));
        assert!(!offered("wasi:io/streams@0.3.0"));
        assert!(!offered("acme:db/query@1.0.0"));
    }
}
