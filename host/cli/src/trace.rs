//! `batpak-host trace ID`: one event's causal neighbourhood — the chain of
//! causes up to the first event, and every reaction it led to, recursively,
//! across every reactor — as a text tree, Graphviz DOT, SVG or JSON.
//!
//! The tree renderer here is the only one: `demo` prints its causal trees
//! with it too. Children are always in sequence order, so the same log
//! always draws the same tree.
//!
//! SVG is laid out in-process by a small deterministic tree layout of our
//! own (leaves on consecutive columns in sequence order, each parent centred
//! over its children, one row per depth) written as SVG text: a causal trace
//! is a tree, so it needs no general graph layout crate, and the picture
//! opens in any browser with nothing installed.

use anyhow::{bail, Context};
use batpak_service::{Client, Query};
use batpak_store::{EventId, LogReader, Lookup, Region, Store};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// Checkpoint records name the last event they cover as their causation;
/// they are bookkeeping, not reactions, so a trace leaves them out.
const CHECKPOINT_KIND: &str = "batpak.cursor.checkpoint";

/// Most events a trace draws; a larger neighbourhood is cut with a note.
const MAX_NODES: usize = 100_000;

/// Output formats of `trace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TraceFormat {
    /// A tree drawn with `├─`/`└─`/`│`.
    Text,
    /// Graphviz DOT.
    Dot,
    /// An SVG picture (laid out in-process).
    Svg,
    /// Nested JSON: each event as `events` prints it, plus `children`.
    Json,
}

/// Arguments of `batpak-host trace`.
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Id of the event to trace (32 hex digits, as `events` prints it).
    pub id: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TraceFormat::Text)]
    pub format: TraceFormat,
}

/// One event of a trace: the fields drawn, from the `events` JSON shape.
#[derive(Clone, Debug)]
pub(crate) struct TraceEvent {
    pub id: String,
    pub seq: u64,
    pub kind: String,
    pub entity: String,
    pub causation: Option<String>,
    /// The event as `events` prints it.
    pub json: Value,
    /// The payload's stored bytes as text, when read locally.
    pub raw: Option<String>,
}

impl TraceEvent {
    /// From an event as `events` prints it.
    pub fn from_json(v: Value) -> anyhow::Result<TraceEvent> {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        Ok(TraceEvent {
            id: s("id").context("event without id")?,
            seq: v["seq"].as_u64().context("event without seq")?,
            kind: s("kind").unwrap_or_default(),
            entity: s("entity").unwrap_or_default(),
            causation: s("causation"),
            json: v,
            raw: None,
        })
    }

    /// From a stored event (keeps the payload exactly as stored).
    pub fn from_event(e: &batpak_store::Event) -> TraceEvent {
        let mut t = TraceEvent::from_json(crate::store_cmds::event_json(e))
            .expect("event_json has id and seq");
        t.raw = Some(String::from_utf8_lossy(&e.payload).into_owned());
        t
    }

    /// The payload as stored (JSON printed compactly, text verbatim).
    pub fn payload_text(&self) -> String {
        if let Some(r) = &self.raw {
            return r.clone();
        }
        match &self.json["payload"] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            v => v.to_string(),
        }
    }
}

/// A tree of events; children in sequence order.
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    pub event: TraceEvent,
    pub children: Vec<Tree>,
}

/// Draws `tree` as lines: the root bare, every other event behind
/// `├─ `/`└─ ` with `│  ` carrying each open branch down.
pub(crate) fn render_tree(tree: &Tree, label: &dyn Fn(&TraceEvent) -> String) -> Vec<String> {
    fn walk(t: &Tree, prefix: &str, label: &dyn Fn(&TraceEvent) -> String, out: &mut Vec<String>) {
        let n = t.children.len();
        for (i, c) in t.children.iter().enumerate() {
            let last = i + 1 == n;
            out.push(format!(
                "{prefix}{}{}",
                if last { "└─ " } else { "├─ " },
                label(&c.event)
            ));
            let next = format!("{prefix}{}", if last { "   " } else { "│  " });
            walk(c, &next, label, out);
        }
    }
    let mut out = vec![label(&tree.event)];
    walk(tree, "", label, &mut out);
    out
}

/// Where a trace reads events from.
trait Source {
    fn get(&mut self, id: &str) -> anyhow::Result<Option<TraceEvent>>;
    /// Direct reactions of `id`, in sequence order.
    fn children(&mut self, id: &str) -> anyhow::Result<Vec<TraceEvent>>;
}

fn parse_id(s: &str) -> anyhow::Result<EventId> {
    s.parse::<EventId>().map_err(|_| {
        anyhow::anyhow!(
            "{s:?} is not an event id; expected 32 hex digits as printed in an event's \"id\""
        )
    })
}

/// The store's indexes (the CLI holds the store).
struct StoreSource(Store);

