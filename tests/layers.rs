//! The runtime's layers import only downward (docs/architecture.md): each top-level module of
//! src/ may name, through `crate::`, only the modules listed for it here. Test code is exempt
//! (a rewrite's test may load a graph through the encoder's reader).

use std::collections::BTreeMap;
use std::path::Path;

/// Each module and what it may import, bottom layer first.
const ALLOWED: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("platform", &["error"]),
    ("kernels", &["platform"]),
    ("ops", &["kernels", "platform"]),
    ("rewrite", &["ops", "kernels", "platform", "error"]),
    ("tokenizer", &["error"]),
    ("bundle", &["tokenizer", "error"]),
    ("encoder", &["rewrite", "platform", "bundle", "tokenizer", "error"]),
    ("model", &["encoder", "rewrite", "bundle", "tokenizer", "error"]),
    ("report", &["model", "encoder", "rewrite", "platform", "bundle", "error"]),
];

/// The host tool's modules (tools/src), the same way.
const TOOL_ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("config", &["model"]),
    ("data", &[]),
    ("quantize", &[]),
    ("train", &[]),
    ("hf", &["config", "model"]),
    ("onnx", &["config", "model"]),
    ("source", &["hf", "onnx", "model"]),
    ("gptq", &["model", "quantize"]),
    ("graph", &["gptq", "model", "quantize"]),
    ("bundle", &["gptq", "graph", "model"]),
    ("calibrate", &["embed", "gptq", "graph", "model"]),
    ("embed", &[]),
    ("distill", &["embed", "graph", "model"]),
    ("prune", &["distill", "embed", "graph", "model"]),
    ("finetune", &["distill", "embed", "model", "train"]),
    ("budget", &["embed", "graph", "model", "prune", "train"]),
    ("latency", &["budget", "bundle", "graph", "model", "prune"]),
    ("onnx_check", &["bundle", "graph", "model"]),
    ("eval", &["bundle", "data", "embed", "graph", "model", "source"]),
    (
        "compile",
        &[
            "budget",
            "bundle",
            "calibrate",
            "data",
            "distill",
            "embed",
            "finetune",
            "graph",
            "latency",
            "model",
            "onnx_check",
            "prune",
            "source",
            "train",
        ],
    ),
];

/// The `crate::<module>` names in `source`'s code: comments (doc links may point anywhere)
/// and test modules left out.
fn imports(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]\nmod tests").next().unwrap_or(source);
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut found: Vec<String> = code
        .match_indices("crate::")
        .map(|(i, _)| {
            let rest = &code[i + "crate::".len()..];
            rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn runtime_modules_import_only_downward() {
    check_layers(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), ALLOWED, 20);
}

#[test]
fn tool_modules_import_only_downward() {
    check_layers(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/src"), TOOL_ALLOWED, 15);
}

fn check_layers(src: &Path, table: &[(&str, &[&str])], at_least: usize) {
    let allowed: BTreeMap<&str, &[&str]> = table.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut violations = Vec::new();
    let mut seen = 0;
    for file in files {
        let relative = file.strip_prefix(src).expect("under src/");
        let first = relative.components().next().expect("a path").as_os_str();
        let module = first.to_str().expect("UTF-8 name").trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue; // the crate root and the command line sit on top
        }
        let Some(may) = allowed.get(module) else {
            violations.push(format!("{}: module `{module}` has no layer", relative.display()));
            continue;
        };
        seen += 1;
        let source = std::fs::read_to_string(&file).expect("readable source");
        for import in imports(&source) {
            if import != module && !may.contains(&import.as_str()) {
                violations.push(format!("{}: `{module}` imports `{import}`", relative.display()));
            }
        }
    }
    assert!(seen >= at_least, "found only {seen} source files in {}", src.display());
    assert!(violations.is_empty(), "imports against the layers:\n{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_import() {
    let source = "use crate::model::Model;\n/// [`crate::ops`]\nfn f() { crate::error::Error::input(\"x\"); }\n\
                  #[cfg(test)]\nmod tests { use crate::report; }";
    assert_eq!(imports(source), ["error", "model"]);
}
