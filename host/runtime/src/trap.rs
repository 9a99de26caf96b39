//! Classifying a failed guest call: by wasmtime's trap code and by the
//! memory budget's own record of a refused growth — never by the text of an
//! error, which changes between wasmtime releases.

use super::failure::{FailureKind, ReactFailure};
use super::guest_text::clip_str;
use super::limiter::BudgetExceeded;
use std::fmt::Write;
use std::time::Duration;

/// Most wasm frames named in a trap report.
const BACKTRACE_FRAMES: usize = 12;
/// Most bytes of one frame's function name in a trap report.
const MAX_FRAME_NAME: usize = 256;

/// The limits a call ran under (for the messages).
pub(crate) struct CallLimits {
    pub(crate) timeout: Duration,
    pub(crate) memory_bytes: usize,
}

/// Turns a wasmtime error from a guest call into a failure with a cause a
/// human can act on. `stderr` is what the guest wrote to stderr during the
/// call; `refused` is the budget's record of a refused growth, if any.
///
/// The failure's message is one line, the guest's own words first (the
/// last line of an exception or panic it printed); the host's description
/// of the trap, the wasm backtrace and the guest's stderr go into its
/// detail.
pub(crate) fn classify(
    err: wasmtime::Error,
    stderr: Option<String>,
    refused: Option<BudgetExceeded>,
    limits: &CallLimits,
) -> ReactFailure {
    let trap = err.downcast_ref::<wasmtime::Trap>().copied();
    let said = stderr
        .as_deref()
        .map(|s| format!("the plugin wrote to stderr:\n{s}"));
    let detail = |head: Option<String>| -> String {
        [head, backtrace(&err), said.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ")
    };
    if trap == Some(wasmtime::Trap::Interrupt) {
        return ReactFailure::new(
            FailureKind::Timeout,
            format!(
                "the call ran longer than its {} ms limit and was interrupted",
                limits.timeout.as_millis()
            ),
        )
        .with_detail(detail(None));
    }
    let refused = refused.or_else(|| err.downcast_ref::<BudgetExceeded>().copied());
    if refused.is_some() || trap == Some(wasmtime::Trap::AllocationTooLarge) {
        let what = refused.map(|r| format!(": {r}")).unwrap_or_default();
        return ReactFailure::new(
            FailureKind::OutOfMemory,
            format!(
                "the plugin tried to use more than its memory budget of {} MiB (all memories and tables together){what}",
                limits.memory_bytes >> 20
            ),
        )
        .with_detail(detail(None));
    }
    let head = match trap {
        Some(t) => t.to_string(),
        // A host import that failed (e.g. past the lift budget) sits under
        // the wasm backtrace context: name the failure itself.
        None if err.downcast_ref::<wasmtime::WasmBacktrace>().is_some() => {
            err.root_cause().to_string()
        }
        None => err
            .chain()
            .next()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "unknown failure".into()),
    };
    match stderr.as_deref().and_then(guest_message) {
        Some(own) => ReactFailure::new(FailureKind::Trap, own).with_detail(detail(Some(head))),
        None => ReactFailure::new(FailureKind::Trap, head).with_detail(detail(None)),
    }
}

/// The guest's own message in what it wrote to stderr before trapping: the
/// last line that is not indented — an exception's `ValueError: ...` after
/// Python's traceback, a Rust panic's message after its location, a
/// JavaScript `Error: ...` before its indented stack frames.
fn guest_message(stderr: &str) -> Option<String> {
    let own = stderr
        .lines()
        .rev()
        .map(str::trim_end)
        .find(|l| !l.is_empty() && !l.starts_with([' ', '\t']) && *l != "…")?;
    Some(own.trim_start_matches('…').trim().to_string()).filter(|s| !s.is_empty())
}

/// `wasm backtrace: f <- g <- h`: the innermost frames, by function name
/// when the component keeps its names, else by index.
fn backtrace(err: &wasmtime::Error) -> Option<String> {
    let bt = err.downcast_ref::<wasmtime::WasmBacktrace>()?;
    let frames = bt.frames();
    if frames.is_empty() {
        return None;
    }
    let mut out = String::from("wasm backtrace: ");
    for (i, f) in frames.iter().take(BACKTRACE_FRAMES).enumerate() {
        if i > 0 {
            out.push_str(" <- ");
        }
        match f.func_name() {
            // A name comes from the plugin's own name section: cut it, or
            // one frame could carry megabytes into the park record.
            Some(n) => out.push_str(&clip_str(n, MAX_FRAME_NAME)),
            None => {
                let _ = write!(out, "func[{}]", f.func_index());
            }
        }
    }
    if frames.len() > BACKTRACE_FRAMES {
        let _ = write!(out, " <- … {} more", frames.len() - BACKTRACE_FRAMES);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::guest_message;

    #[test]
    fn the_guest_message_is_the_last_unindented_line() {
        let py = "Traceback (most recent call last):\n  File \"app.py\", line 7, in parse\n    raise ValueError(\"bad qty\")\nValueError: bad qty";
        assert_eq!(guest_message(py).as_deref(), Some("ValueError: bad qty"));
        let rust = "\nthread '<unnamed>' panicked at src/lib.rs:9:5:\nhostile: trap requested";
        assert_eq!(
            guest_message(rust).as_deref(),
            Some("hostile: trap requested")
        );
        let js = "Error: bad qty\n    at react (app.js:3)\n    at <anonymous>";
        assert_eq!(guest_message(js).as_deref(), Some("Error: bad qty"));
        assert_eq!(guest_message("   \n\t x"), None);
    }
}
