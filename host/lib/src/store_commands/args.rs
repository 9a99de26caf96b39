//! The arguments of the store commands (`append`, `events`, `parked`).

use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Arguments of `batpak-host append`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["jsonl", "entity"])))]
pub struct AppendArgs {
    /// Entity of the event (e.g. `order:42`).
    #[arg(long, requires_all = ["scope", "kind"], conflicts_with = "jsonl")]
    pub entity: Option<String>,
    /// Scope of the event (e.g. `shop`).
    #[arg(long)]
    pub scope: Option<String>,
    /// Kind of the event (e.g. `order.placed`); `batpak.*` is reserved.
    #[arg(long)]
    pub kind: Option<String>,
    /// Payload as JSON (e.g. '{"sku":"widget","qty":2}'), stored exactly as
    /// typed; text that is not valid JSON is refused (use --payload-text
    /// for that). Default: no payload (empty).
    #[arg(long, value_name = "JSON", conflicts_with = "payload_text")]
    pub payload: Option<String>,
    /// Payload as raw text, stored verbatim and not checked as JSON (for
    /// payloads that are not JSON, e.g. plain text).
    #[arg(long, value_name = "TEXT")]
    pub payload_text: Option<String>,
    /// Id (32 hex digits) of the event that caused this one.
    #[arg(long)]
    pub causation: Option<String>,
    /// Correlation id (32 hex digits); default: inherited from the cause.
    #[arg(long)]
    pub correlation: Option<String>,
    /// A retry with the same key returns the first receipt and appends nothing.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Append events from a JSON-lines file (`-` for stdin), one event per
    /// line: {"entity","scope","kind","payload"[,"id","causation",
    /// "correlation","idempotency_key"]}. Every line is checked — syntax,
    /// rules, causation (to the store or an earlier line's "id"), expected
    /// sequences — before anything is appended: a bad line appends nothing.
    /// The file is then appended as one bulk transaction: all of it or none
    /// of it, even after kill -9, a power cut, a signal or a closed stdout;
    /// receipts are printed once all of it is durable.
    #[arg(long, value_name = "FILE|-")]
    pub jsonl: Option<PathBuf>,
}

/// Arguments of `batpak-host events`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Only this entity (exact name).
    #[arg(long)]
    pub entity: Option<String>,
    /// Only entities starting with this prefix.
    #[arg(long, conflicts_with = "entity")]
    pub entity_prefix: Option<String>,
    /// Only this scope.
    #[arg(long)]
    pub scope: Option<String>,
    /// Only events carrying this correlation id (32 hex digits).
    #[arg(long)]
    pub correlation: Option<String>,
    /// Only the direct reactions of this event (its id, 32 hex digits).
    #[arg(long)]
    pub caused_by: Option<String>,
    /// Only this kind (repeatable); a `batpak.*` kind selects just that
    /// kind of host record.
    #[arg(long)]
    pub kind: Vec<String>,
    /// Only events with a global sequence greater than this.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// Print at most this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Keep printing new events as they are written (Ctrl-C to stop).
    #[arg(long)]
    pub follow: bool,
    /// Include the host's own `batpak.*` events (checkpoints, denials,
    /// parking). With `--kind`, only the kinds listed are printed, host
    /// records or not.
    #[arg(long)]
    pub system: bool,
    /// `json`: one JSON object per line; `pretty`: one readable line per
    /// event (ISO-8601 UTC time, payload as stored).
    #[arg(long, value_enum, default_value_t = EventFormat::Json)]
    pub format: EventFormat,
}

/// How `events` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventFormat {
    /// JSON lines.
    Json,
    /// Readable lines.
    Pretty,
}

/// Arguments of `batpak-host parked`.
#[derive(Args, Debug)]
pub struct ParkedArgs {
    /// What to do (default: list unresolved parked events as JSON lines).
    #[command(subcommand)]
    pub action: Option<ParkedAction>,
    /// Only this reactor's parked events.
    #[arg(long, value_name = "REACTOR")]
    pub plugin: Option<String>,
}

/// Subcommands of `batpak-host parked`.
#[derive(Subcommand, Debug)]
pub enum ParkedAction {
    /// Ask the next `run` of the reactor to re-deliver its parked events
    /// (before anything else). Prints one JSON line per request.
    Replay {
        /// Only this reactor's parked events.
        #[arg(long, value_name = "REACTOR")]
        plugin: Option<String>,
        /// Only the parked event with this id (32 hex digits).
        #[arg(long, value_name = "ID")]
        event: Option<String>,
    },
}
