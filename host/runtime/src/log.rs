//! The host's log: human lines on stderr, tagged with who wrote them.
//!
//! Plugins log through the `host.log` import; the runtime logs failures,
//! retries and parking here too. Stdout stays reserved for JSON output.

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
    let mut msg: String = message.chars().take(MAX_LOG_LINE).collect();
    if msg.len() < message.len() {
        msg.push_str(" [truncated]");
    }
    // Control characters from a plugin must not forge other lines or drive
    // the terminal.
    let msg: String = msg
        .chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect();
    let sink = SINK.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(sink) = sink {
        sink(level, who, &msg);
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "[{who}] {}: {msg}", level.as_str());
}
