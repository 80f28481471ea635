//! Embeds every price table derived from a Claude Code release (`src/prices/claude-<version>.toml`,
//! written by `scripts/derive-prices`), so that adding a release is a data change: the list is
//! made here, oldest release first.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/prices");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut found: Vec<(Vec<u32>, String, String)> = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("src/prices is missing") {
        let path = entry.expect("src/prices cannot be listed").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        let Some(version) = name.strip_prefix("claude-").and_then(|n| n.strip_suffix(".toml")) else { continue };
        let key: Vec<u32> = version.split('.').map(|p| p.parse().expect("a release number such as 2.1.332")).collect();
        println!("cargo:rerun-if-changed={}", path.display());
        found.push((key, version.to_string(), path.display().to_string()));
    }
    assert!(!found.is_empty(), "src/prices holds no claude-<version>.toml");
    found.sort();
    let mut out = String::from("&[\n");
    for (_, v, p) in &found {
        out.push_str(&format!("    ({v:?}, include_str!({p:?})),\n"));
    }
    out.push_str("]\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("releases.rs");
    std::fs::write(dest, out).expect("cannot write releases.rs");
}
