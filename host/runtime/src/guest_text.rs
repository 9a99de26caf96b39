//! Bounds on text a guest hands the host: its `react-error` and `init`
//! error messages are cut to [`MAX_GUEST_ERROR_BYTES`] the moment they are
//! lifted, before they reach the log, a park record or a load error, so a
//! plugin cannot make the host store or print megabytes per failure.

/// Most bytes of a guest's error message the host keeps (`react-error`'s
/// `message`, `init`'s error). The rest is cut and the cut is named:
/// `… (N bytes cut)`.
pub const MAX_GUEST_ERROR_BYTES: usize = 4096;

/// `text` cut to at most `max` bytes on a character boundary, followed by
/// `… (N bytes cut)` when anything was cut; only the kept part is copied.
pub(crate) fn clip_str(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}

/// A guest's error message, bounded (see [`MAX_GUEST_ERROR_BYTES`]).
pub(crate) fn clip_guest_error(message: String) -> String {
    if message.len() <= MAX_GUEST_ERROR_BYTES {
        return message;
    }
    clip_str(&message, MAX_GUEST_ERROR_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_char_boundary_and_say_how_much() {
        assert_eq!(clip_guest_error("short".into()), "short");
        let exact = "x".repeat(MAX_GUEST_ERROR_BYTES);
        assert_eq!(clip_guest_error(exact.clone()), exact);
        let long = "y".repeat(8 << 20);
        let cut = clip_guest_error(long);
        assert!(cut.len() < MAX_GUEST_ERROR_BYTES + 40, "{}", cut.len());
        assert!(cut.ends_with(&format!(
            "… ({} bytes cut)",
            (8 << 20) - MAX_GUEST_ERROR_BYTES
        )));
        // A multi-byte character across the limit is not split.
        let s = format!("{}é", "a".repeat(9));
        assert_eq!(clip_str(&s, 10), "aaaaaaaaa… (2 bytes cut)");
    }
}
