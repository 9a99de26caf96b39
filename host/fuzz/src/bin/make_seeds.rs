//! Writes every target's seed corpus to `host/fuzz/corpus/TARGET/`
//! (`cargo run --release --manifest-path host/fuzz/Cargo.toml --bin
//! make-seeds`): real buffers, requests, frames and store files made by the
//! code that makes them in production.

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in batpak_fuzz::TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("creating a corpus directory");
        for (name, bytes) in batpak_fuzz::seeds(target) {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("writing a seed");
        }
        println!("{target}: {} seeds", batpak_fuzz::seeds(target).len());
    }
}
