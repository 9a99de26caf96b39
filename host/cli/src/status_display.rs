//! The live status of `run`: on a terminal, one line per reactor redrawn in
//! place (indicatif) and kept within 80 columns, with rates and an ETA while
//! a reactor catches up; otherwise plain `status |` lines, at most one per
//! reactor per second and only when something changed. Log lines go through
//! [`Console`] so they print above the live lines instead of tearing them.

use batpak_host_lib::{human_bytes, Console, HostObserver, ReactorView};
use batpak_store::ReactorRunState as RunState;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Widest status line drawn on a terminal.
const MAX_WIDTH: usize = 80;
/// Width of the reactor-name column.
const NAME_WIDTH: usize = 12;
/// Cells of the catch-up bar.
const BAR_CELLS: usize = 10;
/// How often plain lines may repeat.
const PLAIN_EVERY: Duration = Duration::from_secs(1);
/// Weight of the newest sample in the smoothed rates.
const SMOOTHING: f64 = 0.3;

/// How the status is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Redrawn in place (stderr is a terminal).
    Live,
    /// Periodic `status |` lines (stderr is a file or a pipe).
    Plain,
    /// Nothing until the summary (`--quiet`).
    Quiet,
}

impl Mode {
    /// Live on a terminal, plain elsewhere, quiet when asked.
    pub(crate) fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

/// Smoothed per-second rates of one reactor.
#[derive(Default, Clone, Debug)]
struct Rates {
    last: Option<(Instant, u64, u64)>,
    /// Events delivered per second.
    events: f64,
    /// Cursor positions advanced per second (global sequences).
    positions: f64,
    /// Position when the reactor was first seen behind the head: the start
    /// of the current catch-up, for the bar.
    catch_up_from: Option<u64>,
}

impl Rates {
    fn sample(&mut self, now: Instant, v: &ReactorView) {
        if let Some((at, events, position)) = self.last {
            let dt = now.duration_since(at).as_secs_f64();
            if dt < 0.2 {
                return;
            }
            let ev = v.events_in.saturating_sub(events) as f64 / dt;
            let pos = v.position.saturating_sub(position) as f64 / dt;
            self.events = SMOOTHING * ev + (1.0 - SMOOTHING) * self.events;
            self.positions = SMOOTHING * pos + (1.0 - SMOOTHING) * self.positions;
        }
        self.last = Some((now, v.events_in, v.position));
        if v.state == RunState::Running && !v.caught_up && !v.lossy && v.head > v.position {
            self.catch_up_from.get_or_insert(v.position);
        } else {
            self.catch_up_from = None;
        }
    }
}

/// The live status of every reactor, in the supervisor's order.
pub(crate) struct StatusDisplay {
    mode: Mode,
    multi: Option<MultiProgress>,
    header: Option<ProgressBar>,
    bars: Vec<ProgressBar>,
    rates: Vec<Rates>,
    plain_last: Vec<String>,
    plain_at: Option<Instant>,
}

impl StatusDisplay {
    /// A display in `mode` (no reactor lines yet).
    pub(crate) fn new(mode: Mode) -> StatusDisplay {
        let multi = (mode == Mode::Live)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)));
        StatusDisplay {
            mode,
            multi,
            header: None,
            bars: Vec::new(),
            rates: Vec::new(),
            plain_last: Vec::new(),
            plain_at: None,
        }
    }

    /// Where log lines should be printed: above the live lines, when there
    /// are any, else on stderr.
    pub(crate) fn console(&self) -> Console {
        let multi = self.multi.clone();
        Console::new(move |line| match &multi {
            Some(m) if !m.is_hidden() => {
                let _ = m.println(line);
            }
            _ => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        })
    }

    fn line_bar(&self) -> ProgressBar {
        let bar = ProgressBar::new(0)
            .with_style(ProgressStyle::with_template("{wide_msg}").expect("a valid template"));
        match &self.multi {
            Some(m) => m.add(bar),
            None => bar,
        }
    }

    /// Adds a line for one more reactor (index = the supervisor's slot).
    pub(crate) fn add_reactor(&mut self) {
        if self.multi.is_some() {
            if self.header.is_none() {
                self.header = Some(self.line_bar());
            }
            let bar = self.line_bar();
            self.bars.push(bar);
        }
        self.rates.push(Rates::default());
        self.plain_last.push(String::new());
    }

    /// Shows `views` (one per reactor, in slot order) taken at `now`.
    pub(crate) fn update(&mut self, views: &[ReactorView], head: u64, now: Instant) {
        for (r, v) in self.rates.iter_mut().zip(views) {
            r.sample(now, v);
        }
        match self.mode {
            Mode::Quiet => {}
            Mode::Live => {
                // `{wide_msg}` cuts further on a narrower terminal.
                let width = MAX_WIDTH - 1;
                if let Some(h) = &self.header {
                    h.set_message(fit(&header_line(views.len(), head), width));
                }
                for ((bar, v), r) in self.bars.iter().zip(views).zip(&self.rates) {
                    bar.set_message(live_line(v, r, width));
                }
            }
            Mode::Plain => {
                if self
                    .plain_at
                    .is_some_and(|at| now.duration_since(at) < PLAIN_EVERY)
                {
                    return;
                }
                let mut printed = false;
                let mut err = std::io::stderr().lock();
                for ((last, v), r) in self.plain_last.iter_mut().zip(views).zip(&self.rates) {
                    let line = plain_line(v, r);
                    if *last != line {
                        let _ = writeln!(err, "status | {line}");
                        *last = line;
                        printed = true;
                    }
                }
                if printed {
                    self.plain_at = Some(now);
                }
            }
        }
    }

    /// Removes the live lines (before the summary is printed).
    pub(crate) fn finish(&mut self) {
        if let Some(m) = &self.multi {
            for b in self.bars.iter().chain(&self.header) {
                b.finish_and_clear();
            }
            let _ = m.clear();
        }
    }
}

