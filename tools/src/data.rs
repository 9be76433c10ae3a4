//! Labeled text: JSONL (`{"text": ..., "label": ...}` per line; for multi-label data `label`
//! may be an array) or CSV with `text` and `label` columns (header required; several labels
//! separated by `|`).

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Example {
    pub text: String,
    /// One label, or several for multi-label data.
    pub labels: Vec<String>,
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

fn labels_of(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(items) => items.iter().map(label_of).collect(),
        other => label_of(other).map(|l| vec![l]),
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
        let labels = v
            .get("label")
            .and_then(labels_of)
            .with_context(|| format!("{}: no \"label\" (a string, number or array)", at()))?;
        out.push(Example { text: text.to_owned(), labels });
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
        let labels =
            get(l).split('|').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        out.push(Example { text: get(t), labels });
    }
    Ok(out)
}

/// Sorted distinct labels and each example's target vector (1.0 for its labels).
///
/// # Errors
/// Single-label training data whose example has no label or several.
pub fn label_targets(
    examples: &[Example],
    multi_label: bool,
) -> Result<(Vec<String>, Vec<Vec<f32>>)> {
    let mut labels: Vec<String> = examples.iter().flat_map(|e| e.labels.iter().cloned()).collect();
    labels.sort();
    labels.dedup();
    let mut targets = Vec::with_capacity(examples.len());
    for (i, e) in examples.iter().enumerate() {
        if !multi_label && e.labels.len() != 1 {
            bail!(
                "example {} has {} labels; use --multi-label for several labels per text",
                i + 1,
                e.labels.len()
            );
        }
        let mut t = vec![0f32; labels.len()];
        for l in &e.labels {
            if let Ok(c) = labels.binary_search(l) {
                t[c] = 1.0;
            }
        }
        targets.push(t);
    }
    Ok((labels, targets))
}
