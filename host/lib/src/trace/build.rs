//! `batpak-host trace ID|ENTITY`: one event's causal neighbourhood — the
//! chain of causes up to the first event, and every reaction it led to,
//! recursively, across every reactor — as a text tree, Graphviz DOT, SVG or
//! JSON. Given an entity, the same for every event of that entity: one tree
//! per first cause, trees that share a first cause drawn once.
//!
//! The tree renderer here is the only one: `demo` prints its causal trees
//! with it too. Children are always in sequence order, so the same log
//! always draws the same tree.
//!
//! SVG is laid out in-process by a small deterministic tree layout of our
//! own (leaves on consecutive columns in sequence order, each parent centred
//! over its children, one row per depth) written as SVG text: a causal trace
//! is a tree, so it needs no general graph layout crate, and the picture
//! opens in any browser with nothing installed. Boxes are as wide as the
//! longest label up to a cap; longer labels end in `…` and the whole text is
//! the box's `<title>` (its tooltip). Gate denials are drawn with a dashed
//! red border, and a legend under the tree says so.

use crate::store_commands::{LocalStore, StoreAccess};
use anyhow::{bail, Context};
use batpak_service::{Client, Query};
use batpak_store::{EventId, LogReader, DENIED_KIND};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

// Checkpoint records name the last event they cover as their causation;
// they are bookkeeping, not reactions, so a trace leaves them out.
use batpak_store::system::CHECKPOINT_KIND;

/// Most events a trace draws; a larger neighbourhood is cut with a note.
const MAX_NODES: usize = 100_000;

/// Output formats of `trace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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

/// Most characters of a payload a text trace prints; a longer one ends in `…`.
const PAYLOAD_CHARS: usize = 80;

/// Arguments of `batpak-host trace`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct TraceArgs {
    /// An event id (32 hex digits, as `events` prints it in "id"): its causes
    /// and every reaction it led to. Or an entity (e.g. `order:7`): the
    /// causal tree of every event of that entity, trees sharing a first cause
    /// drawn once, the entity's events marked (◀ in text). `--format json`
    /// then prints {"entity","targets","roots"} instead of {"target","root"}.
    #[cfg_attr(feature = "cli", arg(value_name = "ID|ENTITY"))]
    pub target: String,
    /// Output format.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = TraceFormat::Text))]
    pub format: TraceFormat,
}

/// One event of a trace: the fields drawn, from the `events` JSON shape.
#[derive(Clone, Debug)]
pub struct TraceEvent {
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

    /// From an event line as `events` prints it (through a running host):
    /// a JSON payload keeps the bytes the line carries.
    pub fn from_line(line: &str) -> anyhow::Result<TraceEvent> {
        let mut t = TraceEvent::from_json(serde_json::from_str(line)?)?;
        if !t.json["payload"].is_string() {
            t.raw = batpak_service::RawJson::parse(line)
                .ok()
                .and_then(|j| j.fields())
                .and_then(|f| f.into_iter().find(|(k, _)| k == "payload"))
                .map(|(_, p)| p.to_string());
        }
        Ok(t)
    }