impl HostObserver for StatusDisplay {
    fn reactor_added(&mut self) {
        self.add_reactor();
    }
    fn status(&mut self, reactors: &[ReactorView], head: u64, at: Instant) {
        self.update(reactors, head, at);
    }
    fn finished(&mut self) {
        self.finish();
    }
}

fn header_line(reactors: usize, head: u64) -> String {
    format!(
        "batpak-host run: {reactors} reactor(s), durable log head at seq {}; Ctrl-C stops",
        compact(head)
    )
}

/// One reactor's live line, at most `width` columns.
fn live_line(v: &ReactorView, r: &Rates, width: usize) -> String {
    let name = fit(&v.label(), NAME_WIDTH);
    let what = match (&v.pending, v.state) {
        // Work in progress says what it waits for (a compile takes seconds).
        (Some(p), _) => {
            let secs = p.for_ms / 1000;
            match p.waiting_for {
                "compiling" => format!(
                    "{} compiling {} {secs}s",
                    p.action,
                    p.bytes.map(human_bytes).unwrap_or_default()
                ),
                w => format!("{} waits for {w} {secs}s", p.action),
            }
        }
        (None, state) => match (state, v.caught_up) {
            // Catching up: behind the head and moving. (A lossy subscription
            // has no position to catch up to; a cursor that does not move is
            // waiting for its region's next event, whatever the head says.)
            (RunState::Running, false) if !v.lossy && v.head > v.position && r.positions >= 1.0 => {
                let from = r.catch_up_from.unwrap_or(v.position);
                let total = v.head.saturating_sub(from).max(1);
                let done = v.position.saturating_sub(from);
                let filled = (done as f64 / total as f64 * BAR_CELLS as f64).round() as usize;
                let filled = filled.min(BAR_CELLS);
                let eta = duration((v.head - v.position) as f64 / r.positions);
                format!(
                    "{}{} {:>3}% {:>6}/s ETA {eta}",
                    "█".repeat(filled),
                    "░".repeat(BAR_CELLS - filled),
                    done * 100 / total,
                    compact(r.events.round() as u64),
                )
            }
            (RunState::Running, false) => {
                format!("running {:>6}/s", compact(r.events.round() as u64))
            }
            (RunState::Running, true) => format!("idle at seq {}", compact(v.position)),
            (other, _) => other.to_string(),
        },
    };
    let mut counts = format!(
        "in {} out {} den {} park {}",
        compact(v.events_in),
        compact(v.reactions_out),
        compact(v.denials),
        compact(v.parked)
    );
    if v.failures > 0 {
        counts.push_str(&format!(" fail {}", compact(v.failures)));
    }
    if v.lossy {
        counts.push_str(&format!(" miss {}", compact(v.missed)));
    }
    fit(&format!("{name:<NAME_WIDTH$} {what:<31} │ {counts}"), width)
}

/// One reactor's plain status line (also the body of its summary line).
fn plain_line(v: &ReactorView, r: &Rates) -> String {
    let mut s = summary_body(v);
    if v.state == RunState::Running && !v.caught_up && r.events >= 1.0 {
        s.push_str(&format!(", {}/s", compact(r.events.round() as u64)));
    }
    if let Some(p) = &v.pending {
        s.push_str(&format!("; pending {}", p.text));
    }
    s
}

/// `name: in N, out N, denied N, parked N, …`: the counters, the cursor
/// position against the durable head, and the state when it is not
/// running.
pub(crate) fn summary_body(v: &ReactorView) -> String {
    let mut s = format!(
        "{}: in {}, out {}, denied {}, parked {}",
        v.label(),
        v.events_in,
        v.reactions_out,
        v.denials,
        v.parked
    );
    if v.unparked > 0 {
        s.push_str(&format!(", unparked {}", v.unparked));
    }
    if v.failures > 0 {
        s.push_str(&format!(", failures {}", v.failures));
    }
    if v.lossy {
        s.push_str(&format!(", missed {}", v.missed));
    } else {
        s.push_str(&format!(", at seq {} of {}", v.position, v.head));
    }
    match v.state {
        RunState::Failed => s.push_str(", FAILED"),
        RunState::Stopped => s.push_str(", stopped"),
        RunState::Stopping => s.push_str(", stopping"),
        RunState::Running if v.caught_up => s.push_str(", idle"),
        _ => {}
    }
    s
}

