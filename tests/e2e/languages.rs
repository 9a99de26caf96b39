//! Reactors in every supported language, built from source and run end to
//! end by the real host: C, Python, JavaScript (on the JS SDK, built with
//! QuickJS and with SpiderMonkey) and WAT beside the Rust SDK. Each implements the same pass-through reactor, so their
//! reactions are compared event for event with the Rust one.
//!
//! The toolchains come from `toolchains.rs`: fetched by the tests into
//! `<target>/toolchains`, user-level. Nothing is skipped: a toolchain that
//! cannot be fetched fails the test with what failed and how to fix it.

use crate::common::{append, bin, host_ok, json_lines, plugin, tempdir, workspace};
use crate::toolchains::{lock, target_dir, toolchains};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The non-Rust examples, built once per test binary by
/// `plugins/build-examples.sh` into `<target>/lang-plugins` (which rebuilds
/// a language only when its sources, the WIT or its compiler changed), with
/// the provisioned toolchains first on PATH. A lock in that directory keeps
/// test binaries started together from building into it at once.
pub fn lang_plugins_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let path = toolchains().path();
        let dir = target_dir().join("lang-plugins");
        std::fs::create_dir_all(&dir).unwrap();
        let _lock = lock(&dir.join(".lock"));
        let out = Command::new("bash")
            .arg(workspace().join("plugins/build-examples.sh"))
            .arg(&dir)
            .env("PATH", path)
            .output()
            .expect("running plugins/build-examples.sh");
        assert!(
            out.status.success(),
            "building the C, Python, JavaScript and WAT examples failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let times = std::fs::read_to_string(dir.join("build-times.tsv")).unwrap_or_default();
        eprintln!("language examples (language, build s, bytes):\n{times}");
        dir
    })
}

/// The component of each language, keyed by its reactor name.
fn components() -> Vec<(&'static str, PathBuf)> {
    let d = lang_plugins_dir();
    vec![
        ("passthrough", plugin("passthrough")),
        ("passthrough-c", d.join("passthrough_c.wasm")),
        ("passthrough-py", d.join("passthrough_py.wasm")),
        ("passthrough-js", d.join("passthrough_js.wasm")),
        ("passthrough-js-sm", d.join("passthrough_js_sm.wasm")),
        ("passthrough-wat", d.join("passthrough_wat.wat")),
    ]
}

/// Input events with payloads of several shapes (object, array, a JSON
/// string, numbers, non-ASCII text, nested, empty object) on a few entities.
fn inputs(n: usize) -> Vec<Value> {
    let shapes = [
        json!({"n": 1}),
        json!([1, 2, 3]),
        json!("a JSON string payload"),
        json!(12345678901234567u64),
        json!({"text": "grüße, 世界 ✓"}),
        json!({"deep": {"a": [null, true, 1.5]}}),
        json!({}),
    ];
    (0..n)
        .map(|i| {
            json!({
                "entity": format!("item:{}", i % 4),
                "scope": if i % 2 == 0 { "bench" } else { "other" },
                "kind": "bench.in",
                "payload": shapes[i % shapes.len()],
            })
        })
        .collect()
}

/// Payloads `append --jsonl` cannot carry (it stores JSON values), appended
/// one by one with `append --payload`: an empty payload, and text that is
/// not JSON, so a reactor must copy bytes, not values.
const TEXT_PAYLOADS: [&str; 2] = ["", "plain text, not JSON: grüße ✓"];

/// Appends `inputs(n)` and then the `TEXT_PAYLOADS` events; returns every
/// input as `events` prints it (a non-JSON payload as a string), in
/// append order.
fn append_inputs(data: &Path, n: usize) -> Vec<Value> {
    let receipts = append(data, &inputs(n));
    assert_eq!(receipts.len(), n);
    let mut all = inputs(n);
    for (i, text) in TEXT_PAYLOADS.iter().enumerate() {
        let entity = format!("text:{i}");
        host_ok(
            data,
            &[
                "append",
                "--entity",
                &entity,
                "--scope",
                "bench",
                "--kind",
                "bench.in",
                "--payload-text",
                text,
            ],
        );
        all.push(json!({"entity": entity, "scope": "bench", "kind": "bench.in", "payload": text}));
    }
    all
}

