//! How the command line prints an error: the chain of causes, each store
//! error followed by the advice about this program's own commands and
//! options that the store (a library) leaves out. The advice is chosen by
//! the error's variant, never by its text.

use batpak_store::StoreError;

/// The error and its causes, `outer: inner: …` like `{:#}`, with this
/// program's advice after each store error that has some.
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for (i, cause) in e.chain().enumerate() {
        if i > 0 {
            out.push_str(": ");
        }
        match cause.downcast_ref::<StoreError>() {
            Some(s) => out.push_str(&store_error_text(s)),
            None => out.push_str(
                &crate::cluster_error_text::advice(cause).unwrap_or_else(|| cause.to_string()),
            ),
        }
    }
    out
}

/// A store error as the command line says it.
fn store_error_text(e: &StoreError) -> String {
    match e {
        StoreError::Locked { .. } => format!("{e}; stop it or pass another --data directory"),
        StoreError::Corrupt {
            segment,
            offset,
            reason,
        } => format!(
            "corrupt store: segment {segment:08} offset {offset}: {reason}. Nothing was changed; run `batpak-host verify` for a full report and restore the damaged segment from a backup"
        ),
        StoreError::NoStore { .. } => {
            format!("{e}; append an event first or pass the right --data")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    /// The advice follows the store error wherever it sits in the chain,
    /// and the rest prints as `{:#}` would.
    #[test]
    fn store_errors_get_the_command_line_advice() {
        let corrupt = StoreError::Corrupt {
            segment: 3,
            offset: 77,
            reason: "bad crc".into(),
        };
        let e = Err::<(), _>(corrupt)
            .context("opening the store in d")
            .unwrap_err();
        assert_eq!(
            error_text(&e),
            "opening the store in d: corrupt store: segment 00000003 offset 77: bad crc. Nothing was changed; run `batpak-host verify` for a full report and restore the damaged segment from a backup"
        );
        let none = anyhow::Error::new(StoreError::NoStore { dir: "d".into() });
        assert_eq!(
            error_text(&none),
            "no store in d (no segments directory); append an event first or pass the right --data"
        );
        let other = anyhow::anyhow!("plain").context("outer");
        assert_eq!(error_text(&other), format!("{other:#}"));
    }
}