/// `n` in at most 5 characters: 999, 9999, 12.3k, 123k, 1.2M, …
pub(crate) fn compact(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")];
    if n < 10_000 {
        return n.to_string();
    }
    for (size, unit) in UNITS {
        if n >= size {
            let x = n as f64 / size as f64;
            return if x < 99.95 {
                format!("{x:.1}{unit}")
            } else {
                format!("{:.0}{unit}", x.min(999.0))
            };
        }
    }
    n.to_string()
}

/// Seconds as `42s`, `3m07s` or `2h05m`.
fn duration(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 100 * 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        ">99h".into()
    }
}

/// `s` cut to `width` characters (with `…` when cut).
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view in `shown` state: a [`RunState`]'s name, or `idle` (running
    /// and caught up).
    fn view(shown: &str, big: u64) -> ReactorView {
        let caught_up = shown == "idle";
        let state = RunState::ALL
            .into_iter()
            .find(|s| s.as_str() == shown)
            .unwrap_or(RunState::Running);
        ReactorView {
            name: "a-reactor-with-a-very-long-name".into(),
            version: "1.0.0".into(),
            digest: "d".repeat(64),
            path: "x.wasm".into(),
            state,
            caught_up,
            position: big / 3,
            head: big,
            events_in: big,
            reactions_out: big,
            denials: big,
            parked: big,
            unparked: 0,
            failures: big,
            missed: big,
            lossy: true,
            paused: false,
            region: batpak_store::Region::all(),
            error: None,
            last_swap: None,
            pending: None,
            watched: None,
            instance: None,
        }
    }

    #[test]
    fn live_lines_fit_80_columns_whatever_the_numbers() {
        let mut r = Rates {
            events: 123_456_789.0,
            positions: 3.0,
            ..Rates::default()
        };
        for big in [0, 7, 12_345, 999_999, 123_456_789, u64::MAX / 2] {
            for state in ["running", "idle", "starting", "stopped", "failed"] {
                r.catch_up_from = Some(0);
                let line = live_line(&view(state, big), &r, MAX_WIDTH - 1);
                assert!(line.chars().count() < MAX_WIDTH, "{line}");
            }
        }
    }

    #[test]
    fn catching_up_shows_bar_rate_and_eta() {
        let mut v = view("running", 1000);
        v.position = 500;
        v.lossy = false;
        let r = Rates {
            events: 100.0,
            positions: 50.0,
            catch_up_from: Some(0),
            ..Rates::default()
        };
        let line = live_line(&v, &r, 79);
        assert!(line.contains("█████░░░░░"), "{line}");
        assert!(line.contains(" 50%"), "{line}");
        assert!(line.contains("100/s"), "{line}");
        assert!(line.contains("ETA 10s"), "{line}");
        // A lossy subscription never shows a catch-up bar, nor does a
        // cursor that is not moving.
        v.lossy = true;
        let line = live_line(&v, &r, 79);
        assert!(!line.contains('█') && !line.contains("ETA"), "{line}");
        v.lossy = false;
        let still = Rates {
            positions: 0.0,
            ..r.clone()
        };
        let line = live_line(&v, &still, 79);
        assert!(line.contains("running") && !line.contains("ETA"), "{line}");
    }

    #[test]
    fn pending_work_shows_on_the_live_and_plain_lines() {
        let mut v = view("running", 100);
        v.pending = Some(batpak_host_lib::PendingView {
            action: "swap",
            file: Some("big.wasm".into()),
            bytes: Some(18_200_000),
            waiting_for: "compiling",
            for_ms: 9_400,
            text: "swap to big.wasm: compiling 18.2 MB, 9 s".into(),
        });
        let line = live_line(&v, &Rates::default(), 79);
        assert!(line.contains("swap compiling 18.2 MB 9s"), "{line}");
        let plain = plain_line(&v, &Rates::default());
        assert!(
            plain.ends_with("; pending swap to big.wasm: compiling 18.2 MB, 9 s"),
            "{plain}"
        );
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(compact(9999), "9999");
        assert_eq!(compact(12_345), "12.3k");
        assert_eq!(compact(123_456), "123k");
        assert_eq!(compact(1_234_567), "1.2M");
        assert_eq!(compact(u64::MAX), "999G");
        assert_eq!(duration(42.0), "42s");
        assert_eq!(duration(187.0), "3m07s");
        assert_eq!(duration(7500.0), "2h05m");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(18_200_000), "18.2 MB");
    }

    #[test]
    fn summary_names_position_against_head_not_lag() {
        let mut v = view("idle", 10);
        v.lossy = false;
        v.failures = 0;
        v.name = "inventory".into();
        v.position = 7;
        assert_eq!(
            summary_body(&v),
            "inventory: in 10, out 10, denied 10, parked 10, at seq 7 of 10, idle"
        );
    }
}
