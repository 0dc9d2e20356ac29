//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates
//! prost messages and tonic clients/servers into `OUT_DIR`. Nothing generated
//! is committed, so there is nothing that can drift from the protos.
//!
//! The encoded file descriptor set (with imports, source info and custom
//! options such as `google.api.http`) is written next to the code: server
//! reflection serves it, and the gateway derives its REST routes from it.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut files = Vec::new();
    collect_protos(&root.join("treven"), &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed={}", root.display());

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true);
    for file in &files {
        compiler.open_file(file)?;
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("treven_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    // The same set without source info (the protos' comments, a third of
    // its size): what the validation rules decode at start-up, where
    // comments serve nothing (#18, row 8).
    let mut lean = protox::Compiler::new([&root])?;
    lean.include_imports(true).include_source_info(false);
    for file in &files {
        lean.open_file(file)?;
    }
    std::fs::write(
        out_dir.join("treven_descriptor_without_source_info.bin"),
        lean.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

/// Every `.proto` below `dir`, so a new service's contract needs no change here.
fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            out.push(path);
        }
    }
    Ok(())
}
