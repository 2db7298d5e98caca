//! Writes the CRD YAML of every chainwatch kind to a directory (default `config/crd`).
//!
//! `cargo run -p chainwatch-crds --bin crdgen -- [DIR]`, or `just generate`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("config/crd"));
    std::fs::create_dir_all(&dir)?;
    for (name, content) in chainwatch_crds::generated_files() {
        let path = dir.join(name);
        std::fs::write(&path, content)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