impl Source for StoreSource {
    fn get(&mut self, id: &str) -> anyhow::Result<Option<TraceEvent>> {
        let e = self.0.get(parse_id(id)?)?;
        Ok(e.map(|e| TraceEvent::from_event(&e)))
    }
    fn children(&mut self, id: &str) -> anyhow::Result<Vec<TraceEvent>> {
        let region = Region::all();
        Ok(self
            .0
            .lookup(
                &Lookup::CausedBy(parse_id(id)?),
                &region,
                0,
                usize::MAX,
                true,
            )?
            .iter()
            .filter(|e| e.header.kind != CHECKPOINT_KIND)
            .map(TraceEvent::from_event)
            .collect::<Vec<_>>())
    }
}

/// A running host's indexes, through its socket.
struct HostSource(Client);

impl HostSource {
    fn all(&mut self, mut q: Query) -> anyhow::Result<Vec<TraceEvent>> {
        let mut out = Vec::new();
        q.system = true;
        loop {
            let page = self.0.read(&q)?;
            for e in page.events {
                out.push(TraceEvent::from_json(e)?);
            }
            if !page.more {
                return Ok(out);
            }
            q.after = page.next_after;
        }
    }
}

impl Source for HostSource {
    fn get(&mut self, id: &str) -> anyhow::Result<Option<TraceEvent>> {
        Ok(self
            .all(Query {
                id: Some(id.into()),
                ..Query::default()
            })?
            .pop())
    }
    fn children(&mut self, id: &str) -> anyhow::Result<Vec<TraceEvent>> {
        Ok(self
            .all(Query {
                caused_by: Some(id.into()),
                ..Query::default()
            })?
            .into_iter()
            .filter(|e| e.kind != CHECKPOINT_KIND)
            .collect())
    }
}

/// The whole log read lock-free (another process holds the store and serves
/// no socket): a scan, then maps.
struct ScanSource {
    by_id: HashMap<String, TraceEvent>,
    children: HashMap<String, Vec<String>>,
}

impl ScanSource {
    fn read(data: &Path) -> anyhow::Result<ScanSource> {
        let mut reader = LogReader::open(data)?;
        let mut s = ScanSource {
            by_id: HashMap::new(),
            children: HashMap::new(),
        };
        loop {
            let b = reader.poll(64 << 20)?;
            if b.is_empty() {
                break;
            }
            for e in &b {
                if e.header.kind == CHECKPOINT_KIND {
                    continue;
                }
                let t = TraceEvent::from_event(e);
                if let Some(c) = &t.causation {
                    s.children.entry(c.clone()).or_default().push(t.id.clone());
                }
                s.by_id.insert(t.id.clone(), t);
            }
        }
        Ok(s)
    }
}

