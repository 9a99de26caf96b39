//! The WIT contract versions this host offers, side by side, and the names
//! they define. `0.1.0` is frozen (`wit/0.1.0/reactor.wit`); `0.2.0` is
//! current (`wit/reactor.wit`). Both texts are compiled into the host, so
//! `batpak-host wit` can print the contract a plugin author needs.

pub(crate) use super::wit_v1::batpak::reactor::types;

/// One version of the `batpak:reactor` WIT package the host offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WitVersion {
    /// `batpak:reactor@0.1.0`: batches and proposals as WIT records (frozen).
    V0_1_0,
    /// `batpak:reactor@0.2.0`: batches and proposals as flat byte buffers
    /// (current).
    V0_2_0,
}

/// Every version this host offers, oldest first.
pub const OFFERED_VERSIONS: [WitVersion; 2] = [WitVersion::V0_1_0, WitVersion::V0_2_0];

/// The version `batpak-host new` and the guest SDK build against.
pub const CURRENT_VERSION: WitVersion = WitVersion::V0_2_0;

/// The WIT package this host offers as current (`batpak:reactor@0.2.0`).
pub const WIT_PACKAGE: &str = "batpak:reactor@0.2.0";
/// The world a current plugin targets.
pub const WIT_WORLD: &str = "batpak:reactor/reactor-plugin@0.2.0";
/// The interface a current plugin exports.
pub const EXPORT_INTERFACE: &str = "batpak:reactor/reactor@0.2.0";
/// The interface the host offers as imports (current version).
pub const HOST_INTERFACE: &str = "batpak:reactor/host@0.2.0";

/// Every offered package, comma-separated (for messages).
pub(crate) const OFFERED_PACKAGES: &str = "batpak:reactor@0.1.0, batpak:reactor@0.2.0";

impl WitVersion {
    /// The semantic version, e.g. `0.2.0`.
    pub fn semver(self) -> &'static str {
        match self {
            WitVersion::V0_1_0 => "0.1.0",
            WitVersion::V0_2_0 => "0.2.0",
        }
    }

    /// The package name with version, e.g. `batpak:reactor@0.2.0`.
    pub fn package(self) -> &'static str {
        match self {
            WitVersion::V0_1_0 => "batpak:reactor@0.1.0",
            WitVersion::V0_2_0 => "batpak:reactor@0.2.0",
        }
    }

    /// The world a plugin of this version targets.
    pub fn world(self) -> &'static str {
        match self {
            WitVersion::V0_1_0 => "batpak:reactor/reactor-plugin@0.1.0",
            WitVersion::V0_2_0 => "batpak:reactor/reactor-plugin@0.2.0",
        }
    }

    /// The interface a plugin of this version exports.
    pub fn export_interface(self) -> &'static str {
        match self {
            WitVersion::V0_1_0 => "batpak:reactor/reactor@0.1.0",
            WitVersion::V0_2_0 => "batpak:reactor/reactor@0.2.0",
        }
    }

    /// The interfaces the host offers a plugin of this version as imports.
    pub fn imports(self) -> [&'static str; 2] {
        match self {
            WitVersion::V0_1_0 => ["batpak:reactor/host@0.1.0", "batpak:reactor/types@0.1.0"],
            WitVersion::V0_2_0 => ["batpak:reactor/host@0.2.0", "batpak:reactor/types@0.2.0"],
        }
    }

    /// The full WIT text of this version, as compiled into the host.
    pub fn wit_text(self) -> &'static str {
        match self {
            WitVersion::V0_1_0 => include_str!("../../../wit/0.1.0/reactor.wit"),
            WitVersion::V0_2_0 => include_str!("../../../wit/reactor.wit"),
        }
    }

    /// Whether this is the current version (what new plugins target).
    pub fn is_current(self) -> bool {
        self == CURRENT_VERSION
    }

    /// The offered version named by `text`: `0.2.0`, `@0.2.0` or
    /// `batpak:reactor@0.2.0`.
    pub fn parse(text: &str) -> Option<WitVersion> {
        let v = text.trim();
        let v = v.strip_prefix("batpak:reactor").unwrap_or(v);
        let v = v.strip_prefix('@').unwrap_or(v);
        OFFERED_VERSIONS.into_iter().find(|o| o.semver() == v)
    }

    /// The offered version whose package is `package`
    /// (`batpak:reactor@<semver>`).
    pub fn of_package(package: &str) -> Option<WitVersion> {
        OFFERED_VERSIONS
            .into_iter()
            .find(|o| o.package() == package)
    }
}

impl std::fmt::Display for WitVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.package())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_in_every_spelling_and_only_offered_ones() {
        for v in OFFERED_VERSIONS {
            assert_eq!(WitVersion::parse(v.semver()), Some(v));
            assert_eq!(WitVersion::parse(&format!("@{}", v.semver())), Some(v));
            assert_eq!(WitVersion::parse(v.package()), Some(v));
            assert!(v.wit_text().contains(&format!("package {};", v.package())));
            assert!(OFFERED_PACKAGES.contains(v.package()));
        }
        assert_eq!(WitVersion::parse("0.3.0"), None);
        assert_eq!(CURRENT_VERSION.package(), WIT_PACKAGE);
    }
}
