//! Labeled text: JSONL (`{"text": ..., "label": ...}` per line) or CSV with `text` and `label`
//! columns (header required).

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Example {
    pub text: String,
    pub label: String,
}

pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let examples = if is_csv { read_csv(path)? } else { read_jsonl(path)? };
    ensure!(!examples.is_empty(), "{} holds no examples", path.display());
    Ok(examples)
}

fn label_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn read_jsonl(path: &Path) -> Result<Vec<Example>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}: not a JSON object", at()))?;
        let text = v
            .get("text")
            .and_then(Value::as_str)
            .with_context(|| format!("{}: no \"text\" string", at()))?;
        let label =
            v.get("label").and_then(label_of).with_context(|| format!("{}: no \"label\"", at()))?;
        out.push(Example { text: text.to_owned(), label });
    }
    Ok(out)
}

fn read_csv(path: &Path) -> Result<Vec<Example>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers = r.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let (Some(t), Some(l)) = (col("text"), col("label")) else {
        bail!("{}: the CSV header needs \"text\" and \"label\" columns", path.display());
    };
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: bad CSV record {}", path.display(), i + 2))?;
        let get = |c: usize| rec.get(c).map(str::to_owned).unwrap_or_default();
        out.push(Example { text: get(t), label: get(l) });
    }
    Ok(out)
}

/// Sorted distinct labels and each example's label index.
pub fn label_index(examples: &[Example]) -> (Vec<String>, Vec<usize>) {
    let mut labels: Vec<String> = examples.iter().map(|e| e.label.clone()).collect();
    labels.sort();
    labels.dedup();
    let ys = examples.iter().map(|e| labels.binary_search(&e.label).unwrap_or(0)).collect();
    (labels, ys)
}
