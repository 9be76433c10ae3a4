//! What a bundle holds and how this CPU runs it: for `bertlite info` and for tests that check
//! the fast kernels are really chosen.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::model::Model;

/// Matrix-multiply kernels in the optimized plan, with how many ops use each.
pub fn matmul_kernels(model: &Model) -> BTreeMap<String, usize> {
    let mut kernels = BTreeMap::new();
    for node in model.encoder().model().nodes() {
        for line in node.op.info().unwrap_or_default() {
            if let Some(rest) = line.strip_prefix("Mult: ") {
                let kernel = rest.split_once(" with ").map_or(rest, |(_, k)| k);
                let kernel = kernel.trim_matches(|c| c == '[' || c == ']').to_owned();
                *kernels.entry(kernel).or_insert(0) += 1;
            }
        }
    }
    kernels
}

/// Every op of the optimized plan with tract's own description (for `info --verbose`).
pub fn plan_details(model: &Model) -> String {
    let mut s = String::new();
    for (op, n) in op_histogram(model) {
        let _ = writeln!(s, "op           {n:>3} × {op}");
    }
    for node in model.encoder().model().nodes() {
        for line in node.op.info().unwrap_or_default() {
            if line.starts_with("Mult") {
                let _ = writeln!(s, "node         {}: {line}", node.name);
            }
        }
    }
    s
}

/// Op counts of the optimized plan by op name.
pub fn op_histogram(model: &Model) -> BTreeMap<String, usize> {
    let mut ops = BTreeMap::new();
    for node in model.encoder().model().nodes() {
        *ops.entry(node.op.name().to_string()).or_insert(0) += 1;
    }
    ops
}

/// The human-readable report of `bertlite info`.
pub fn info(model: &Model, file_size: u64, load_seconds: f64, threads: usize) -> String {
    let m = model.metadata();
    let e = &m.encoder;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "bundle       format v{}, {:.2} MB, written by bertlite-tool {}",
        model.format_version(),
        file_size as f64 / 1e6,
        m.tool_version
    );
    let _ =
        writeln!(s, "source       {} ({}), sha256 {}", m.source, m.architecture, m.source_sha256);
    let _ = writeln!(
        s,
        "encoder      {} layers, hidden {}, heads {:?}, ffn {:?}",
        e.heads.len(),
        e.hidden,
        e.heads,
        e.intermediate
    );
    let _ = writeln!(
        s,
        "parameters   {:.2} M; {:.2} GFLOP at 128 tokens",
        e.parameters as f64 / 1e6,
        e.flops(128) as f64 / 1e9
    );
    let _ = writeln!(s, "quantization {}", m.quantization);
    if let Some(p) = &m.pruning {
        let _ = writeln!(s, "pruning      {p}");
    }
    let t = &m.tokenizer;
    let _ = writeln!(
        s,
        "tokenizer    WordPiece, {} tokens, max length {}, lowercase {}, strip accents {:?}",
        e.vocab_size,
        t.max_len,
        t.lowercase,
        t.strip_accents.unwrap_or(t.lowercase)
    );
    let _ = writeln!(
        s,
        "pooling      {:?}{}",
        m.pooling.mode,
        if m.pooling.normalize { " + L2 normalize" } else { "" }
    );
    match &m.head {
        Some(h) => {
            let _ = writeln!(
                s,
                "head         {:?}, {} labels: {}",
                h.kind,
                h.labels.len(),
                h.labels.join(", ")
            );
            let _ = writeln!(s, "             {}", h.origin);
        }
        None => {
            let _ = writeln!(s, "head         none (embeddings only)");
        }
    }
    for t in &m.tasks {
        let labels = if t.labels.is_empty() {
            String::new()
        } else {
            format!(", {} labels: {}", t.labels.len(), t.labels.join(", "))
        };
        let _ = writeln!(s, "task head    {}{labels} ({})", t.task.name(), t.origin);
    }
    let _ = writeln!(
        s,
        "cpu          {} [{}]",
        std::env::consts::ARCH,
        crate::platform::cpu::isa_names().join(" ")
    );
    let _ = writeln!(s, "threads      {threads}");
    let d = model.encoder().precision();
    let _ = writeln!(s, "precision    {} ({})", d.precision, d.reason);
    let _ = writeln!(s, "fast paths   {}", model.encoder().rewrites());
    let _ =
        writeln!(s, "load         {:.0} ms (parse + optimize for this CPU)", load_seconds * 1e3);
    for (k, n) in matmul_kernels(model) {
        let _ = writeln!(s, "matmul       {n:>3} × {k}");
    }
    s.trim_end().to_owned()
}
