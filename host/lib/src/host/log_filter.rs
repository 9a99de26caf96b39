//! Log lines of plugins and of the runtime while a host runs: handed to the
//! embedder's [`Console`] (the CLI prints them above its live status lines) and rate-limited per
//! source, so a plugin that logs 20k lines cannot bury the status or the
//! other reactors' messages. Levels are filtered before this, by the
//! runtime (`--log-level`, or a reactor's own `log_level` in
//! `--plugin-config`).

use batpak_runtime::LogLevel;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The window over which `--log-rate` counts.
const WINDOW: Duration = Duration::from_secs(1);
/// Sources tracked at most (each reactor has three: its log, its stdout and
/// its stderr, plus the runtime's lines about it).
const MAX_SOURCES: usize = 4096;

#[derive(Debug)]
struct Window {
    started: Instant,
    printed: u32,
    suppressed: u64,
    /// Highest level among the suppressed lines.
    worst: LogLevel,
}

/// Where the host's human-readable lines go (plugin and runtime logs, the
/// HTTP address): a callback, so an embedder decides (the CLI prints them
/// on stderr, above its live status). Cheap to clone.
#[derive(Clone)]
pub struct Console(Arc<dyn Fn(&str) + Send + Sync>);

impl Console {
    /// A console that hands each line to `f`.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Console {
        Console(Arc::new(f))
    }

    /// A console that prints each line on stderr.
    pub fn stderr() -> Console {
        Console::new(|line| eprintln!("{line}"))
    }

    /// A console that keeps its lines for a test to read.
    #[cfg(test)]
    pub(crate) fn capture() -> (Console, Arc<Mutex<Vec<String>>>) {
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = lines.clone();
        (
            Console::new(move |l| kept.lock().push(l.to_string())),
            lines,
        )
    }

    /// Hands `line` on.
    pub fn println(&self, line: &str) {
        (self.0)(line)
    }
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

/// Per-source rate limit: at most `per_second` lines of one source in any
/// one-second window; the rest are counted and reported in one line when
/// the window ends.
pub struct LogFilter {
    console: Console,
    per_second: u32,
    sources: Mutex<HashMap<String, Window>>,
}

impl LogFilter {
    /// `per_second == 0` prints everything.
    pub fn new(console: Console, per_second: u32) -> Arc<LogFilter> {
        Arc::new(LogFilter {
            console,
            per_second,
            sources: Mutex::new(HashMap::new()),
        })
    }

    /// Makes this filter the runtime's log sink until the guard drops.
    pub fn install(self: &Arc<Self>) -> SinkGuard {
        let me = self.clone();
        batpak_runtime::set_log_sink(Some(Arc::new(move |level, who, msg| {
            me.log(Instant::now(), level, who, msg)
        })));
        SinkGuard(self.clone())
    }

    /// Prints (or counts) one line from `who`.
    pub fn log(&self, now: Instant, level: LogLevel, who: &str, msg: &str) {
        let line = || format!("[{who}] {}: {msg}", level.as_str());
        if self.per_second == 0 {
            self.console.println(&line());
            return;
        }
        let mut notice = None;
        let print = {
            let mut sources = self.sources.lock();
            // Looked up before inserting: a line over the budget (most of a
            // chatty plugin's) costs no allocation.
            let w = match sources.get_mut(who) {
                Some(w) => w,
                None => {
                    if sources.len() >= MAX_SOURCES {
                        sources.retain(|_, w| now.duration_since(w.started) < WINDOW);
                    }
                    sources.entry(who.to_string()).or_insert(Window {
                        started: now,
                        printed: 0,
                        suppressed: 0,
                        worst: LogLevel::Trace,
                    })
                }
            };
            if now.duration_since(w.started) >= WINDOW {
                notice = take_notice(who, w, self.per_second);
                *w = Window {
                    started: now,
                    printed: 0,
                    suppressed: 0,
                    worst: LogLevel::Trace,
                };
            }
            if w.printed < self.per_second {
                w.printed += 1;
                true
            } else {
                w.suppressed += 1;
                w.worst = w.worst.max(level);
                false
            }
        };
        if let Some(n) = notice {
            self.console.println(&n);
        }
        if print {
            self.console.println(&line());
        }
    }

    /// Reports the lines suppressed in windows that have ended (call it
    /// now and then: a source that went quiet reports nothing otherwise).
    pub fn flush(&self, now: Instant, all: bool) {
        let notices: Vec<String> = {
            let mut sources = self.sources.lock();
            let mut out = Vec::new();
            sources.retain(|who, w| {
                if all || now.duration_since(w.started) >= WINDOW {
                    out.extend(take_notice(who, w, self.per_second));
                    false
                } else {
                    true
                }
            });
            out
        };
        for n in notices {
            self.console.println(&n);
        }
    }
}

fn take_notice(who: &str, w: &mut Window, per_second: u32) -> Option<String> {
    (w.suppressed > 0).then(|| {
        let n = std::mem::take(&mut w.suppressed);
        format!(
            "[{who}] {}: {n} more log line(s) suppressed (over --log-rate {per_second}/s; the worst was {})",
            LogLevel::Warn.as_str(),
            w.worst.as_str()
        )
    })
}

/// Restores stderr as the runtime's log destination (and reports what was
/// still suppressed) when dropped.
pub struct SinkGuard(Arc<LogFilter>);

impl Drop for SinkGuard {
    fn drop(&mut self) {
        batpak_runtime::set_log_sink(None);
        self.0.flush(Instant::now(), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gets_its_own_budget_and_the_excess_is_counted() {
        let (console, lines) = Console::capture();
        let filter = LogFilter::new(console, 3);
        let t0 = Instant::now();
        for i in 0..10 {
            filter.log(t0, LogLevel::Info, "chatty", &format!("line {i}"));
        }
        filter.log(t0, LogLevel::Error, "chatty", "the worst");
        filter.log(t0, LogLevel::Warn, "quiet", "still heard");
        assert_eq!(
            *lines.lock(),
            [
                "[chatty] info: line 0",
                "[chatty] info: line 1",
                "[chatty] info: line 2",
                "[quiet] warn: still heard",
            ]
        );
        lines.lock().clear();
        // Nothing is reported before the window ends…
        filter.flush(t0 + Duration::from_millis(500), false);
        assert!(lines.lock().is_empty());
        // …then the count, with the worst level held back.
        filter.flush(t0 + WINDOW, false);
        let got = lines.lock().clone();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("[chatty] warn: 8 more log line(s) suppressed")
                && got[0].contains("the worst was error"),
            "{got:?}"
        );
        // A new window has a new budget.
        lines.lock().clear();
        filter.log(t0 + WINDOW * 2, LogLevel::Info, "chatty", "again");
        assert_eq!(*lines.lock(), ["[chatty] info: again"]);
    }

    #[test]
    fn zero_means_unlimited() {
        let (console, lines) = Console::capture();
        let filter = LogFilter::new(console, 0);
        let t0 = Instant::now();
        for i in 0..1000 {
            filter.log(t0, LogLevel::Debug, "p", &i.to_string());
        }
        filter.flush(t0, true);
        assert_eq!(lines.lock().len(), 1000);
    }
}
