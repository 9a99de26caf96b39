//! Indexed reads and `trace` (issue 8 item 3): every `events` filter
//! (entity, correlation, caused-by, position, a `batpak.*` kind) gives the
//! same answer through a running host, through the store's indexes when
//! the CLI holds the store, and as a brute-force filter of the whole log;
//! `trace` draws a known graph exactly, and its DOT, SVG and JSON are
//! well-formed and agree with it.

use crate::common::*;
use serde_json::{json, Value};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn id(n: u32) -> String {
    format!("{n:032x}")
}

/// A(1) → B(2) → {C(3), E(5)}, A → D(4); F(6) unrelated.
fn known_graph(data: &Path) {
    let ev = |n: u32, entity: &str, kind: &str, cause: Option<u32>| {
        let mut v = json!({"id": id(n), "entity": entity, "scope": "shop", "kind": kind, "payload": {"n": n}});
        if let Some(c) = cause {
            v["causation"] = json!(id(c));
        }
        v
    };
    append(
        data,
        &[
            ev(0xa1, "order:1", "order.placed", None),
            ev(0xb1, "stock:1", "stock.reserved", Some(0xa1)),
            ev(0xc1, "ship:1", "ship.requested", Some(0xb1)),
            ev(0xd1, "alert:1", "alert.raised", Some(0xa1)),
            ev(0xe1, "mail:1", "mail.sent", Some(0xb1)),
            ev(0xf1, "order:2", "order.placed", None),
        ],
    );
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

#[test]
fn trace_draws_a_known_graph_exactly() {
    let dir = tempdir();
    let data = dir.path().join("d");
    known_graph(&data);
    let b = text(&host_ok(&data, &["trace", &id(0xb1)]));
    let want_b = format!(
        "#1 order.placed order:1 {a} {{\"n\":161}}\n\
         └─ #2 stock.reserved stock:1 {b} {{\"n\":177}}  ◀\n   \
            ├─ #3 ship.requested ship:1 {c} {{\"n\":193}}\n   \
            └─ #5 mail.sent mail:1 {e} {{\"n\":225}}\n",
        a = id(0xa1),
        b = id(0xb1),
        c = id(0xc1),
        e = id(0xe1)
    );
    assert_eq!(b, want_b);
    let a = text(&host_ok(&data, &["trace", &id(0xa1)]));
    let want_a = format!(
        "#1 order.placed order:1 {a} {{\"n\":161}}  ◀\n\
         ├─ #2 stock.reserved stock:1 {b} {{\"n\":177}}\n\
         │  ├─ #3 ship.requested ship:1 {c} {{\"n\":193}}\n\
         │  └─ #5 mail.sent mail:1 {e} {{\"n\":225}}\n\
         └─ #4 alert.raised alert:1 {d} {{\"n\":209}}\n",
        a = id(0xa1),
        b = id(0xb1),
        c = id(0xc1),
        d = id(0xd1),
        e = id(0xe1)
    );
    assert_eq!(a, want_a);
    // A leaf: its causes only.
    let c = text(&host_ok(&data, &["trace", &id(0xc1)]));
    assert_eq!(c.lines().count(), 3, "{c}");
    assert!(c.lines().last().unwrap().ends_with("◀"), "{c}");

    // JSON: the same tree, nested, with the target named.
    let j: Value =
        serde_json::from_slice(&host_ok(&data, &["trace", &id(0xa1), "--format", "json"]).stdout)
            .expect("trace --format json is JSON");
    assert_eq!(j["target"], id(0xa1));
    fn shape(v: &Value) -> String {
        let kids: Vec<String> = v["children"]
            .as_array()
            .expect("children")
            .iter()
            .map(shape)
            .collect();
        format!("{}[{}]", v["seq"], kids.join(","))
    }
    assert_eq!(shape(&j["root"]), "1[2[3[],5[]],4[]]");

    // DOT: one node per event, one edge per causation, nothing else.
    let dot = text(&host_ok(&data, &["trace", &id(0xa1), "--format", "dot"]));
    assert!(
        dot.starts_with("digraph trace {\n") && dot.ends_with("}\n"),
        "{dot}"
    );
    let edges: Vec<&str> = dot.lines().filter(|l| l.contains(" -> ")).collect();
    let nodes: Vec<&str> = dot.lines().filter(|l| l.contains("[label=")).collect();
    assert_eq!(nodes.len(), 5, "{dot}");
    let mut want_edges: Vec<String> = [(0xa1, 0xb1), (0xb1, 0xc1), (0xa1, 0xd1), (0xb1, 0xe1)]
        .iter()
        .map(|(x, y)| format!("  \"{}\" -> \"{}\";", id(*x), id(*y)))
        .collect();
    let mut got_edges: Vec<String> = edges.iter().map(|s| s.to_string()).collect();
    want_edges.sort();
    got_edges.sort();
    assert_eq!(got_edges, want_edges);
    assert_eq!(dot.matches('"').count() % 2, 0, "balanced quotes: {dot}");

    // SVG: one element, a box per event, a line per causation, balanced tags.
    let svg = text(&host_ok(&data, &["trace", &id(0xa1), "--format", "svg"]));
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_eq!(svg.matches("<g class=\"node\">").count(), 5, "{svg}");
    assert_eq!(svg.matches("<line ").count(), 4);
    assert_eq!(svg.matches("<g ").count(), svg.matches("</g>").count());
    assert_eq!(
        svg.matches("<text ").count(),
        svg.matches("</text>").count()
    );
    assert!(svg.contains(&format!("&#10;{}</title>", id(0xa1))), "{svg}");

    // An unknown id and a malformed one (no entity of that name either) are
    // refused with the fix.
    let out = host(&data, &["trace", &id(0x99)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no event"), "{}", stderr(&out));
    let out = host(&data, &["trace", "nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("32 hex digits"), "{}", stderr(&out));
    assert!(stderr(&out).contains("entity"), "{}", stderr(&out));
}

/// `trace ENTITY`: the trace of every event of the entity, events that
/// share a first cause in one tree, the entity's events marked, unrelated
/// branches left out.
#[test]
fn trace_of_an_entity_draws_the_trees_of_its_events_each_first_cause_once() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let ev = |n: u32, entity: &str, kind: &str, cause: Option<u32>| {
        let mut v = json!({"id": id(n), "entity": entity, "scope": "shop", "kind": kind, "payload": {"n": n}});
        if let Some(c) = cause {
            v["causation"] = json!(id(c));
        }
        v
    };
    // X(cart:1) → P(order:9) → R(stock:9) → S(order:9); X → Q(order:9);
    // U(order:9) alone; Y(mail:1) caused by X, not by an order:9 event.
    append(
        &data,
        &[
            ev(0x10, "cart:1", "cart.checked-out", None),
            ev(0x20, "order:9", "order.placed", Some(0x10)),
            ev(0x30, "order:9", "order.noted", Some(0x10)),
            ev(0x40, "stock:9", "stock.reserved", Some(0x20)),
            ev(0x50, "order:9", "order.shipped", Some(0x40)),
            ev(0x60, "order:9", "order.cancelled", None),
            ev(0x70, "mail:1", "mail.sent", Some(0x10)),
        ],
    );
    let t = text(&host_ok(&data, &["trace", "order:9"]));
    let want = format!(
        "#1 cart.checked-out cart:1 {x} {{\"n\":16}}\n\
         ├─ #2 order.placed order:9 {p} {{\"n\":32}}  ◀\n\
         │  └─ #4 stock.reserved stock:9 {r} {{\"n\":64}}\n\
         │     └─ #5 order.shipped order:9 {s} {{\"n\":80}}  ◀\n\
         └─ #3 order.noted order:9 {q} {{\"n\":48}}  ◀\n\
         #6 order.cancelled order:9 {u} {{\"n\":96}}  ◀\n",
        x = id(0x10),
        p = id(0x20),
        q = id(0x30),
        r = id(0x40),
        s = id(0x50),
        u = id(0x60),
    );
    assert_eq!(t, want);
    // JSON: every root, and the entity's events as the targets.
    let j: Value =
        serde_json::from_slice(&host_ok(&data, &["trace", "order:9", "--format", "json"]).stdout)
            .expect("trace --format json is JSON");
    assert_eq!(j["entity"], "order:9");
    assert_eq!(
        j["targets"],
        json!([id(0x20), id(0x30), id(0x50), id(0x60)])
    );
    let roots: Vec<u64> = j["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(roots, [1, 6]);
    // DOT and SVG draw the same six events.
    let dot = text(&host_ok(&data, &["trace", "order:9", "--format", "dot"]));
    assert_eq!(dot.lines().filter(|l| l.contains("[label=")).count(), 6);
    assert_eq!(dot.matches("style=\"bold\"").count(), 4, "{dot}");
    let svg = text(&host_ok(&data, &["trace", "order:9", "--format", "svg"]));
    assert_eq!(svg.matches("<g class=\"node\">").count(), 6, "{svg}");
    // An id still means the event, and an entity without events is refused.
    let one = text(&host_ok(&data, &["trace", &id(0x60)]));
    assert_eq!(one.lines().count(), 1, "{one}");
    let out = host(&data, &["trace", "order:10"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nor an entity with events"),
        "{}",
        stderr(&out)
    );
}

/// Text cuts a long payload with `…`; the SVG sizes its boxes to the
/// labels, cuts a label over the cap with `…` (the whole text in the
/// tooltip), and draws a gate denial dashed red, with a legend saying so.
#[test]
fn trace_cuts_long_payloads_with_an_ellipsis_fits_long_kinds_and_draws_denials_distinctly() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let long_kind = format!("bench.{}", "k".repeat(100));
    let long_payload = "x".repeat(300);
    append(
        &data,
        &[
            json!({"id": id(1), "entity": "e:1", "scope": "bench", "kind": "bench.in", "payload": {"text": long_payload}}),
            json!({"id": id(2), "causation": id(1), "entity": "e:1", "scope": "bench", "kind": long_kind, "payload": {}}),
        ],
    );
    // A real denial: passthrough answers bench.in with bench.out, which the
    // operator's config does not grant.
    let cfg = write_file(
        dir.path(),
        "plugins.json",
        r#"{"plugins": {"passthrough": {"grant_emits": ["bench.other"]}}}"#,
    );
    host_ok(
        &data,
        &[
            "run",
            "--until-idle",
            "--quiet",
            "--plugin-config",
            cfg.to_str().unwrap(),
            plugin("passthrough").to_str().unwrap(),
        ],
    );
    let t = text(&host_ok(&data, &["trace", &id(1)]));
    let first = t.lines().next().unwrap();
    assert!(first.ends_with("…  ◀"), "{t}");
    let shown = first.split(&id(1)).nth(1).unwrap().trim_start();
    let shown = shown.trim_end_matches("  ◀");
    assert_eq!(shown.chars().count(), 80, "{shown}");
    assert!(shown.starts_with("{\"text\":\"xxx"), "{shown}");
    assert!(t.contains("batpak.gate.denied"), "{t}");

    let svg = text(&host_ok(&data, &["trace", &id(1), "--format", "svg"]));
    // The denial: its own class, a dashed red border; the legend names it.
    let denial = svg
        .lines()
        .find(|l| l.contains("<g class=\"node denial\">"))
        .unwrap_or_else(|| panic!("no denial node: {svg}"));
    assert!(denial.contains("batpak.gate.denied"), "{denial}");
    assert!(
        denial.contains("stroke=\"#c0392b\"") && denial.contains("stroke-dasharray"),
        "{denial}"
    );
    assert_eq!(svg.matches("<g class=\"node").count(), 3, "{svg}");
    let legend = svg
        .lines()
        .find(|l| l.contains("<g class=\"legend\">"))
        .unwrap_or_else(|| panic!("no legend: {svg}"));
    assert!(legend.contains("denied by a gate"), "{legend}");
    assert!(legend.contains("stroke-dasharray"), "{legend}");
    // The long kind: cut with `…` in the box, whole in the tooltip.
    let node = svg
        .lines()
        .find(|l| l.contains(&long_kind))
        .unwrap_or_else(|| panic!("the long kind is nowhere: {svg}"));
    assert!(
        node.contains(&format!("<title>#2 {long_kind}&#10;")),
        "{node}"
    );
    // Every label fits its box: at most 48 characters of ~6.6 px (11 px
    // monospace) plus padding inside the box's width.
    for l in svg.lines().filter(|l| l.contains("<g class=\"node")) {
        let attr = |name: &str| -> f64 {
            let at = l.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            l[at..].split('"').next().unwrap().parse().unwrap()
        };
        let width = attr("width");
        for label in l
            .split("\">")
            .skip(1)
            .filter_map(|p| p.split_once("</text>"))
        {
            let n = label.0.chars().count();
            assert!(n <= 48, "label over the cap: {l}");
            assert!(
                16.0 + n as f64 * 6.6 <= width,
                "label of {n} characters overflows a box {width} wide: {l}"
            );
        }
    }
    assert!(
        node.contains(&format!(">#2 {}…</text>", &long_kind[..44])),
        "{node}"
    );
}

/// The filters asked of every path.
fn queries(root: &str, mid: &str) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        s(&["--entity", "e:1"]),
        s(&["--entity", "e:1", "--system"]),
        s(&["--correlation", root]),
        s(&["--correlation", root, "--kind", "bench.out"]),
        s(&["--caused-by", root]),
        s(&["--caused-by", mid, "--system"]),
        s(&["--after", "3", "--limit", "2"]),
        s(&["--after", "5", "--limit", "1", "--system"]),
        s(&["--kind", "batpak.cursor.checkpoint"]),
        // No event has this kind: a `batpak.*` kind must not let every
        // host record through (it once printed the checkpoints).
        s(&["--kind", "batpak.reactor.parked"]),
        s(&["--kind", "bench.in", "--kind", "batpak.reactor.parked"]),
        s(&["--kind", "bench.in"]),
        s(&["--system"]),
    ]
}

/// What each query must return, from the whole log.
fn expected(all: &[Value], q: &[String]) -> Vec<u64> {
    let arg = |f: &str| q.iter().position(|x| x == f).map(|i| q[i + 1].clone());
    let system = q.iter().any(|x| x == "--system");
    let kinds: Vec<String> = q
        .windows(2)
        .filter(|w| w[0] == "--kind")
        .map(|w| w[1].clone())
        .collect();
    let after: u64 = arg("--after").map_or(0, |s| s.parse().unwrap());
    let limit: usize = arg("--limit").map_or(usize::MAX, |s| s.parse().unwrap());
    all.iter()
        .filter(|e| e["seq"].as_u64().unwrap() > after)
        .filter(|e| arg("--entity").is_none_or(|en| e["entity"] == en.as_str()))
        .filter(|e| arg("--correlation").is_none_or(|c| e["correlation"] == c.as_str()))
        .filter(|e| arg("--caused-by").is_none_or(|c| e["causation"] == c.as_str()))
        .filter(|e| {
            let k = e["kind"].as_str().unwrap();
            let sys = k.starts_with("batpak.");
            (if kinds.is_empty() {
                !sys
            } else {
                kinds.iter().any(|x| x == k)
            }) || (system && sys)
        })
        .take(limit)
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

fn run_query(data: &Path, q: &[String]) -> Vec<u64> {
    let mut args = vec!["events".to_string()];
    args.extend(q.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    json_lines(&host_ok(data, &args).stdout)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

fn start_run(data: &Path) -> Child {
    let child = Command::new(bin())
        .arg("--data")
        .arg(data)
        .args(["run", plugin("passthrough").to_str().unwrap(), "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning run");
    let start = Instant::now();
    while UnixStream::connect(data.join("run").join("host.sock")).is_err() {
        assert!(start.elapsed() < WAIT, "run never served its socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn stop_run(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let st = wait_exit(&mut child, WAIT);
    assert!(st.success(), "run exited with {st:?}");
}

#[test]
fn every_filter_agrees_through_the_host_through_the_index_and_with_the_log() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let run = start_run(&data);
    // Through the socket: a root, a child of it, and an unrelated event;
    // passthrough answers each with a `bench.out` caused by it.
    // (The socket assigns ids: they come from the receipts.)
    let r = append(
        &data,
        &[json!({"entity": "e:1", "scope": "bench", "kind": "bench.in", "payload": {"n": 1}})],
    );
    let root = r[0]["id"].as_str().unwrap().to_string();
    let r = append(
        &data,
        &[
            json!({"causation": root, "entity": "e:2", "scope": "bench", "kind": "bench.in", "payload": {"n": 2}}),
            json!({"entity": "e:1", "scope": "bench", "kind": "bench.in", "payload": {"n": 3}}),
        ],
    );
    let mid = r[0]["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    while run_query(&data, &["--kind".into(), "bench.out".into()]).len() < 3 {
        assert!(start.elapsed() < WAIT, "passthrough never reacted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its checkpoint lands with the reactions.
    let all = json_lines(&host_ok(&data, &["events", "--system"]).stdout);
    assert!(all.iter().any(|e| e["kind"] == "batpak.cursor.checkpoint"));
    let qs = queries(&root, &mid);
    let through_host: Vec<Vec<u64>> = qs.iter().map(|q| run_query(&data, q)).collect();
    let trace_host = host_ok(&data, &["trace", &root, "--format", "json"]).stdout;
    let entity_host = host_ok(&data, &["trace", "e:1", "--format", "json"]).stdout;
    stop_run(run);

    // The host is gone: the CLI holds the store and reads its indexes.
    let all = json_lines(&host_ok(&data, &["events", "--system"]).stdout);
    for (q, via_host) in qs.iter().zip(&through_host) {
        let want = expected(&all, q);
        let none_expected = q.iter().any(|x| x == "batpak.reactor.parked") && q.len() == 2;
        assert_eq!(want.is_empty(), none_expected, "{q:?}: {want:?}");
        assert_eq!(via_host, &want, "through the host: events {q:?}");
        assert_eq!(run_query(&data, q), want, "through the index: events {q:?}");
    }
    // `--kind batpak.*` selects only that kind on both paths.
    let cps = run_query(&data, &["--kind".into(), "batpak.cursor.checkpoint".into()]);
    assert!(!cps.is_empty());
    for s in &cps {
        let e = all.iter().find(|e| e["seq"] == *s).unwrap();
        assert_eq!(e["kind"], "batpak.cursor.checkpoint");
    }
    // The same trace either way: root → [mid → [out], out].
    let trace_local = host_ok(&data, &["trace", &root, "--format", "json"]).stdout;
    let (h, l): (Value, Value) = (
        serde_json::from_slice(&trace_host).unwrap(),
        serde_json::from_slice(&trace_local).unwrap(),
    );
    assert_eq!(h, l);
    // `trace ENTITY` too: the same trees either way.
    let entity_local = host_ok(&data, &["trace", "e:1", "--format", "json"]).stdout;
    let (h, l): (Value, Value) = (
        serde_json::from_slice(&entity_host).unwrap(),
        serde_json::from_slice(&entity_local).unwrap(),
    );
    assert_eq!(h, l);
    assert_eq!(l["targets"].as_array().map(Vec::len), Some(4), "{l}");
    let l: Value = serde_json::from_slice(&trace_local).unwrap();
    let kinds: Vec<&str> = l["root"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(sorted, ["bench.in", "bench.out"], "{l}");

    // --format pretty: one line per event, ISO time first, payload as stored.
    let pretty = text(&host_ok(
        &data,
        &["events", "--entity", "e:2", "--format", "pretty"],
    ));
    let lines: Vec<&str> = pretty.lines().collect();
    assert_eq!(lines.len(), 2, "{pretty}");
    for l in &lines {
        let t = l.split(' ').next().unwrap();
        assert!(
            t.len() == 27 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{l}"
        );
        assert!(l.ends_with(r#"{"n":2}"#), "{l}");
    }
    // Bad ids are refused with the fix, on the local path.
    let out = host(&data, &["events", "--correlation", "xyz"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("32 hex digits"), "{}", stderr(&out));
}