/// A reaction reduced to what the reactor decides: where, what, and which
/// input (by sequence) caused it.
fn reaction(e: &Value, seq_of: &BTreeMap<String, u64>) -> Value {
    let cause = e["causation"].as_str().unwrap_or("");
    json!({
        "source_seq": seq_of.get(cause).copied(),
        "entity": e["entity"],
        "scope": e["scope"],
        "kind": e["kind"],
        "payload": e["payload"],
        "correlation_is_source": e["correlation"] == e["causation"],
    })
}

#[test]
fn every_language_reacts_like_the_rust_passthrough() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let all_inputs = append_inputs(&data, 23);
    let n = all_inputs.len();

    // One run with all five reactors over the same log; batches of at most
    // 5 so single-event and many-event batches both occur.
    let comps = components();
    let mut args: Vec<String> = vec![
        "run".into(),
        "--until-idle".into(),
        "--quiet".into(),
        "--max-batch".into(),
        "5".into(),
    ];
    args.extend(comps.iter().map(|(_, p)| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = host_ok(&data, &argv);
    let log = String::from_utf8_lossy(&out.stderr);
    eprintln!("{log}");

    let events = json_lines(&host_ok(&data, &["events"]).stdout);
    let seq_of: BTreeMap<String, u64> = events
        .iter()
        .filter(|e| e["kind"] == "bench.in")
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seq_of.len(), n);

    let mut by_reactor: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["kind"] == "bench.out") {
        let who = e["meta"]["reactor"].as_str().unwrap_or("?").to_string();
        by_reactor
            .entry(who)
            .or_default()
            .push(reaction(e, &seq_of));
    }
    let sort = |v: &mut Vec<Value>| v.sort_by_key(|r| r["source_seq"].as_u64());
    let mut expected = by_reactor
        .get("passthrough")
        .cloned()
        .expect("the Rust passthrough reacted");
    sort(&mut expected);
    // The baseline itself: one reaction per input, same coordinates and
    // payload, caused by that input.
    assert_eq!(expected.len(), n, "Rust passthrough reactions");
    for (r, input) in expected.iter().zip(&all_inputs) {
        assert_eq!(
            (&r["entity"], &r["scope"], &r["payload"]),
            (&input["entity"], &input["scope"], &input["payload"])
        );
        assert_eq!(r["correlation_is_source"], true);
        assert!(
            r["source_seq"].is_u64(),
            "reaction without a known cause: {r}"
        );
    }
    for (name, path) in &comps[1..] {
        let mut got = by_reactor.remove(*name).unwrap_or_else(|| {
            panic!(
                "reactor {name} ({}) appended no reaction; run log:\n{log}",
                path.display()
            )
        });
        sort(&mut got);
        assert_eq!(
            got,
            expected,
            "reactor {name} ({}) reacted differently from the Rust passthrough",
            path.display()
        );
    }
    // Nothing was denied or parked for any language.
    let all = json_lines(&host_ok(&data, &["events", "--system"]).stdout);
    let failures: Vec<&Value> = all
        .iter()
        .filter(|e| {
            let k = e["kind"].as_str().unwrap_or("");
            k == "batpak.gate.denied" || k == "batpak.reactor.parked"
        })
        .collect();
    assert!(
        failures.is_empty(),
        "denials or parked events: {failures:?}"
    );
}

#[test]
fn the_c_build_tool_refuses_a_module_without_an_embedded_wit() {
    lang_plugins_dir(); // builds batpak-build
    let tool = Path::new(bin()).with_file_name("batpak-build");
    let dir = tempdir();
    // A valid core module that carries no component type.
    let core = dir.path().join("bare.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = Command::new(&tool)
        .arg("component")
        .arg(&core)
        .arg(dir.path().join("out.wasm"))
        .output()
        .expect("running batpak-build");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reactor_plugin_component_type.o"),
        "the error should name the missing object file: {err}"
    );
    assert!(!dir.path().join("out.wasm").exists());
}

#[test]
fn the_sdk_vendors_the_very_same_wit() {
    let root = workspace();
    let main = std::fs::read_to_string(root.join("wit/reactor.wit")).unwrap();
    let vendored = std::fs::read_to_string(root.join("guest-sdk/wit/reactor.wit")).unwrap();
    assert!(
        main == vendored,
        "guest-sdk/wit/reactor.wit differs from wit/reactor.wit; copy it: cp wit/reactor.wit guest-sdk/wit/reactor.wit"
    );
}

