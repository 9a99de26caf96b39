//! The [`Descriptor`]: what a reactor says about itself, and the rules it
//! must follow (name, region, emitted kinds).

use batpak_store::{is_system_kind, validate_kind};
use batpak_store::{ReactorCanal, Region};

/// Longest reactor name.
pub const MAX_REACTOR_NAME_LEN: usize = 64;

/// What a reactor says about itself (the WIT `descriptor`, validated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Unique name, 1 to 64 of `a-z 0-9 - _`; keys the reactor's checkpoint.
    pub name: String,
    /// Free-text version (recorded in lineage and denials).
    pub version: String,
    /// Which events it consumes.
    pub region: Region,
    /// How they are delivered.
    pub canal: ReactorCanal,
    /// Every kind it may propose.
    pub emits: Vec<String>,
    /// Largest batch it wants; 0 lets the host choose.
    pub max_batch: u32,
}

impl Descriptor {
    /// A descriptor consuming every non-system kind through a cursor,
    /// emitting nothing; refine it with the public fields.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Descriptor {
            name: name.into(),
            version: version.into(),
            region: Region::all(),
            canal: ReactorCanal::CursorGuaranteed,
            emits: Vec::new(),
            max_batch: 0,
        }
    }

    /// Checks the name, the region and the emitted kinds.
    ///
    /// # Errors
    /// A message naming the first broken rule and how to fix it.
    pub fn validate(&self) -> Result<(), String> {
        validate_reactor_name(&self.name)?;
        if self.version.is_empty()
            || self.version.len() > 128
            || self.version.chars().any(char::is_control)
        {
            return Err(format!(
                "reactor {:?} has an invalid version {:?}: it must be 1 to 128 characters without control characters",
                self.name, self.version
            ));
        }
        for k in &self.region.kinds {
            validate_kind(k).map_err(|e| format!("region of reactor {:?}: {e}", self.name))?;
            if is_system_kind(k) {
                return Err(format!(
                    "region of reactor {:?} lists the reserved kind {k:?}: kinds starting with \"batpak.\" are host records, not reactor input",
                    self.name
                ));
            }
        }
        if let Some(p) = &self.region.entity_prefix {
            if p.is_empty()
                || p.len() > batpak_store::MAX_NAME_LEN
                || p.chars().any(char::is_control)
            {
                return Err(format!(
                    "region of reactor {:?} has an invalid entity prefix {p:?}: 1 to {} bytes, no control characters (leave it unset to match every entity)",
                    self.name,
                    batpak_store::MAX_NAME_LEN
                ));
            }
        }
        if let Some(s) = &self.region.scope {
            batpak_store::validate_name("scope", s, batpak_store::MAX_NAME_LEN)
                .map_err(|e| format!("region of reactor {:?}: {e}", self.name))?;
        }
        for k in &self.emits {
            validate_kind(k).map_err(|e| format!("emits of reactor {:?}: {e}", self.name))?;
            if is_system_kind(k) {
                return Err(format!(
                    "reactor {:?} declares that it emits {k:?}, but kinds starting with \"batpak.\" are written only by the host; remove it from emits",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

/// Checks a reactor name: 1 to 64 of `a-z 0-9 - _`.
///
/// # Errors
/// A message saying what is wrong.
pub fn validate_reactor_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_REACTOR_NAME_LEN {
        return Err(format!(
            "invalid reactor name {:?}: it must be 1 to {MAX_REACTOR_NAME_LEN} characters of a-z, 0-9, '-' and '_'",
            name.chars().take(80).collect::<String>()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "invalid reactor name {name:?}: {c:?} is not allowed; use only a-z, 0-9, '-' and '_'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_descriptors_are_checked() {
        assert!(validate_reactor_name("low-stock_2").is_ok());
        assert!(validate_reactor_name("").is_err());
        assert!(validate_reactor_name("Low").is_err());
        assert!(validate_reactor_name("a.b").is_err());
        assert!(validate_reactor_name(&"a".repeat(65)).is_err());
        let mut d = Descriptor::new("inv", "1");
        d.emits = vec!["x.y".into()];
        assert!(d.validate().is_ok());
        d.emits.push("batpak.fake".into());
        assert!(d.validate().unwrap_err().contains("batpak."));
        d.emits.pop();
        d.region.kinds = vec!["has space".into()];
        assert!(d.validate().is_err());
    }
}
