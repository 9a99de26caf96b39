//! The `--jsonl` input of `append`: its lines read (bounded, UTF-8) from a
//! file or a spooled copy of stdin, parsed into events; the receipts spooled
//! until the append commits; what a signal does meanwhile.

use anyhow::{bail, Context};
use batpak_service::NewEvent;
use batpak_store::Proposal;
use serde::Deserialize;
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// One `--jsonl` line, the same with or without a running host.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    id: Option<String>,
    entity: String,
    scope: String,
    kind: String,
    /// Checked here, kept as sent: the raw text is sliced from the line.
    #[allow(dead_code)]
    payload: serde::de::IgnoredAny,
    #[serde(default)]
    causation: Option<String>,
    #[serde(default)]
    correlation: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

pub const LINE_HELP: &str = r#"each line must be a JSON object {"entity","scope","kind","payload"} with optional "id", "causation", "correlation" (32 hex digits) and "idempotency_key""#;

/// Longest accepted `--jsonl` line: a maximal payload, JSON-escaped, plus
/// the other fields. Longer lines are refused, never buffered.
const MAX_LINE: usize = 4 * batpak_store::MAX_PAYLOAD_LEN + (64 << 10);

/// Parses one `--jsonl` line into the event a client sends (syntax only).
/// A key given twice (in the line's object or in its payload) is refused;
/// the payload is kept as the exact text of the line (`payload_text`), so
/// it is stored byte for byte — numbers, key order and spacing unchanged —
/// with or without a running host.
pub fn parse_line_event(text: &str) -> anyhow::Result<NewEvent> {
    let checked = batpak_service::RawJson::parse(text);
    // Syntax errors are reported by the typed parse below.
    if let Err(batpak_service::JsonError::DuplicateKey { key, column, .. }) = &checked {
        bail!(
            "the key {key:?} appears twice (the second at column {column}); give each key once, in the line's object and in its payload"
        );
    }
    let l: Line = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}; {LINE_HELP}",
            e.to_string().replace("at line 1 column", "at column")
        )
    })?;
    let payload = checked
        .ok()
        .and_then(|j| j.fields())
        .and_then(|f| f.into_iter().find(|(k, _)| k == "payload"))
        .map(|(_, raw)| raw.to_string())
        .ok_or_else(|| anyhow::anyhow!("the line's \"payload\" could not be read; {LINE_HELP}"))?;
    Ok(NewEvent {
        id: l.id,
        entity: l.entity,
        scope: l.scope,
        kind: l.kind,
        payload_text: Some(payload),
        causation: l.causation,
        correlation: l.correlation,
        idempotency_key: l.idempotency_key,
        ..NewEvent::default()
    })
}

/// Parses and checks one `--jsonl` line (everything but the store).
pub fn parse_line(text: &str) -> anyhow::Result<Proposal> {
    let event = parse_line_event(text)?;
    batpak_service::proposal(0, event)
        .map_err(|e| anyhow::anyhow!("{}", e.message.trim_start_matches("event 0: ")))
}

/// Reads one line (without its newline) into `buf`, refusing lines longer
/// than [`MAX_LINE`] without buffering them. `Ok(false)` at end of input.
fn read_line_bounded(r: &mut impl BufRead, buf: &mut Vec<u8>) -> anyhow::Result<bool> {
    buf.clear();
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if buf.len() + take > MAX_LINE + 1 {
            bail!("line is longer than {MAX_LINE} bytes; split the event or shorten its payload");
        }
        buf.extend_from_slice(&chunk[..take]);
        r.consume(take);
        if done {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(true);
        }
    }
}

/// Where the `--jsonl` input can be read twice from: the file itself, or a
/// spooled copy of stdin / a pipe (removed on drop).
pub struct Source {
    path: PathBuf,
    /// How the input is named in messages (`stdin` or the path).
    pub name: String,
    spooled: bool,
}

impl Drop for Source {
    fn drop(&mut self) {
        if self.spooled {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Source {
    pub fn new(src: &Path) -> anyhow::Result<Source> {
        let stdin = src == Path::new("-");
        let name = if stdin {
            "stdin".to_string()
        } else {
            src.display().to_string()
        };
        let regular = !stdin
            && std::fs::metadata(src)
                .with_context(|| format!("opening --jsonl file {}", src.display()))?
                .is_file();
        if regular {
            return Ok(Source {
                path: src.to_path_buf(),
                name,
                spooled: false,
            });
        }
        // A stream can be read once: copy it aside, so it can be checked
        // whole before the first event is appended.
        let path = std::env::temp_dir().join(format!(
            "batpak-jsonl-{}-{}",
            std::process::id(),
            batpak_store::now_us()
        ));
        // Owner-only: it holds every payload of the input.
        let mut spool = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| {
                format!("creating a spool file {} for --jsonl input", path.display())
            })?;
        let source = Source {
            path,
            name: name.clone(),
            spooled: true,
        };
        interrupt::remove_on_signal(&source.path);
        let mut input: Box<dyn std::io::Read> = if stdin {
            Box::new(std::io::stdin())
        } else {
            Box::new(
                std::fs::File::open(src)
                    .with_context(|| format!("opening --jsonl file {}", src.display()))?,
            )
        };
        std::io::copy(&mut input, &mut spool).with_context(|| format!("reading {name}"))?;
        Ok(source)
    }

    /// Calls `f(line_number, text)` for every non-empty line (an error for
    /// a line that is too long or not UTF-8); stops when `f` says `false`.
    pub fn for_each_text(
        &self,
        mut f: impl FnMut(usize, anyhow::Result<&str>) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let mut r = std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(&self.path).with_context(|| format!("opening {}", self.name))?,
        );
        let mut buf = Vec::new();
        let mut n = 0usize;
        loop {
            n += 1;
            match read_line_bounded(&mut r, &mut buf) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => {
                    f(n, Err(e))?;
                    return Ok(());
                }
            }
            if buf.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let text = std::str::from_utf8(&buf).map_err(|_| anyhow::anyhow!("line is not UTF-8"));
            if !f(n, text)? {
                return Ok(());
            }
        }
    }
}

