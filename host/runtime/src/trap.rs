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
pub(crate) fn classify(
    err: wasmtime::Error,
    stderr: Option<String>,
    refused: Option<BudgetExceeded>,
    limits: &CallLimits,
) -> ReactFailure {
    let trap = err.downcast_ref::<wasmtime::Trap>().copied();
    let said = stderr
        .map(|s| format!(" (the plugin wrote to stderr: {s})"))
        .unwrap_or_default();
    if trap == Some(wasmtime::Trap::Interrupt) {
        return ReactFailure::new(
            FailureKind::Timeout,
            format!(
                "the call ran longer than its {} ms limit and was interrupted{}",
                limits.timeout.as_millis(),
                backtrace(&err)
            ),
        );
    }
    let refused = refused.or_else(|| err.downcast_ref::<BudgetExceeded>().copied());
    if refused.is_some() || trap == Some(wasmtime::Trap::AllocationTooLarge) {
        let what = refused.map(|r| format!(": {r}")).unwrap_or_default();
        return ReactFailure::new(
            FailureKind::OutOfMemory,
            format!(
                "the plugin tried to use more than its memory budget of {} MiB (all memories and tables together){what}{}{said}",
                limits.memory_bytes >> 20,
                backtrace(&err)
            ),
        );
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
    ReactFailure::new(
        FailureKind::Trap,
        format!("{head}{}{said}", backtrace(&err)),
    )
}

/// ` (wasm backtrace: f <- g <- h)`: the innermost frames, by function name
/// when the component keeps its names, else by index.
fn backtrace(err: &wasmtime::Error) -> String {
    let Some(bt) = err.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return String::new();
    };
    let frames = bt.frames();
    if frames.is_empty() {
        return String::new();
    }
    let mut out = String::from(" (wasm backtrace: ");
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
    out.push(')');
    out
}