/// PATH for a template's `build.sh`: `batpak-build` (beside the host
/// binary once `lang_plugins_dir` ran), then the provisioned toolchains.
fn path_with_build_tool() -> OsString {
    lang_plugins_dir();
    let bin_dir = Path::new(bin()).parent().unwrap().to_path_buf();
    let path = toolchains().path();
    std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&path))).unwrap()
}

/// The SDK as `cargo package` makes it, unpacked outside the workspace,
/// with the layout crate it depends on (packaged with it, as both would be
/// published): a Rust template built against them proves the SDK is
/// self-contained. Returns the SDK's directory and the layout crate's.
fn packaged_sdk(into: &Path) -> (PathBuf, PathBuf) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "package",
            "-p",
            "batpak-guest",
            "-p",
            "batpak-layout",
            "--allow-dirty",
            "--no-verify",
        ])
        .output()
        .expect("running cargo package");
    assert!(
        out.status.success(),
        "cargo package -p batpak-guest -p batpak-layout failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = Path::new(bin()).parent().unwrap().parent().unwrap();
    for name in ["batpak-guest-0.1.0", "batpak-layout-0.1.0"] {
        let krate = target.join(format!("package/{name}.crate"));
        let st = Command::new("tar")
            .arg("xzf")
            .arg(&krate)
            .arg("-C")
            .arg(into)
            .status()
            .expect("running tar");
        assert!(st.success(), "unpacking {}", krate.display());
    }
    (
        into.join("batpak-guest-0.1.0"),
        into.join("batpak-layout-0.1.0"),
    )
}

fn new_build_and_test(lang: &str) {
    new_build_and_test_with(lang, &[]);
}