    /// From a stored event (keeps the payload exactly as stored).
    pub fn from_event(e: &batpak_store::Event) -> TraceEvent {
        let mut t = TraceEvent::from_json(batpak_service::event_json(e))
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
pub struct Tree {
    pub event: TraceEvent,
    pub children: Vec<Tree>,
}

/// Draws `tree` as lines: the root bare, every other event behind
/// `├─ `/`└─ ` with `│  ` carrying each open branch down.
pub fn render_tree(tree: &Tree, label: &dyn Fn(&TraceEvent) -> String) -> Vec<String> {
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
pub(crate) trait Source {
    fn get(&mut self, id: &str) -> anyhow::Result<Option<TraceEvent>>;
    /// Direct reactions of `id`, in sequence order.
    fn children(&mut self, id: &str) -> anyhow::Result<Vec<TraceEvent>>;
    /// The events of `entity` (checkpoints left out), in sequence order.
    fn entity(&mut self, entity: &str) -> anyhow::Result<Vec<TraceEvent>>;
}

/// The store's indexes, through [`StoreAccess`]: the running host's (its
/// socket) or the store's own (this process holds it) — one path for both.
struct AccessSource(Box<dyn StoreAccess>);

impl AccessSource {
    fn all(&mut self, mut q: Query) -> anyhow::Result<Vec<TraceEvent>> {
        let mut out = Vec::new();
        q.system = true;
        loop {
            let page = self.0.read(&q)?;
            for e in page.events {
                out.push(TraceEvent::from_line(e.get())?);
            }
            if !page.more {
                return Ok(out);
            }
            q.after = page.next_after;
        }
    }
}

impl Source for AccessSource {
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
    fn entity(&mut self, entity: &str) -> anyhow::Result<Vec<TraceEvent>> {
        Ok(self
            .all(Query {
                entity: Some(entity.into()),
                ..Query::default()
            })?
            .into_iter()
            .filter(|e| e.kind != CHECKPOINT_KIND && e.entity == entity)
            .collect())
    }
}

/// The whole log read lock-free (another process holds the store and serves
/// no socket): a scan, then maps.
pub(crate) struct ScanSource {
    by_id: HashMap<String, TraceEvent>,
    children: HashMap<String, Vec<String>>,
    by_entity: HashMap<String, Vec<String>>,
}

impl ScanSource {
    fn read(data: &Path) -> anyhow::Result<ScanSource> {
        let mut reader = LogReader::open(data)?;
        let mut s = ScanSource::new();
        loop {
            let b = reader.poll(64 << 20)?;
            if b.is_empty() {
                break;
            }
            for e in &b {
                s.add(TraceEvent::from_event(e));
            }
        }
        Ok(s)
    }

    /// Empty; [`add`](Self::add) fills it.
    pub(crate) fn new() -> ScanSource {
        ScanSource {
            by_id: HashMap::new(),
            children: HashMap::new(),
            by_entity: HashMap::new(),
        }
    }

    /// Adds one event (in log order; checkpoints left out).
    pub(crate) fn add(&mut self, t: TraceEvent) {
        if t.kind == CHECKPOINT_KIND {
            return;
        }
        if let Some(c) = &t.causation {
            self.children
                .entry(c.clone())
                .or_default()
                .push(t.id.clone());
        }
        self.by_entity
            .entry(t.entity.clone())
            .or_default()
            .push(t.id.clone());
        self.by_id.insert(t.id.clone(), t);
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
    fn entity(&mut self, entity: &str) -> anyhow::Result<Vec<TraceEvent>> {
        Ok(self
            .by_entity
            .get(entity)
            .map(|v| {
                v.iter()
                    .filter_map(|i| self.by_id.get(i).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Events counted into a trace so far, and whether it was cut at
/// [`MAX_NODES`].
#[derive(Default)]
struct Budget {
    count: usize,
    cut: bool,
}

/// Builds the trace of `target`: the root is its first ancestor, the path
/// runs down to the event, and below it every descendant.
fn build(src: &mut dyn Source, target: TraceEvent, budget: &mut Budget) -> anyhow::Result<Tree> {
    fn down(src: &mut dyn Source, e: TraceEvent, budget: &mut Budget) -> anyhow::Result<Tree> {
        let mut children = Vec::new();
        for c in src.children(&e.id)? {
            if budget.count >= MAX_NODES {
                budget.cut = true;
                break;
            }
            budget.count += 1;
            children.push(down(src, c, budget)?);
        }
        Ok(Tree { event: e, children })
    }
    budget.count += 1;
    let mut tree = down(src, target.clone(), budget)?;
    // Up the causation chain; every id is visited once (a cycle cannot be
    // written, but a damaged log must not loop).
    let mut seen = HashSet::from([target.id.clone()]);
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
    Ok(tree)
}

/// Adds `add`'s branches to `into` (the same event at the top), keeping
/// children in sequence order and every event once.
fn merge(into: &mut Tree, add: Tree) {
    for c in add.children {
        match into.children.iter_mut().find(|x| x.event.id == c.event.id) {
            Some(x) => merge(x, c),
            None => {
                let at = into.children.partition_point(|x| x.event.seq < c.event.seq);
                into.children.insert(at, c);
            }
        }
    }
}

fn collect_ids(t: &Tree, out: &mut HashSet<String>) {
    out.insert(t.event.id.clone());
    for c in &t.children {
        collect_ids(c, out);
    }
}

/// The trees of every event of an entity: each event's trace, merged into
/// the tree of its first cause, first causes in sequence order. An event
/// already drawn below an earlier one of the entity adds nothing (its
/// descendants are drawn there; its causes come earlier in the log, so
/// they were handled first).
fn build_entity(
    src: &mut dyn Source,
    events: Vec<TraceEvent>,
    budget: &mut Budget,
) -> anyhow::Result<Vec<Tree>> {
    let mut forest: Vec<Tree> = Vec::new();
    let mut drawn = HashSet::new();
    for e in events {
        if drawn.contains(&e.id) {
            continue;
        }
        if budget.count >= MAX_NODES {
            budget.cut = true;
            break;
        }
        let t = build(src, e, budget)?;
        collect_ids(&t, &mut drawn);
        match forest.iter_mut().find(|r| r.event.id == t.event.id) {
            Some(r) => merge(r, t),
            None => {
                let at = forest.partition_point(|r| r.event.seq < t.event.seq);
                forest.insert(at, t);
            }
        }
    }
    Ok(forest)
}

/// What `trace` was asked for, found in the store.
pub(crate) struct Traced {
    /// The trees, first causes in sequence order.
    forest: Vec<Tree>,
    /// The events asked about (marked in every format).
    marked: Vec<String>,
    /// The entity, when one was asked for.
    entity: Option<String>,
    /// Cut at [`MAX_NODES`].
    cut: bool,
}

/// Resolves `arg` as an event id, else as an entity with events.
pub(crate) fn resolve(src: &mut dyn Source, arg: &str) -> anyhow::Result<Traced> {
    let mut budget = Budget::default();
    let id = arg.parse::<EventId>().ok().map(|i| i.to_string());
    if let Some(id) = &id {
        if let Some(e) = src.get(id)? {
            let tree = build(src, e, &mut budget)?;
            return Ok(Traced {
                forest: vec![tree],
                marked: vec![id.clone()],
                entity: None,
                cut: budget.cut,
            });
        }
    }
    let events = src.entity(arg)?;
    if events.is_empty() {
        match id {
            Some(id) => bail!(
                "no event {id} in this store, and no entity of that name; give an event id (32 hex digits, as `events` prints it in \"id\") or an entity that has events (e.g. order:7); `batpak-host events` lists both"
            ),
            None => bail!(
                "{arg:?} is neither an event id (32 hex digits, as `events` prints it in \"id\") nor an entity with events in this store (e.g. order:7, as `events` prints it in \"entity\"); `batpak-host events` lists both"
            ),
        }
    }
    let marked = events.iter().map(|e| e.id.clone()).collect();
    let forest = build_entity(src, events, &mut budget)?;
    Ok(Traced {
        forest,
        marked,
        entity: Some(arg.to_string()),
        cut: budget.cut,
    })
}

/// `s` cut to `max` characters, ending in `…` when cut.
fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn text_label(marked: &HashSet<String>) -> impl Fn(&TraceEvent) -> String + '_ {
    move |e| {
        // Control characters (a payload typed over several lines) would
        // break the tree's lines: shown escaped.
        let mut flat = String::new();
        for c in e.payload_text().chars() {
            if c.is_control() {
                flat.extend(c.escape_default());
            } else {
                flat.push(c);
            }
        }
        let p = ellipsize(&flat, PAYLOAD_CHARS);
        let mark = if marked.contains(&e.id) { "  ◀" } else { "" };
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

/// The trace as Graphviz DOT: one node per event, an edge per causation;
/// the events asked about in bold blue, gate denials dashed red.
pub fn to_dot(forest: &[Tree], marked: &HashSet<String>) -> String {
    let mut out = String::from(
        "digraph trace {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    fn walk(t: &Tree, marked: &HashSet<String>, out: &mut String) {
        let e = &t.event;
        let mut style = Vec::new();
        if e.kind == DENIED_KIND {
            style.push("dashed");
        }
        if marked.contains(&e.id) {
            style.push("bold");
        }
        let color = if marked.contains(&e.id) {
            ", color=\"#1a5fb4\""
        } else if e.kind == DENIED_KIND {
            ", color=\"#c0392b\""
        } else {
            ""
        };
        let style = if style.is_empty() {
            String::new()
        } else {
            format!(", style=\"{}\"", style.join(","))
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"#{} {}\\n{}\"{style}{color}];",
            e.id,
            e.seq,
            dot_escape(&e.kind),
            dot_escape(&e.entity)
        );
        for c in &t.children {
            let _ = writeln!(out, "  \"{}\" -> \"{}\";", e.id, c.event.id);
        }
        for c in &t.children {
            walk(c, marked, out);
        }
    }
    for t in forest {
        walk(t, marked, &mut out);
    }
    out.push_str("}\n");
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Most characters of a label line in an SVG box; longer ones end in `…`
/// (the whole text is the box's tooltip).
const SVG_LABEL_CHARS: usize = 48;

/// The trace as SVG (see the module comment for the layout).
pub fn to_svg(forest: &[Tree], marked: &HashSet<String>) -> String {
    // Monospace at 11 px: a character is about 6.6 px wide.
    const CHAR_W: f64 = 6.7;
    const PAD: f64 = 8.0;
    const MIN_W: f64 = 160.0;
    const H: f64 = 44.0;
    const GX: f64 = 20.0;
    const GY: f64 = 36.0;
    const M: f64 = 16.0;
    const LEGEND_H: f64 = 40.0;
    const LEGEND_W: f64 = 600.0;
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
    for t in forest {
        place(t, 0, None, &mut cols, &mut nodes);
    }
    let line1 = |e: &TraceEvent| format!("#{} {}", e.seq, e.kind);
    // Every column as wide as the widest label (up to the cap).
    let chars = nodes
        .iter()
        .map(|n| line1(n.e).chars().count().max(n.e.entity.chars().count()))
        .max()
        .unwrap_or(0)
        .min(SVG_LABEL_CHARS);
    let w = (PAD * 2.0 + chars as f64 * CHAR_W).max(MIN_W).ceil();
    let depth = nodes.iter().map(|n| n.depth).max().unwrap_or(0) as f64 + 1.0;
    let width = (M * 2.0 + cols * w + (cols - 1.0).max(0.0) * GX).max(M * 2.0 + LEGEND_W);
    let tree_h = M * 2.0 + depth * H + (depth - 1.0) * GY;
    let height = tree_h + LEGEND_H;
    let px = |n: &Placed| M + n.x * (w + GX);
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
                px(p) + w / 2.0,
                py(p) + H,
                px(n) + w / 2.0,
                py(n)
            );
        }
    }
    // One box style per meaning, shared by the nodes and the legend.
    let event_box = "fill=\"#fdfdf6\" stroke=\"#333\" stroke-width=\"1\"";
    let marked_box = "fill=\"#fdfdf6\" stroke=\"#1a5fb4\" stroke-width=\"2.5\"";
    let denial_box =
        "fill=\"#fdecea\" stroke=\"#c0392b\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\"";
    for n in &nodes {
        let (x, y) = (px(n), py(n));
        let denial = n.e.kind == DENIED_KIND;
        let mut style = if denial { denial_box } else { event_box }.to_string();
        if marked.contains(&n.e.id) {
            // A denial asked about keeps its dash, in the marked colour.
            style = if denial {
                format!("{marked_box} stroke-dasharray=\"5 3\"")
            } else {
                marked_box.to_string()
            };
        }
        let class = if denial { "node denial" } else { "node" };
        let first = line1(n.e);
        let _ = writeln!(
            out,
            "  <g class=\"{class}\"><title>{}&#10;{}&#10;{}</title><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{H}\" rx=\"4\" {style}/><text x=\"{}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" fill=\"#555\">{}</text></g>",
            xml_escape(&first),
            xml_escape(&n.e.entity),
            xml_escape(&n.e.id),
            x + PAD,
            y + 18.0,
            xml_escape(&ellipsize(&first, SVG_LABEL_CHARS)),
            x + PAD,
            y + 34.0,
            xml_escape(&ellipsize(&n.e.entity, SVG_LABEL_CHARS)),
        );
    }
    // The legend: what each box style means.
    let ly = tree_h + 4.0;
    let _ = write!(out, "  <g class=\"legend\">");
    for (i, (style, text)) in [
        (event_box, "event"),
        (marked_box, "the traced event(s)"),
        (denial_box, "denied by a gate (batpak.gate.denied)"),
    ]
    .iter()
    .enumerate()
    {
        let lx = M + [0.0, 110.0, 290.0][i];
        let _ = write!(
            out,
            "<rect x=\"{lx}\" y=\"{ly}\" width=\"24\" height=\"14\" rx=\"3\" {style}/><text x=\"{}\" y=\"{}\">{}</text>",
            lx + 30.0,
            ly + 11.0,
            xml_escape(text)
        );
    }
    out.push_str("</g>\n</svg>\n");
    out
}

/// `batpak-host trace ID|ENTITY`: the trace of `a.target` in the store in
/// `data` (through the host running on it when there is one), drawn in
/// `a.format` on `stdout`.
///
/// # Errors
/// No store, a target that is neither an event nor an entity with events,
/// a store or connection failure.
pub fn trace(
    data: &Path,
    a: TraceArgs,
    stdout: &mut dyn std::io::Write,
) -> anyhow::Result<ExitCode> {
    let traced = if let Some(c) = Client::connect(data)? {
        resolve(&mut AccessSource(Box::new(c)), &a.target)?
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
            .then(|| LocalStore::open(data).ok())
            .flatten()
        {
            Some(store) => {
                let mut src = AccessSource(Box::new(store));
                let r = resolve(&mut src, &a.target);
                src.0.close()?;
                r?
            }
            None => resolve(&mut ScanSource::read(data)?, &a.target)?,
        }
    };
    draw(&traced, a.format, stdout)
}

/// Prints a resolved trace in `format` on `stdout`.
///
/// # Errors
/// None so far (a reader that went away ends the output quietly).
pub(crate) fn draw(
    traced: &Traced,
    format: TraceFormat,
    stdout: &mut dyn std::io::Write,
) -> anyhow::Result<ExitCode> {
    if traced.cut {
        eprintln!("trace: more than {MAX_NODES} events; the tree is cut there");
    }
    let marked: HashSet<String> = traced.marked.iter().cloned().collect();
    let forest = &traced.forest;
    let out = match format {
        TraceFormat::Text => {
            let label = text_label(&marked);
            let mut s = String::new();
            for t in forest {
                for line in render_tree(t, &label) {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
            s
        }
        TraceFormat::Dot => to_dot(forest, &marked),
        TraceFormat::Svg => to_svg(forest, &marked),
        TraceFormat::Json => {
            let v = match &traced.entity {
                None => json!({"target": traced.marked[0], "root": to_json(&forest[0])}),
                Some(entity) => json!({
                    "entity": entity,
                    "targets": traced.marked,
                    "roots": forest.iter().map(to_json).collect::<Vec<_>>(),
                }),
            };
            let mut s = v.to_string();
            s.push('\n');
            s
        }
    };
    if stdout.write_all(out.as_bytes()).is_err() {
        return Ok(ExitCode::SUCCESS); // reader went away
    }
    let _ = stdout.flush();
    Ok(ExitCode::SUCCESS)
}
