//! Every committed input — the seed corpora (`corpus/TARGET/`) and every
//! input a fuzzer found a defect with (`regressions/TARGET/`) — through its
//! target in a plain build: a defect once found stays fixed. Run by the
//! e2e suite (`tests/e2e/fuzz_corpus.rs`), so `cargo test --release` runs it.

use std::path::Path;

#[test]
fn every_committed_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut fed = 0;
    for kind in ["corpus", "regressions"] {
        for target in batpak_fuzz::TARGETS {
            let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else {
                continue;
            };
            let mut files: Vec<_> = dir.map(|e| e.expect("a directory entry").path()).collect();
            files.sort();
            for f in files {
                let data = std::fs::read(&f).expect("reading an input");
                eprintln!("{}", f.display());
                assert!(batpak_fuzz::run(target, &data));
                fed += 1;
            }
        }
    }
    // Each target has seeds: a run that found none tested nothing.
    assert!(
        fed >= 6 * 3,
        "only {fed} inputs found under {}",
        root.display()
    );
}

#[test]
fn the_seeds_on_disk_are_the_ones_the_code_makes() {
    // A changed wire format must regenerate them (the make-seeds binary).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in batpak_fuzz::TARGETS {
        for (name, bytes) in batpak_fuzz::seeds(target) {
            let path = root.join(target).join(format!("seed-{name}"));
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == bytes || target == "store",
                "{} is stale: run `cargo run --release --manifest-path host/fuzz/Cargo.toml --bin make-seeds`",
                path.display()
            );
        }
    }
}

#[test]
fn the_http_seeds_get_past_the_token_to_the_routes() {
    // Seeds that stop at the door would leave the fuzzer outside.
    let seeds = batpak_fuzz::seeds("http");
    let answer = |name: &str| {
        let (_, bytes) = seeds.iter().find(|(n, _)| n == name).expect("a seed");
        String::from_utf8_lossy(&batpak_fuzz::http::exchange(bytes)).into_owned()
    };
    for (name, status) in [
        ("append", "HTTP/1.1 200"),
        ("append-chunked", "HTTP/1.1 411"),
        ("read-query", "HTTP/1.1 200"),
        ("metrics", "HTTP/1.1 200"),
        ("read-no-token", "HTTP/1.1 401"),
    ] {
        let a = answer(name);
        assert!(a.starts_with(status), "seed {name}: {a}");
    }
}
