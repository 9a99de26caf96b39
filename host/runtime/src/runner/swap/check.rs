//! The rules a new version must meet to continue the running one's
//! checkpoint.

use super::refusal::SwapRefusal;
use crate::descriptor::Descriptor;
use batpak_store::Region;

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

#[cfg(test)]
mod tests {
    use super::*;
    use batpak_store::ReactorCanal;

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
