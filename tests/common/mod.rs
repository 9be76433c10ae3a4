//! Where the fetched model, data and compiled bundles are; a clear message when missing.

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn cache() -> PathBuf {
    std::env::var_os("BERTLITE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/bertlite")
    })
}

fn require(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run tools/test.sh (it fetches the real model with tools/setup.sh and compiles the test bundles)",
        path.display()
    );
    path
}

pub fn model_dir() -> PathBuf {
    require(repo().join("models/all-MiniLM-L6-v2"))
}

pub fn bbc_test() -> PathBuf {
    require(repo().join("data/bbc/test.jsonl"))
}

/// `minilm-f32.blt` (no quantization), `minilm-int8.blt`, `minilm-bbc.blt` (int8 + BBC head).
pub fn bundle(name: &str) -> PathBuf {
    require(cache().join("bundles").join(name))
}

pub fn golden(name: &str) -> PathBuf {
    repo().join("tests/golden").join(name)
}

pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("golden line is JSON"))
        .collect()
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}
