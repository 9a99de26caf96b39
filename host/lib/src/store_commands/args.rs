//! The arguments of the store commands (`append`, `events`, `parked`).

use std::path::PathBuf;

/// Arguments of `batpak-host append`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(group(clap::ArgGroup::new("source").required(true).args(["jsonl", "entity"]))))]
pub struct AppendArgs {
    /// Entity of the event (e.g. `order:42`).
    #[cfg_attr(feature = "cli", arg(long, requires_all = ["scope", "kind"], conflicts_with = "jsonl"))]
    pub entity: Option<String>,
    /// Scope of the event (e.g. `shop`).
    #[cfg_attr(feature = "cli", arg(long))]
    pub scope: Option<String>,
    /// Kind of the event (e.g. `order.placed`); `batpak.*` is reserved.
    #[cfg_attr(feature = "cli", arg(long))]
    pub kind: Option<String>,
    /// Payload as JSON (e.g. '{"sku":"widget","qty":2}'), stored exactly as
    /// typed; text that is not valid JSON is refused (use --payload-text
    /// for that). Default: no payload (empty).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "JSON", conflicts_with = "payload_text")
    )]
    pub payload: Option<String>,
    /// Payload as raw text, stored verbatim and not checked as JSON (for
    /// payloads that are not JSON, e.g. plain text).
    #[cfg_attr(feature = "cli", arg(long, value_name = "TEXT"))]
    pub payload_text: Option<String>,
    /// Id (32 hex digits) of the event that caused this one.
    #[cfg_attr(feature = "cli", arg(long))]
    pub causation: Option<String>,
    /// Correlation id (32 hex digits); default: inherited from the cause.
    #[cfg_attr(feature = "cli", arg(long))]
    pub correlation: Option<String>,
    /// A retry with the same key returns the first receipt and appends nothing.
    #[cfg_attr(feature = "cli", arg(long))]
    pub idempotency_key: Option<String>,
    /// Append events from a JSON-lines file (`-` for stdin), one event per
    /// line: {"entity","scope","kind","payload"[,"id","causation",
    /// "correlation","idempotency_key"]}. Every line is checked — syntax,
    /// rules, causation (to the store or an earlier line's "id"), expected
    /// sequences — before anything is appended: a bad line appends nothing.
    /// The file is then appended as one bulk transaction: all of it or none
    /// of it, even after kill -9, a power cut, a signal or a closed stdout;
    /// receipts are printed once all of it is durable.
    #[cfg_attr(feature = "cli", arg(long, value_name = "FILE|-"))]
    pub jsonl: Option<PathBuf>,
}

/// Arguments of `batpak-host events`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct EventsArgs {
    /// Only this entity (exact name).
    #[cfg_attr(feature = "cli", arg(long))]
    pub entity: Option<String>,
    /// Only entities starting with this prefix.
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "entity"))]
    pub entity_prefix: Option<String>,
    /// Only this scope.
    #[cfg_attr(feature = "cli", arg(long))]
    pub scope: Option<String>,
    /// Only events carrying this correlation id (32 hex digits).
    #[cfg_attr(feature = "cli", arg(long))]
    pub correlation: Option<String>,
    /// Only the direct reactions of this event (its id, 32 hex digits).
    #[cfg_attr(feature = "cli", arg(long))]
    pub caused_by: Option<String>,
    /// Only this kind (repeatable); a `batpak.*` kind selects just that
    /// kind of host record.
    #[cfg_attr(feature = "cli", arg(long))]
    pub kind: Vec<String>,
    /// Only events with a global sequence greater than this (on a cluster:
    /// a sequence within the partition given by --partition).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0))]
    pub after: u64,
    /// On a cluster (--store nats://…): only partition N. A cluster's order
    /// is per partition; each line names its `partition` and its `seq`
    /// there. The embedded store has one order and refuses this.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub partition: Option<u32>,
    /// Print at most this many events.
    #[cfg_attr(feature = "cli", arg(long))]
    pub limit: Option<u64>,
    /// Keep printing new events as they are written (Ctrl-C to stop).
    #[cfg_attr(feature = "cli", arg(long))]
    pub follow: bool,
    /// Include the host's own `batpak.*` events (checkpoints, denials,
    /// parking). With `--kind`, only the kinds listed are printed, host
    /// records or not.
    #[cfg_attr(feature = "cli", arg(long))]
    pub system: bool,
    /// `json`: one JSON object per line; `pretty`: one readable line per
    /// event (ISO-8601 UTC time, payload as stored).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = EventFormat::Json))]
    pub format: EventFormat,
}

/// How `events` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum EventFormat {
    /// JSON lines.
    Json,
    /// Readable lines.
    Pretty,
}

/// Arguments of `batpak-host parked`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ParkedArgs {
    /// What to do (default: list unresolved parked events as JSON lines).
    #[cfg_attr(feature = "cli", command(subcommand))]
    pub action: Option<ParkedAction>,
    /// Only this reactor's parked events.
    #[cfg_attr(feature = "cli", arg(long, value_name = "REACTOR"))]
    pub plugin: Option<String>,
}

/// Subcommands of `batpak-host parked`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum ParkedAction {
    /// Ask the next `run` of the reactor to re-deliver its parked events
    /// (before anything else). Prints one JSON line per request.
    Replay {
        /// Only this reactor's parked events.
        #[cfg_attr(feature = "cli", arg(long, value_name = "REACTOR"))]
        plugin: Option<String>,
        /// Only the parked event with this id (32 hex digits).
        #[cfg_attr(feature = "cli", arg(long, value_name = "ID"))]
        event: Option<String>,
    },
}
