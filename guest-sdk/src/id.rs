//! The 128-bit event id.

use crate::wit;
use std::fmt;
use std::str::FromStr;

/// A 128-bit event id.
///
/// Displays (and parses) as 32 lowercase hex digits, the high 64 bits first,
/// exactly as the host prints ids. Converts losslessly to and from the WIT
/// record [`wit::EventId`] (`hi`, `lo`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId(pub u128);

impl EventId {
    /// Builds an id from its two 64-bit halves.
    pub const fn from_parts(hi: u64, lo: u64) -> Self {
        EventId(((hi as u128) << 64) | lo as u128)
    }

    /// The high 64 bits.
    pub const fn hi(self) -> u64 {
        (self.0 >> 64) as u64
    }

    /// The low 64 bits.
    pub const fn lo(self) -> u64 {
        self.0 as u64
    }

    /// The id as the WIT record.
    pub const fn to_wit(self) -> wit::EventId {
        wit::EventId {
            hi: self.hi(),
            lo: self.lo(),
        }
    }
}

impl From<wit::EventId> for EventId {
    fn from(id: wit::EventId) -> Self {
        EventId::from_parts(id.hi, id.lo)
    }
}

impl From<EventId> for wit::EventId {
    fn from(id: EventId) -> Self {
        id.to_wit()
    }
}

impl From<u128> for EventId {
    fn from(v: u128) -> Self {
        EventId(v)
    }
}

impl From<EventId> for u128 {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.hi(), self.lo())
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

/// Why a string is not an [`EventId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEventIdError;

impl fmt::Display for ParseEventIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event id is exactly 32 hex digits")
    }
}

impl std::error::Error for ParseEventIdError {}

impl FromStr for EventId {
    type Err = ParseEventIdError;

    /// Parses exactly 32 hex digits (either case), high half first.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseEventIdError);
        }
        u128::from_str_radix(s, 16)
            .map(EventId)
            .map_err(|_| ParseEventIdError)
    }
}

impl serde::Serialize for EventId {
    /// Serializes as the 32-hex-digit string.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    /// Deserializes from the 32-hex-digit string.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_hi_then_lo() {
        let id = EventId::from_parts(1, 0xabc);
        assert_eq!(id.to_string(), "00000000000000010000000000000abc");
        assert_eq!(id.to_string().parse::<EventId>().unwrap(), id);
        let w: wit::EventId = id.into();
        assert_eq!((w.hi, w.lo), (1, 0xabc));
        assert_eq!(EventId::from(w), id);
    }
}