/// What a SIGINT, SIGTERM or SIGHUP does to `append --jsonl`, by phase: a
/// signal never leaves part of the input appended, and always says what
/// happened.
pub mod interrupt {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

    /// Nothing is written yet (reading, checking): a signal exits at once.
    const CHECKING: u8 = 0;
    /// The append is under way or done: a signal is noted, and the append
    /// stops at the next safe point (before its commit: nothing kept; after:
    /// everything kept, printing stops).
    const WRITING: u8 = 1;

    static PHASE: AtomicU8 = AtomicU8::new(CHECKING);
    static SIGNALLED: AtomicBool = AtomicBool::new(false);
    /// A spool file to remove when a signal ends the process at once.
    static SPOOL: parking_lot::Mutex<Option<std::path::PathBuf>> = parking_lot::Mutex::new(None);

    /// Removes `path` (a spooled copy of stdin) if a signal ends the process
    /// while checking.
    pub fn remove_on_signal(path: &std::path::Path) {
        *SPOOL.lock() = Some(path.to_path_buf());
    }

    /// Exit status after a signal when nothing was appended (128 + SIGINT,
    /// as shells report an interrupted command).
    pub const EXIT_NOTHING_APPENDED: u8 = 130;

    /// Handles signals from now on (phase: checking), and makes a write to
    /// a closed stdout an error (`EPIPE`) instead of a silent death, so the
    /// command can say what it appended.
    pub fn install() {
        // SAFETY: changing one signal's disposition has no other effect.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        PHASE.store(CHECKING, Ordering::SeqCst);
        if let Err(e) = ctrlc::set_handler(on_signal) {
            eprintln!("warning: cannot handle Ctrl-C/SIGTERM ({e}); a signal ends `append` at once (still all or nothing)");
        }
    }

    /// From now on a signal is noted, not fatal.
    pub fn writing() {
        PHASE.store(WRITING, Ordering::SeqCst);
    }

    /// Whether a signal arrived.
    pub fn signalled() -> bool {
        SIGNALLED.load(Ordering::SeqCst)
    }

    fn on_signal() {
        // ctrlc runs this on its own thread, not in signal context.
        SIGNALLED.store(true, Ordering::SeqCst);
        if PHASE.load(Ordering::SeqCst) == CHECKING {
            if let Some(p) = SPOOL.lock().take() {
                let _ = std::fs::remove_file(p);
            }
            eprintln!("append: stopped by a signal while reading and checking the input; nothing was appended");
            std::process::exit(i32::from(EXIT_NOTHING_APPENDED));
        }
    }
}

/// Events per part of the bulk transaction `append --jsonl` writes (and
/// at most `CHUNK_BYTES` of payload): memory stays one part, whatever the
/// size of the file.
pub const CHUNK_EVENTS: usize = 4096;
pub const CHUNK_BYTES: usize = 8 << 20;

/// A temporary file for the receipts of an append not yet committed: they
/// are printed only once all of it is. Its name is removed as soon as it is
/// created, so nothing is left behind even after a kill -9.
pub struct ReceiptSpool {
    /// Where receipts are written until the commit.
    pub out: std::io::BufWriter<std::fs::File>,
}

impl ReceiptSpool {
    pub fn new() -> anyhow::Result<ReceiptSpool> {
        let path = std::env::temp_dir().join(format!(
            "batpak-receipts-{}-{}",
            std::process::id(),
            batpak_store::now_us()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating a receipt spool file {}", path.display()))?;
        let _ = std::fs::remove_file(&path);
        Ok(ReceiptSpool {
            out: std::io::BufWriter::new(f),
        })
    }

    /// Prints the spooled receipts (see [`print_receipts`]).
    pub fn print(self, out: &mut dyn Write, name: &str, total: usize) -> anyhow::Result<ExitCode> {
        use std::io::Seek;
        let mut f = self
            .out
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing the receipt spool: {}", e.error()))?;
        f.rewind().context("reading back the receipt spool")?;
        let mut lines = std::io::BufReader::new(f);
        print_receipts(&mut lines, out, name, total)
    }
}

/// Prints `lines` (receipts of an append that is complete) to `out`; on a
/// closed stdout or a signal, stops and says on stderr that all `total`
/// events were appended. Exit 0 either way: everything was appended.
pub fn print_receipts(
    lines: &mut dyn BufRead,
    out: &mut dyn Write,
    name: &str,
    total: usize,
) -> anyhow::Result<ExitCode> {
    let mut printed = 0usize;
    let mut line = String::new();
    let stopped = loop {
        if interrupt::signalled() {
            break "stopped by a signal";
        }
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            break "";
        }
        if out.write_all(line.as_bytes()).is_err() {
            break "stdout was closed";
        }
        printed += 1;
    };
    if stopped.is_empty() && out.flush().is_ok() && !interrupt::signalled() {
        return Ok(ExitCode::SUCCESS);
    }
    let why = if stopped.is_empty() {
        "stdout was closed"
    } else {
        stopped
    };
    eprintln!(
        "append: {why} after {printed} receipt(s); all {total} events from {name} were appended (`batpak-host events` shows them)"
    );
    Ok(ExitCode::SUCCESS)
}
