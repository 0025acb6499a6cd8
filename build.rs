//! Embeds every table definition under `schemas/` into the binary, so that adding a table is
//! adding a file: `OUT_DIR/tables.rs` lists `(file name, contents)` pairs for `src/schema.rs`.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new("schemas/tables");
    println!("cargo:rerun-if-changed=schemas");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    let mut out = String::from("pub static TABLE_FILES: &[(&str, &str)] = &[\n");
    for path in &files {
        let abs = std::fs::canonicalize(path).expect("schema file path");
        let name = path.file_name().unwrap().to_string_lossy();
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
        println!("cargo:rerun-if-changed={}", path.display());
    }
    out.push_str("];\n");
    let common = std::fs::canonicalize("schemas/common.json").ok();
    match common {
        Some(p) => writeln!(
            out,
            "pub static COMMON_FILE: &str = include_str!({:?});",
            p.display().to_string()
        )
        .unwrap(),
        None => out.push_str("pub static COMMON_FILE: &str = \"{\\\"columns\\\":[]}\";\n"),
    }
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("tables.rs");
    std::fs::write(dest, out).expect("write tables.rs");
}