/// `new --lang LANG EXTRA...`, then its `build.sh`, then `test` against
/// the template's fixtures.
fn new_build_and_test_with(lang: &str, extra: &[&str]) {
    let dir = tempdir();
    let name = format!("tpl-{lang}");
    let project = dir.path().join(&name);
    let mut args = vec![
        "new".to_string(),
        "--lang".into(),
        lang.into(),
        name.clone(),
    ];
    args.extend(["--dir".into(), project.display().to_string()]);
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut layout = None;
    if lang == "rust" {
        let (sdk, l) = packaged_sdk(dir.path());
        args.extend(["--sdk".into(), sdk.display().to_string()]);
        layout = Some(l);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    host_ok(dir.path(), &argv);
    if let Some(layout) = layout {
        // The packaged SDK names batpak-layout by version, as published
        // crates do; this stands in for the registry.
        let manifest = project.join("Cargo.toml");
        let mut text = std::fs::read_to_string(&manifest).unwrap();
        text.push_str(&format!(
            "\n[patch.crates-io]\nbatpak-layout = {{ path = {:?} }}\n",
            layout.display().to_string()
        ));
        std::fs::write(&manifest, text).unwrap();
    }

    let target = Path::new(bin()).parent().unwrap().parent().unwrap();
    let built = Command::new("bash")
        .arg(project.join("build.sh"))
        .env("PATH", path_with_build_tool())
        // The Rust template's dependencies compile once, not per test run.
        .env("CARGO_TARGET_DIR", target.join("template-rust"))
        .output()
        .expect("running build.sh");
    assert!(
        built.status.success(),
        "{lang} template: build.sh failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = project.join(format!("tpl_{lang}.wasm"));
    let out = host_ok(
        dir.path(),
        &[
            "test",
            wasm.to_str().unwrap(),
            "--input",
            project.join("fixtures/events.jsonl").to_str().unwrap(),
            "--expect",
            project.join("fixtures/expected.jsonl").to_str().unwrap(),
        ],
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 3, "{lang} template reactions: {lines:?}");
    assert!(lines.iter().all(|l| l["reaction"]["kind"] == "sample.out"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reactions match"), "{err}");
    assert!(err.contains("same reactions in one-event batches"), "{err}");
}

#[test]
fn new_then_test_works_for_the_c_template() {
    new_build_and_test("c");
}

#[test]
fn new_then_test_works_for_the_python_template() {
    new_build_and_test("python");
}

#[test]
fn new_then_test_works_for_the_js_template() {
    // SpiderMonkey (componentize-js), the default engine.
    new_build_and_test("js");
}

#[test]
fn new_then_test_works_for_the_js_template_on_quickjs() {
    new_build_and_test_with("js", &["--engine", "quickjs"]);
}

#[test]
fn new_then_test_works_for_the_rust_template_against_the_packaged_sdk() {
    new_build_and_test("rust");
}

#[test]
fn test_shows_a_diff_and_says_when_reactions_depend_on_batching() {
    let dir = tempdir();
    // A reactor that only reacts to the first event of every batch.
    let source =
        std::fs::read_to_string(workspace().join("plugins/passthrough-wat/reactor.wat")).unwrap();
    let count = "(local.set $n (i32.load (local.get $b)))";
    assert!(source.contains(count), "the WAT layout changed");
    let wat = source.replace(count, "(local.set $n (i32.const 1))");
    let plugin = crate::common::write_file(dir.path(), "first-only.wat", &wat);
    let input: String = (0..4)
        .map(|i| {
            format!(
                "{{\"entity\":\"e:{i}\",\"scope\":\"s\",\"kind\":\"bench.in\",\"payload\":{i}}}\n"
            )
        })
        .collect();
    let input = crate::common::write_file(dir.path(), "in.jsonl", &input);
    let expect: String = (0..4)
        .map(|i| {
            format!("{{\"source\":{i},\"entity\":\"e:{i}\",\"scope\":\"s\",\"kind\":\"bench.out\",\"payload\":{i}}}\n")
        })
        .collect();
    let expect = crate::common::write_file(dir.path(), "want.jsonl", &expect);
    let out = crate::common::host(
        dir.path(),
        &[
            "test",
            plugin.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--expect",
            expect.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // All four events arrive in one batch: only the first reacts.
    assert_eq!(json_lines(&out.stdout).len(), 1, "{err}");
    assert!(err.contains("reactions differ"), "{err}");
    assert!(
        err.contains("- {\"entity\":\"e:1\""),
        "the diff names the missing reaction: {err}"
    );
    assert!(err.contains("depend on batching"), "{err}");
}

#[test]
fn each_language_guide_shows_the_example_ci_builds() {
    let root = workspace();
    for guide in ["c", "python", "javascript", "wat"] {
        let path = root.join(format!("guest-sdk/docs/{guide}.md"));
        let text = std::fs::read_to_string(&path).unwrap();
        // Every example the guide shows (the pass-through, and the
        // inventory rule in C, Python and JavaScript) is the file CI builds.
        let marker = "<!-- example: ";
        let shown_examples: Vec<&str> = text.split(marker).skip(1).collect();
        assert!(
            !shown_examples.is_empty(),
            "{} has no example marker",
            path.display()
        );
        if guide != "wat" {
            assert!(
                shown_examples
                    .iter()
                    .any(|r| r.starts_with("plugins/inventory-")),
                "{} does not show the inventory rule CI builds",
                path.display()
            );
        }
        for rest in shown_examples {
            let example = rest.split_whitespace().next().unwrap();
            let body = rest.split_once("```").unwrap().1;
            let body = body.split_once('\n').unwrap().1;
            let shown = &body[..body.find("\n```").unwrap() + 1];
            let built = std::fs::read_to_string(root.join(example)).unwrap();
            assert!(
                shown == built,
                "{} shows a different {example} than the one CI builds; paste the file into the guide",
                path.display()
            );
        }
        // The build command in the guide is the one the example needs.
        for must in match guide {
            "c" => vec!["-mexec-model=reactor", "batpak-build component"],
            "python" => vec![
                "componentize-py==0.25.1",
                "componentize-py -d wit -w reactor-plugin componentize",
            ],
            "javascript" => vec![
                "--sync",
                "componentize-qjs@0.4.5",
                "@bytecodealliance/componentize-js@0.23.0",
                "-d http -d fetch-event",
                "--engine quickjs",
            ],
            _ => vec!["post-return"],
        } {
            assert!(
                text.contains(must),
                "{} does not mention {must}",
                path.display()
            );
        }
    }
}

#[test]
fn test_feeds_a_lossy_subscription_reactor_live_events() {
    let dir = tempdir();
    let wat = std::fs::read_to_string(workspace().join("plugins/passthrough-wat/reactor.wat"))
        .unwrap()
        .replace(
            "\"\\00\\00\\00\\00\"               ;; canal cursor-guaranteed @48",
            "\"\\01\\00\\00\\00\"               ;; canal lossy-subscription @48",
        );
    assert!(
        wat.contains("lossy-subscription @48"),
        "the WAT layout changed"
    );
    let plugin = crate::common::write_file(dir.path(), "lossy.wat", &wat);
    let input = crate::common::write_file(
        dir.path(),
        "in.jsonl",
        "{\"entity\":\"e:1\",\"scope\":\"s\",\"kind\":\"bench.in\",\"payload\":1}\n\
         {\"entity\":\"e:2\",\"scope\":\"s\",\"kind\":\"bench.in\",\"payload\":2}\n",
    );
    let out = host_ok(
        dir.path(),
        &[
            "test",
            plugin.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ],
    );
    assert_eq!(json_lines(&out.stdout).len(), 2);
}

#[test]
fn new_refuses_a_bad_name_and_a_non_empty_directory() {
    let dir = tempdir();
    let out = crate::common::host(dir.path(), &["new", "--lang", "c", "Bad Name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(crate::common::stderr(&out).contains("NAME"));
    let taken = dir.path().join("taken");
    std::fs::create_dir_all(&taken).unwrap();
    std::fs::write(taken.join("keep.txt"), "mine").unwrap();
    let out = crate::common::host(
        dir.path(),
        &[
            "new",
            "--lang",
            "js",
            "ok-name",
            "--dir",
            taken.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(crate::common::stderr(&out).contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(taken.join("keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn test_prints_the_gates_denials() {
    let dir = tempdir();
    let plugin = workspace().join("plugins/passthrough-wat/reactor.wat");
    let input = crate::common::write_file(
        dir.path(),
        "in.jsonl",
        "{\"entity\":\"e:1\",\"scope\":\"s\",\"kind\":\"bench.in\",\"payload\":1}\n",
    );
    // Granting a kind the reactor does not declare leaves bench.out denied.
    let out = host_ok(
        dir.path(),
        &[
            "test",
            plugin.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--grant",
            "other.kind",
        ],
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["denied"]["gate"], "capability");
    assert_eq!(lines[0]["denied"]["kind"], "bench.out");
}

#[test]
fn a_c_reactor_that_prints_gets_the_wasi_adapter_and_runs() {
    // The example needs no WASI with zig's wasi-libc; printf does, so this
    // builds the example with one printf added and checks that
    // `batpak-build component` linked the preview-1 adapter (the component
    // imports WASI preview 2) and that the host runs it.
    lang_plugins_dir(); // builds batpak-build
    let tool = Path::new(bin()).with_file_name("batpak-build");
    let zig = toolchains().bin().join("zig");
    let dir = tempdir();
    let source =
        std::fs::read_to_string(workspace().join("plugins/passthrough-c/reactor.c")).unwrap();
    let marker = "  (void)err;\n";
    assert!(source.contains(marker), "the C example's layout changed");
    let source = source.replacen(
        marker,
        &format!("{marker}  printf(\"printed from C: %u events\\n\", batch->count);\n"),
        1,
    );
    let c = crate::common::write_file(dir.path(), "reactor.c", &source);
    let b = dir.path().join("bindings");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("running a C build step");
        assert!(
            out.status.success(),
            "{cmd:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new(&tool)
        .arg("c-bindings")
        .arg(workspace().join("wit"))
        .arg(&b));
    let core = dir.path().join("reactor.core.wasm");
    run(Command::new(&zig)
        .args(["cc", "--target=wasm32-wasi", "-mexec-model=reactor", "-O2"])
        .arg("-Wl,--strip-all")
        .arg(format!("-I{}", b.display()))
        .arg(format!("-I{}", workspace().join("guest-sdk/c").display()))
        .arg("-o")
        .arg(&core)
        .arg(&c)
        .arg(b.join("reactor_plugin.c"))
        .arg(b.join("reactor_plugin_component_type.o")));
    let wasm = dir.path().join("printing_c.wasm");
    run(Command::new(&tool).arg("component").arg(&core).arg(&wasm));

    let inspected = host_ok(dir.path(), &["inspect", wasm.to_str().unwrap()]);
    let info: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    let imports = info["component"]["imports"].as_array().unwrap();
    assert!(
        imports
            .iter()
            .any(|i| i.as_str().unwrap().starts_with("wasi:cli/")),
        "no WASI import, so no adapter: {imports:?}"
    );
    let input = crate::common::write_file(
        dir.path(),
        "in.jsonl",
        "{\"entity\":\"e:1\",\"scope\":\"s\",\"kind\":\"bench.in\",\"payload\":1}\n\
         {\"entity\":\"e:2\",\"scope\":\"s\",\"kind\":\"bench.in\",\"payload\":2}\n",
    );
    let out = host_ok(
        dir.path(),
        &[
            "test",
            wasm.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ],
    );
    assert_eq!(json_lines(&out.stdout).len(), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("printed from C: 2 events"), "{err}");
}

/// The demo's inventory rule in each language (`plugins/inventory` and
/// its versions from the guides), keyed by reactor name, with its source.
fn inventory_components() -> Vec<(&'static str, PathBuf, &'static str)> {
    let d = lang_plugins_dir();
    vec![
        (
            "inventory",
            plugin("inventory"),
            "plugins/inventory/src/lib.rs",
        ),
        (
            "inventory-c",
            d.join("inventory_c.wasm"),
            "plugins/inventory-c/reactor.c",
        ),
        (
            "inventory-py",
            d.join("inventory_py.wasm"),
            "plugins/inventory-py/app.py",
        ),
        (
            "inventory-js",
            d.join("inventory_js.wasm"),
            "plugins/inventory-js/reactor.js",
        ),
        (
            "inventory-js-sm",
            d.join("inventory_js_sm.wasm"),
            "plugins/inventory-js/reactor.js",
        ),
    ]
}

/// An `order.placed` on `order:<n>` with any payload.
fn order_with(n: u32, payload: Value) -> Value {
    json!({"entity": format!("order:{n}"), "scope": "shop", "kind": "order.placed", "payload": payload})
}

/// The fixture orders of the first run: reservations until a sku runs out,
/// out of stock, an unknown sku, and malformed orders of every shape
/// (missing, zero, negative, fractional, text and non-integer quantities,
/// a sku that is no string, empty or padded, payloads that are no object).
fn inventory_orders_first() -> Vec<Value> {
    let o = |n, sku: &str, qty: u64| order_with(n, json!({"sku": sku, "qty": qty}));
    vec![
        o(1, "widget", 4),
        o(2, "gadget", 2),
        o(3, "gizmo", 2),
        o(4, "gizmo", 1),
        order_with(5, json!({"sku": "widget"})),
        o(6, "widget", 0),
        o(7, "sprocket", 1),
        order_with(8, json!({"sku": "widget", "qty": -2})),
        order_with(9, json!({"sku": "widget", "qty": "2"})),
        order_with(10, json!({"sku": 5, "qty": 1})),
        order_with(11, json!({"sku": "", "qty": 1})),
        order_with(12, json!({"sku": "widget", "qty": 1.5})),
        order_with(13, json!({"sku": " widget", "qty": 1})),
        o(14, "widget", 7),
        o(15, "widget", 6),
        order_with(16, json!("widget")),
        order_with(17, Value::Null),
    ]
}

/// The orders of the second run (a new process, so remaining stock must be
/// rebuilt from the reservations in the log).
fn inventory_orders_second() -> Vec<Value> {
    let o = |n, sku: &str, qty: u64| order_with(n, json!({"sku": sku, "qty": qty}));
    vec![
        o(20, "widget", 1),
        o(21, "gadget", 3),
        o(22, "gadget", 1),
        o(23, "gizmo", 1),
        o(24, "sprocket", 2),
    ]
}

/// One reactor over the fixture orders in a log of its own (each reserves
/// on the same `sku:` entities): the first orders plus a text payload
/// that is not JSON, one run, then the second orders and another run.
/// Returns its reactions reduced to (input index, entity, scope, kind,
/// payload, caused and correlated by the input), in input order.
fn inventory_reactions(plugin: &Path) -> Vec<Value> {
    let dir = tempdir();
    let data = dir.path().join("data");
    let run = |data: &Path| {
        let p = plugin.display().to_string();
        let out = host_ok(
            data,
            &["run", "--until-idle", "--quiet", "--max-batch", "3", &p],
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    append(&data, &inventory_orders_first());
    host_ok(
        &data,
        &[
            "append",
            "--entity",
            "order:18",
            "--scope",
            "shop",
            "--kind",
            "order.placed",
            "--payload-text",
            "not json",
        ],
    );
    let log1 = run(&data);
    append(&data, &inventory_orders_second());
    let log2 = run(&data);

    let events = json_lines(&host_ok(&data, &["events"]).stdout);
    let index_of: BTreeMap<String, usize> = events
        .iter()
        .filter(|e| e["kind"] == "order.placed")
        .enumerate()
        .map(|(i, e)| (e["id"].as_str().unwrap().to_string(), i))
        .collect();
    let mut reactions: Vec<Value> = events
        .iter()
        .filter(|e| e["kind"].as_str().unwrap_or("").starts_with("inventory."))
        .map(|e| {
            let cause = e["causation"].as_str().unwrap_or("");
            json!({
                "input": index_of.get(cause).copied(),
                "entity": e["entity"],
                "scope": e["scope"],
                "kind": e["kind"],
                "payload": e["payload"],
                "correlation_is_source": e["correlation"] == e["causation"],
            })
        })
        .collect();
    reactions.sort_by_key(|r| r["input"].as_u64());
    let failures: Vec<Value> = json_lines(&host_ok(&data, &["events", "--system"]).stdout)
        .into_iter()
        .filter(|e| {
            let k = e["kind"].as_str().unwrap_or("");
            k == "batpak.gate.denied" || k == "batpak.reactor.parked"
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{}: denials or parked events: {failures:?}\nrun logs:\n{log1}\n{log2}",
        plugin.display()
    );
    reactions
}

/// Lines of a source file, and those that are neither blank nor comments
/// (Rust's without its unit tests).
fn line_counts(source: &str) -> (usize, usize) {
    let text = std::fs::read_to_string(workspace().join(source)).unwrap();
    let text = text.split("\n#[cfg(test)]").next().unwrap();
    let code = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with("# "))
        .count();
    (text.lines().count(), code)
}

#[test]
fn every_language_reserves_inventory_like_the_rust_reactor() {
    let comps = inventory_components();
    let expected = inventory_reactions(&comps[0].1);
    // The Rust baseline itself, order by order: what was decided, where.
    let decided: Vec<(String, String, Value)> = expected
        .iter()
        .map(|r| {
            let p = &r["payload"];
            let what = if r["kind"] == "inventory.reserved" {
                json!(p["remaining"])
            } else {
                p["reason"].clone()
            };
            (
                r["kind"].as_str().unwrap().to_string(),
                r["entity"].as_str().unwrap().to_string(),
                what,
            )
        })
        .collect();
    let res = |sku: &str, left: u64| {
        (
            "inventory.reserved".to_string(),
            format!("sku:{sku}"),
            json!(left),
        )
    };
    let rej = |n: u32, why: &str| {
        (
            "inventory.rejected".to_string(),
            format!("order:{n}"),
            json!(why),
        )
    };
    let (bad, none, unknown) = ("malformed order", "insufficient stock", "unknown sku");
    let mut want = vec![
        res("widget", 6),
        res("gadget", 3),
        res("gizmo", 0),
        rej(4, none),
    ];
    want.extend((5..=6).map(|n| rej(n, bad)));
    want.push(rej(7, unknown));
    want.extend((8..=13).map(|n| rej(n, bad)));
    want.extend([
        rej(14, none),
        res("widget", 0),
        rej(16, bad),
        rej(17, bad),
        rej(18, bad),
    ]);
    want.extend([
        rej(20, none),
        res("gadget", 0),
        rej(22, none),
        rej(23, none),
        rej(24, unknown),
    ]);
    assert_eq!(decided, want, "the Rust inventory's reactions");
    assert!(expected.iter().enumerate().all(|(i, r)| r["input"] == i
        && r["scope"] == "shop"
        && r["correlation_is_source"] == true));

    let (rust_lines, rust_code) = line_counts(comps[0].2);
    eprintln!(
        "inventory rule, lines (all / code): Rust {rust_lines} / {rust_code} ({})",
        comps[0].2
    );
    for (name, path, source) in &comps[1..] {
        let (lines, code) = line_counts(source);
        eprintln!("  {name}: {lines} / {code} ({source})");
        let got = inventory_reactions(path);
        assert_eq!(
            got,
            expected,
            "reactor {name} ({}) reacted differently from the Rust inventory",
            path.display()
        );
    }
}
