//! The host's log: human lines on stderr, tagged with who wrote them.
//!
//! Plugins log through the `host.log` import; the runtime logs failures,
//! retries and parking here too. Stdout stays reserved for JSON output.

use std::borrow::Cow;
use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

/// Severity of a log line, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Detail for debugging.
    Debug,
    /// Normal operation.
    #[default]
    Info,
    /// Something unexpected that was handled.
    Warn,
    /// Something failed.
    Error,
    /// Nothing is printed.
    Off,
}

impl LogLevel {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Off => "off",
        }
    }
}

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "off" | "none" => LogLevel::Off,
            other => {
                return Err(format!(
                    "unknown log level {other:?}; use trace, debug, info, warn, error or off"
                ))
            }
        })
    }
}

/// Longest message kept from one log call; a plugin cannot flood the host's
/// stderr with one giant line.
pub const MAX_LOG_LINE: usize = 4096;

/// Where log lines go instead of stderr: `(level, who, message)`, the
/// message already truncated and free of control characters.
pub type LogSink = Arc<dyn Fn(LogLevel, &str, &str) + Send + Sync>;

static SINK: RwLock<Option<LogSink>> = RwLock::new(None);

/// Routes every line that passes its level filter to `sink` instead of
/// stderr (`None` restores stderr). The CLI uses it to print log lines above
/// its live status display and to rate-limit them.
pub fn set_log_sink(sink: Option<LogSink>) {
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = sink;
}

/// Writes one line `[who] level: message` to stderr (or the sink set with
/// [`set_log_sink`]) when `level >= min`.
pub fn log(min: LogLevel, level: LogLevel, who: &str, message: &str) {
    if level < min || level == LogLevel::Off {
        return;
    }
    let msg = clean_line(message);
    let sink = SINK.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(sink) = sink {
        sink(level, who, &msg);
        return;
    }
    // One write per line: stderr is unbuffered, and `writeln!` on it makes
    // a system call per formatted piece.
    let line = format!("[{who}] {}: {msg}\n", level.as_str());
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `message` cut to [`MAX_LOG_LINE`] characters (marked when cut), with
/// control characters other than tab replaced by spaces: a plugin's line
/// must not forge other lines or drive the terminal. Borrowed when there is
/// nothing to change, as for nearly every line.
fn clean_line(message: &str) -> Cow<'_, str> {
    let plain = |c: char| !c.is_control() || c == '\t';
    if message.len() <= MAX_LOG_LINE && message.chars().all(plain) {
        return Cow::Borrowed(message);
    }
    let mut msg: String = message
        .chars()
        .take(MAX_LOG_LINE)
        .map(|c| if plain(c) { c } else { ' ' })
        .collect();
    if message.chars().nth(MAX_LOG_LINE).is_some() {
        msg.push_str(" [truncated]");
    }
    Cow::Owned(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_is_kept_as_it_is() {
        assert!(matches!(
            clean_line("shipping 2 x gizmo\tok"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn control_characters_become_spaces_and_long_lines_are_cut() {
        assert_eq!(
            clean_line("a\nfake [x] error: b\x1b[2J"),
            "a fake [x] error: b [2J"
        );
        let long = "é".repeat(MAX_LOG_LINE + 1);
        let cut = clean_line(&long);
        assert_eq!(cut.chars().filter(|&c| c == 'é').count(), MAX_LOG_LINE);
        assert!(cut.ends_with(" [truncated]"));
        assert_eq!(
            clean_line(&long[..MAX_LOG_LINE * 2]),
            &long[..MAX_LOG_LINE * 2]
        );
    }
}
