//! The rules a new version must meet to continue the running one's
//! checkpoint, and the refusal for a file that does not load.

use super::refusal::SwapRefusal;
use crate::descriptor::Descriptor;
use crate::wit::{WitVersion, OFFERED_PACKAGES};
use batpak_store::Region;
use std::path::Path;

/// Checks that `new` can continue `old`'s checkpoint: same name, same
/// region, same canal. (The WIT version was checked when `new` was loaded.)
///
/// # Errors
/// The first rule broken.
pub fn check_swap(old: &Descriptor, new: &Descriptor) -> Result<(), SwapRefusal> {
    if old.name != new.name {
        return Err(SwapRefusal::NameMismatch {
            running: old.name.clone(),
            offered: new.name.clone(),
        });
    }
    // The checkpoint is keyed by the fingerprint, which ignores the order
    // of the kinds: compare what the cursor compares.
    if old.region.fingerprint() != new.region.fingerprint() {
        return Err(SwapRefusal::RegionChanged {
            name: old.name.clone(),
            running: describe_region(&old.region),
            offered: describe_region(&new.region),
        });
    }
    if old.canal != new.canal {
        return Err(SwapRefusal::CanalChanged {
            name: old.name.clone(),
            running: format!("{:?}", old.canal),
            offered: format!("{:?}", new.canal),
        });
    }
    Ok(())
}

/// A region in words, for messages: `kinds "a.b", "c.d", entity prefix
/// "order:", scope "shop"`, or `every non-system kind`.
pub fn describe_region(r: &Region) -> String {
    let mut parts = Vec::new();
    if r.kinds.is_empty() {
        parts.push("every non-system kind".to_string());
    } else {
        let kinds: Vec<String> = r.kinds.iter().map(|k| format!("{k:?}")).collect();
        parts.push(format!(
            "kind{} {}",
            if kinds.len() == 1 { "" } else { "s" },
            kinds.join(", ")
        ));
    }
    if let Some(p) = &r.entity_prefix {
        parts.push(format!("entity prefix {p:?}"));
    }
    if let Some(s) = &r.scope {
        parts.push(format!("scope {s:?}"));
    }
    parts.join(", ")
}

/// The refusal for a file that did not load: [`SwapRefusal::UnsupportedWit`]
/// when the file names another version of the reactor WIT package in its
/// imports or exports, [`SwapRefusal::Unloadable`] with `reason` otherwise.
/// Decided from the file's own bytes (the interface names a component
/// carries), not from the load error's text.
pub fn unloadable(path: &Path, reason: String) -> SwapRefusal {
    let found = std::fs::read(path)
        .ok()
        .and_then(|bytes| targeted_wit(&bytes));
    match found {
        Some(found) if WitVersion::of_package(&found).is_none() => SwapRefusal::UnsupportedWit {
            path: path.to_path_buf(),
            found,
            supported: OFFERED_PACKAGES.to_string(),
        },
        _ => SwapRefusal::Unloadable {
            path: path.to_path_buf(),
            reason,
        },
    }
}

/// `batpak:reactor@<version>` as named by the first `batpak:reactor/...@`
/// interface name in a component (binary or text).
fn targeted_wit(bytes: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = b"batpak:reactor/";
    let at = bytes.windows(NEEDLE.len()).position(|w| w == NEEDLE)?;
    let rest = &bytes[at + NEEDLE.len()..];
    let name_end = rest.iter().position(|&b| b == b'@')?;
    if name_end > 64
        || !rest[..name_end]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    {
        return None;
    }
    let version: Vec<u8> = rest[name_end + 1..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'.' || **b == b'-' || **b == b'+')
        .copied()
        .take(64)
        .collect();
    if version.is_empty() {
        return None;
    }
    Some(format!(
        "batpak:reactor@{}",
        String::from_utf8_lossy(&version)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use batpak_store::ReactorCanal;

    #[test]
    fn the_targeted_wit_version_is_read_from_the_interface_names() {
        assert_eq!(
            targeted_wit(b"..\x1abatpak:reactor/reactor@0.9.0\x00.."),
            Some("batpak:reactor@0.9.0".into())
        );
        assert_eq!(
            targeted_wit(b"(import \"batpak:reactor/types@0.1.0\" (instance"),
            Some("batpak:reactor@0.1.0".to_string())
        );
        assert_eq!(targeted_wit(b"\0asm garbage"), None);
    }

    #[test]
    fn swap_checks_name_region_and_canal() {
        let old = Descriptor::new("inv", "1");
        let mut new = Descriptor::new("inv", "2");
        new.max_batch = 7;
        new.emits = vec!["a.b".into()];
        assert_eq!(check_swap(&old, &new), Ok(()));
        let other = Descriptor::new("other", "2");
        assert_eq!(
            check_swap(&old, &other).unwrap_err().code(),
            "name-mismatch"
        );
        let mut region = Descriptor::new("inv", "2");
        region.region = Region::all().kinds(["x.y"]);
        let refusal = check_swap(&old, &region).unwrap_err();
        assert_eq!(refusal.code(), "region-changed");
        // Readable regions and the fix, not Rust's Debug or a rename.
        let msg = refusal.to_string();
        assert!(
            msg.contains("reads kind \"x.y\", the running one every non-system kind")
                && msg.contains("batpak-host reset inv --to current --plugin NEW.wasm")
                && !msg.contains("Region {"),
            "{msg}"
        );
        // The order of the kinds is not a change (the checkpoint ignores it).
        let (mut ab, mut ba) = (Descriptor::new("inv", "1"), Descriptor::new("inv", "2"));
        ab.region = Region::all().kinds(["a.b", "c.d"]);
        ba.region = Region::all().kinds(["c.d", "a.b"]);
        assert_eq!(check_swap(&ab, &ba), Ok(()));
        let mut canal = Descriptor::new("inv", "2");
        canal.canal = ReactorCanal::LossySubscription;
        assert_eq!(
            check_swap(&old, &canal).unwrap_err().code(),
            "canal-changed"
        );
    }
}