impl Source for ScanSource {
    fn get(&mut self, id: &str) -> anyhow::Result<Option<TraceEvent>> {
        Ok(self.by_id.get(id).cloned())
    }
    fn children(&mut self, id: &str) -> anyhow::Result<Vec<TraceEvent>> {
        Ok(self
            .children
            .get(id)
            .map(|v| {
                v.iter()
                    .filter_map(|i| self.by_id.get(i).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Builds the trace of `id`: the root is its first ancestor, the path runs
/// down to the event, and below it every descendant. Returns the tree and
/// whether it was cut at [`MAX_NODES`].
fn build(src: &mut dyn Source, id: &str) -> anyhow::Result<(Tree, bool)> {
    let Some(target) = src.get(id)? else {
        bail!("no event {id} in this store; `batpak-host events` lists the ids");
    };
    let mut count = 1usize;
    let mut cut = false;
    fn down(
        src: &mut dyn Source,
        e: TraceEvent,
        count: &mut usize,
        cut: &mut bool,
    ) -> anyhow::Result<Tree> {
        let mut children = Vec::new();
        for c in src.children(&e.id)? {
            if *count >= MAX_NODES {
                *cut = true;
                break;
            }
            *count += 1;
            children.push(down(src, c, count, cut)?);
        }
        Ok(Tree { event: e, children })
    }
    let mut tree = down(src, target.clone(), &mut count, &mut cut)?;
    // Up the causation chain; every id is visited once (a cycle cannot be
    // written, but a damaged log must not loop).
    let mut seen = std::collections::HashSet::from([target.id.clone()]);
    let mut cause = target.causation.clone();
    while let Some(c) = cause {
        if !seen.insert(c.clone()) {
            break;
        }
        let Some(parent) = src.get(&c)? else { break };
        cause = parent.causation.clone();
        tree = Tree {
            event: parent,
            children: vec![tree],
        };
    }
    Ok((tree, cut))
}

fn text_label(target: &str) -> impl Fn(&TraceEvent) -> String + '_ {
    move |e| {
        let p: String = e.payload_text().chars().take(80).collect();
        let mark = if e.id == target { "  ◀" } else { "" };
        format!("#{} {} {} {} {p}{mark}", e.seq, e.kind, e.entity, e.id)
    }
}

/// The trace as nested JSON.
fn to_json(t: &Tree) -> Value {
    let mut v = t.event.json.clone();
    v["children"] = Value::Array(t.children.iter().map(to_json).collect());
    v
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The trace as Graphviz DOT: one node per event, an edge per causation.
pub(crate) fn to_dot(t: &Tree, target: &str) -> String {
    let mut out = String::from(
        "digraph trace {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    fn walk(t: &Tree, target: &str, out: &mut String) {
        let e = &t.event;
        let style = if e.id == target {
            ", style=bold, color=\"#c0392b\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"#{} {}\\n{}\"{style}];",
            e.id,
            e.seq,
            dot_escape(&e.kind),
            dot_escape(&e.entity)
        );
        for c in &t.children {
            let _ = writeln!(out, "  \"{}\" -> \"{}\";", e.id, c.event.id);
        }
        for c in &t.children {
            walk(c, target, out);
        }
    }
    walk(t, target, &mut out);
    out.push_str("}\n");
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The trace as SVG (see the module comment for the layout).
pub(crate) fn to_svg(t: &Tree, target: &str) -> String {
    const W: f64 = 220.0;
    const H: f64 = 44.0;
    const GX: f64 = 20.0;
    const GY: f64 = 36.0;
    const M: f64 = 16.0;
    struct Placed<'a> {
        e: &'a TraceEvent,
        x: f64,
        depth: usize,
        parent: Option<usize>,
    }
    // Post-order: leaves take the next column, parents centre on children.
    fn place<'a>(
        t: &'a Tree,
        depth: usize,
        parent: Option<usize>,
        next_col: &mut f64,
        out: &mut Vec<Placed<'a>>,
    ) -> f64 {
        let me = out.len();
        out.push(Placed {
            e: &t.event,
            x: 0.0,
            depth,
            parent,
        });
        let x = if t.children.is_empty() {
            let x = *next_col;
            *next_col += 1.0;
            x
        } else {
            let xs: Vec<f64> = t
                .children
                .iter()
                .map(|c| place(c, depth + 1, Some(me), next_col, out))
                .collect();
            (xs[0] + xs[xs.len() - 1]) / 2.0
        };
        out[me].x = x;
        x
    }
    let mut nodes = Vec::new();
    let mut cols = 0.0;
    place(t, 0, None, &mut cols, &mut nodes);
    let depth = nodes.iter().map(|n| n.depth).max().unwrap_or(0) as f64 + 1.0;
    let width = M * 2.0 + cols * W + (cols - 1.0).max(0.0) * GX;
    let height = M * 2.0 + depth * H + (depth - 1.0) * GY;
    let px = |n: &Placed| M + n.x * (W + GX);
    let py = |n: &Placed| M + n.depth as f64 * (H + GY);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"11\">\n"
    );
    for n in &nodes {
        if let Some(p) = n.parent {
            let p = &nodes[p];
            let _ = writeln!(
                out,
                "  <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#555\"/>",
                px(p) + W / 2.0,
                py(p) + H,
                px(n) + W / 2.0,
                py(n)
            );
        }
    }
    for n in &nodes {
        let (x, y) = (px(n), py(n));
        let (stroke, sw) = if n.e.id == target {
            ("#c0392b", 2.5)
        } else {
            ("#333", 1.0)
        };
        let kind: String = n.e.kind.chars().take(30).collect();
        let entity: String = n.e.entity.chars().take(30).collect();
        let _ = writeln!(
            out,
            "  <g><title>{}</title><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"4\" fill=\"#fdfdf6\" stroke=\"{stroke}\" stroke-width=\"{sw}\"/><text x=\"{}\" y=\"{}\">#{} {}</text><text x=\"{}\" y=\"{}\" fill=\"#555\">{}</text></g>",
            xml_escape(&n.e.id),
            x + 8.0,
            y + 18.0,
            n.e.seq,
            xml_escape(&kind),
            x + 8.0,
            y + 34.0,
            xml_escape(&entity),
        );
    }
    out.push_str("</svg>\n");
    out
}

/// `batpak-host trace ID`.
pub(crate) fn trace(data: &Path, a: TraceArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&a.id)?.to_string();
    let (tree, cut) = if let Some(c) = Client::connect(data)? {
        build(&mut HostSource(c), &id)?
    } else {
        if !data.join("segments").is_dir() {
            bail!(
                "{} holds no store (no segments directory); check --data",
                data.display()
            );
        }
        // As `events`: the index when opening repairs nothing, else a
        // lock-free read of the segments.
        match batpak_store::opens_clean(data)
            .then(|| Store::open(data).ok())
            .flatten()
        {
            Some(store) => {
                let mut src = StoreSource(store);
                let r = build(&mut src, &id);
                src.0.close()?;
                r?
            }
            None => build(&mut ScanSource::read(data)?, &id)?,
        }
    };
    if cut {
        eprintln!("trace: more than {MAX_NODES} events; the tree is cut there");
    }
    let out = match a.format {
        TraceFormat::Text => {
            let mut s = render_tree(&tree, &text_label(&id)).join("\n");
            s.push('\n');
            s
        }
        TraceFormat::Dot => to_dot(&tree, &id),
        TraceFormat::Svg => to_svg(&tree, &id),
        TraceFormat::Json => {
            let mut s = json!({"target": id, "root": to_json(&tree)}).to_string();
            s.push('\n');
            s
        }
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(out.as_bytes()).is_err() {
        return Ok(ExitCode::SUCCESS); // reader went away
    }
    let _ = stdout.flush();
    Ok(ExitCode::SUCCESS)
}
